"""The model under test: the pipeline's ONNX file and the checkpoint it was exported from.

Every setup must run the same weights, so the ONNX file and the torch checkpoint are
resolved as a pair, and their outputs are compared on a real tile before any timing.
Where models/ has the ONNX file but not its checkpoint (a fresh clone), the checkpoint is
rebuilt from the file's weights in a cache folder. Without even the file, a throwaway pair
(random weights, the real architecture from params.yaml) is built there: the timings of
an untrained net are the same as a trained one's, but its INT8 Dice means nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.from_onnx import rebuild_checkpoint
from harness import REPO_ROOT
from service.contract import file_sha256
from service.segmenter import Runner

PIPELINE_ONNX = REPO_ROOT / "models" / "segmenter.onnx"
# The float network export always writes; PIPELINE_ONNX is it or its INT8 copy.
PIPELINE_FLOAT_ONNX = REPO_ROOT / "models" / "segmenter-float.onnx"
PIPELINE_CHECKPOINT = REPO_ROOT / "models" / "checkpoint.pt"


@dataclass(frozen=True)
class ModelFiles:
    onnx: Path  # the file the service serves
    checkpoint: Path
    source: str  # "given", "pipeline", "pipeline-onnx" (checkpoint rebuilt) or "throwaway"
    float_onnx: Path  # the float network: `onnx` itself unless that is an INT8 copy

    @property
    def serves_float(self) -> bool:
        # Export copies the float file to the served path when it makes no INT8 copy.
        return self.onnx == self.float_onnx or file_sha256(self.onnx) == file_sha256(
            self.float_onnx
        )

    def describe(self) -> dict[str, object]:
        return {
            "onnx": portable(self.onnx),
            "float_onnx": portable(self.float_onnx),
            "checkpoint": portable(self.checkpoint),
            "source": self.source,
            "onnx_mb": round(self.onnx.stat().st_size / 1e6, 3),
            "onnx_sha256": file_sha256(self.onnx),
        }


def resolve_model(onnx: Path | None, checkpoint: Path | None, cache_dir: Path) -> ModelFiles:
    """The pair given, else the pipeline's models/ pair (its checkpoint rebuilt from the float
    ONNX file in `cache_dir` when only the files are there), else a throwaway pair there."""
    if onnx or checkpoint:
        if not (onnx and checkpoint and onnx.is_file() and checkpoint.is_file()):
            raise SystemExit("error: --onnx and --checkpoint must both name existing files")
        return ModelFiles(onnx, checkpoint, "given", onnx)
    if not PIPELINE_ONNX.is_file():
        return build_throwaway(cache_dir / "throwaway-model")
    float_onnx = PIPELINE_FLOAT_ONNX if PIPELINE_FLOAT_ONNX.is_file() else PIPELINE_ONNX
    if PIPELINE_CHECKPOINT.is_file():
        return ModelFiles(PIPELINE_ONNX, PIPELINE_CHECKPOINT, "pipeline", float_onnx)
    # Named by the file's hash, so a new export is never paired with an old rebuild.
    rebuilt = cache_dir / "from-onnx" / f"{file_sha256(float_onnx)[:16]}.pt"
    if not rebuilt.is_file():
        rebuild_checkpoint(float_onnx, rebuilt)
    return ModelFiles(PIPELINE_ONNX, rebuilt, "pipeline-onnx", float_onnx)


def build_throwaway(folder: Path) -> ModelFiles:
    """A randomly initialised net of params.yaml's architecture, saved and exported like the
    pipeline does; reused from `folder` when already there."""
    onnx_path, checkpoint_path = folder / "segmenter.onnx", folder / "checkpoint.pt"
    if onnx_path.is_file() and checkpoint_path.is_file():
        return ModelFiles(onnx_path, checkpoint_path, "throwaway", onnx_path)
    import torch

    from export.export import write_onnx
    from service.contract import ModelCard
    from training.checkpoint import Trained, input_policy, save_checkpoint
    from training.dataset import CLASSES
    from training.model import build_net
    from training.params import load_params

    params = load_params(REPO_ROOT / "params.yaml")
    torch.manual_seed(0)
    model_params = {**params["model"], "pretrained": False}
    net = build_net(model_params, mean=110.0, std=40.0, classes=len(CLASSES)).eval()
    trained = Trained(net, model_params, CLASSES)
    folder.mkdir(parents=True, exist_ok=True)
    save_checkpoint(trained, 110.0, 40.0, checkpoint_path)
    # No calibration ran: the middle threshold, and no test metrics.
    card = ModelCard(
        policy=input_policy(model_params, params["calibrate"]["test_time_flip"]),
        threshold=0.5,
        min_area=params["postprocess"]["min_area"],
        decision_threshold=0.5,
        classes=CLASSES,
        version=f"{model_params['arch']}-throwaway",
        training_params={"model": model_params},
    )
    write_onnx(trained, card, onnx_path)  # written aside and renamed: never half a file
    return ModelFiles(onnx_path, checkpoint_path, "throwaway", onnx_path)


def parity(onnx_runner: Runner, torch_runner: Runner, batch: np.ndarray) -> float:
    """Largest absolute probability gap between the two runners, in any output, on one
    prepared batch."""
    pairs = zip(onnx_runner(batch), torch_runner(batch), strict=True)
    return max(float(np.abs(a - b).max()) for a, b in pairs)


def portable(path: Path) -> str:
    """`path` as results kept in git may name it: relative to the repository, else (a
    file in the cache folder) its name alone."""
    try:
        return str(path.resolve().relative_to(REPO_ROOT))
    except ValueError:
        return path.name
