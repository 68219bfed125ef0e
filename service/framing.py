"""How a photo of any size becomes a network input: scaled down, then padded to the stride.

Training crops go through these same functions, so a network only ever sees tiles framed
exactly as the service frames a photo. They are kept apart from the rest of inference so
that a change to how predictions are combined or post-processed does not retrain it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class InputPolicy:
    """How a photo of any size becomes a network input, and the output a probability map.

    Longer sides above `max_side` are scaled down first (memory grows with pixels);
    then the image is padded by reflection to a multiple of `stride`, the network's
    total downsampling, so a fully convolutional net sees the tile at native scale.
    With `test_time_flip`, the photo flipped upside down is run as well and the two
    predictions are averaged: the model's threshold was chosen on that average.
    """

    stride: int
    max_side: int
    test_time_flip: bool = False

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> InputPolicy:
        # Files exported before padding became the only way also say "mode": "pad".
        raw = json.loads(text)
        flip = raw.get("test_time_flip", False)
        if not isinstance(flip, bool):
            raise ValueError(f"test_time_flip {flip!r} is not true or false")
        return cls(stride=int(raw["stride"]), max_side=int(raw["max_side"]), test_time_flip=flip)


def scale_down(image: np.ndarray, policy: InputPolicy) -> np.ndarray:
    """The photo scaled down so that its longer side is at most `policy.max_side`."""
    height, width = image.shape
    scale = min(1.0, policy.max_side / max(height, width))
    if scale == 1.0:
        return image
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def pad_to_stride(image: np.ndarray, policy: InputPolicy) -> np.ndarray:
    """Reflection padding at the bottom and right up to a multiple of `policy.stride`."""
    height, width = image.shape
    bottom, right = -height % policy.stride, -width % policy.stride
    # BORDER_REFLECT_101 is numpy's "reflect" (mirrored about the edge pixel), the padding
    # that the committed model was trained and calibrated with.
    return cv2.copyMakeBorder(image, 0, bottom, 0, right, cv2.BORDER_REFLECT_101)
