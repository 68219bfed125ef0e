"""The original service's model and request handling, rebuilt offline (a baseline only).

The published service (iterative/magnetic-tiles-defect, app/main.py) loads a fastai
Learner that `unet_learner(dls, resnet34)` trained and `learn.export()` wrote; for each
photo it scales the shorter side to 128 px, crops the centre 128 x 128, runs
`learn.predict` and answers the predicted mask as a nested list in JSON. This module
builds such a Learner without downloads or training: `unet_learner(dls, resnet34,
pretrained=False, n_out=2)` over a few synthetic 128 px tiles, with the original's
transforms (Resize, fastai's augmentations, ImageNet normalisation), so its weights are
random; the work per photo, and so the timings, do not depend on them.

The same weights also go through the project's own export (`write_served_onnx`), so the
service can serve the very same network and the two serving stacks can be compared.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import torch
from fastai.learner import Learner, load_learner
from fastai.vision.all import (
    Normalize,
    PILImage,
    Resize,
    SegmentationDataLoaders,
    aug_transforms,
    imagenet_stats,
    resnet34,
    unet_learner,
)
from PIL import Image
from torch import nn

ORIGINAL_SIZE = 128  # the original's crop, and the size its Learner was trained at
CLASSES = ("background", "defect")
STRIDE = 32  # resnet34's downsampling: the ONNX input is padded to a multiple of it
SYNTHETIC_TILES = 4


def export_learner(folder: Path) -> Path:
    """Build the original's Learner over synthetic tiles in `folder`, export it, return
    the .pkl."""
    rng = np.random.default_rng(0)
    images, masks = folder / "images", folder / "masks"
    images.mkdir(parents=True, exist_ok=True)
    masks.mkdir(parents=True, exist_ok=True)
    side = ORIGINAL_SIZE + 32
    for index in range(SYNTHETIC_TILES):
        name = f"tile{index}"
        pixels = rng.integers(60, 200, (side, side), dtype=np.uint8)
        Image.fromarray(pixels).save(images / f"{name}.jpg")
        Image.fromarray((pixels > 180).astype(np.uint8)).save(masks / f"{name}.png")
    dls = SegmentationDataLoaders.from_label_func(
        folder,
        sorted(images.glob("*.jpg")),
        _mask_path,
        codes=[0, 1],
        bs=2,
        item_tfms=Resize(ORIGINAL_SIZE),
        batch_tfms=[*aug_transforms(size=ORIGINAL_SIZE), Normalize.from_stats(*imagenet_stats)],
        num_workers=0,
        device=torch.device("cpu"),
    )
    torch.manual_seed(0)
    learn = unet_learner(dls, resnet34, pretrained=False, n_out=len(CLASSES), path=folder)
    learn.export("export.pkl")
    return folder / "export.pkl"


def load(pkl: Path) -> Learner:
    """The exported Learner, as the original's server loads it at start."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # load_learner warns that pickle runs code: it is ours
        learn = load_learner(pkl, cpu=True)
    learn.dls.device = torch.device("cpu")
    return learn


def centre_crop(photo: Image.Image, size: int = ORIGINAL_SIZE) -> Image.Image:
    """The original's framing: the shorter side scaled to `size` (Pillow's default
    resampling), then the centre `size` x `size` square."""
    scale = size / min(photo.size)
    width, height = int(photo.size[0] * scale), int(photo.size[1] * scale)
    scaled = photo.resize((width, height))
    left, top = (width - size) / 2, (height - size) / 2
    return scaled.crop((left, top, left + size, top + size))


def analyze(learn: Learner, data: bytes) -> dict[str, Any]:
    """The original's request handling: the uploaded file to `{"pred": [[0, 1, ...], ...]}`,
    the predicted class of each pixel of the 128 px centre crop."""
    crop = PILImage(centre_crop(Image.open(io.BytesIO(data))))
    mask, *_ = learn.predict(crop)
    return {"pred": np.array(mask).tolist()}


def crop_of(data: bytes) -> np.ndarray:
    """The 128 px centre crop that `analyze` feeds the network, as uint8 grayscale."""
    return np.asarray(centre_crop(Image.open(io.BytesIO(data)).convert("L")))


class FastaiInput(nn.Module):
    """fastai's input pipeline in the graph: a uint8 grayscale photo to the 0..1 floats,
    ImageNet-normalised per channel, that the Learner's network receives (a one-channel
    photo broadcast over the three channels' statistics, as fastai's Normalize does)."""

    def __init__(self) -> None:
        super().__init__()
        mean, std = (torch.tensor(stats).view(1, 3, 1, 1) for stats in imagenet_stats)
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return (image.float() / 255 - self.mean) / self.std


def write_served_onnx(learn: Learner, path: Path, min_area: int) -> Path:
    """The Learner's network with its weights, exported by the project's export code
    (export.export.write_onnx) to an ONNX file the service serves: the whole photo at its
    own size, no flip, defect where P(defect) >= 0.5 (the Learner's argmax)."""
    from export.export import write_onnx
    from service.contract import ModelCard
    from service.framing import InputPolicy
    from training.checkpoint import Trained
    from training.model import resnet34_unet

    # The project's own resnet34 U-Net, loaded strictly with the Learner's weights: the
    # two are the same network, layer for layer.
    body = resnet34_unet(3, len(CLASSES), pretrained=False)
    body.load_state_dict(learn.model.state_dict())
    net = nn.Sequential(FastaiInput(), body).eval()
    model_params = {"arch": "resnet34", "pretrained": False, "downsample": 1, "max_side": 1024}
    card = ModelCard(
        policy=InputPolicy(STRIDE, model_params["max_side"], test_time_flip=False),
        threshold=0.5,
        min_area=min_area,
        decision_threshold=0.5,
        classes=CLASSES,
        version="resnet34-unet-original-weights",
        training_params={"model": model_params, "weights": "random, as the original's Learner"},
    )
    write_onnx(Trained(net, model_params, CLASSES), card, path)
    return path


def crop_parity(learn: Learner, onnx_path: Path, data: bytes) -> float:
    """Largest gap between the Learner's P(defect) on a photo's 128 px centre crop and the
    ONNX file's on the same crop."""
    from service.segmenter import Segmenter

    crop = PILImage(centre_crop(Image.open(io.BytesIO(data))))
    _, _, probabilities = learn.predict(crop)
    served = Segmenter.from_onnx(onnx_path, providers=["CPUExecutionProvider"])
    outputs = served.runner(crop_of(data)[np.newaxis, np.newaxis])
    return float(np.abs(outputs[0][0, 0] - probabilities[1].numpy()).max())


def _mask_path(image: Path) -> Path:
    return image.parent.parent / "masks" / f"{image.stem}.png"
