"""A tiny ONNX model that obeys the service's contract, for the tests and the reliability
suite before training has exported a real one.

It reads dark pixels as defects: probability = sigmoid((128 - mean3x3(image)) / 16), and
tells two kinds apart: "hole" = probability * sigmoid((64 - mean3x3(image)) / 8), very dark
pixels, and "stain" the rest of the defect probability. The graph is built with
onnx.helper, so they need neither torch nor a trained model.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

_OPSET = 17


CLASSES = ("background", "hole", "stain")


def build_stand_in_model(
    path: str | Path,
    threshold: float = 0.5,
    stride: int = 16,
    test_time_flip: bool = False,
    with_classes: bool = True,
) -> Path:
    """Write the stand-in model to `path` and return the path; `with_classes=False` writes
    one as models were before defect classes (no class output, no decision threshold)."""
    constants = {
        "box": np.full((1, 1, 3, 3), 1 / 9, np.float32),
        "offset": np.array(128.0, np.float32),
        "scale": np.array(1 / 16, np.float32),
        "hole_offset": np.array(64.0, np.float32),
        "hole_scale": np.array(1 / 8, np.float32),
        "one": np.array(1.0, np.float32),
    }
    nodes = [
        helper.make_node("Cast", ["image"], ["pixels"], to=TensorProto.FLOAT),
        helper.make_node("Conv", ["pixels", "box"], ["smooth"], pads=[1, 1, 1, 1]),
        helper.make_node("Sub", ["offset", "smooth"], ["darkness"]),
        helper.make_node("Mul", ["darkness", "scale"], ["logits"]),
        helper.make_node("Sigmoid", ["logits"], ["probability"]),
    ]
    dims = ["batch", 1, "height", "width"]
    outputs = [helper.make_tensor_value_info("probability", TensorProto.FLOAT, dims)]
    if with_classes:
        nodes += [
            helper.make_node("Sub", ["hole_offset", "smooth"], ["blackness"]),
            helper.make_node("Mul", ["blackness", "hole_scale"], ["hole_logits"]),
            helper.make_node("Sigmoid", ["hole_logits"], ["hole_share"]),
            helper.make_node("Mul", ["probability", "hole_share"], ["hole"]),
            helper.make_node("Sub", ["probability", "hole"], ["stain"]),
            helper.make_node("Sub", ["one", "probability"], ["background"]),
            helper.make_node(
                "Concat", ["background", "hole", "stain"], ["class_probabilities"], axis=1
            ),
        ]
        class_dims = ["batch", len(CLASSES), "height", "width"]
        outputs.append(
            helper.make_tensor_value_info("class_probabilities", TensorProto.FLOAT, class_dims)
        )
    graph = helper.make_graph(
        nodes,
        "stand_in_segmenter",
        [helper.make_tensor_value_info("image", TensorProto.UINT8, dims)],
        outputs,
        initializer=[numpy_helper.from_array(value, name) for name, value in constants.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", _OPSET)])
    model.ir_version = 8  # readable by every onnxruntime the service supports
    metadata = {
        "input_policy": json.dumps(
            {"stride": stride, "max_side": 1024, "test_time_flip": test_time_flip}
        ),
        "threshold": str(threshold),
        "min_area": "16",
        "model_version": "stand-in",
        "training_params": "{}",
        "test_metrics": "{}",
    }
    if with_classes:
        metadata["decision_threshold"] = str(threshold)
        metadata["classes"] = json.dumps(CLASSES)
    helper.set_model_props(model, metadata)
    onnx.checker.check_model(model, full_check=True)
    path = Path(path)
    onnx.save(model, path)
    return path
