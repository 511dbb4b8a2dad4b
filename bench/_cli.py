"""The command line: choose sections, run them, print the table, write JSON and plots."""

from __future__ import annotations

import argparse
import datetime
import logging
import os
import platform
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from ._measure import REPO, Config
from ._report import Row, markdown_table, text_table, update_readme, update_readme_block, write_json

__all__ = ["main"]

SECTIONS = ("memory", "inline", "redis", "async", "startup", "rss", "scaling", "scale")
RESULTS = REPO / "bench" / "results"
README = REPO / "bench" / "README.md"
PEERS = ("rocketman-core", "rocketman-memory", "rocketman-threads", "rocketman-redis", "pluggy",
         "redis", "hiredis", "msgspec", "blinker", "dramatiq", "rq", "celery", "kombu", "taskiq", "taskiq-redis",
         "arq", "huey", "matplotlib", "psutil")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="rocketman's benchmarks, each beside a baseline measured in the same run.",
    )
    parser.add_argument("--quick", action="store_true",
                        help="fewer events and repeats (rows with a range keep 5 runs); "
                             "results go to bench/results/quick/")
    parser.add_argument("--only", metavar="SECTIONS",
                        help=f"comma-separated sections to run, of: {', '.join(SECTIONS)}")
    parser.add_argument("--skip", metavar="SECTIONS", help="comma-separated sections not to run")
    parser.add_argument("--json", metavar="PATH", type=Path,
                        help="where to write the results (default bench/results/latest.json); "
                             "the plots go beside it")
    parser.add_argument("--no-readme", action="store_true",
                        help="do not put the table in bench/README.md (a full run of every section does)")
    return parser


def _sections(text: str | None, parser: argparse.ArgumentParser) -> set[str]:
    names = {part.strip() for part in (text or "").split(",") if part.strip()}
    unknown = names - set(SECTIONS)
    if unknown:
        parser.error(f"unknown section(s) {', '.join(sorted(unknown))}; choose from {', '.join(SECTIONS)}")
    return names


