"""In-process timing of each stage of the service's path, for one runner and one photo
(`time_stages`) or each of the benchmark's tiles (`time_tiles`).

The stages are the ones a mask request goes through in service/app.py, called the same
way: decode (header check + OpenCV decode), preprocess (scale down, pad to the stride),
inference (the runner alone: onnxruntime, or torch for the baseline), postprocess (crop
and resize back, threshold, connected regions) and encode (the PNG mask).
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from benchmarks.log import log
from benchmarks.stats import summarise_ms
from benchmarks.tiles import TilePhoto
from service.imaging import decode_gray, encode_png, read_header
from service.segmenter import Prediction, Segmenter, prepare, restore

STAGES = ("decode", "preprocess", "inference", "postprocess", "encode")
WARM_UP = 3


def time_stages(
    segmenter: Segmenter, data: bytes, repetitions: int, max_seconds: float
) -> dict[str, object]:
    """Median, p95 (and mean) per stage and for their sum, over up to `repetitions` runs or
    `max_seconds`, whichever ends first, after a few untimed warm-up runs."""
    samples: dict[str, list[float]] = {stage: [] for stage in (*STAGES, "total")}
    for _ in range(WARM_UP):
        _one_pass(segmenter, data)
    deadline = time.perf_counter() + max_seconds
    for _ in range(repetitions):
        for stage, seconds in _one_pass(segmenter, data).items():
            samples[stage].append(seconds)
        if time.perf_counter() > deadline:
            break
    return {
        "repetitions": len(samples["total"]),
        "stages": {stage: summarise_ms(samples[stage]) for stage in STAGES},
        "total": summarise_ms(samples["total"]),
    }


def time_tiles(
    segmenter: Segmenter, tiles: dict[str, TilePhoto], repetitions: int, max_seconds: float
) -> dict[str, Any]:
    """`time_stages` for each tile, by name, in a worker thread."""
    timed = {}
    # In a worker thread, as the servers run inference: torch's OpenMP pool behaves
    # differently on the main thread (5x slower here when another process is busy).
    with ThreadPoolExecutor(1) as worker:
        for name, tile in tiles.items():
            log(f"in-process {segmenter.providers[0]} {name} tile")
            timed[name] = worker.submit(
                time_stages, segmenter, tile.data, repetitions, max_seconds
            ).result()
    return timed


def _one_pass(segmenter: Segmenter, data: bytes) -> dict[str, float]:
    clock = time.perf_counter
    started = clock()
    gray = decode_gray(data, read_header(data, max_pixels=10**9))
    decoded = clock()
    batch, size = prepare(gray, segmenter.policy)
    prepared = clock()
    outputs = segmenter.infer(batch)
    inferred = clock()
    # What Segmenter.predict does after inference: each output's views merged, cropped
    # and (the defect probability) scaled back to the photo.
    classes = restore(outputs[1], size, None) if len(outputs) > 1 else None
    prediction = Prediction(restore(outputs[0], size, gray.shape), classes)
    segmentation = segmenter.postprocess(prediction)
    postprocessed = clock()
    encode_png(segmentation.mask)
    encoded = clock()
    return {
        "decode": decoded - started,
        "preprocess": prepared - decoded,
        "inference": inferred - prepared,
        "postprocess": postprocessed - inferred,
        "encode": encoded - postprocessed,
        "total": encoded - started,
    }
