"""Stage `export`: the trained network as a validated ONNX file the service can serve.

Run as `python -m export.export`. Writes the float network (models/segmenter-float.onnx)
and the file the service serves (models/segmenter.onnx): with `export.int8`, an INT8 copy
(export/quantize.py), else the float file itself. Checks, each fatal:
1. `onnx.checker` full check of the float file;
2. onnxruntime against torch on real test tiles: probabilities, masks and classes agree;
3. the test split scored through the service's own Segmenter on each file matches the
   `evaluate` stage's Dice within `export.max_dice_gap`: the number in the metrics is the
   number the API delivers.
"""

from __future__ import annotations

import json
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from torch.export import Dim

from export.model_file import save_with_metadata
from export.quantize import quantize_int8
from service.contract import (
    CLASSES_OUTPUT_NAME,
    INPUT_NAME,
    OUTPUT_NAME,
    TEST_METRICS_KEY,
    ModelCard,
)
from service.segmenter import Segmenter, prepare
from training.checkpoint import Trained, load_checkpoint
from training.dataset import load_tiles
from training.model import Probabilities
from training.params import load_params
from training.scoring import predict_tiles, score_tiles, summarise
from training.served import read_evaluation, served_segmenter

MODEL_PATH = Path("models/segmenter.onnx")
# The float network, always written and checked; MODEL_PATH is its INT8 copy or the same.
FLOAT_MODEL_PATH = Path("models/segmenter-float.onnx")
EXPORT_METRICS = Path("reports/export.json")
OPSET = 20


class ExportCheckFailed(RuntimeError):
    """The exported file does not behave like the trained network."""


def main() -> None:
    try:
        export(load_params())
    except ExportCheckFailed as failure:
        MODEL_PATH.unlink(missing_ok=True)
        FLOAT_MODEL_PATH.unlink(missing_ok=True)
        sys.exit(f"error: export check failed: {failure}")


