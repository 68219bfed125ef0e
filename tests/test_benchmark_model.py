"""The benchmark's model pair on a fresh clone: the committed ONNX file, and torch weights
rebuilt from it, since git does not hold the checkpoint it was exported from."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from benchmarks.baselines import torch_segmenter
from benchmarks.from_onnx import rebuild_checkpoint
from harness import REPO_ROOT
from harness.stand_in_model import build_stand_in_model
from service.segmenter import Segmenter

FLOAT_MODEL = REPO_ROOT / "models" / "segmenter-float.onnx"


def test_rebuilt_weights_give_the_committed_models_answer(tmp_path: Path) -> None:
    rebuild_checkpoint(FLOAT_MODEL, tmp_path / "rebuilt.pt")
    served = Segmenter.from_onnx(FLOAT_MODEL)
    eager = torch_segmenter(tmp_path / "rebuilt.pt", served)
    photo = cv2.imread(str(REPO_ROOT / "examples" / "crack.jpg"), cv2.IMREAD_GRAYSCALE)
    expected, actual = served.predict(photo), eager.predict(photo)
    assert np.abs(expected.probability - actual.probability).max() < 1e-4
    assert np.abs(expected.class_probabilities - actual.class_probabilities).max() < 1e-4
    answer, rebuilt_answer = served.postprocess(expected), eager.postprocess(actual)
    assert answer.defective and rebuilt_answer.defective
    assert [r.class_name for r in rebuilt_answer.regions] == [r.class_name for r in answer.regions]
    assert eager.border == served.border == 4


def test_a_model_file_from_elsewhere_is_refused_with_what_to_do(tmp_path: Path) -> None:
    stand_in = build_stand_in_model(tmp_path / "stand-in.onnx")
    with pytest.raises(SystemExit, match="not exported by this project's export stage"):
        rebuild_checkpoint(stand_in, tmp_path / "rebuilt.pt")
    assert not (tmp_path / "rebuilt.pt").exists()
