"""The segmentation networks, and the wrapper that turns one into the served graph.

Every network here takes the raw uint8 photo: normalisation is the first layer, so the
exported ONNX graph carries it and the service cannot drift from training.
"""

from __future__ import annotations

import itertools
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F


def build_net(model_params: dict[str, Any], mean: float, std: float, classes: int) -> nn.Module:
    """The network named by params.yaml's `model` section, mapping uint8 [N,1,H,W] to
    logits [N,classes,H,W], class 0 being the background."""
    factor = model_params["downsample"]
    body = _body(model_params, channels=factor**2, classes=classes)
    if factor > 1:
        body = Downsampled(body, factor)
    return nn.Sequential(Normalise(mean, std), body)


def stride_of(model_params: dict[str, Any]) -> int:
    """Total downsampling of the network: inputs must be padded to a multiple of it."""
    body_stride = 2 ** model_params["depth"] if model_params["arch"] == "compact_unet" else 32
    return model_params["downsample"] * body_stride


def _body(model_params: dict[str, Any], channels: int, classes: int) -> nn.Module:
    arch = model_params["arch"]
    if arch == "compact_unet":
        return CompactUNet(
            channels, classes, width=model_params["width"], depth=model_params["depth"]
        )
    if arch == "resnet34":
        return resnet34_unet(channels, classes, pretrained=model_params["pretrained"])
    raise ValueError(f"Unknown model.arch {arch!r} in params.yaml; use compact_unet or resnet34.")


class Normalise(nn.Module):
    """uint8 pixels to zero-mean, unit-variance floats, with the training set's statistics."""

    def __init__(self, mean: float, std: float) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return (image.float() - self.mean) / self.std


class Probabilities(nn.Module):
    """The served graph (the ONNX contract): uint8 photo in; out, the defect probability
    (1 - P(background)) and the probability of each class, background first.

    A network that works at a fraction of the photo's resolution (Downsampled) gets its
    class probabilities there, and they are scaled up instead of its logits: on a typical
    tile and its flipped twin that took onnxruntime 30.9 ms, not 35.4 (28.0 for the
    earlier one-class network), and the pipeline scores this very graph.
    """

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        normalise, body = self.net
        if isinstance(body, Downsampled):
            low = body.body(F.pixel_unshuffle(normalise(image), body.factor))
            classes = F.interpolate(
                softmax(low), size=image.shape[-2:], mode="bilinear", align_corners=False
            )
        else:
            classes = softmax(self.net(image))
        return 1 - classes[:, :1], classes


def softmax(logits: torch.Tensor) -> torch.Tensor:
    """Softmax over the class axis, spelled out: onnxruntime's Softmax kernel on that
    axis of an NCHW tensor took 95 of a typical tile's 203 ms, these element-wise ops
    a few."""
    exponentials = torch.exp(logits - logits.amax(dim=1, keepdim=True))
    return exponentials / exponentials.sum(dim=1, keepdim=True)


class Downsampled(nn.Module):
    """Runs a network at 1/`factor` of the photo's resolution, and scales its logits back up.

    Each `factor` x `factor` block of pixels becomes one position with factor**2 channels
    (space-to-depth), so the network works on a quarter of the positions at factor 2 yet
    still sees every pixel: a blowhole a few pixels wide is not averaged away before the
    first convolution. The defects that dominate the pooled score span tens to hundreds of
    pixels, so coarser positions lose little of them, while a CPU trains on four times the
    area per second and sees a whole tile's context in one crop.
    """

    def __init__(self, body: nn.Module, factor: int) -> None:
        super().__init__()
        self.body = body
        self.factor = factor

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        logits = self.body(F.pixel_unshuffle(image, self.factor))
        return F.interpolate(logits, size=image.shape[-2:], mode="bilinear", align_corners=False)


class CompactUNet(nn.Module):
    """A U-Net small enough to train from scratch on a laptop CPU at full tile resolution.

    Bilinear upsampling instead of transposed convolutions avoids checkerboard artefacts
    and costs no parameters.
    """

    def __init__(self, channels: int, classes: int, width: int, depth: int) -> None:
        super().__init__()
        widths = [width * 2**level for level in range(depth + 1)]
        self.stem = ConvBlock(channels, widths[0])
        self.down = nn.ModuleList(ConvBlock(a, b) for a, b in itertools.pairwise(widths))
        self.up = nn.ModuleList(ConvBlock(b + a, a) for a, b in itertools.pairwise(widths))
        self.head = nn.Conv2d(widths[0], classes, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = [self.stem(x)]
        for block in self.down:
            skips.append(block(F.max_pool2d(skips[-1], 2)))
        x = skips.pop()
        for block in reversed(self.up):
            skip = skips.pop()
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip], dim=1))
        return self.head(x)


class ConvBlock(nn.Sequential):
    """Two 3x3 convolutions, each with batch norm and ReLU."""

    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__(
            nn.Conv2d(n_in, n_out, 3, padding=1, bias=False),
            nn.BatchNorm2d(n_out),
            nn.ReLU(inplace=True),
            nn.Conv2d(n_out, n_out, 3, padding=1, bias=False),
            nn.BatchNorm2d(n_out),
            nn.ReLU(inplace=True),
        )


def resnet34_unet(channels: int, classes: int, pretrained: bool) -> nn.Module:
    """fastai's DynamicUnet on a resnet34 encoder, as `unet_learner` builds it."""
    from fastai.layers import ToTensorBase
    from fastai.vision.learner import create_body
    from fastai.vision.models.unet import DynamicUnet
    from torchvision.models import resnet34

    weights = "IMAGENET1K_V1" if pretrained else None
    body = create_body(resnet34(weights=weights), n_in=channels, pretrained=pretrained)
    unet = DynamicUnet(body, n_out=classes, img_size=(224, 224))
    # Its last layer casts the output to fastai's TensorBase, which torch.export cannot
    # trace (the export stage failed on it); the cast changes no value and has no weights.
    unet.layers = nn.ModuleList(
        nn.Identity() if isinstance(layer, ToTensorBase) else layer for layer in unet.layers
    )
    return unet
