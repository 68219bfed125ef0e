"""Segment one grayscale tile photo with the exported model, at the photo's own size.

The same `Segmenter` serves the API (with an onnxruntime runner) and scores the torch
model in the pipeline's `evaluate` stage (with a torch runner), so the number in the
metrics is the number the API delivers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np

from service.contract import INPUT_NAME, OUTPUT_NAME, ModelCard, check_model_file, open_session
from service.framing import InputPolicy, pad_to_stride, scale_down
from service.regions import Segmentation, find_regions

# Views of up to this many pixels each run as one batch (see `Segmenter.infer`).
BATCH_PIXELS = 512 * 512

Runner = Callable[[np.ndarray], np.ndarray]
"""Maps a uint8 batch [N, 1, H, W] to float32 defect probabilities of the same shape."""


class Segmenter:
    """Turns a grayscale uint8 photo into a defect probability map and mask of its size."""

    def __init__(
        self,
        runner: Runner,
        policy: InputPolicy,
        threshold: float,
        min_area: int,
        card: ModelCard | None = None,
        sha256: str | None = None,
        providers: Sequence[str] = (),
    ) -> None:
        self.runner = runner
        self.policy = policy
        self.threshold = threshold
        self.min_area = min_area
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

        def run(batch: np.ndarray) -> np.ndarray:
            return session.run([OUTPUT_NAME], {INPUT_NAME: batch})[0]

        return cls(
            run,
            card.policy,
            card.threshold,
            card.min_area,
            card=card,
            sha256=sha256,
            providers=session.get_providers(),
        )

    def predict(self, image: np.ndarray) -> np.ndarray:
        """Defect probability (float32, [0, 1]) for each pixel of a 2-D uint8 image."""
        if image.ndim != 2 or image.dtype != np.uint8 or image.size == 0:
            raise ValueError("predict takes a non-empty 2-D uint8 grayscale image")
        views, size = prepare(image, self.policy)
        return restore(self.infer(views), size, image.shape)

    def infer(self, views: np.ndarray) -> np.ndarray:
        """The network's output for `prepare`'s views: as one batch for a typical photo, one
        view at a time for a large one.

        A batch of two is 15-20% faster on a typical tile, but doubles the network's peak
        memory: at 1024 x 1024 the predict's peak RSS rise was 356 MB batched, 193 MB not.
        """
        if views[0].size <= BATCH_PIXELS:
            return self.runner(views)
        return np.concatenate([self.runner(view[np.newaxis]) for view in views])

    def segment(self, image: np.ndarray) -> Segmentation:
        """Predict, threshold, and drop regions smaller than `min_area` pixels."""
        return self.postprocess(self.predict(image))

    def postprocess(self, probability: np.ndarray) -> Segmentation:
        """Mask and regions from a probability map at the photo's size."""
        return find_regions(probability, self.threshold, self.min_area)


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


def restore(output: np.ndarray, size: tuple[int, int], shape: tuple[int, ...]) -> np.ndarray:
    """One probability map at the photo's own shape from the network's output for `prepare`'s
    views: flipped predictions turned back and averaged, padding cropped, scaled back up."""
    height, width = size
    probability = output[0, 0, :height, :width]
    if len(output) == 2:
        probability = (probability + output[1, 0, :height, :width][::-1]) / 2
    if probability.shape != shape:
        probability = cv2.resize(
            np.ascontiguousarray(probability, dtype=np.float32),
            (shape[1], shape[0]),
            interpolation=cv2.INTER_LINEAR,
        )
    return np.ascontiguousarray(probability, dtype=np.float32)