def main(argv: Sequence[str] | None = None) -> int:
    """Run the chosen sections; return 0, or 1 if a section failed to run."""
    parser = _parser()
    args = parser.parse_args(argv)
    chosen = _sections(args.only, parser) or set(SECTIONS)
    chosen -= _sections(args.skip, parser)
    config = Config(quick=args.quick)
    json_path: Path = args.json or (RESULTS / "quick" / "latest.json" if args.quick else RESULTS / "latest.json")
    # Shutting down a runtime with events left is expected here (the emit-cost
    # runs have no worker): keep those warnings out of the table.
    logging.getLogger("rocketman").setLevel(logging.ERROR)
    # Every contender parses JSON with the standard library; the rows "with
    # rocketman-core[speedups]" turn msgspec on for themselves.
    from rocketman_core import _envelope

    _envelope.use_speedups(False)

    started = time.monotonic()
    load_before = os.getloadavg()
    rows: list[Row] = []
    series: dict[str, Any] = {}
    failures: list[str] = []

    def run(name: str, section: Callable[[], Any]) -> Any:
        print(f"-- {name} ...", file=sys.stderr, flush=True)
        began = time.monotonic()
        try:
            result = section()
        except Exception:
            failures.append(name)
            print(f"-- {name} FAILED:\n{traceback.format_exc()}", file=sys.stderr, flush=True)
            rows.append(Row(name, "the section failed to run (see the log)", "", None,
                            note=traceback.format_exc().strip().splitlines()[-1][:200]))
            return None
        print(f"-- {name}: {time.monotonic() - began:.1f} s", file=sys.stderr, flush=True)
        return result

    if "memory" in chosen:
        from ._memory import memory_section

        rows += run("memory + threads", lambda: memory_section(config)) or []
    if "scaling" in chosen:
        # Early, like the memory section: in a process with a small heap, before
        # the Redis section imports redis-py, dramatiq and rq.
        from ._memory import scaling_series

        series["memory_workers"] = run("scaling (memory)", lambda: scaling_series(config)) or {}
    if "inline" in chosen:
        from ._inline import inline_section

        rows += run("inline", lambda: inline_section(config)) or []
    if "redis" in chosen or "scaling" in chosen:
        from ._redis import redis_section

        outcome = run("redis", lambda: redis_section(config, rows="redis" in chosen,
                                                     scaling="scaling" in chosen))
        if outcome is not None:
            redis_rows, series["redis_workers"] = outcome
            rows += redis_rows
    if "async" in chosen:
        from ._async import async_section

        rows += run("async", lambda: async_section(config)) or []
    if "startup" in chosen:
        from ._startup import startup_section

        rows += run("startup", lambda: startup_section(config)) or []
    if "rss" in chosen:
        from ._rss import rss_section

        outcome = run("memory (RSS)", lambda: rss_section(config))
        if outcome is not None:
            rss_rows, series["rss_overload"] = outcome
            rows += rss_rows
    if "scale" in chosen:
        from ._redis_scale import scale_section

        outcome = run("scale", lambda: scale_section(config))
        if outcome is not None:
            series["scale"] = outcome

    meta = _meta(config, sorted(chosen, key=SECTIONS.index), time.monotonic() - started, load_before)
    table = text_table(rows)
    print()
    print(table)
    print(f"\n{_summary(meta, rows)}")
    write_json(json_path, meta, rows, series)
    print(f"results: {_shown(json_path)}")
    if "scaling" in chosen:
        from ._plot import plot_throughput

        plot = json_path.parent / "throughput.png"
        plot_throughput(plot, series.get("memory_workers", {}), series.get("redis_workers", {}),
                        _title(meta))
        print(f"plot: {_shown(plot)}")
    if "rss_overload" in series:
        from ._plot import plot_rss

        plot = json_path.parent / "rss.png"
        plot_rss(plot, series["rss_overload"], "RSS while a producer outruns one slow consumer\n" + _title(meta))
        print(f"plot: {_shown(plot)}")
    if "scale" in series:
        from ._plot import plot_scale
        from ._redis_scale import scale_markdown

        scale_text = scale_markdown(series["scale"])
        print(f"\n== scale ==\n{scale_text}")
        plot = json_path.parent / "scale.png"
        plot_scale(plot, series["scale"], "Redis storage scaling\n" + _title(meta))
        print(f"plot: {_shown(plot)}")
        if not config.quick and args.json is None and not args.no_readme and update_readme_block(
                README, "scale", f"Run of {_title(meta)}.\n\n{scale_text}"):
            print(f"scaling tables written into {_shown(README)}")
    async_rows = [row for row in rows if row.section == "async"]
    # Whatever --json says: `--only async --json bench/results/async.json` keeps latest.json a full run's.
    if async_rows and not config.quick and not args.no_readme and update_readme_block(
            README, "async", f"{_summary(meta, async_rows)}\n\n{markdown_table(async_rows)}"):
        print(f"async table written into {_shown(README)}")
    complete = chosen == set(SECTIONS) and not config.quick and args.json is None
    if complete and not args.no_readme and update_readme(README, markdown_table(rows), _summary(meta, rows)):
        print(f"table written into {_shown(README)}")
    if failures:
        print(f"sections that failed to run: {', '.join(failures)}", file=sys.stderr)
        return 1
    return 0


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _meta(config: Config, sections: list[str], seconds: float, load_before: tuple[float, ...]) -> dict[str, Any]:
    versions: dict[str, str | None] = {}
    for name in PEERS:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "commit": _git("rev-parse", "--short", "HEAD"),
        "quick": config.quick,
        "sections": sections,
        "seconds": round(seconds, 1),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "redis_server": _redis_server_version(),
        "versions": versions,
    }


def _git(*args: str) -> str | None:
    try:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def _redis_server_version() -> str | None:
    try:
        out = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout
    except OSError:
        return None
    return next((part.split("=", 1)[1] for part in out.split() if part.startswith("v=")), out.strip() or None)


def _title(meta: dict[str, Any]) -> str:
    return (f"{meta['date'][:10]}, commit {meta['commit']}, Python {meta['python']}, "
            f"{meta['cpus']} CPUs{', quick run' if meta['quick'] else ''}")


def _summary(meta: dict[str, Any], rows: list[Row]) -> str:
    verdicts = [row.verdict for row in rows if row.verdict]
    counts = ", ".join(f"{verdicts.count(v)} {v}" for v in ("PASS", "MISS", "n/a") if v in verdicts)
    return (f"Run of {_title(meta)}, in {meta['seconds']:.0f} s "
            f"(load average {meta['load_before'][0]:.1f} before, {meta['load_after'][0]:.1f} after). "
            f"Targets: {counts or 'none measured'}.")
