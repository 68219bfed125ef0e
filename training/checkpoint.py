"""The training checkpoint: weights and what is needed to rebuild them.

Saved as plain tensors and numbers so it loads with `weights_only=True` (no pickle code).
How the network is served (threshold, test-time flip) is the `calibrate` stage's choice.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from service.framing import InputPolicy
from training.model import build_net, stride_of

CHECKPOINT = Path("models/checkpoint.pt")


@dataclass
class Trained:
    """A trained network, the `model` params it was built from and the names of its
    output classes (background first)."""

    net: nn.Module
    model_params: dict[str, Any]
    classes: tuple[str, ...]


def input_policy(model_params: dict[str, Any], test_time_flip: bool) -> InputPolicy:
    """How the service feeds a photo to the network that params.yaml's `model` describes."""
    return InputPolicy(stride_of(model_params), model_params["max_side"], test_time_flip)


def save_checkpoint(trained: Trained, mean: float, std: float, path: Path = CHECKPOINT) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "model_params": trained.model_params,
        "mean": mean,
        "std": std,
        "classes": list(trained.classes),
        "state_dict": trained.net.state_dict(),
    }
    temporary = path.with_suffix(".partial")
    torch.save(state, temporary)
    temporary.replace(path)


def load_checkpoint(path: Path = CHECKPOINT) -> Trained:
    """Rebuild the network without downloading anything: the weights come from the file."""
    if not path.is_file():
        raise SystemExit(f"error: no checkpoint at {path}; run `dvc repro train` first.")
    saved = torch.load(path, map_location="cpu", weights_only=True)
    model_params, classes = saved["model_params"], tuple(saved["classes"])
    net = build_net(
        {**model_params, "pretrained": False}, saved["mean"], saved["std"], len(classes)
    )
    net.load_state_dict(saved["state_dict"])
    return Trained(net.eval(), model_params, classes)
