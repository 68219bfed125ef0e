"""An INT8 copy of an exported model: static QDQ quantization with onnxruntime.

The file keeps the ONNX contract (the same uint8 input, the same outputs and metadata),
so the service serves it like the float one. What stays in float, and why:

- the input's Cast and normalisation, and the reshuffling of pixels before the first
  convolution: quantizing raw 0..255 pixels and their normalised copy adds two lossy
  steps and saves no arithmetic;
- the last convolution and everything after it (upsampling of the logits, the softmax or
  sigmoid, the split into outputs): the thresholds were chosen on float probabilities,
  and 256 levels of logits would move pixels across them.

Activations are calibrated (min/max) on prepared photos, as the service prepares them,
so the ranges are those it will meet. Weights are per channel, int8; activations uint8,
the pairing x86's VNNI instructions multiply fastest.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from export.model_file import save_with_metadata
from service.contract import INPUT_NAME, VERSION_KEY
from service.framing import InputPolicy
from service.segmenter import prepare

INT8_SUFFIX = "-int8"


def quantize_int8(
    float_path: Path,
    int8_path: Path,
    calibration_images: Iterable[np.ndarray],
    policy: InputPolicy,
) -> Path:
    """Write an INT8 (QDQ) copy of the model at `float_path` to `int8_path`, calibrated on
    grayscale uint8 photos prepared with `policy` (the model's own); returns `int8_path`.
    Its metadata is the float model's, its version suffixed with "-int8"."""
    float_path, int8_path = Path(float_path), Path(int8_path)
    int8_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="quantize-") as scratch:
        prepared = Path(scratch) / "prepared.onnx"
        # Shape inference gives the quantizer every tensor's type and shape; the
        # optimisations fold batch norms and constants first, so fewer tensors need a scale.
        # The symbolic pass cannot follow sizes computed from the input's (the stride's
        # floor divisions, Resize to a skip's size) and gives up: ONNX's own pass suffices.
        quant_pre_process(str(float_path), str(prepared), skip_symbolic_shape=True)
        quantized = Path(scratch) / "quantized.onnx"
        quantize_static(
            str(prepared),
            str(quantized),
            _Photos(calibration_images, policy),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=_kept_in_float(onnx.load(str(prepared))),
            calibrate_method=CalibrationMethod.MinMax,
        )
        proto = onnx.load(str(quantized))
        metadata = {p.key: p.value for p in onnx.load(str(float_path)).metadata_props}
        if VERSION_KEY in metadata:
            metadata[VERSION_KEY] += INT8_SUFFIX
        save_with_metadata(proto, metadata, int8_path)
    return int8_path


class _Photos(CalibrationDataReader):
    """Each calibration photo as the service feeds it to the network."""

    def __init__(self, images: Iterable[np.ndarray], policy: InputPolicy) -> None:
        self.batches: Iterator[np.ndarray] = (prepare(image, policy)[0] for image in images)

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self.batches, None)
        return None if batch is None else {INPUT_NAME: batch}


def _kept_in_float(model: onnx.ModelProto) -> list[str]:
    """Names of the nodes that feed the first convolution and of the last convolution and
    the nodes after it (the graph's nodes are in topological order)."""
    nodes = list(model.graph.node)
    convolutions = [index for index, node in enumerate(nodes) if node.op_type == "Conv"]
    if not convolutions:
        raise ValueError("the model has no convolution to quantize")
    first, last = nodes[convolutions[0]], nodes[convolutions[-1]]
    producers = {output: node for node in nodes for output in node.output}
    kept: set[str] = set()
    pending = [first.input[0]]
    while pending:
        node = producers.get(pending.pop())
        if node is not None and node.name not in kept:
            kept.add(node.name)
            pending += list(node.input)
    reached = set(last.output)
    kept.add(last.name)
    for node in nodes[convolutions[-1] + 1 :]:
        if reached.intersection(node.input):
            kept.add(node.name)
            reached.update(node.output)
    return sorted(kept)
