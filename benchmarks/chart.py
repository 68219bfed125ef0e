"""The benchmark's results as one picture of six panels (latest.png)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks import goals
from benchmarks.inprocess import STAGES
from benchmarks.report import ENVIRONMENTS, RUNNERS, SETUPS


def chart(results: dict[str, Any], path: Path) -> None:
    """Six panels: HTTP latency, throughput and in-process stages; start, memory and size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(2, 3, figsize=(19, 10.5))
    _latency_panel(axes[0][0], results)
    _throughput_panel(axes[0][1], results)
    _stages_panel(axes[0][2], results)
    setups = [s for s in SETUPS if s in results["cold_start"]]
    footprint = results["footprint"]
    environments = [name for name in ENVIRONMENTS if name in footprint]
    _goal_bars(
        axes[1][0],
        setups,
        [results["cold_start"][s]["median_s"] for s in setups],
        goals.MAX_COLD_START_S,
        "s",
        "Cold start: spawn to first 200 from /segment (median)",
    )
    _goal_bars(
        axes[1][1],
        setups,
        [results["memory"][s]["peak_rss_mb"] for s in setups],
        goals.MAX_PEAK_RSS_MB,
        "MB",
        "Peak RSS of the server through concurrency 16",
    )
    _goal_bars(
        axes[1][2],
        environments,
        [footprint[name]["mb"] for name in environments],
        goals.MAX_SERVING_ENV_MB,
        "MB",
        "Installed environment",
        colours=[_COLOURS.get(name, "#999999") for name in environments],
    )
    meta = results["meta"]
    figure.suptitle(
        f"Magnetic tile defect service against its peers: {meta['machine']['cpus']} CPUs, "
        f"{'quick' if meta['quick'] else 'full'} run of {meta['started'][:16]}, "
        f"model {meta['model']['version']} ({meta['model']['source']})",
        fontsize=14,
    )
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


_COLOURS = {
    "service": "#1b9e77",
    "serving": "#1b9e77",
    "fastapi": "#e7298a",
    "bentoml": "#e6ab02",
    "pytorch": "#7570b3",
    "original": "#d95f02",
    "service-resnet34": "#66a61e",
}
_SHORT = {
    "service": "service\n(onnxruntime)",
    "serving": "service",
    "fastapi": "plain\nFastAPI",
    "bentoml": "BentoML",
    "pytorch": "PyTorch\neager",
    "original": "original\n(fastai)",
    "service-resnet34": "service,\nresnet34",
    "training": "training",
}


def _measured_setups(results: dict[str, Any]) -> list[str]:
    return [s for s in SETUPS if "levels" in results["http"].get(s, {})]


def _latency_panel(axis: Any, results: dict[str, Any]) -> None:
    setups = _measured_setups(results)
    levels = list(results["http"][setups[0]]["levels"]) if setups else []
    width = 0.8 / max(1, len(setups))
    for index, setup in enumerate(setups):
        positions = [i + (index - (len(setups) - 1) / 2) * width for i in range(len(levels))]
        latency = [results["http"][setup]["levels"][c]["latency"] for c in levels]
        bars = axis.bar(
            positions,
            [value.get("p50_ms", 0) for value in latency],
            width,
            color=_COLOURS[setup],
            label=_SHORT[setup].replace("\n", " "),
        )
        # p50 written at the foot of each bar, clear of the p95/p99 markers above it.
        for bar, value in zip(bars, latency, strict=True):
            axis.annotate(
                f"{value.get('p50_ms', 0):.0f}",
                (bar.get_x() + bar.get_width() / 2, 0),
                xycoords=("data", "axes fraction"),
                xytext=(0, 4),
                textcoords="offset points",
                ha="center",
                va="bottom",
                rotation=90,  # six setups side by side leave no room for level text
                fontsize=7,
                color="white",
                fontweight="bold",
            )
        for marker, key in (("_", "p95_ms"), ("x", "p99_ms")):
            axis.scatter(
                positions, [v.get(key, 0) for v in latency], marker=marker, color="black", s=50
            )
    axis.scatter([], [], marker="_", color="black", label="p95")
    axis.scatter([], [], marker="x", color="black", label="p99")
    axis.set_yscale("log")
    bottom, top = axis.get_ylim()
    axis.set_ylim(bottom, top * 40)  # room for the legend above the tallest marker
    axis.set_xticks(range(len(levels)), [f"concurrency {c}" for c in levels])
    axis.set_ylabel("ms per request, log scale (bar and label: p50)")
    axis.set_title("HTTP latency, typical tile (lower is better)")
    axis.legend(fontsize=7, loc="upper left", ncol=2)
    axis.grid(axis="y", which="both", alpha=0.3)


