"""Segment one grayscale tile photo with the exported model, at the photo's own size.

The same `Segmenter` serves the API (with an onnxruntime runner) and scores the torch
model in the pipeline's `evaluate` stage (with a torch runner), so the number in the
metrics is the number the API delivers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from service.contract import (
    CLASSES_OUTPUT_NAME,
    INPUT_NAME,
    OUTPUT_NAME,
    ModelCard,
    check_model_file,
    check_outputs,
    open_session,
)
from service.framing import InputPolicy, pad_to_stride, scale_down
from service.regions import WITHOUT_CLASSES, Segmentation, find_regions

# Views of up to this many pixels each run as one batch (see `Segmenter.infer`).
BATCH_PIXELS = 512 * 512

Runner = Callable[[np.ndarray], list[np.ndarray]]
"""Maps a uint8 batch [N, 1, H, W] to the network's float32 outputs: the defect
probabilities [N, 1, H, W], then, for a model with classes, those of each class
[N, C, H, W]."""


@dataclass(frozen=True)
class Prediction:
    """The network's answer for one photo: the defect probability at the photo's size and,
    for a model with classes, each class's probability [C, h, w] at the size the network
    saw (the photo's own unless it was scaled down to fit `max_side`)."""

    probability: np.ndarray
    class_probabilities: np.ndarray | None = None


class Segmenter:
    """Turns a grayscale uint8 photo into a defect probability map and mask of its size."""

    def __init__(
        self,
        runner: Runner,
        policy: InputPolicy,
        threshold: float,
        min_area: int,
        decision_threshold: float | None = None,
        classes: Sequence[str] = (),
        card: ModelCard | None = None,
        sha256: str | None = None,
        providers: Sequence[str] = (),
        border: int = 0,
    ) -> None:
        self.runner = runner
        self.policy = policy
        self.threshold = threshold
        self.min_area = min_area
        self.border = border
        # A model file from before the decision threshold decides on the pixel threshold.
        self.decision_threshold = threshold if decision_threshold is None else decision_threshold
        self.classes = tuple(classes) or WITHOUT_CLASSES
        # What the model file says about itself, and the file's hash: None for a network
        # that does not come from a model file (the pipeline's torch runner).
        self.card = card
        self.sha256 = sha256
        self.providers = list(providers)

    @classmethod
    def from_onnx(
        cls,
        path: str | Path,
        providers: Sequence[str] | None = None,
        intra_op_threads: int = 0,
        expected_sha256: str | None = None,
    ) -> Segmenter:
        """Load an exported model, refused unless it has `expected_sha256` when that is
        given; raises ModelError (service.contract) with a sentence saying what is wrong."""
        path = Path(path)
        sha256 = check_model_file(path, expected_sha256)
        session = open_session(path, providers, intra_op_threads)
        card = ModelCard.from_metadata(session.get_modelmeta().custom_metadata_map, path)
        check_outputs(session, card, path)

        outputs = [OUTPUT_NAME] + ([CLASSES_OUTPUT_NAME] if card.classes else [])

        def run(batch: np.ndarray) -> list[np.ndarray]:
            return session.run(outputs, {INPUT_NAME: batch})

        return cls(
            run,
            card.policy,
            card.threshold,
            card.min_area,
            decision_threshold=card.decision_threshold,
            classes=card.classes,
            card=card,
            sha256=sha256,
            providers=session.get_providers(),
            border=card.border,
        )

    def predict(self, image: np.ndarray) -> Prediction:
        """Defect probability (float32, [0, 1]) for each pixel of a 2-D uint8 image, and
        each class's where the model has classes."""
        if image.ndim != 2 or image.dtype != np.uint8 or image.size == 0:
            raise ValueError("predict takes a non-empty 2-D uint8 grayscale image")
        views, size = prepare(image, self.policy)
        outputs = self.infer(views)
        probability = restore(outputs[0], size, image.shape)
        if len(outputs) == 1:
            return Prediction(probability)
        return Prediction(probability, restore(outputs[1], size, None))

    def infer(self, views: np.ndarray) -> list[np.ndarray]:
        """The network's output for `prepare`'s views: as one batch for a typical photo, one
        view at a time for a large one.

        A batch of two is 15-20% faster on a typical tile, but doubles the network's peak
        memory: at 1024 x 1024 the predict's peak RSS rise was 356 MB batched, 193 MB not.
        """
        if views[0].size <= BATCH_PIXELS:
            return self.runner(views)
        each = [self.runner(view[np.newaxis]) for view in views]
        return [np.concatenate(outputs) for outputs in zip(*each, strict=True)]

    def segment(self, image: np.ndarray) -> Segmentation:
        """Predict, threshold, and drop regions smaller than `min_area` pixels."""
        return self.postprocess(self.predict(image))

    def postprocess(self, prediction: Prediction) -> Segmentation:
        """The decision, mask, class map and regions (service/regions.py has the rule)."""
        return find_regions(
            prediction.probability,
            self.threshold,
            self.decision_threshold,
            self.min_area,
            prediction.class_probabilities,
            self.classes,
            self.border,
        )


def prepare(image: np.ndarray, policy: InputPolicy) -> tuple[np.ndarray, tuple[int, int]]:
    """The network's inputs for one photo as a batch [views, 1, H, W], and the photo's size
    before padding.

    With `policy.test_time_flip` there are two views: the photo, and the photo flipped
    upside down. Each is padded at its own bottom, so the flipped one is not the
    first one's mirror image and the pair sees every edge both with and without padding.
    """
    scaled = scale_down(image, policy)
    padded = pad_to_stride(scaled, policy)
    if policy.test_time_flip:
        batch = np.stack([padded, pad_to_stride(scaled[::-1], policy)])
    else:
        batch = padded[np.newaxis]
    return batch[:, np.newaxis], scaled.shape


def restore(output: np.ndarray, size: tuple[int, int], shape: tuple[int, ...] | None) -> np.ndarray:
    """One network output for `prepare`'s views, flipped predictions turned back and
    averaged and padding cropped: its maps [C, h, w] when `shape` is None, else its first
    map scaled back up to the photo's `shape`."""
    height, width = size
    probability = output[0, :, :height, :width]
    if len(output) == 2:
        probability = (probability + output[1, :, :height, :width][:, ::-1]) / 2
    if shape is None:
        return np.ascontiguousarray(probability, dtype=np.float32)
    probability = probability[0]
    if probability.shape != shape:
        probability = cv2.resize(
            np.ascontiguousarray(probability, dtype=np.float32),
            (shape[1], shape[0]),
            interpolation=cv2.INTER_LINEAR,
        )
    return np.ascontiguousarray(probability, dtype=np.float32)
