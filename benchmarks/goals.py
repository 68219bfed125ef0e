"""The goals the service is built to meet, checked against one run's results.

Ratios compare figures taken in the same run on the same machine, so they hold on a
slower or busier machine where absolute milliseconds do not. A goal whose figures the
run did not take (a `--quick` run skips the fastai baseline) is "not measured".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Results = dict[str, Any]

MAX_OVERHEAD_RATIO = 1.25
MIN_SPEEDUP_OVER_BLOG = 10.0
MAX_COLD_START_S = 1.5
MAX_PEAK_RSS_MB = 250.0
MAX_SERVING_ENV_MB = 350.0


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


def _blog(results: Results) -> dict[str, Any]:
    served, blog = http_p50(results, "service"), http_p50(results, "fastai")
    goal = {
        "goal": "Faster than the blog's fastai learn.predict",
        "target": f">= {MIN_SPEEDUP_OVER_BLOG:g}x lower p50 at concurrency 1",
    }
    if served is None or blog is None:
        return {**goal, "measured": "not measured", "passed": None}
    speedup = blog / served
    return {
        **goal,
        "measured": f"{blog:.1f} ms / {served:.1f} ms = {speedup:.1f}x",
        "passed": speedup >= MIN_SPEEDUP_OVER_BLOG,
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


def _dig(tree: Results, keys: tuple[str, ...]) -> Any:
    for key in keys:
        tree = tree[key]
    return tree


_CHECKS: list[Callable[[Results], dict[str, Any]]] = [
    _overhead,
    _blog,
    _torch,
    _throughput,
    _cold_start,
    _memory,
    _footprint,
]