def _throughput_panel(axis: Any, results: dict[str, Any]) -> None:
    setups = _measured_setups(results)
    levels = list(results["http"][setups[0]]["levels"]) if setups else []
    width = 0.8 / max(1, len(setups))
    for index, setup in enumerate(setups):
        positions = [i + (index - (len(setups) - 1) / 2) * width for i in range(len(levels))]
        values = [results["http"][setup]["levels"][c]["throughput_rps"] for c in levels]
        bars = axis.bar(
            positions, values, width, color=_COLOURS[setup], label=_SHORT[setup].replace("\n", " ")
        )
        axis.bar_label(bars, fmt="%.1f", fontsize=8)
    axis.set_xticks(range(len(levels)), [f"concurrency {c}" for c in levels])
    axis.set_ylabel("requests per second")
    axis.set_title("HTTP throughput, typical tile (higher is better)")
    axis.set_ylim(0, axis.get_ylim()[1] * 1.5)  # room for the legend above the bars
    axis.legend(fontsize=7, loc="upper left", ncol=2)
    axis.grid(axis="y", alpha=0.3)


def _stages_panel(axis: Any, results: dict[str, Any]) -> None:
    rows = [
        (f"{runner}, {name}", timed["stages"])
        for runner in RUNNERS
        for name, timed in results["inprocess"].get(runner, {}).items()
    ]
    original = results["inprocess"].get("original", {})
    if "typical" in original:  # learn.predict is one opaque call: all of it shows as inference
        rows.append(
            (
                "original learn.predict 128 px, typical",
                {"inference": original["typical"]["analyze"]},
            )
        )
    colours = ["#a6cee3", "#b2df8a", "#1f78b4", "#fb9a99", "#fdbf6f"]
    left = [0.0] * len(rows)
    for stage, colour in zip(STAGES, colours, strict=True):
        values = [stages.get(stage, {}).get("p50_ms", 0) for _, stages in rows]
        axis.barh(range(len(rows)), values, left=left, color=colour, label=stage)
        left = [a + b for a, b in zip(left, values, strict=True)]
    for row, total in enumerate(left):
        axis.text(total, row, f" {total:.1f} ms", va="center", fontsize=8)
    axis.set_yticks(range(len(rows)), [label for label, _ in rows], fontsize=8)
    axis.invert_yaxis()
    axis.set_xlim(right=max(left, default=1) * 1.2)
    axis.set_xlabel("median ms per photo")
    axis.set_title("In-process time per stage (small / typical / large tile)")
    axis.legend(fontsize=8, loc="upper right", ncol=2)
    axis.grid(axis="x", alpha=0.3)


def _goal_bars(
    axis: Any,
    names: list[str],
    values: list[float],
    goal: float,
    unit: str,
    title: str,
    colours: list[str] | None = None,
) -> None:
    colours = colours or [_COLOURS[name] for name in names]
    bars = axis.bar([_SHORT.get(n, n) for n in names], values, 0.6, color=colours)
    axis.bar_label(
        bars,
        labels=[f"{v:,.2f} {unit}" if v < 10 else f"{v:,.0f} {unit}" for v in values],
        fontsize=9,
    )
    axis.axhline(
        goal, color="#c0392b", linestyle="--", linewidth=1.2, label=f"service goal {goal:g} {unit}"
    )
    axis.legend(fontsize=9, loc="upper left")
    if max(values, default=0) > 8 * goal:
        axis.set_yscale("log")
    axis.margins(y=0.15)
    axis.set_ylabel(unit + (" (log scale)" if axis.get_yscale() == "log" else ""))
    axis.set_title(title)
    axis.grid(axis="y", which="both", alpha=0.3)
