"""Measuring helpers: repeated runs, percentiles, RSS, and the shared run settings."""

from __future__ import annotations

import gc
import os
import statistics
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

__all__ = ["PAIRED_RUNS", "REPO", "WIDE_RUNS", "Config", "child_env", "interleave", "median", "percentile", "python", "rss_mb", "script"]

T = TypeVar("T")

REPO = Path(__file__).resolve().parent.parent

#: Runs of each contender behind a row that reports a median and a range
#: (``Row.paired``), alternated with the baseline's; also with ``--quick``.
PAIRED_RUNS = 5
#: Runs behind the rows whose per-run ratios spread widest on a 2-core
#: machine, by up to a third of their target (memory + threads end to end
#: and its observers' row, Redis end to end, the trivial async consumers,
#: one round trip per event: emit one at a time, emit_async), so that their
#: median moves less from one full run to the next (one-producer
#: emit_async: 0.77x, then 1.05x). More runs of the same measure, all kept.
WIDE_RUNS = 9


@dataclass(frozen=True)
class Config:
    """How much to measure: the full run, or ``--quick`` (about a minute)."""

    quick: bool = False

    @property
    def repeats(self) -> int:
        """How often each in-process measurement runs (every run kept: rows report the median and the range)."""
        return 2 if self.quick else 7

    def pick(self, full: int, quick: int) -> int:
        """``full`` for a full run, ``quick`` for a quick one."""
        return quick if self.quick else full


def interleave(repeats: int, *measures: Callable[[], T]) -> list[list[T]]:
    """Run each measure ``repeats`` times, alternating, and return each one's results.

    Alternating ours and the baseline spreads the noise of a shared machine
    (other processes, frequency changes) over both instead of one.
    """
    results: list[list[T]] = [[] for _ in measures]
    for _ in range(repeats):
        for index, measure in enumerate(measures):
            gc.collect()
            results[index].append(measure())
    return results


def percentile(values: Sequence[float], fraction: float) -> float:
    """The ``fraction`` percentile (0 to 1) of ``values``, by the nearest rank."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(fraction * len(ordered)) - 1))
    return ordered[rank]


def median(values: Sequence[float]) -> float:
    """The median of ``values``."""
    return statistics.median(values)


def rss_mb() -> float:
    """This process's resident set size in MB (10**6 bytes), from /proc or psutil."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024 / 1e6
    except OSError:
        pass
    import psutil  # type: ignore[import-untyped]  # macOS and others without /proc

    return float(psutil.Process().memory_info().rss) / 1e6


def python() -> str:
    """The interpreter running the benchmark: subprocesses use the same one."""
    return sys.executable


def script(name: str) -> str:
    """The path of a console script installed beside this interpreter (``rocketman``, ``dramatiq``)."""
    path = Path(sys.executable).parent / name
    if not path.exists():
        raise FileNotFoundError(f"{name} is not installed beside {sys.executable}")
    return str(path)


def child_env(**extra: str) -> dict[str, str]:
    """The environment for a benchmark subprocess: this one, the repo on the path, no ROCKETMAN_* but ROCKETMAN_SPEEDUPS=0."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROCKETMAN_")}
    # The standard library's JSON, as every contender: the speedups have rows of their own.
    env["ROCKETMAN_SPEEDUPS"] = "0"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
    env.update(extra)
    return env
