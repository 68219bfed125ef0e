"""The Segmenter's input policy: scaling, padding and the flipped twin, undone in the answer."""

from __future__ import annotations

import numpy as np
import pytest

from harness.stand_in_model import build_stand_in_model
from service.framing import InputPolicy
from service.segmenter import Segmenter


def identity(batch: np.ndarray) -> list[np.ndarray]:
    """A stand-in network whose 'probability' is the input pixel itself, scaled to [0, 1]."""
    return [batch.astype(np.float32) / 255]


@pytest.mark.parametrize("flip", [False, True])
@pytest.mark.parametrize("shape", [(48, 32), (37, 50), (1, 1), (300, 211)])
def test_every_pixel_comes_back_where_it_was(shape: tuple[int, int], flip: bool) -> None:
    image = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    segmenter = Segmenter(
        identity, InputPolicy(stride=16, max_side=1024, test_time_flip=flip), 0.5, 1
    )
    np.testing.assert_allclose(segmenter.predict(image).probability, image / 255, atol=1e-6)


def record_batches(image: np.ndarray) -> list[np.ndarray]:
    batches = []

    def record(batch: np.ndarray) -> list[np.ndarray]:
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
    probability = segmenter.predict(image).probability
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


def with_classes(batch: np.ndarray) -> list[np.ndarray]:
    """Defect probability = the pixel; class 1 on the left half of each view, 2 on the right."""
    probability = batch.astype(np.float32) / 255
    classes = np.zeros((len(batch), 3, *batch.shape[2:]), np.float32)
    half = batch.shape[3] // 2
    classes[:, 0] = 1 - probability[:, 0]
    classes[:, 1, :, :half] = probability[:, 0, :, :half]
    classes[:, 2, :, half:] = probability[:, 0, :, half:]
    return [probability, classes]


@pytest.mark.parametrize("flip", [False, True])
def test_class_maps_come_back_at_the_size_the_network_saw(flip: bool) -> None:
    image = np.random.default_rng(0).integers(0, 256, (37, 50), dtype=np.uint8)
    segmenter = Segmenter(
        with_classes, InputPolicy(16, 1024, flip), 0.5, 1, classes=("background", "a", "b")
    )
    prediction = segmenter.predict(image)
    assert prediction.class_probabilities is not None
    assert prediction.class_probabilities.shape == (3, 37, 50)
    # Padding is cropped and the flipped twin turned back: the classes sum to one and the
    # background is one minus the defect probability, pixel for pixel.
    np.testing.assert_allclose(prediction.class_probabilities.sum(axis=0), 1, atol=1e-6)
    np.testing.assert_allclose(
        prediction.class_probabilities[0], 1 - prediction.probability, atol=1e-6
    )


def test_an_exported_model_with_classes_names_each_region(tmp_path) -> None:
    segmenter = Segmenter.from_onnx(build_stand_in_model(tmp_path / "model.onnx"))
    image = np.full((60, 90), 200, np.uint8)
    image[5:15, 10:25] = 10  # black: the stand-in's "hole"
    image[30:50, 40:80] = 100  # grey: its "stain"
    answer = segmenter.segment(image)
    assert segmenter.classes == ("background", "hole", "stain")
    assert [r.class_name for r in answer.regions] == ["hole", "stain"]
    assert set(np.unique(answer.labels[6:14, 11:24])) == {1}
    assert set(np.unique(answer.labels[32:48, 42:78])) == {2}


def test_a_model_exported_before_classes_still_serves(tmp_path) -> None:
    path = build_stand_in_model(tmp_path / "model.onnx", with_classes=False)
    segmenter = Segmenter.from_onnx(path)
    image = np.full((45, 70), 200, np.uint8)
    image[5:15, 40:52] = 20
    answer = segmenter.segment(image)
    # It decides on the pixel threshold, and knows one kind of defect.
    assert segmenter.classes == ("background", "defect")
    assert segmenter.decision_threshold == segmenter.threshold
    assert answer.defective and [r.class_name for r in answer.regions] == ["defect"]
    assert set(np.unique(answer.labels)) == {0, 1}


def test_models_exported_before_the_flip_run_without_it() -> None:
    policy = InputPolicy.from_json('{"mode": "pad", "stride": 32, "max_side": 1024}')
    assert policy == InputPolicy(stride=32, max_side=1024, test_time_flip=False)


def test_a_policy_with_a_malformed_flip_setting_is_refused() -> None:
    with pytest.raises(ValueError, match="test_time_flip"):
        InputPolicy.from_json(
            '{"mode": "pad", "stride": 32, "max_side": 1024, "test_time_flip": "yes"}'
        )
