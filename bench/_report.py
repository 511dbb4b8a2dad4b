"""Rows of results, their targets, and how they are shown: a text table, JSON, markdown."""

from __future__ import annotations

import json
import math
import re
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Row", "Target", "markdown_table", "text_table", "update_readme", "update_readme_block",
           "write_json"]


@dataclass(frozen=True)
class Target:
    """A promise a figure must keep: ``ratio >= 1.0``, or ``value < 300``.

    :param op: ``">="`` or ``"<="``.
    :param bound: the number compared with.
    :param on: ``"ratio"`` (ours divided by the baseline) or ``"value"`` (ours alone).
    """

    op: str
    bound: float
    on: str = "ratio"

    def holds(self, value: float) -> bool:
        """Whether ``value`` (the ratio or the figure) keeps the target."""
        return value >= self.bound if self.op == ">=" else value <= self.bound

    def __str__(self) -> str:
        sign = "≥" if self.op == ">=" else "≤"
        return f"{sign} {self.bound:g}x" if self.on == "ratio" else f"{sign} {self.bound:g}"


def _finite(value: float | None) -> bool:
    return value is not None and not math.isnan(value)


@dataclass
class Row:
    """One figure of ours beside one baseline measured in the same run.

    ``ratio`` is always ours divided by the baseline, in the figure's unit: a
    throughput ratio above 1 and a cost or latency ratio below 1 are ours ahead.

    A row built with :meth:`paired` keeps every run: ``ours_runs[i]`` and
    ``baseline_runs[i]`` were measured one after the other (interleaved). Its
    ``ours`` and ``baseline`` are the medians of the runs, its ``ratio`` the
    median of the per-run ratios (judged by the target), and ``ratio_range``
    their lowest and highest.
    """

    section: str
    figure: str
    unit: str
    ours: float | None
    baseline_name: str | None = None
    baseline: float | None = None
    target: Target | None = None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    ours_runs: list[float] = field(default_factory=list)
    baseline_runs: list[float] = field(default_factory=list)

    @classmethod
    def paired(
        cls,
        section: str,
        figure: str,
        unit: str,
        ours_runs: Sequence[float] | None,
        baseline_name: str | None,
        baseline_runs: Sequence[float] | None,
        target: Target | None = None,
        note: str = "",
        extra: dict[str, Any] | None = None,
    ) -> Row:
        """A row from interleaved runs: ``ours_runs[i]`` beside ``baseline_runs[i]``.

        ``None`` (or a run that is NaN) for a side that could not be measured.
        """
        mine = [float(v) for v in ours_runs or ()]
        theirs = [float(v) for v in baseline_runs or ()]
        if not mine or not all(map(_finite, mine)):
            mine = []
        if not theirs or not all(map(_finite, theirs)):
            theirs = []
        return cls(
            section, figure, unit,
            statistics.median(mine) if mine else None,
            baseline_name,
            statistics.median(theirs) if theirs else None,
            target, note, dict(extra or {}), mine, theirs,
        )

    @property
    def ratios(self) -> list[float]:
        """The per-run ratios of a :meth:`paired` row (empty for a row of single figures)."""
        if not self.ours_runs or len(self.ours_runs) != len(self.baseline_runs):
            return []
        if not all(self.baseline_runs):
            return []
        return [o / b for o, b in zip(self.ours_runs, self.baseline_runs, strict=True)]

    @property
    def ratio(self) -> float | None:
        ratios = self.ratios
        if ratios:
            return statistics.median(ratios)
        if self.ours is None or not self.baseline:
            return None
        return self.ours / self.baseline

    @property
    def ratio_range(self) -> tuple[float, float] | None:
        """The lowest and the highest per-run ratio, for a :meth:`paired` row."""
        ratios = self.ratios
        return (min(ratios), max(ratios)) if ratios else None

    @property
    def verdict(self) -> str:
        """PASS or MISS for a row with a target; n/a when a figure is missing; else empty."""
        if self.target is None:
            return ""
        value = self.ratio if self.target.on == "ratio" else self.ours
        if value is None or math.isnan(value):
            return "n/a"
        return "PASS" if self.target.holds(value) else "MISS"

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["target"] = str(self.target) if self.target else None
        data["target_spec"] = asdict(self.target) if self.target else None
        data["ratio"] = self.ratio
        ratios = self.ratios
        spread = self.ratio_range
        data["statistic"] = f"median of {len(ratios)} interleaved runs" if ratios else "single figure"
        data["ratios"] = ratios or None
        data["ratio_range"] = list(spread) if spread else None
        data["verdict"] = self.verdict
        return data


