"""The figures: throughput against worker count, and RSS under an overload."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["plot_rss", "plot_throughput"]


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # no display: write PNG files only
    import matplotlib.pyplot as plt

    return plt


def plot_throughput(path: Path, memory: dict[str, Any], redis: dict[str, Any], title: str) -> None:
    """Two panels, memory and Redis: events/s against workers, rocketman and its baseline."""
    plt = _pyplot()
    figure, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    panels = [
        (axes[0], memory, "memory + threads (in process)", "queue.Queue + JSON"),
        (axes[1], redis, "Redis, 1 worker process", "BLMOVE + LREM"),
    ]
    for axis, series, label, baseline in panels:
        axis.set_title(label)
        axis.set_xlabel("worker threads")
        axis.set_ylabel("events/s (end to end)")
        axis.grid(True, alpha=0.3)
        if not series or "workers" not in series:
            axis.text(0.5, 0.5, series.get("unavailable", "not measured") if series else "not measured",
                      ha="center", va="center", wrap=True, transform=axis.transAxes)
            continue
        workers = series["workers"]
        ours = series.get("rocketman") or []
        if any(value is not None for value in ours):
            axis.plot(workers, ours, "o-", label="rocketman", color="tab:red")
        else:
            axis.text(0.5, 0.9, "rocketman: " + str(series.get("unavailable", "not available")),
                      ha="center", va="center", transform=axis.transAxes, fontsize=8, wrap=True)
        axis.plot(workers, series[baseline], "s--", label=baseline, color="tab:gray")
        axis.set_xticks(workers)
        axis.set_ylim(bottom=0)
        axis.legend(loc="best")
    figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)


def plot_rss(path: Path, rss: dict[str, Any], title: str) -> None:
    """RSS over time while a producer outruns a slow consumer: bounded and unbounded queue."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(7, 3.6))
    for key, label, style in (("unbounded", "unbounded queue", "--"), ("bounded", "maxsize=10000", "-")):
        samples = rss.get(key) or []
        axis.plot([t for t, _ in samples], [mb for _, mb in samples], style, label=label)
    axis.set_xlabel("seconds")
    axis.set_ylabel("RSS (MB)")
    axis.set_ylim(bottom=0)
    axis.grid(True, alpha=0.3)
    axis.legend()
    axis.set_title(title, fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
