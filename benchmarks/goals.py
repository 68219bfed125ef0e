"""The goals the service is built to meet, checked against one run's results.

Ratios compare figures taken in the same run on the same machine, so they hold on a
slower or busier machine where absolute milliseconds do not. A goal whose figures the
run did not take (a `--quick` run skips the original service and BentoML) is "not
measured".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Results = dict[str, Any]

MAX_OVERHEAD_RATIO = 1.25
MAX_COLD_START_S = 1.5
MAX_PEAK_RSS_MB = 250.0
MAX_SERVING_ENV_MB = 350.0
# Against the original service as published (fastai learn.predict behind FastAPI).
MIN_LATENCY_RATIO_ORIGINAL = 20.0  # its p50 at concurrency 1 over the service's
MIN_COLD_START_RATIO_ORIGINAL = 10.0
MIN_MEMORY_RATIO_ORIGINAL = 8.0
MIN_ENV_RATIO_ORIGINAL = 20.0
# When the INT8 copy is worth serving in place of the float network.
MAX_INT8_DICE_DROP = 0.005
MIN_INT8_SPEEDUP = 1.3
# The serving frameworks a user would otherwise pick, with the same model and code.
FRAMEWORKS = {"fastapi": "plain FastAPI", "bentoml": "BentoML"}


def evaluate(results: Results) -> list[dict[str, Any]]:
    """One entry per goal: name, target, measured (text), passed (True, False or None)."""
    return [check(results) for check in _CHECKS]


def http_p50(results: Results, setup: str, concurrency: int = 1) -> float | None:
    level = results["http"].get(setup, {}).get("levels", {}).get(str(concurrency))
    return level["latency"].get("p50_ms") if level else None


def _overhead(results: Results) -> dict[str, Any]:
    served = http_p50(results, "service")
    inprocess = results["inprocess"]["onnxruntime"]["typical"]["total"]["p50_ms"]
    goal = {
        "goal": "HTTP + framework overhead",
        "target": f"service p50 at concurrency 1 <= {MAX_OVERHEAD_RATIO}x in-process "
        "decode + inference + postprocess + encode (typical tile)",
    }
    if served is None:
        return {**goal, "measured": "not measured", "passed": None}
    ratio = served / inprocess
    return {
        **goal,
        "measured": f"{served:.1f} ms / {inprocess:.1f} ms = {ratio:.2f}x",
        "passed": ratio <= MAX_OVERHEAD_RATIO,
    }


def _original_latency(results: Results) -> dict[str, Any]:
    served, original = http_p50(results, "service"), http_p50(results, "original")
    goal = {
        "goal": "Faster than the original service",
        "target": f">= {MIN_LATENCY_RATIO_ORIGINAL:g}x lower p50 at concurrency 1",
    }
    if served is None or original is None:
        return {**goal, "measured": "not measured", "passed": None}
    return _ratio(goal, original, served, "ms", MIN_LATENCY_RATIO_ORIGINAL)


def _original_start(results: Results) -> dict[str, Any]:
    goal = {
        "goal": "Starts faster than the original service",
        "target": f">= {MIN_COLD_START_RATIO_ORIGINAL:g}x shorter process start to first answer",
    }
    cold = results["cold_start"]
    if "service" not in cold or "original" not in cold:
        return {**goal, "measured": "not measured", "passed": None}
    original, served = cold["original"]["median_s"], cold["service"]["median_s"]
    return _ratio(goal, original, served, "s", MIN_COLD_START_RATIO_ORIGINAL)


def _original_memory(results: Results) -> dict[str, Any]:
    goal = {
        "goal": "Less memory than the original service",
        "target": f">= {MIN_MEMORY_RATIO_ORIGINAL:g}x lower peak RSS through concurrency 16",
    }
    memory = results["memory"]
    if "service" not in memory or "original" not in memory:
        return {**goal, "measured": "not measured", "passed": None}
    original, served = memory["original"]["peak_rss_mb"], memory["service"]["peak_rss_mb"]
    return _ratio(goal, original, served, "MB", MIN_MEMORY_RATIO_ORIGINAL)


def _original_environment(results: Results) -> dict[str, Any]:
    goal = {
        "goal": "Smaller than the original service's environment",
        "target": f">= {MIN_ENV_RATIO_ORIGINAL:g}x smaller installed environment",
    }
    footprint = results["footprint"]
    original, served = footprint["original"]["mb"], footprint["serving"]["mb"]
    return _ratio(goal, original, served, "MB", MIN_ENV_RATIO_ORIGINAL)


def _frameworks_latency(results: Results) -> dict[str, Any]:
    goal = {
        "goal": "No slower than BentoML or plain FastAPI",
        "target": "service p50 at concurrency 1 <= each one's, same model and code",
    }
    served = http_p50(results, "service")
    peers = {name: http_p50(results, name) for name in FRAMEWORKS}
    measured = {name: p50 for name, p50 in peers.items() if p50 is not None}
    if served is None or not measured:
        return {**goal, "measured": "not measured", "passed": None}
    text = ", ".join(f"{FRAMEWORKS[name]} {p50:.1f} ms" for name, p50 in measured.items())
    return {
        **goal,
        "measured": f"service {served:.1f} ms; {text}" + _unmeasured(peers),
        "passed": all(served <= p50 for p50 in measured.values()),
    }


def _frameworks_throughput(results: Results) -> dict[str, Any]:
    goal = {
        "goal": "Throughput of BentoML or plain FastAPI or more",
        "target": "service throughput at concurrency 16 >= each one's, zero errors",
    }
    served = _throughput_at(results, "service", 16)
    peers = {name: _throughput_at(results, name, 16) for name in FRAMEWORKS}
    measured = {name: rps for name, rps in peers.items() if rps is not None}
    if served is None or not measured:
        return {**goal, "measured": "not measured", "passed": None}
    errors = sum(level["errors"] for level in results["http"]["service"]["levels"].values())
    text = ", ".join(f"{FRAMEWORKS[name]} {rps:.1f}" for name, rps in measured.items())
    return {
        **goal,
        "measured": f"service {served:.1f} requests/s, {errors} errors; {text}"
        + _unmeasured(peers),
        "passed": errors == 0 and all(served >= rps for rps in measured.values()),
    }


def _torch(results: Results) -> dict[str, Any]:
    goal = {"goal": "Faster than PyTorch eager", "target": "lower p50, same network and image"}
    served, eager = http_p50(results, "service"), http_p50(results, "pytorch")
    where = "over HTTP at concurrency 1"
    if served is None or eager is None:  # fall back to the in-process inference stage
        stage = "typical", "stages", "inference"
        served, eager = (
            _dig(results["inprocess"][runner], stage)["p50_ms"]
            for runner in ("onnxruntime", "pytorch")
        )
        where = "in-process inference"
    return {
        **goal,
        "measured": f"{where}: {served:.1f} ms vs {eager:.1f} ms = {eager / served:.2f}x faster",
        "passed": served < eager,
    }


def _throughput(results: Results) -> dict[str, Any]:
    levels = results["http"].get("service", {}).get("levels", {})
    goal = {
        "goal": "Throughput holds under load",
        "target": "service throughput at concurrency 16 >= at concurrency 1, zero errors",
    }
    if "1" not in levels or "16" not in levels:
        return {**goal, "measured": "not measured", "passed": None}
    one, sixteen = levels["1"]["throughput_rps"], levels["16"]["throughput_rps"]
    errors = sum(level["errors"] for level in levels.values())
    return {
        **goal,
        "measured": f"{sixteen:.1f} vs {one:.1f} requests/s, {errors} errors",
        "passed": sixteen >= one and errors == 0,
    }


def _cold_start(results: Results) -> dict[str, Any]:
    cold = results["cold_start"]["service"]
    return {
        "goal": "Cold start",
        "target": f"process start to first 200 from /segment <= {MAX_COLD_START_S} s (median)",
        "measured": f"{cold['median_s']:.2f} s (max {cold['max_s']:.2f} s, {len(cold['runs_s'])} "
        "starts)",
        "passed": cold["median_s"] <= MAX_COLD_START_S,
    }


def _memory(results: Results) -> dict[str, Any]:
    memory = results["memory"]["service"]
    return {
        "goal": "Memory under load",
        "target": f"peak RSS of the server through concurrency 16 <= {MAX_PEAK_RSS_MB:g} MB",
        "measured": f"{memory['peak_rss_mb']:.0f} MB",
        "passed": memory["peak_rss_mb"] <= MAX_PEAK_RSS_MB,
    }


def _footprint(results: Results) -> dict[str, Any]:
    footprint = results["footprint"]
    serving, training = footprint["serving"]["mb"], footprint["training"]["mb"]
    return {
        "goal": "Serving environment size",
        "target": f"installed size <= {MAX_SERVING_ENV_MB:g} MB",
        "measured": f"{serving:.0f} MB (training env {training:.0f} MB)",
        "passed": serving <= MAX_SERVING_ENV_MB,
    }


def _int8(results: Results) -> dict[str, Any]:
    int8 = results.get("int8", {})
    goal = {
        "goal": "INT8 worth serving (the default when it passes)",
        "target": f"test Dice at most {MAX_INT8_DICE_DROP} below float's, inference >= "
        f"{MIN_INT8_SPEEDUP}x faster (typical tile)",
    }
    scored = int8.get("test_split", {})
    if "float" not in scored or "inference_speedup" not in int8:
        return {**goal, "measured": "not measured", "passed": None}
    drop = scored["float"]["dice_defect"] - scored["int8"]["dice_defect"]
    speedup = int8["inference_speedup"]["typical"]
    return {
        **goal,
        "measured": f"Dice {scored['int8']['dice_defect']} vs {scored['float']['dice_defect']} "
        f"(drop {drop:+.4f}), {speedup:.2f}x faster; serving {int8['served']}",
        "passed": drop <= MAX_INT8_DICE_DROP and speedup >= MIN_INT8_SPEEDUP,
    }


def _ratio(
    goal: dict[str, str], theirs: float, ours: float, unit: str, minimum: float
) -> dict[str, Any]:
    ratio = theirs / ours
    return {
        **goal,
        "measured": f"{theirs:.2f} {unit} / {ours:.2f} {unit} = {ratio:.1f}x",
        "passed": ratio >= minimum,
    }


def _throughput_at(results: Results, setup: str, concurrency: int) -> float | None:
    level = results["http"].get(setup, {}).get("levels", {}).get(str(concurrency))
    return level["throughput_rps"] if level else None


def _unmeasured(peers: dict[str, float | None]) -> str:
    missing = [FRAMEWORKS[name] for name, value in peers.items() if value is None]
    return f" ({', '.join(missing)} not measured)" if missing else ""


def _dig(tree: Results, keys: tuple[str, ...]) -> Any:
    for key in keys:
        tree = tree[key]
    return tree


_CHECKS: list[Callable[[Results], dict[str, Any]]] = [
    _overhead,
    _original_latency,
    _original_start,
    _original_memory,
    _original_environment,
    _frameworks_latency,
    _frameworks_throughput,
    _torch,
    _throughput,
    _cold_start,
    _memory,
    _footprint,
    _int8,
]
