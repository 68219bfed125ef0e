"""The training checkpoint: weights and what is needed to rebuild and serve them.

Saved as plain tensors and numbers so it loads with `weights_only=True` (no pickle code).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from service.segmenter import InputPolicy
from training.model import build_net, stride_of

CHECKPOINT = Path("models/checkpoint.pt")


@dataclass
class Trained:
    """A trained network with the input policy and threshold it was validated with."""

    net: nn.Module
    model_params: dict[str, Any]
    threshold: float

    @property
    def policy(self) -> InputPolicy:
        return input_policy(self.model_params)


def input_policy(model_params: dict[str, Any]) -> InputPolicy:
    """How the service feeds a photo to the network that params.yaml's `model` describes."""
    return InputPolicy(
        stride_of(model_params), model_params["max_side"], model_params["test_time_flip"]
    )


def save_checkpoint(trained: Trained, mean: float, std: float, path: Path = CHECKPOINT) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "model_params": trained.model_params,
        "mean": mean,
        "std": std,
        "threshold": trained.threshold,
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
    # Checkpoints from before `test_time_flip` had their threshold chosen without it.
    model_params = {"test_time_flip": False, **saved["model_params"]}
    net = build_net({**model_params, "pretrained": False}, saved["mean"], saved["std"])
    net.load_state_dict(saved["state_dict"])
    return Trained(net.eval(), model_params, saved["threshold"])
