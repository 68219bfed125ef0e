"""Writing a model file: the ONNX graph with its card as metadata, written aside and renamed,
so that a killed stage never leaves half a model where the service looks for one."""

from __future__ import annotations

from pathlib import Path

import onnx


def save_with_metadata(proto: onnx.ModelProto, metadata: dict[str, str], path: Path) -> None:
    """Save `proto` at `path` with `metadata` as its only metadata properties."""
    onnx.helper.set_model_props(proto, metadata)
    partial = path.with_suffix(".partial")
    onnx.save(proto, str(partial))
    partial.replace(path)
