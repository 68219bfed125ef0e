"""One photo's outcome, computed by the service's own code: decoded as the API decodes an
upload, segmented by the same Segmenter, described by the same `describe`, so a results
line says what `POST /segment?format=json` answers for that photo."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from batch.photos import Photo
from service.answers import describe
from service.imaging import (
    ImageError,
    ImageHeader,
    decode_gray,
    encode_png,
    read_header,
    render_overlay,
)

if TYPE_CHECKING:
    from service.segmenter import Prediction, Segmenter

# The pictures a photo can get, each in a folder of its own under --out.
KINDS = ("mask", "labels", "overlay")


@dataclass(frozen=True)
class Outcome:
    line: dict[str, Any]  # the photo's line in results.jsonl
    pictures: dict[str, bytes]  # by kind; each is written at --out / line["files"][kind]


@dataclass(frozen=True)
class Decoded:
    photo: Photo
    header: ImageHeader
    gray: np.ndarray


class Scorer:
    """Turns a photo's bytes into its outcome with one model."""

    def __init__(self, segmenter: Segmenter, max_pixels: int, labels: bool, overlay: bool) -> None:
        if segmenter.card is None or segmenter.sha256 is None:
            raise ValueError("Scorer needs a Segmenter loaded from a model file (from_onnx).")
        self.segmenter = segmenter
        self.max_pixels = max_pixels
        self.labels = labels
        self.overlay = overlay
        self.model = {"model_version": segmenter.card.version, "model_sha256": segmenter.sha256}

    def score(self, photo: Photo, data: bytes) -> Outcome:
        """The whole chain for one photo, in this thread."""
        decoded = self.decode(photo, data)
        if isinstance(decoded, Outcome):
            return decoded
        return self.finish(decoded, self.segmenter.predict(decoded.gray))

    def decode(self, photo: Photo, data: bytes) -> Decoded | Outcome:
        """The photo in grey, or its failure when the service would refuse it."""
        try:
            header = read_header(data, self.max_pixels)
            return Decoded(photo, header, decode_gray(data, header))
        except ImageError as error:
            return self.failure(photo, str(error))

    def finish(self, decoded: Decoded, prediction: Prediction) -> Outcome:
        """The results line and pictures from the network's prediction."""
        segmentation = self.segmenter.postprocess(prediction)
        pictures = {"mask": encode_png(segmentation.mask)}
        files = {"mask": f"masks/{decoded.photo.name}.png"}
        if self.labels:
            pictures["labels"] = encode_png(segmentation.labels)
            files["labels"] = f"labels/{decoded.photo.name}.png"
        if self.overlay:
            pictures["overlay"], media_type = render_overlay(decoded.gray, segmentation)
            extension = "jpg" if media_type == "image/jpeg" else "png"
            files["overlay"] = f"overlays/{decoded.photo.name}.{extension}"
        line = {
            "photo": decoded.photo.photo,
            "error": None,
            **describe(segmentation),
            "width": decoded.header.width,
            "height": decoded.header.height,
            "files": files,
            **self.model,
        }
        return Outcome(line, pictures)

    def failure(self, photo: Photo, message: str) -> Outcome:
        """The line of a photo that could not be scored: `message` says why."""
        return Outcome({"photo": photo.photo, "error": message, "files": {}, **self.model}, {})
