"""Tiles and masks from data_load's output, as training crops and as whole validation tiles."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from service.framing import InputPolicy, pad_to_stride, scale_down
from training.paste import DefectBank

RAW_DIR = Path("data/raw")
MANIFEST = Path("data/manifest.csv")
SPLIT = Path("data/split.json")

# What the network tells apart, in the order of its outputs: the background, then the
# dataset's defect folders (MT_Blowhole, ...). A tile's mask pixels take its folder's class.
CLASSES = ("background", "blowhole", "break", "crack", "fray", "uneven")


@dataclass(frozen=True)
class Tile:
    """One photo with its binary mask (both uint8, mask 0/1) and its folder's class."""

    id: str
    label: str
    image: np.ndarray
    mask: np.ndarray

    @property
    def class_index(self) -> int:
        """The index in CLASSES of this tile's defects; 0 for a defect-free tile."""
        name = self.label.lower()
        return CLASSES.index(name) if name in CLASSES else 0

    def targets(self, mask: np.ndarray) -> np.ndarray:
        """A (scaled, padded) copy of this tile's binary mask as class indices.

        The class is painted after the mask is scaled, so interpolation never blends two
        class indices into a third."""
        return mask * np.uint8(self.class_index)


def load_tiles(subset: str, raw_dir: Path = RAW_DIR, split_path: Path = SPLIT) -> list[Tile]:
    """The tiles of one split ("train", "valid" or "test"), read into memory."""
    ids = json.loads(split_path.read_text())[subset]
    labels = _labels(raw_dir.parent / MANIFEST.name)
    return [
        Tile(
            id=tile_id,
            label=labels[tile_id],
            image=cv2.imread(str(raw_dir / f"{tile_id}.jpg"), cv2.IMREAD_GRAYSCALE),
            mask=(cv2.imread(str(raw_dir / f"{tile_id}.png"), cv2.IMREAD_GRAYSCALE) > 0).astype(
                np.uint8
            ),
        )
        for tile_id in ids
    ]


class TrainCrops(Dataset):
    """Square crops at native resolution, drawn afresh for every sample.

    Defect-free tiles are most of the data while defects cover a few percent of the
    defect tiles, so crops are drawn with class-balanced weights and, for defect tiles,
    mostly around a defect pixel.

    A share (`paste_fraction`) of the crops of defect-free tiles, or of defect tiles
    (`paste_into`), get a defect of another tile pasted in (training/paste.py).

    Tiles are first padded to the network stride exactly as the service pads a photo
    (and on to the crop size, the same way).
    A network that never saw that padding in training took a tile's bottom edge followed
    by its mirror image for a defect: of the 14 defect-free validation tiles it scored
    above 0.95, 8 scored below that when cut to the stride instead of padded.
    """

    def __init__(
        self,
        tiles: list[Tile],
        policy: InputPolicy,
        crop_size: int,
        defect_crop_fraction: float,
        class_balance: float,
        length: int,
        seed: int,
        max_rotation: float = 0.0,
        max_scale: float = 1.0,
        paste_fraction: float = 0.0,
        paste_into: str = "free",
    ) -> None:
        self.tiles = tiles
        self.max_rotation, self.max_scale = max_rotation, max_scale
        if paste_into not in ("defect", "free"):
            raise ValueError(
                f"Unknown train.paste_into {paste_into!r} in params.yaml; use defect or free."
            )
        self.paste_fraction = paste_fraction
        self.paste_into_defect_tiles = paste_into == "defect"
        self.crop_size = crop_size
        self.defect_crop_fraction = defect_crop_fraction
        self.length = length
        self.rng = np.random.default_rng(seed)
        counts = {label: sum(t.label == label for t in tiles) for label in {t.label for t in tiles}}
        weights = np.array([counts[t.label] ** -class_balance for t in tiles])
        self.weights = weights / weights.sum()
        self.images = [_at_least(as_served(t.image, policy), crop_size) for t in tiles]
        self.targets = [_at_least(t.targets(as_served(t.mask, policy)), crop_size) for t in tiles]
        # Padding is at the bottom and right, so the scaled mask's coordinates hold; its
        # mirrored copies in the padding are not defects to centre a crop on.
        masks = [scale_down(t.mask, policy) for t in tiles]
        self.defect_pixels = [np.argwhere(mask) for mask in masks]
        defective = [i for i, t in enumerate(tiles) if t.class_index]
        # Half a crop at most, so that a pasted defect leaves most of the crop as it was.
        self.defects = DefectBank(
            [self.images[i] for i in defective],
            [self.targets[i] for i in defective],
            [masks[i] for i in defective],
            max_side=crop_size // 2,
        )

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        which = self.rng.choice(len(self.tiles), p=self.weights)
        image, targets = self._crop(which)
        if self._pastes_into(which):
            image, targets = self.defects.paste(image, targets, self.rng)
        image, targets = augment(image, targets, self.rng, self.max_rotation, self.max_scale)
        return torch.from_numpy(image[None].copy()), torch.from_numpy(targets.astype(np.int64))

    def _pastes_into(self, which: int) -> bool:
        """Whether a defect is pasted into this crop: a share of the crops of the tiles
        `paste_into` names, drawing no random number when that share is 0."""
        chosen = bool(self.tiles[which].class_index) == self.paste_into_defect_tiles
        if not self.paste_fraction or not chosen or not len(self.defects):
            return False
        return bool(self.rng.random() < self.paste_fraction)

    def _crop(self, which: int) -> tuple[np.ndarray, np.ndarray]:
        size = self.crop_size
        image, targets = self.images[which], self.targets[which]
        height, width = image.shape
        defects = self.defect_pixels[which]
        if len(defects) and self.rng.random() < self.defect_crop_fraction:
            y, x = defects[self.rng.integers(len(defects))]
            top = int(np.clip(y - self.rng.integers(size), 0, height - size))
            left = int(np.clip(x - self.rng.integers(size), 0, width - size))
        else:
            top = int(self.rng.integers(height - size + 1))
            left = int(self.rng.integers(width - size + 1))
        window = np.s_[top : top + size, left : left + size]
        return image[window], targets[window]


