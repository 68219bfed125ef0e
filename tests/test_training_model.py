"""The networks: every pixel reaches the net at half resolution; every profile builds offline
and answers a defect probability and one probability per class."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from training.model import Downsampled, Probabilities, build_net


class Recorder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.seen: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen = x
        return x[:, :1]


def test_a_one_pixel_pattern_reaches_the_network_intact() -> None:
    # A checkerboard of single pixels: averaging 2x2 blocks would leave a flat grey.
    image = ((torch.arange(8)[:, None] + torch.arange(12)) % 2).float()[None, None] * 255
    body = Recorder()
    logits = Downsampled(body, factor=2)(image)
    assert body.seen is not None and body.seen.shape == (1, 4, 4, 6)
    torch.testing.assert_close(F.pixel_shuffle(body.seen, 2), image)
    assert logits.shape == image.shape


@pytest.mark.parametrize("downsample", [1, 2])
def test_the_gpu_profile_network_builds_offline_and_keeps_the_photo_size(downsample: int) -> None:
    params = {"arch": "resnet34", "pretrained": False, "downsample": downsample}
    net = build_net(params, mean=110.0, std=40.0, classes=6).eval()
    photo = torch.randint(0, 256, (2, 1, 64 * downsample, 96 * downsample), dtype=torch.uint8)
    with torch.inference_mode():
        probability, classes = Probabilities(net)(photo)
    assert probability.shape == photo.shape
    assert classes.shape == (2, 6, *photo.shape[2:])
    torch.testing.assert_close(classes.sum(dim=1), torch.ones(2, *photo.shape[2:]))
    torch.testing.assert_close(probability[:, 0], 1 - classes[:, 0])


def test_the_cpu_profile_network_answers_every_class() -> None:
    params = {"arch": "compact_unet", "width": 4, "depth": 2, "downsample": 2}
    net = build_net(params, mean=110.0, std=40.0, classes=6).eval()
    photo = torch.randint(0, 256, (1, 1, 32, 48), dtype=torch.uint8)
    with torch.inference_mode():
        probability, classes = Probabilities(net)(photo)
    assert probability.shape == photo.shape and classes.shape == (1, 6, 32, 48)
    assert float(probability.min()) >= 0.0 and float(probability.max()) <= 1.0
