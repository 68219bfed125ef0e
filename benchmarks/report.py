"""The results as a markdown table (for the README) and as one picture."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks import goals
from benchmarks.inprocess import STAGES

SETUPS = {
    "service": "service (onnxruntime)",
    "fastapi": "plain FastAPI, same model and code",
    "bentoml": "BentoML, same model and code",
    "pytorch": "PyTorch eager, same HTTP app",
    "original": "original: fastai learn.predict, 128 px crop, JSON",
    "service-resnet34": "service with the original's resnet34 network",
}
RUNNERS = {
    "onnxruntime": "onnxruntime (service)",
    "onnxruntime-int8": "onnxruntime, INT8 copy",
    "pytorch": "PyTorch eager",
}
ENVIRONMENTS = {
    "serving": "service (requirements/serve.txt)",
    "fastapi": "plain FastAPI peer",
    "bentoml": "BentoML peer",
    "original": "original service (fastai, FastAPI, uvicorn and their requirements)",
    "training": "training (.venv)",
}
VERDICTS = {True: "pass", False: "**FAIL**", None: "not measured"}


def markdown(results: dict[str, Any]) -> str:
    meta = results["meta"]
    tile = meta["tiles"][meta["http_tile"]]
    lines = [
        "# Benchmark: the service against what a user would pick instead",
        "",
        f"{'Quick smoke run' if meta['quick'] else 'Full run'} of `python -m benchmarks.run` on "
        f"{meta['started']}: {meta['machine']['cpus']} CPUs, load average before "
        f"{meta['machine']['load_average_before'][0]:.2f}, model `{meta['model']['version']}` "
        f"({meta['model']['source']}), {meta['seconds']} s in all.",
        "",
        "## Goals",
        "",
        "| goal | target | measured | result |",
        "| --- | --- | --- | --- |",
    ]
    for goal in results["goals"]:
        lines.append(
            f"| {goal['goal']} | {goal['target']} | {goal['measured']} | "
            f"{VERDICTS[goal['passed']]} |"
        )
    lines += [
        "",
        f"## End to end over HTTP (typical tile, {tile['width']} x {tile['height']} JPEG, "
        "multipart upload, PNG mask back)",
        "",
        "| setup | concurrency | p50 ms | p95 ms | p99 ms | requests/s | ok | errors "
        "| server total p50 ms | server inference p50 ms | server CPU ms per request |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for setup, label in SETUPS.items():
        http = results["http"].get(setup, {})
        if "skipped" in http:
            lines.append(f"| {label} | | {http['skipped']} | | | | | | | | |")
            continue
        for concurrency, level in http.get("levels", {}).items():
            latency, server = level["latency"], level["server_timing"]
            lines.append(
                f"| {label} | {concurrency} | {_ms(latency, 'p50_ms')} | "
                f"{_ms(latency, 'p95_ms')} | {_ms(latency, 'p99_ms')} | "
                f"{level['throughput_rps']:.1f} | {level['ok']} | {level['errors']} | "
                f"{_ms(server.get('total', {}), 'p50_ms')} | "
                f"{_ms(server.get('inference', {}), 'p50_ms')} | "
                f"{level.get('server_cpu_ms_per_request', '-')} |"
            )
    lines += [
        "",
        "## In-process, per stage (median / p95 ms)",
        "",
        "| runner | tile | " + " | ".join(STAGES) + " | total |",
        "| --- | --- |" + " ---: |" * (len(STAGES) + 1),
    ]
    for runner, label in RUNNERS.items():
        for name, timed in results["inprocess"][runner].items():
            size = meta["tiles"][name]
            cells = [_pair(timed["stages"][stage]) for stage in STAGES]
            lines.append(
                f"| {label} | {name} {size['width']}x{size['height']} | "
                + " | ".join(cells)
                + f" | {_pair(timed['total'])} |"
            )
    original = results["inprocess"].get("original", {})
    if "typical" in original:
        lines.append(
            f"| original learn.predict ({original['typical']['input_size']} px crop) | typical | "
            "| | | | | " + _pair(original["typical"]["analyze"]) + " |"
        )
    lines += _same_network(results) + _int8(results) + _sweep(results)
    lines += [
        "",
        "## Start, memory, size",
        "",
        "| setup | cold start s (median, max) | idle RSS MB | peak RSS MB through concurrency 16 "
        "| processes |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for setup, label in SETUPS.items():
        cold, memory = results["cold_start"].get(setup), results["memory"].get(setup)
        if cold and memory:
            lines.append(
                f"| {label} | {cold['median_s']:.2f}, {cold['max_s']:.2f} "
                f"({len(cold['runs_s'])} starts) | {memory['idle_rss_mb']:.0f} | "
                f"{memory['peak_rss_mb']:.0f} | {memory.get('processes', 1)} |"
            )
    footprint = results["footprint"]
    lines += [
        "",
        "| installed environment | MB | how |",
        "| --- | ---: | --- |",
    ]
    for name, label in ENVIRONMENTS.items():
        if name in footprint:
            size = footprint[name]
            lines.append(f"| {label} | {size['mb']:.0f} | {size['method']} |")
    lines += [
        "",
        "## How it is measured",
        "",
        "- Same machine, same run, same weights (ONNX vs torch max abs difference "
        f"{meta['model']['max_abs_diff_onnx_vs_torch']:.1e}), same real photos from the dataset.",
        f"- HTTP client: {meta['client']}. Server total and inference come from the "
        "service's own Server-Timing header; the gap from server total to p50 is HTTP, "
        "upload and client; from inference to server total, decode, postprocess, encode "
        "and the wait for the model.",
        f"- The service runs from {meta['service_python']}; FastAPI and BentoML from venvs "
        "of their own in a full run; PyTorch eager and the original from .venv.",
        "- Cold start: from spawning the server process to its first 200 from /segment.",
        "- Peak RSS: the kernel's high-water mark (VmHWM) of the server process, added up "
        "over its worker processes, after the concurrency-16 load. MB are 10^6 bytes.",
        f"- Original service: {meta['original_input']}; learn.predict runs on the event loop, "
        "one request at a time, as its `async def` endpoint did.",
        f"- onnxruntime providers: {', '.join(meta['providers']['service'])} (available: "
        f"{', '.join(meta['providers']['available'])}); the CUDA provider is not measured.",
        "",
    ]
    return "\n".join(lines)


def _same_network(results: dict[str, Any]) -> list[str]:
    original = results["inprocess"].get("original", {})
    if "same_network" not in original:
        return []
    same = original["same_network"]
    whole, crop = same["service_path_whole_photo"], same["onnx_inference_on_crop"]
    lines = [
        "",
        "## Same network, both ways",
        "",
        "The original's resnet34 U-Net Learner, and its weights exported by the project's "
        f"export code ({same['onnx_mb']} MB ONNX; {same['weights']}). On the same 128 px "
        f"crop the two give P(defect) within {same['max_abs_diff_on_crop']:.1e}.",
        "",
        "| path | input | median ms | p95 ms |",
        "| --- | --- | ---: | ---: |",
        f"| fastai learn.predict, in-process | 128 x 128 crop | "
        f"{_ms(original['typical']['analyze'], 'p50_ms')} | "
        f"{_ms(original['typical']['analyze'], 'p95_ms')} |",
        f"| onnxruntime, network alone | 128 x 128 crop | {_ms(crop, 'p50_ms')} | "
        f"{_ms(crop, 'p95_ms')} |",
        f"| service path in-process (decode to PNG) | whole photo | "
        f"{_ms(whole['total'], 'p50_ms')} | {_ms(whole['total'], 'p95_ms')} |",
    ]
    for setup in ("original", "service-resnet34"):
        level = results["http"].get(setup, {}).get("levels", {}).get("1")
        if level:
            lines.append(
                f"| {SETUPS[setup]}, HTTP at concurrency 1 | "
                f"{'128 x 128 crop' if setup == 'original' else 'whole photo'} | "
                f"{_ms(level['latency'], 'p50_ms')} | {_ms(level['latency'], 'p95_ms')} |"
            )
    return lines


def _int8(results: dict[str, Any]) -> list[str]:
    int8 = results.get("int8", {})
    if "inference_speedup" not in int8:
        return []
    cpu = ", ".join(flag for flag, present in int8["cpu"].items() if present) or "none"
    typical = int8["typical_tile"]
    lines = [
        "",
        "## INT8 (static QDQ, export/quantize.py) against float, in-process",
        "",
        f"{int8['mb']} MB against {int8['float_mb']} MB, calibrated on "
        f"{int8['calibration']['images']} photos ({int8['calibration']['from']}); CPU: {cpu}. "
        f"On the typical tile the outputs differ by at most {typical['max_abs_diff']} and "
        f"{100 * typical['mask_agreement']:.2f}% of pixels fall on the same side of the "
        "pixel threshold.",
        "",
        "| tile | float inference p50 ms | INT8 inference p50 ms | float / INT8 |",
        "| --- | ---: | ---: | ---: |",
    ]
    inprocess = results["inprocess"]
    for name, speedup in int8["inference_speedup"].items():
        floats = inprocess["onnxruntime"][name]["stages"]["inference"]
        ints = inprocess["onnxruntime-int8"][name]["stages"]["inference"]
        lines.append(
            f"| {name} | {_ms(floats, 'p50_ms')} | {_ms(ints, 'p50_ms')} | {speedup:.2f}x |"
        )
    scored = int8.get("test_split", {})
    if "float" in scored:
        lines += [
            "",
            "| test split | Dice (defect tiles) | recall | AUROC |",
            "| --- | ---: | ---: | ---: |",
        ]
        for name in ("float", "int8"):
            metrics = scored[name]
            lines.append(
                f"| {name} | {metrics['dice_defect']} | {metrics['detection']['recall']} | "
                f"{metrics['detection']['auroc']} |"
            )
    elif "skipped" in scored:
        lines += ["", f"Test split: {scored['skipped']}."]
    return lines


def _sweep(results: dict[str, Any]) -> list[str]:
    sweep = results.get("sweep", {})
    if not sweep.get("configs"):
        return []
    levels = [str(level) for level in sweep["levels"]]
    lines = [
        "",
        "## Service settings under load (INFERENCE_THREADS, INFERENCE_SESSIONS, MAX_DECODES)",
        "",
        "| settings | "
        + " | ".join(f"c{c} p50 ms | c{c} p95 ms | c{c} requests/s" for c in levels)
        + " | errors | peak RSS MB |",
        "| --- |" + " ---: |" * (3 * len(levels) + 2),
    ]
    for config in sweep["configs"]:
        cells = []
        for level in levels:
            measured = config["levels"][level]
            cells += [
                _number(measured["p50_ms"]),
                _number(measured["p95_ms"]),
                f"{measured['throughput_rps']:.1f}",
            ]
        errors = sum(measured["errors"] for measured in config["levels"].values())
        lines.append(
            f"| {config['label']} | "
            + " | ".join(cells)
            + f" | {errors} | {config['peak_rss_mb']:.0f} |"
        )
    return lines


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


def _ms(summary: dict[str, Any], key: str) -> str:
    return f"{summary[key]:.1f}" if key in summary else "-"


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _pair(summary: dict[str, Any]) -> str:
    if "p50_ms" not in summary:
        return "-"
    return f"{summary['p50_ms']:.2f} / {summary['p95_ms']:.2f}"
