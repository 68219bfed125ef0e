"""Defects cut from training tiles and blended into other crops (train.paste_into: of
defect tiles, beside their own defect, or of defect-free tiles).

A class with few tiles shows its defects against few backgrounds: the training split's
blowholes come from a handful of tiles photographed six times each. Pasting them shows
each at other places, in other light and beside other grinding marks. Pasted into
defect-free tiles, they raised those tiles' image scores (median 0.05 -> 0.09 and 0.26)
and ranked tiles worse, so the pipeline pastes into defect tiles (README, "Experiments").

The blend is a brightness shift and a feathered edge, not OpenCV's seamless cloning:
`cv2.seamlessClone` (NORMAL_CLONE, OpenCV 5.0) turned a flat 12 x 10 pixel dark square of
grey 40 on grey 150 into a ramp from 150 to 76 with a bright fringe of 171, so a pasted
blowhole would no longer look like one, and MIXED_CLONE dropped it altogether.
"""

from __future__ import annotations

import cv2
import numpy as np

# Pixels of the source photo kept around a defect: the surface its brightness is read from.
MARGIN = 6
# The defect widened by this many pixels fades into the crop; the rest of the margin is
# the surface its brightness is matched on.
BLEND = 3


class DefectBank:
    """The connected defect regions of some tiles, each small enough to paste into a crop."""

    def __init__(
        self,
        images: list[np.ndarray],
        targets: list[np.ndarray],
        masks: list[np.ndarray],
        max_side: int,
    ) -> None:
        """`masks` are the tiles' binary masks at the scale of `images` and `targets`,
        without padding, so a mirrored copy of a defect in the padding is never cut.
        Regions wider or taller than `max_side` with their margin are left out."""
        self.patches: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {}
        for image, target, mask in zip(images, targets, masks, strict=True):
            count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
            for component in range(1, count):
                left, top, width, height, _ = stats[component]
                window = np.s_[
                    top - MARGIN : top + height + MARGIN, left - MARGIN : left + width + MARGIN
                ]
                if max(width, height) + 2 * MARGIN > max_side or not _inside(window, mask.shape):
                    continue
                region = labels[window] == component
                class_index = int(target[window][region].max())
                self.patches.setdefault(class_index, []).append((image[window], region))

    def __len__(self) -> int:
        return sum(len(patches) for patches in self.patches.values())

    def paste(
        self, image: np.ndarray, targets: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """A copy of the crop with one defect blended in at a random place, its pixels
        labelled with its class; each class that has a patch is drawn as often."""
        classes = sorted(self.patches)
        class_index = classes[rng.integers(len(classes))]
        patches = self.patches[class_index]
        source, region = patches[rng.integers(len(patches))]
        height, width = region.shape
        top = int(rng.integers(image.shape[0] - height + 1))
        left = int(rng.integers(image.shape[1] - width + 1))
        window = np.s_[top : top + height, left : left + width]
        surface = image[window].astype(np.float32)
        widened = cv2.dilate(region.astype(np.uint8), _disc(BLEND)).astype(bool)
        # The defect keeps its contrast against its own surface: the patch moves by the
        # difference between the two surfaces' mean grey around it, then fades into the
        # crop over the widened rim.
        offset = surface[~widened].mean() - source[~widened].mean()
        alpha = cv2.GaussianBlur(widened.astype(np.float32), (0, 0), BLEND / 2)
        alpha[region] = 1.0
        blended = alpha * (source + offset) + (1 - alpha) * surface
        pasted, labelled = image.copy(), targets.copy()
        pasted[window] = np.clip(blended, 0, 255).astype(np.uint8)
        labelled[window][region] = class_index
        return pasted, labelled


def _disc(radius: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


def _inside(window: tuple[slice, slice], shape: tuple[int, ...]) -> bool:
    """Whether the widened box lies within the photo: a defect on the photo's edge (a
    fray, a chipped corner) belongs there and is not moved."""
    rows, columns = window
    return (
        rows.start >= 0
        and columns.start >= 0
        and rows.stop <= shape[0]
        and columns.stop <= shape[1]
    )
