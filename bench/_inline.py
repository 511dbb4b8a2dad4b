"""The inline executor (dispatch in the emitting thread) against blinker's ``send``."""

from __future__ import annotations

import time
from typing import Any

from ._measure import PAIRED_RUNS, Config, interleave
from ._report import Row, Target

__all__ = ["inline_section"]


def _rocketman_inline(total: int) -> float:
    """µs per ``emit`` with the inline executor and one trivial consumer."""
    import rocketman_core

    app = rocketman_core.Rocketman()
    app.configure(executor="inline")

    @app.on_event("bench.event")
    def handler(payload: Any) -> None:
        pass

    emit = app.emit
    app.emit("bench.event", {"n": -1})  # builds the storage and executor before timing
    started = time.perf_counter()
    for number in range(total):
        emit("bench.event", {"n": number})
    elapsed = time.perf_counter() - started
    app.shutdown()
    return elapsed / total * 1e6


def _blinker_send(total: int) -> float:
    """µs per ``Signal.send`` with one trivial receiver."""
    import blinker

    signal = blinker.Signal()

    def receiver(sender: Any, **payload: Any) -> None:
        pass

    signal.connect(receiver)
    send = signal.send
    started = time.perf_counter()
    for number in range(total):
        send("bench", payload={"n": number})
    elapsed = time.perf_counter() - started
    return elapsed / total * 1e6


def inline_section(config: Config) -> list[Row]:
    """One row: the inline emit's cost beside blinker's send."""
    total = config.pick(100_000, 30_000)
    runs = max(PAIRED_RUNS, config.repeats)
    ours, theirs = interleave(runs, lambda: _rocketman_inline(total), lambda: _blinker_send(total))
    return [Row.paired("inline", "emit with one consumer (synchronous)", "µs", ours,
                       "blinker Signal.send, one receiver", theirs, Target("<=", 3.0),
                       note="rocketman round-trips the payload through JSON; blinker passes it as is",
                       extra={"events": total, "runs": runs})]
