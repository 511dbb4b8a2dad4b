"""Import and plugin discovery time, beside ``import pluggy``, in fresh interpreters."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time

from ._measure import Config, child_env, interleave, median, python
from ._report import Row, Target

__all__ = ["startup_section"]

OURS = "import rocketman_core; rocketman_core.Rocketman().plugins.load()"
PLUGGY = "import pluggy"
NOTHING = "pass"


def _run(code: str, env: dict[str, str]) -> float:
    """Seconds for a fresh interpreter to run ``code`` and exit."""
    started = time.perf_counter()
    subprocess.run([python(), "-c", code], check=True, env=env)
    return time.perf_counter() - started


def _cached_env(cache: str) -> dict[str, str]:
    # As on a user's machine, modules load from bytecode caches: an
    # environment with PYTHONDONTWRITEBYTECODE would compile every module of
    # an editable install at every start (pip compiled pluggy's at install).
    # The caches go to a folder of this run, not into the source tree.
    env = child_env(PYTHONPYCACHEPREFIX=cache)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def startup_section(config: Config) -> list[Row]:
    """One row: ms of import + discovery beyond a bare interpreter, beside ``import pluggy``.

    The three interpreters run in rounds (ours, ``import pluggy``, a bare
    ``python -c pass``); each round's bare start is subtracted from the other
    two, so a round compares what each import adds, on the machine as it was
    during that round. The row is judged, as every other, on the median of the
    per-round ratios, with their range; the least disturbed figures (the
    minimum of each) are kept beside it.
    """
    runs = config.pick(60, 10)
    cache = tempfile.mkdtemp(prefix="rocketman-bench-pycache-")
    try:
        env = _cached_env(cache)
        for code in (OURS, PLUGGY, NOTHING):
            _run(code, env)  # warm the OS page cache and write the bytecode caches first
        ours, pluggy, bare = interleave(
            runs, lambda: _run(OURS, env), lambda: _run(PLUGGY, env), lambda: _run(NOTHING, env)
        )
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    floor = min(bare)
    return [Row.paired(
        "startup", "import rocketman_core + plugin discovery", "ms",
        [(mine - alone) * 1e3 for mine, alone in zip(ours, bare, strict=True)], "import pluggy",
        [(theirs - alone) * 1e3 for theirs, alone in zip(pluggy, bare, strict=True)], Target("<=", 2.0),
        extra={"bare_interpreter_ms": median(bare) * 1e3, "min_ours_ms": (min(ours) - floor) * 1e3,
               "min_pluggy_ms": (min(pluggy) - floor) * 1e3, "runs": runs},
    )]
