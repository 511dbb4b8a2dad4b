"""The figures: throughput against worker count, and RSS under an overload."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["plot_rss", "plot_scale", "plot_throughput"]


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


def plot_scale(path: Path, scale: dict[str, Any], title: str) -> None:
    """Redis scaling: emit rates and server CPU against subscriptions; MB/s against payload size."""
    plt = _pyplot()
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    consumers = scale.get("consumers")
    left.set_title("emit with N subscriptions (1 matches)")
    left.set_xlabel("subscriptions")
    left.set_ylabel("events/s")
    left.grid(True, alpha=0.3)
    if isinstance(consumers, list) and consumers:
        exact = [c for c in consumers if not c["patterns"]]
        counts = [c["subscriptions"] for c in exact]
        left.plot(counts, [c["emit_rate"] for c in exact], "o-", color="tab:red", label="emit, one at a time")
        left.plot(counts, [c["emit_many_rate"] for c in exact], "s-", color="tab:blue", label="emit_many(100)")
        for case in (c for c in consumers if c["patterns"]):
            left.plot([case["subscriptions"]] * 2, [case["emit_rate"], case["emit_many_rate"]], "x",
                      color="black", markersize=9, label=f"with patterns ({case['matching']} match)")
        left.set_xscale("log")
        left.set_yscale("log")
        cpu = left.twinx()
        cpu.plot(counts, [c["emit_server_us"] for c in exact], "o:", color="tab:red", alpha=0.6)
        cpu.plot(counts, [c["emit_many_server_us"] for c in exact], "s:", color="tab:blue", alpha=0.6)
        cpu.set_ylabel("Redis server CPU per event, µs (dotted)")
        cpu.set_ylim(bottom=0)
        left.legend(loc="lower left", fontsize=8)
    else:
        left.text(0.5, 0.5, "not measured", ha="center", va="center", transform=left.transAxes)
    payload = scale.get("payload")
    right.set_title("payload size (1 worker process of 5 threads)")
    right.set_xlabel("payload bytes")
    right.set_ylabel("MB/s of payload")
    right.grid(True, alpha=0.3)
    if isinstance(payload, list) and payload:
        sizes = [c["payload_bytes"] for c in payload]
        right.plot(sizes, [c["emit_mb_s"] for c in payload], "o-", color="tab:red", label="emit, one at a time")
        right.plot(sizes, [c["drain_mb_s"] for c in payload], "s-", color="tab:green", label="drain")
        right.set_xscale("log")
        right.set_yscale("log")
        right.legend(loc="upper left", fontsize=8)
    else:
        right.text(0.5, 0.5, "not measured", ha="center", va="center", transform=right.transAxes)
    figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
