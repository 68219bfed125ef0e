"""What a benchmark run measured on: the plan, machine, model, providers, versions and
photos, for the "meta" section of the results."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import time
from datetime import UTC, datetime
from typing import Any

import numpy as np

from benchmarks import footprint
from benchmarks.model import ModelFiles
from benchmarks.plan import Plan
from benchmarks.tiles import TilePhoto
from service.contract import ModelCard
from service.segmenter import Segmenter
from training.requirements import pinned_versions


def describe(
    plan: Plan,
    model: ModelFiles,
    served: Segmenter,
    tiles: dict[str, TilePhoto],
) -> dict[str, Any]:
    """The run's "meta" section, taken as it starts (the load average among it)."""
    import onnxruntime

    card: ModelCard | None = served.card
    assert card is not None  # loaded from a file
    return {
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": plan.quick,
        "plan": plan.__dict__,
        "machine": {
            "cpu": cpu_model(),
            "cpus": os.cpu_count(),
            "reference_sort_ms": reference_sort_ms(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "load_average_before": list(os.getloadavg()),
        },
        "model": {
            **model.describe(),
            "version": card.version,
            "min_area": card.min_area,
            "border": card.border,
            "threshold": card.threshold,
            "policy": card.policy.__dict__,
        },
        # What ran the service's inference here; the CUDA provider is not measured.
        "providers": {
            "service": served.providers,
            "available": onnxruntime.get_available_providers(),
        },
        "versions": {
            **{
                name: importlib.metadata.version(name)
                for name in (
                    "onnxruntime",
                    "opencv-python-headless",
                    "torch",
                    "fastai",
                    "fastapi",
                    "uvicorn",
                )
            },
            "bentoml": pinned_versions(footprint.BENTOML_REQUIREMENTS)["bentoml"],
        },
        "tiles": {name: tile.describe() for name, tile in tiles.items()},
        "http_tile": "typical",
        "client": "closed loop, keep-alive, each request timed from when it was due "
        "(its connection free); client delay and CPU reported (benchmarks/http_load.py)",
        "original_input": "the shorter side scaled to 128 px, the centre 128 x 128 cropped; "
        "a JSON list of lists of 0/1 back",
        "service_python": "the fresh serving venv" if not plan.quick else "this venv (.venv)",
    }


def reference_sort_ms(repetitions: int = 15) -> float:
    """Median time of one core sorting the same million float32 numbers: a fixed workload
    that scales the run's timings when two machines' results are compared."""
    values = np.random.default_rng(0).random(1_000_000, dtype=np.float32)
    times = []
    for _ in range(repetitions):
        started = time.perf_counter()
        np.sort(values)
        times.append(time.perf_counter() - started)
    return round(float(np.median(times)) * 1000, 2)


def cpu_model() -> str:
    """The processor's name, so that runs on different machines are not compared as equals;
    platform.processor() is empty on most Linux machines."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
