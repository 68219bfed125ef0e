"""Stage `train`: fit the network with a fastai Learner.

Run as `python -m training.train`; settings come from params.yaml (`model`, `train`).
Writes the checkpoint (weights only, loadable with weights_only=True), DVCLive's
per-epoch curves and the training time.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch
from dvclive.fastai import DVCLiveCallback
from fastai.callback import schedule  # noqa: F401  (adds Learner.fit_one_cycle)
from fastai.data.core import DataLoaders
from fastai.data.load import DataLoader
from fastai.learner import Learner, Metric
from fastai.torch_core import default_device, set_seed
from torch import nn
from torch.nn import functional as F

from dvclive import Live
from training.checkpoint import Trained, input_policy, save_checkpoint
from training.dataset import CLASSES, TrainCrops, WholeTiles, load_tiles, pixel_stats
from training.model import build_net
from training.params import load_params

TRAIN_METRICS = Path("reports/train.json")
LIVE_DIR = "dvclive"


def main() -> None:
    train(load_params())


def train(params: dict[str, Any]) -> None:
    """Fit on the training tiles, follow the validation tiles, and save the checkpoint."""
    started = time.monotonic()
    hp, model_params = params["train"], params["model"]
    set_seed(hp["seed"], reproducible=True)
    train_tiles, valid_tiles = load_tiles("train"), load_tiles("valid")
    mean, std = pixel_stats(train_tiles)
    # Test-time flipping is how the trained network is served, not how it learns.
    policy = input_policy(model_params, test_time_flip=False)
    crops = TrainCrops(
        train_tiles,
        policy,
        crop_size=hp["crop_size"],
        defect_crop_fraction=hp["defect_crop_fraction"],
        class_balance=hp["class_balance"],
        length=hp["samples_per_epoch"],
        seed=hp["seed"],
        max_rotation=hp["max_rotation"],
        max_scale=hp["max_scale"],
        paste_fraction=hp["paste_fraction"],
        paste_into=hp["paste_into"],
    )
    dls = DataLoaders(
        DataLoader(crops, bs=hp["batch_size"], drop_last=True),
        DataLoader(WholeTiles(valid_tiles, policy), bs=1),
        device=default_device(),
    )
    net = build_net(model_params, mean, std, classes=len(CLASSES))
    live = Live(LIVE_DIR, dvcyaml=False, save_dvc_exp=False)
    learn = Learner(
        dls,
        net,
        loss_func=DefectLoss(
            hp["ce_weight"],
            hp["class_dice_weight"],
            hp["image_weight"],
            top_k=hp["image_top_k"],
        ),
        metrics=[PooledDice(), ClassMeanIoU()],
        wd=hp["weight_decay"],
        cbs=DVCLiveCallback(live=live),
    )
    # fastai redraws its progress bar in place, which a log file (CI, a background run)
    # keeps as thousands of lines; there, its one line of figures per epoch is enough.
    with contextlib.nullcontext() if sys.stdout.isatty() else learn.no_bar():
        learn.fit_one_cycle(hp["epochs"], hp["lr"])

    save_checkpoint(Trained(net.cpu().eval(), model_params, CLASSES), mean, std)
    TRAIN_METRICS.parent.mkdir(parents=True, exist_ok=True)
    minutes = round((time.monotonic() - started) / 60, 2)
    TRAIN_METRICS.write_text(json.dumps({"train_minutes": minutes}, indent=2) + "\n")
    print(f"trained in {minutes} min")


class DefectLoss(nn.Module):
    """Soft Dice of "any defect", soft Dice of each defect class, and weighted
    cross-entropy per pixel (over the classes) and per crop (defect or not).

    Defects cover a few percent of the pixels; with cross-entropy dominant, a network
    trained from scratch settles on "no defect anywhere" before it learns to see one.
    Dice cannot be lowered that way, so it leads and pixel cross-entropy only calibrates.
    Pooled over the batch, that Dice is carried by the large defects (frayed edges,
    uneven surfaces); the per-class Dice gives a blowhole of a few dozen pixels the same
    say as a fray of thousands, each class counted in the batches where it appears.

    Neither term cares much about a few confident pixels on a defect-free tile, yet those
    decide the image-level score the service reports (the `top_k`-th highest defect
    probability). The per-crop term scores each crop by the mean of its `top_k` highest
    defect logits, a smooth stand-in for that score, against whether it holds a defect.
    """

    def __init__(
        self, ce_weight: float, class_dice_weight: float, image_weight: float, top_k: int
    ) -> None:
        super().__init__()
        self.ce_weight = ce_weight
        self.class_dice_weight = class_dice_weight
        self.image_weight = image_weight
        self.top_k = top_k

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        log_probabilities = F.log_softmax(logits, dim=1)
        probabilities = log_probabilities.exp()
        truth = F.one_hot(targets, logits.shape[1]).permute(0, 3, 1, 2).float()
        defect = 1 - probabilities[:, 0]
        any_defect = _soft_dice(defect, 1 - truth[:, 0])
        per_class = _soft_dice(probabilities[:, 1:], truth[:, 1:], dims=(0, 2, 3))
        present = truth[:, 1:].sum(dim=(0, 2, 3)) > 0
        class_dice = per_class[present].mean() if present.any() else per_class.new_tensor(1.0)
        cross_entropy = F.nll_loss(log_probabilities, targets)
        defect_logit = torch.logsumexp(logits[:, 1:], dim=1) - logits[:, 0]
        crop_logit = defect_logit.flatten(1).topk(self.top_k, dim=1).values.mean(dim=1)
        crop_has_defect = (targets.flatten(1).amax(dim=1) > 0).float()
        image_bce = F.binary_cross_entropy_with_logits(crop_logit, crop_has_defect)
        return (
            (1 - any_defect)
            + self.class_dice_weight * (1 - class_dice)
            + self.ce_weight * cross_entropy
            + self.image_weight * image_bce
        )


def _soft_dice(
    probability: torch.Tensor, truth: torch.Tensor, dims: tuple[int, ...] | None = None
) -> torch.Tensor:
    """(2|P∩T| + 1) / (|P| + |T| + 1) over `dims` (all of them when None)."""
    dims = dims or tuple(range(probability.ndim))
    intersection = (probability * truth).sum(dim=dims)
    return (2 * intersection + 1) / (probability.sum(dim=dims) + truth.sum(dim=dims) + 1)


class PooledDice(Metric):
    """Dice of "any defect" over all validation pixels together, by the most likely class."""

    def reset(self) -> None:
        self.intersection, self.total = 0, 0

    def accumulate(self, learn: Learner) -> None:
        predicted, truth = most_likely(learn.pred) > 0, learn.y > 0
        self.intersection += int((predicted & truth).sum())
        self.total += int(predicted.sum() + truth.sum())

    @property
    def value(self) -> float:
        return 2 * self.intersection / self.total if self.total else 1.0

    @property
    def name(self) -> str:
        return "dice"


class ClassMeanIoU(Metric):
    """Mean over the classes (background included) of the IoU pooled over all validation
    pixels, by the most likely class: how well the network tells defects apart."""

    def reset(self) -> None:
        self.intersection: torch.Tensor | None = None
        self.union: torch.Tensor | None = None

    def accumulate(self, learn: Learner) -> None:
        classes = learn.pred.shape[1]
        pairs = (learn.y * classes + most_likely(learn.pred)).flatten()
        confusion = torch.bincount(pairs, minlength=classes**2).reshape(classes, classes).cpu()
        intersection = confusion.diagonal()
        union = confusion.sum(dim=0) + confusion.sum(dim=1) - intersection
        if self.intersection is None or self.union is None:
            self.intersection, self.union = intersection, union
        else:
            self.intersection += intersection
            self.union += union

    @property
    def value(self) -> float:
        if self.intersection is None or self.union is None:
            return 0.0
        seen = self.union > 0
        return float((self.intersection[seen] / self.union[seen]).mean())

    @property
    def name(self) -> str:
        return "miou"


def most_likely(logits: torch.Tensor) -> torch.Tensor:
    """The most likely class of each pixel. `argmax` over the class axis of an NCHW tensor
    took 115 ms on a 640 x 1024 tile on a CPU, `max` 6 ms: with two metrics on every
    validation tile, that was a tenth of each epoch."""
    return logits.max(dim=1).indices


if __name__ == "__main__":
    main()
