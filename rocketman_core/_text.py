"""Words for people reading logs and the command's output: counts and durations."""

from __future__ import annotations


def plural(count: int, noun: str) -> str:
    """``1 event``, ``2 events``: a count with its noun, as a person would write it."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def duration(seconds: float) -> str:
    """A duration in the largest unit that keeps it readable: ``90s``, ``5 min``, ``3 days``."""
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} days"
