"""The served model against its INT8 copy (export/quantize.py): speed here, quality on the
test split.

The INT8 file is calibrated on training photos as the service prepares them: the
pipeline's training split when `dvc repro` has produced it, else photos spread evenly
over the dataset (which then include test photos: fine for timing, not for scoring).
Whether int8 pays depends on the CPU: x86 multiplies uint8 by int8 fastest with VNNI
(AVX-512 VNNI or AVX-VNNI), which `cpu_features` records beside the timings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.inprocess import time_tiles
from benchmarks.log import log
from benchmarks.model import ModelFiles, portable
from benchmarks.plan import Plan
from benchmarks.tiles import TilePhoto
from harness import REPO_ROOT
from harness.dataset import tile_dataset
from service.framing import InputPolicy
from service.imaging import decode_gray, read_header
from service.segmenter import Segmenter, prepare

RAW_DIR = REPO_ROOT / "data" / "raw"
SPLIT = REPO_ROOT / "data" / "split.json"
CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")


def measure(
    served: Segmenter,
    floating: Segmenter,
    model: ModelFiles,
    cache_dir: Path,
    tiles: dict[str, TilePhoto],
    plan: Plan,
    results: dict[str, Any],
) -> dict[str, Any]:
    """The float network (`floating`, `served` itself when that is float) against its
    INT8 copy, each timed per stage as the served model was: the served file is one of the
    two (results["inprocess"]["onnxruntime"]), the other is timed here (under
    "onnxruntime-float" or "onnxruntime-int8"). When the service serves float, the copy is
    made here; when it serves INT8, that file is the copy."""
    int8_path = int8_file(model, cache_dir)
    if model.serves_float:
        log(f"int8: quantizing on {plan.calibration_images} photos ({calibration_source()})")
        quantized_copy(model.float_onnx, int8_path, served.policy, plan.calibration_images)
        quantized = Segmenter.from_onnx(int8_path)
        keys = {"float": "onnxruntime", "int8": "onnxruntime-int8"}
        other, other_key = quantized, keys["int8"]
        calibration: dict[str, Any] = {
            "images": plan.calibration_images,
            "from": calibration_source(),
        }
    else:
        quantized = served
        keys = {"float": "onnxruntime-float", "int8": "onnxruntime"}
        other, other_key = floating, keys["float"]
        calibration = {"from": "export (params.yaml export.int8_calibration_tiles)"}
    inprocess = results["inprocess"]
    inprocess[other_key] = time_tiles(
        other, tiles, plan.inprocess_repetitions, plan.inprocess_seconds
    )
    batch, _ = prepare(_gray(tiles["typical"].data), served.policy)
    return {
        "served": "float" if model.serves_float else "int8",
        "file": portable(int8_path),
        "float_file": portable(model.float_onnx),
        "timings": keys,
        "mb": round(int8_path.stat().st_size / 1e6, 3),
        "float_mb": round(model.float_onnx.stat().st_size / 1e6, 3),
        "version": quantized.card.version if quantized.card else None,
        "calibration": calibration,
        "cpu": cpu_features(),
        "typical_tile": agreement(floating.runner, quantized.runner, batch, served.threshold),
        # Float time over INT8 time: above 1, INT8 is faster.
        "inference_speedup": {
            name: round(
                inprocess[keys["float"]][name]["stages"]["inference"]["p50_ms"]
                / inprocess[keys["int8"]][name]["stages"]["inference"]["p50_ms"],
                2,
            )
            for name in tiles
        },
    }


def int8_file(model: ModelFiles, cache_dir: Path) -> Path:
    """The INT8 file compared: the served one when it is INT8, else a copy in `cache_dir`."""
    return cache_dir / "segmenter-int8.onnx" if model.serves_float else model.onnx


def quantized_copy(float_path: Path, int8_path: Path, policy: InputPolicy, count: int) -> Path:
    """The INT8 copy of `float_path`, calibrated on `count` training photos."""
    from export.quantize import quantize_int8

    return quantize_int8(float_path, int8_path, calibration_images(count), policy)


def calibration_images(count: int) -> list[np.ndarray]:
    """`count` grayscale photos of the training split, or of the dataset when the pipeline
    has not split it here, evenly spaced in name order."""
    if SPLIT.is_file() and RAW_DIR.is_dir():
        from training.dataset import load_tiles

        images = [tile.image for tile in load_tiles("train", RAW_DIR, SPLIT)]
        return images[:: max(1, len(images) // count)][:count]
    paths = sorted(tile_dataset().glob("MT_*/Imgs/*.jpg"))
    picked = paths[:: max(1, len(paths) // count)][:count]
    return [_gray(path.read_bytes()) for path in picked]


def calibration_source() -> str:
    return "training split" if SPLIT.is_file() and RAW_DIR.is_dir() else "dataset, evenly spaced"


def cpu_features() -> dict[str, bool]:
    """Which of the instruction sets that decide int8 speed this CPU has (Linux)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {}
    flags = next(
        (line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")),
        [],
    )
    return {flag: flag in flags for flag in CPU_FLAGS}


def score_on_test_split(models: dict[str, Path]) -> dict[str, Any]:
    """Each model scored on the pipeline's test split through the service's own Segmenter
    (training.scoring, as export scores the float file): {name: metrics}, or why not."""
    if not (SPLIT.is_file() and RAW_DIR.is_dir()):
        return {"skipped": "no test split here: run `dvc repro` (data_load, data_split) first"}
    from training.dataset import load_tiles
    from training.scoring import predict_tiles, score_tiles, summarise

    tiles = load_tiles("test", RAW_DIR, SPLIT)
    scored = {}
    for name, path in models.items():
        segmenter = Segmenter.from_onnx(path, providers=["CPUExecutionProvider"])
        predictions = predict_tiles(segmenter, tiles)
        scored[name] = summarise(score_tiles(segmenter, tiles, predictions))
    return scored


def agreement(float_runner: Any, int8_runner: Any, batch: np.ndarray, threshold: float) -> dict:
    """On one prepared batch: the largest gap in any output, and the share of pixels on the
    same side of the pixel threshold."""
    expected, actual = float_runner(batch), int8_runner(batch)
    gap = max(float(np.abs(a - b).max()) for a, b in zip(expected, actual, strict=True))
    same = (expected[0] >= threshold) == (actual[0] >= threshold)
    return {"max_abs_diff": round(gap, 4), "mask_agreement": round(float(same.mean()), 5)}


def _gray(data: bytes) -> np.ndarray:
    return decode_gray(data, read_header(data, max_pixels=10**9))
