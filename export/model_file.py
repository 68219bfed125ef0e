"""Writing a model file: the ONNX graph with its card as metadata, written aside and renamed,
so that a killed stage never leaves half a model where the service looks for one."""

from __future__ import annotations

from pathlib import Path

import onnx

# torch's exporter records the Python stack trace behind each node, with the absolute
# paths of the machine that exported it; a model file that ships should not carry them.
STACK_TRACE = "pkg.torch.onnx.stack_trace"


def save_with_metadata(proto: onnx.ModelProto, metadata: dict[str, str], path: Path) -> None:
    """Save `proto` at `path` with `metadata` as its only metadata properties, and without
    the exporter's stack traces."""
    onnx.helper.set_model_props(proto, metadata)
    for node in proto.graph.node:
        kept = [prop for prop in node.metadata_props if prop.key != STACK_TRACE]
        del node.metadata_props[:]
        node.metadata_props.extend(kept)
    partial = path.with_suffix(".partial")
    onnx.save(proto, str(partial))
    partial.replace(path)