class WholeTiles(Dataset):
    """Whole tiles padded to the network stride exactly as the service pads them."""

    def __init__(self, tiles: list[Tile], policy: InputPolicy) -> None:
        self.tiles = tiles
        self.policy = policy

    def __len__(self) -> int:
        return len(self.tiles)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        tile = self.tiles[index]
        image = as_served(tile.image, self.policy)
        targets = tile.targets(as_served(tile.mask, self.policy))
        return torch.from_numpy(image[None]), torch.from_numpy(targets.astype(np.int64))


def augment(
    image: np.ndarray,
    mask: np.ndarray,
    rng: np.random.Generator,
    max_rotation: float = 0.0,
    max_scale: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Flips, a small turn and change of scale, and the brightness and contrast drift of a
    factory camera.

    No quarter turns: the grinding marks on every tile run along the same axis, and a
    small network learns faster when it need not also recognise them turned sideways.
    A turn of up to `max_rotation` degrees and a scale between 1 / `max_scale` and
    `max_scale` (about the crop's centre, edges mirrored) show the few tiles of a class
    at other sizes and angles; at 0 and 1 no random number is drawn for them.
    """
    if max_rotation or max_scale != 1.0:
        image, mask = _warp(image, mask, rng, max_rotation, max_scale)
    if rng.random() < 0.5:
        image, mask = image[:, ::-1], mask[:, ::-1]
    if rng.random() < 0.5:
        image, mask = image[::-1], mask[::-1]
    contrast, brightness = rng.uniform(0.8, 1.25), rng.uniform(-20, 20)
    mean = float(image.mean())
    image = np.clip((image.astype(np.float32) - mean) * contrast + mean + brightness, 0, 255)
    return image.astype(np.uint8), np.ascontiguousarray(mask)


def _warp(
    image: np.ndarray,
    mask: np.ndarray,
    rng: np.random.Generator,
    max_rotation: float,
    max_scale: float,
) -> tuple[np.ndarray, np.ndarray]:
    angle = rng.uniform(-max_rotation, max_rotation)
    scale = float(np.exp(rng.uniform(-np.log(max_scale), np.log(max_scale))))
    height, width = image.shape
    matrix = cv2.getRotationMatrix2D((width / 2, height / 2), angle, scale)
    size = (width, height)
    image = cv2.warpAffine(
        image, matrix, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101
    )
    mask = cv2.warpAffine(
        mask, matrix, size, flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_REFLECT_101
    )
    return image, mask


def as_served(array: np.ndarray, policy: InputPolicy) -> np.ndarray:
    """A tile or mask scaled and padded as the service does before the network sees it."""
    return pad_to_stride(scale_down(array, policy), policy)


def pixel_stats(tiles: list[Tile]) -> tuple[float, float]:
    """Mean and standard deviation of all pixels, for the network's input normalisation."""
    values = np.concatenate([t.image.ravel() for t in tiles]).astype(np.float64)
    return float(values.mean()), float(values.std())


def _at_least(array: np.ndarray, size: int) -> np.ndarray:
    """Reflection padding at the bottom and right, as the service pads, up to `size` a side."""
    height, width = array.shape
    return np.pad(array, ((0, max(0, size - height)), (0, max(0, size - width))), mode="reflect")


def _labels(manifest: Path) -> dict[str, str]:
    with manifest.open(newline="") as file:
        return {row["image"]: row["class"] for row in csv.DictReader(file)}