def export(params: dict[str, Any]) -> dict:
    """Write the ONNX files, validate them, and write the export metrics."""
    limits = params["export"]
    trained = load_checkpoint()
    reference = served_segmenter(trained)
    evaluated = read_evaluation()
    tiles = load_tiles("test")

    card = ModelCard(
        policy=reference.policy,
        threshold=reference.threshold,
        min_area=reference.min_area,
        decision_threshold=reference.decision_threshold,
        classes=trained.classes,
        border=reference.border,
        version=f"{params['model']['arch']}-{evaluated['dice_defect']:.3f}",
        training_params={k: params[k] for k in ("model", "train", "split")},
        test_metrics=evaluated,
    )
    write_onnx(trained, card, FLOAT_MODEL_PATH)
    onnx.checker.check_model(str(FLOAT_MODEL_PATH), full_check=True)
    float_model = Segmenter.from_onnx(FLOAT_MODEL_PATH, providers=["CPUExecutionProvider"])
    parity = check_parity(reference, float_model, tiles[: limits["parity_images"]], limits)
    float_metrics, _ = served_metrics(float_model, tiles, evaluated, limits)

    if limits["int8"]:
        calibration = load_tiles("train")
        every = max(1, len(calibration) // limits["int8_calibration_tiles"])
        images = [tile.image for tile in calibration[::every]][: limits["int8_calibration_tiles"]]
        quantize_int8(FLOAT_MODEL_PATH, MODEL_PATH, images, card.policy)
    else:
        shutil.copyfile(FLOAT_MODEL_PATH, MODEL_PATH)
    served = Segmenter.from_onnx(MODEL_PATH, providers=["CPUExecutionProvider"])
    # Quantizing changes the answers by design: only a loss of Dice counts against it.
    served_figures, summary = served_metrics(
        served, tiles, evaluated, limits, drop_only=limits["int8"]
    )
    if limits["int8"]:
        # /info then gives the INT8 file's own test figures, not the float network's.
        record_test_metrics(MODEL_PATH, summary)
        served = Segmenter.from_onnx(MODEL_PATH, providers=["CPUExecutionProvider"])
    metrics = {
        "parity": parity,
        "int8": limits["int8"],
        **served_figures,
        "float": float_metrics,
        "file_mb": round(MODEL_PATH.stat().st_size / 2**20, 3),
        "sha256": served.sha256,
        "latency_ms_median": latency_ms(served, tiles[: limits["parity_images"]]),
        "float_latency_ms_median": latency_ms(float_model, tiles[: limits["parity_images"]]),
    }
    EXPORT_METRICS.parent.mkdir(parents=True, exist_ok=True)
    EXPORT_METRICS.write_text(json.dumps(metrics, indent=2) + "\n")
    print(json.dumps(metrics, indent=2))
    return metrics


def served_metrics(
    served: Segmenter, tiles: list, evaluated: dict, limits: dict, drop_only: bool = False
) -> tuple[dict, dict]:
    """The test split scored through the service's Segmenter on a model file: the figures
    for the export metrics, and the whole summary. Raises ExportCheckFailed when its Dice
    is not `evaluate`'s within `max_dice_gap` (with `drop_only`, when it is lower by more
    than that)."""
    summary = summarise(score_tiles(served, tiles, predict_tiles(served, tiles)))
    difference = summary["dice_defect"] - evaluated["dice_defect"]
    gap = max(0.0, -difference) if drop_only else abs(difference)
    if gap > limits["max_dice_gap"]:
        raise ExportCheckFailed(
            f"service-path Dice {summary['dice_defect']} differs from evaluate's "
            f"{evaluated['dice_defect']} by {difference:+.4f} (limit {limits['max_dice_gap']})"
        )
    return {
        "service_dice_defect": summary["dice_defect"],
        "service_dice_all": summary["dice_all"],
        "service_recall": summary["detection"]["recall"],
        "service_free_flagged_rate": summary["detection"]["free_flagged_rate"],
        "service_auroc": summary["detection"]["auroc"],
        "service_miou": summary["classes"]["miou"],
        "dice_gap": round(gap, 4),
    }, summary


def record_test_metrics(path: Path, metrics: dict) -> None:
    """Make `metrics` the test metrics of the model file's card."""
    proto = onnx.load(str(path))
    metadata = {prop.key: prop.value for prop in proto.metadata_props}
    metadata[TEST_METRICS_KEY] = json.dumps(metrics)
    save_with_metadata(proto, metadata, path)


def write_onnx(trained: Trained, card: ModelCard, path: Path) -> None:
    """Export uint8 [N,1,H,W] -> probability [N,1,H,W] and class_probabilities
    [N,C,H,W], with `card` as its metadata."""
    model = Probabilities(trained.net).eval()
    stride = card.policy.stride
    example = torch.zeros((1, 1, 2 * stride, 3 * stride), dtype=torch.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Built aside and renamed at the end, so a killed export never leaves a partial model.
    partial = path.with_suffix(".partial")
    torch.onnx.export(
        model,
        (example,),
        str(partial),
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME, CLASSES_OUTPUT_NAME],
        dynamic_shapes={INPUT_NAME: {0: Dim.DYNAMIC, 2: Dim.DYNAMIC, 3: Dim.DYNAMIC}},
        opset_version=OPSET,
        dynamo=True,
        external_data=False,
    )
    proto = onnx.load(str(partial))
    _name_dynamic_dims(proto)
    proto.doc_string = (
        "Magnetic tile defect segmentation: uint8 grayscale in; defect probability and "
        "per-class probabilities out."
    )
    save_with_metadata(proto, card.to_metadata(), path)


def check_parity(reference: Segmenter, served: Segmenter, tiles: list, limits: dict) -> dict:
    """onnxruntime and torch on the same prepared real tiles: largest gap in any output's
    probabilities, and the share of pixels whose mask (and, with classes, most likely
    class) agrees."""
    worst, agree, total = 0.0, 0, 0
    for tile in tiles:
        batch, _ = prepare(tile.image, reference.policy)
        expected, actual = reference.runner(batch), served.runner(batch)
        for want, got in zip(expected, actual, strict=True):
            worst = max(worst, float(np.abs(want - got).max()))
        same = (expected[0] >= reference.threshold) == (actual[0] >= served.threshold)
        if len(expected) > 1:
            same &= (expected[1].argmax(axis=1) == actual[1].argmax(axis=1))[:, None]
        agree += int(same.sum())
        total += same.size
    agreement = agree / total
    if worst > limits["max_abs_diff"] or agreement < limits["min_mask_agreement"]:
        raise ExportCheckFailed(
            f"onnxruntime differs from torch on {len(tiles)} test tiles: max abs difference "
            f"{worst:.2e} (limit {limits['max_abs_diff']}), mask agreement {agreement:.5f} "
            f"(limit {limits['min_mask_agreement']})"
        )
    return {"images": len(tiles), "max_abs_diff": worst, "mask_agreement": round(agreement, 6)}


def latency_ms(segmenter: Segmenter, tiles: list) -> float:
    """Median in-process predict time per tile, after one warm-up."""
    segmenter.predict(tiles[0].image)
    times = []
    for tile in tiles:
        started = time.perf_counter()
        segmenter.predict(tile.image)
        times.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(times), 2)


def _name_dynamic_dims(proto: onnx.ModelProto) -> None:
    """The exporter names dynamic axes after its symbols; users read batch, height, width."""
    for value in (*proto.graph.input, *proto.graph.output):
        dims = value.type.tensor_type.shape.dim
        for dim, name in zip(dims, ("batch", None, "height", "width"), strict=True):
            if name and dim.dim_param:
                dim.dim_param = name


if __name__ == "__main__":
    main()
