"""The network wrapper: at half resolution, every pixel of the photo still reaches the net."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from training.model import Downsampled


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
