"""The benchmark's results as markdown tables (latest.md, and the README's goals table)."""

from __future__ import annotations

from typing import Any

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
    "onnxruntime-float": "onnxruntime, float network",
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
        f"{meta['started']}: {meta['machine']['cpus']} CPUs "
        f"({meta['machine'].get('cpu', 'processor not recorded')}; a million float32 sorted "
        f"in {meta['machine'].get('reference_sort_ms', '?')} ms), load average before "
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
        for name, timed in results["inprocess"].get(runner, {}).items():
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
        f"The service serves the {int8['served']} file. {int8['mb']} MB against "
        f"{int8['float_mb']} MB, calibrated on {_calibration(int8['calibration'])}; CPU: {cpu}. "
        f"On the typical tile the outputs differ by at most {typical['max_abs_diff']} and "
        f"{100 * typical['mask_agreement']:.2f}% of pixels fall on the same side of the "
        "pixel threshold.",
        "",
        "| tile | float inference p50 ms | INT8 inference p50 ms | float / INT8 |",
        "| --- | ---: | ---: | ---: |",
    ]
    inprocess, keys = results["inprocess"], int8["timings"]
    for name, speedup in int8["inference_speedup"].items():
        floats = inprocess[keys["float"]][name]["stages"]["inference"]
        ints = inprocess[keys["int8"]][name]["stages"]["inference"]
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


def _calibration(calibration: dict[str, Any]) -> str:
    if "images" in calibration:
        return f"{calibration['images']} photos ({calibration['from']})"
    return f"training photos by the pipeline's {calibration['from']}"


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


def _ms(summary: dict[str, Any], key: str) -> str:
    return f"{summary[key]:.1f}" if key in summary else "-"


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _pair(summary: dict[str, Any]) -> str:
    if "p50_ms" not in summary:
        return "-"
    return f"{summary['p50_ms']:.2f} / {summary['p95_ms']:.2f}"
