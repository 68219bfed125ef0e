"""The service's concurrency settings under load: intra-op threads, sessions, decodes.

The service runs up to INFERENCE_SESSIONS inferences at once (2 by default), each on
INFERENCE_THREADS threads, and decodes uploads in worker threads bounded only by
MAX_QUEUE. Each configuration here starts the service with other settings and loads it
at concurrency 1, 4 and 16 with the same client and photo as the main comparison, so the
defaults can be chosen by measurement: more threads per run (a lone request's latency)
against more runs at once (throughput under load), and whether decoding many uploads at
once (MAX_DECODES) takes the CPU from inference.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from benchmarks.http_load import Upload, run_load
from benchmarks.servers import ServerSpec, launched
from harness.process import MB, tree_cpu_seconds, tree_peak_rss_bytes

LEVELS = (1, 4, 16)
# Each names threads and sessions, whatever the defaults; the fourth is the defaults.
CONFIGS: tuple[dict[str, str], ...] = (
    {"INFERENCE_THREADS": "1", "INFERENCE_SESSIONS": "1"},
    {"INFERENCE_THREADS": "2", "INFERENCE_SESSIONS": "1"},
    {"INFERENCE_THREADS": "1", "INFERENCE_SESSIONS": "2"},
    {"INFERENCE_THREADS": "2", "INFERENCE_SESSIONS": "2"},
    {"INFERENCE_THREADS": "2", "INFERENCE_SESSIONS": "2", "MAX_DECODES": "1"},
    {"INFERENCE_THREADS": "1", "INFERENCE_SESSIONS": "2", "MAX_DECODES": "2"},
)
# --quick only checks that the settings take effect and the service still answers.
QUICK_CONFIGS = ({"INFERENCE_THREADS": "1", "INFERENCE_SESSIONS": "2", "MAX_DECODES": "1"},)
QUICK_LEVELS = (4,)


def label(settings: dict[str, str]) -> str:
    """`threads 1, sessions 2, decodes 2`: the settings the configuration sets."""
    return ", ".join(f"{_WORDS[name]} {value}" for name, value in settings.items())


_WORDS = {
    "INFERENCE_THREADS": "threads",
    "INFERENCE_SESSIONS": "sessions",
    "MAX_DECODES": "decodes",
}


def sweep(
    service: ServerSpec,
    upload: Upload,
    quick: bool,
    requests: int,
    seconds: float,
    startup_timeout: float,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """Each configuration's latency, throughput, errors, CPU and peak RSS at each level."""
    configs, levels = (QUICK_CONFIGS, QUICK_LEVELS) if quick else (CONFIGS, LEVELS)
    measured = []
    for settings in configs:
        spec = dataclasses.replace(
            service, name=f"service ({label(settings)})", env={**(service.env or {}), **settings}
        )
        with launched(spec, upload, startup_timeout) as (server, _):
            by_level = {}
            for concurrency in levels:
                log(f"sweep: {label(settings)} at concurrency {concurrency}")
                cpu_before = tree_cpu_seconds(server.pid)
                level = run_load(server.port, upload, concurrency, requests, seconds)
                by_level[str(concurrency)] = {
                    "p50_ms": level["latency"].get("p50_ms"),
                    "p95_ms": level["latency"].get("p95_ms"),
                    "throughput_rps": level["throughput_rps"],
                    "ok": level["ok"],
                    "errors": level["errors"],
                    "error_kinds": level["error_kinds"],
                    "server_cpu_ms_per_request": round(
                        1000
                        * (tree_cpu_seconds(server.pid) - cpu_before)
                        / max(1, level["requests"]),
                        2,
                    ),
                }
            peak = round(tree_peak_rss_bytes(server.pid) / MB, 1)
        measured.append(
            {
                "settings": settings,
                "label": label(settings),
                "levels": by_level,
                "peak_rss_mb": peak,
            }
        )
    return {"levels": list(levels), "seconds_per_level": seconds, "configs": measured}
