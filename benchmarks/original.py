"""The original service in-process: its fastai Learner's `learn.predict`, and the same
network exported by the project's export code, timed in onnxruntime.

The Learner and the ONNX file written here are what the original and service-resnet34
setups then serve (benchmarks/blog_learner.py, blog_server.py).
"""

from __future__ import annotations

import contextlib
import io
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.inprocess import time_stages
from benchmarks.log import log
from benchmarks.plan import Plan
from benchmarks.stats import summarise_ms
from benchmarks.tiles import TilePhoto
from service.segmenter import Segmenter


def measure(
    tiles: dict[str, TilePhoto], plan: Plan, folder: Path, min_area: int, results: dict[str, Any]
) -> tuple[Path, Path]:
    """Build the original's fastai Learner in `folder` and export its network through the
    project's export code; time both in-process (into results["inprocess"]["original"]);
    return the Learner's .pkl and the ONNX file."""
    from benchmarks import blog_learner

    log("original: building and exporting the fastai Learner, and its network to ONNX")
    pkl = blog_learner.export_learner(folder)
    learn = blog_learner.load(pkl)
    onnx_path = blog_learner.write_served_onnx(learn, folder / "resnet34.onnx", min_area)
    data = tiles["typical"].data
    gap = blog_learner.crop_parity(learn, onnx_path, data)
    resnet34 = Segmenter.from_onnx(onnx_path)
    crop = blog_learner.crop_of(data)[np.newaxis, np.newaxis]

    def repeatedly(work: Any) -> list[float]:
        work()  # warm-up
        samples, deadline = [], time.perf_counter() + plan.inprocess_seconds
        for _ in range(plan.original_repetitions):
            begun = time.perf_counter()
            work()
            samples.append(time.perf_counter() - begun)
            if time.perf_counter() > deadline:
                break
        return samples

    def analyze() -> None:
        # learn.predict draws a progress bar on stdout each time: drawn, not shown.
        with contextlib.redirect_stdout(io.StringIO()):
            blog_learner.analyze(learn, data)

    log("original: learn.predict and the same network in onnxruntime, in-process")
    with ThreadPoolExecutor(1) as worker:  # a worker thread, as the servers run them
        analyzed = worker.submit(repeatedly, analyze).result()
        on_crop = worker.submit(repeatedly, lambda: resnet34.runner(crop)).result()
        whole = worker.submit(
            time_stages, resnet34, data, plan.original_repetitions, plan.inprocess_seconds
        ).result()
    results["inprocess"]["original"] = {
        "typical": {
            "analyze": summarise_ms(analyzed),
            "input_size": blog_learner.ORIGINAL_SIZE,
        },
        "same_network": {
            "weights": "random (unet_learner(pretrained=False)); timings do not depend on them",
            "onnx_mb": round(onnx_path.stat().st_size / 1e6, 1),
            "max_abs_diff_on_crop": gap,
            "onnx_inference_on_crop": summarise_ms(on_crop),
            "service_path_whole_photo": whole,
        },
    }
    return pkl, onnx_path