def _number(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    if unit == "events/s":
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _with_unit(value: float | None, unit: str) -> str:
    return "n/a" if value is None else f"{_number(value, unit)} {unit}"


def _times(ratio: float) -> str:
    return f"{ratio:.2f}x" if ratio >= 0.01 else f"{ratio:.4f}x"


def _ratio_cell(row: Row) -> str:
    ratio = row.ratio
    if ratio is None:
        return ""
    spread = row.ratio_range
    if spread is None:
        return _times(ratio)
    low, high = spread
    return f"{_times(ratio)} ({_times(low)[:-1]} to {_times(high)[:-1]}, {len(row.ratios)} runs)"


def _cells(row: Row) -> list[str]:
    return [
        row.figure,
        _with_unit(row.ours, row.unit),
        row.baseline_name or "",
        _with_unit(row.baseline, row.unit) if row.baseline_name else "",
        _ratio_cell(row),
        str(row.target) if row.target else "",
        row.verdict,
    ]


_HEADER = ["figure", "rocketman", "baseline", "baseline value", "ratio", "target", "result"]


def text_table(rows: list[Row]) -> str:
    """The rows as an aligned plain-text table, one section after another."""
    body = [_cells(row) for row in rows]
    widths = [max(len(line[i]) for line in [_HEADER, *body]) for i in range(len(_HEADER))]
    lines = []
    section = None
    shown = ""
    for row, cells in zip(rows, body, strict=True):
        if row.section != section:
            section = row.section
            lines.append("")
            lines.append(f"== {section} ==")
            lines.append("  ".join(h.ljust(w) for h, w in zip(_HEADER, widths, strict=True)).rstrip())
        lines.append("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip())
        if row.note and row.ours is None and row.note != shown:
            lines.append(f"    ({row.note})")
            shown = row.note
    return "\n".join(lines).lstrip("\n")


def markdown_table(rows: list[Row]) -> str:
    """The rows as one markdown table, with the section in the first column."""
    header = ["section", *_HEADER]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [row.section, *_cells(row)]
        if row.verdict in ("PASS", "MISS"):
            cells[-1] = f"**{row.verdict}**"
        if row.ours is None and row.note:
            cells[2] = f"n/a ({row.note})"
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)


def write_json(path: Path, meta: dict[str, Any], rows: list[Row], series: dict[str, Any]) -> None:
    """Write the run's metadata, rows and plot series; via a temporary file, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"meta": meta, "rows": [row.as_json() for row in rows], "series": series}
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    temporary.replace(path)


_MARKERS = re.compile(
    r"(<!-- bench:results:start -->\n).*?(<!-- bench:results:end -->)", re.DOTALL
)


def update_readme(readme: Path, table: str, summary: str) -> bool:
    """Put the latest table between the README's markers; False when they are missing."""
    text = readme.read_text()
    if not _MARKERS.search(text):
        return False
    block = f"{summary}\n\n{table}\n"
    readme.write_text(_MARKERS.sub(lambda m: m.group(1) + block + m.group(2), text))
    return True


def update_readme_block(readme: Path, name: str, text: str) -> bool:
    """Put ``text`` between the README's ``<!-- bench:NAME:start -->`` and ``:end -->`` markers.

    The sibling of :func:`update_readme` for the other blocks (``scale``);
    False when the markers are missing.
    """
    markers = re.compile(
        rf"(<!-- bench:{re.escape(name)}:start -->\n).*?(<!-- bench:{re.escape(name)}:end -->)", re.DOTALL
    )
    content = readme.read_text()
    if not markers.search(content):
        return False
    readme.write_text(markers.sub(lambda m: m.group(1) + text.rstrip("\n") + "\n" + m.group(2), content))
    return True
