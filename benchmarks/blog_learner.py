"""The blog's way of serving: a fastai Learner exported with `learn.export()`, reloaded
with `load_learner`, and asked for a mask with `learn.predict` (a baseline only).

The Learner holds our trained network, so only the serving path differs. As in the blog,
fastai's item transform resizes each photo to 224 x 224 (squished, so the whole tile is
seen; fastai's default centre crop would drop part of it) before the network runs; the
224 px mask is scaled back to the photo's size with nearest neighbour, so the answer is
a PNG mask of the input's size like the service's.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import torch
from fastai.data.block import DataBlock
from fastai.data.transforms import IndexSplitter
from fastai.learner import Learner, load_learner
from fastai.losses import CrossEntropyLossFlat
from fastai.vision.augment import Resize, ResizeMethod
from fastai.vision.core import PILImageBW
from fastai.vision.data import ImageBlock, MaskBlock
from PIL import Image
from torch import nn

BLOG_SIZE = 224
CODES = ["background", "defect"]


class BlogNet(nn.Module):
    """Our network as fastai's segmentation Learner expects it.

    fastai's IntToFloatTensor hands the model pixels scaled to 0..1, while our network's
    first layer (Normalise) expects raw 0..255 values: scale them back. fastai decodes a
    mask by argmax over class channels, so emit two: a constant logit(threshold) for
    "background" and the defect logit, which wins exactly where probability >= threshold.
    """

    def __init__(self, net: nn.Module, threshold: float) -> None:
        super().__init__()
        self.net = net
        self.register_buffer(
            "background", torch.tensor(math.log(threshold / (1 - threshold)), dtype=torch.float32)
        )

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        logits = self.net(image * 255)
        return torch.cat([self.background.expand_as(logits), logits], dim=1)


def export_learner(net: nn.Module, threshold: float, tiles: list[Path], folder: Path) -> Path:
    """Build a Learner over a few real tiles and their masks, export it, return the .pkl."""
    block = DataBlock(
        blocks=(ImageBlock(cls=PILImageBW), MaskBlock(codes=CODES)),
        get_y=_mask_path,
        splitter=IndexSplitter([0]),
        item_tfms=Resize(BLOG_SIZE, method=ResizeMethod.Squish),
    )
    dls = block.dataloaders(tiles, bs=2, num_workers=0, device=torch.device("cpu"))
    learn = Learner(
        dls, BlogNet(net, threshold).eval(), loss_func=CrossEntropyLossFlat(axis=1), path=folder
    )
    folder.mkdir(parents=True, exist_ok=True)
    learn.export("export.pkl")
    return folder / "export.pkl"


def load(pkl: Path) -> Learner:
    """The exported Learner, as the blog's server loads it at start."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # load_learner warns that pickle runs code: it is ours
        return load_learner(pkl, cpu=True)


def predict_png(learn: Learner, data: bytes) -> bytes:
    """The blog's request handling: learn.predict on the uploaded file, a PNG mask back."""
    photo = PILImageBW.create(data)
    mask, _, _ = learn.predict(photo)
    picture = Image.fromarray((mask.numpy() * 255).astype("uint8"))
    picture = picture.resize(photo.size, Image.Resampling.NEAREST)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


def _mask_path(image: Path) -> Path:
    return image.with_suffix(".png")
