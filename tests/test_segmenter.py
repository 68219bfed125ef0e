"""The Segmenter's input policy: scaling, padding and the flipped twin, undone in the answer."""

from __future__ import annotations

import numpy as np
import pytest

from harness.stand_in_model import build_stand_in_model
from service.framing import InputPolicy
from service.segmenter import Segmenter


def identity(batch: np.ndarray) -> np.ndarray:
    """A stand-in network whose 'probability' is the input pixel itself, scaled to [0, 1]."""
    return batch.astype(np.float32) / 255


@pytest.mark.parametrize("flip", [False, True])
@pytest.mark.parametrize("shape", [(48, 32), (37, 50), (1, 1), (300, 211)])
def test_every_pixel_comes_back_where_it_was(shape: tuple[int, int], flip: bool) -> None:
    image = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    segmenter = Segmenter(
        identity, InputPolicy(stride=16, max_side=1024, test_time_flip=flip), 0.5, 1
    )
    np.testing.assert_allclose(segmenter.predict(image), image / 255, atol=1e-6)


def record_batches(image: np.ndarray) -> list[np.ndarray]:
    batches = []

    def record(batch: np.ndarray) -> np.ndarray:
        batches.append(batch)
        return identity(batch)

    Segmenter(record, InputPolicy(16, 1024, test_time_flip=True), 0.5, 1).predict(image)
    return batches


def test_the_flipped_twin_runs_in_the_same_batch() -> None:
    image = np.arange(37 * 20, dtype=np.uint8).reshape(37, 20)
    (batch,) = record_batches(image)
    assert batch.shape == (2, 1, 48, 32)
    # Each view is padded at its own bottom, so the twin is the photo upside down there.
    np.testing.assert_array_equal(batch[1, 0, :37, :20], image[::-1])


def test_a_large_photo_runs_one_view_at_a_time() -> None:
    # Then the network needs memory for one image only.
    image = np.random.default_rng(0).integers(0, 256, (600, 500), dtype=np.uint8)
    batches = record_batches(image)
    assert [batch.shape for batch in batches] == [(1, 1, 608, 512), (1, 1, 608, 512)]
    np.testing.assert_array_equal(batches[0][0, 0, :600, :500], image)
    np.testing.assert_array_equal(batches[1][0, 0, :600, :500], image[::-1])


def test_photos_over_max_side_are_scaled_down_and_back() -> None:
    image = np.full((90, 300), 200, np.uint8)
    image[30:60, 100:200] = 10
    segmenter = Segmenter(identity, InputPolicy(16, 100, test_time_flip=True), 0.5, 1)
    probability = segmenter.predict(image)
    assert probability.shape == image.shape
    assert probability[45, 150] < 0.1 and probability[5, 5] > 0.7


def test_an_exported_model_with_the_flip_finds_the_dark_spot(tmp_path) -> None:
    path = build_stand_in_model(tmp_path / "model.onnx", test_time_flip=True)
    segmenter = Segmenter.from_onnx(path)
    image = np.full((45, 70), 200, np.uint8)
    image[5:15, 40:52] = 20
    answer = segmenter.segment(image)
    assert segmenter.policy.test_time_flip
    assert [(r.y, r.x, r.height, r.width) for r in answer.regions] == [(5, 40, 10, 12)]


def test_models_exported_before_the_flip_run_without_it() -> None:
    policy = InputPolicy.from_json('{"mode": "pad", "stride": 32, "max_side": 1024}')
    assert policy == InputPolicy(stride=32, max_side=1024, test_time_flip=False)


def test_a_policy_with_a_malformed_flip_setting_is_refused() -> None:
    with pytest.raises(ValueError, match="test_time_flip"):
        InputPolicy.from_json(
            '{"mode": "pad", "stride": 32, "max_side": 1024, "test_time_flip": "yes"}'
        )
