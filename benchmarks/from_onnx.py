"""A torch checkpoint rebuilt from an exported model file's weights.

git holds the served ONNX file; the checkpoint it was exported from is a DVC output that a
fresh clone does not have. The eager-PyTorch rows need torch weights, and without these
they would time a throwaway network and compare INT8 against float on random weights.

Export folds each batch norm into the convolution before it: the fused weight keeps the
convolution's name and its bias is `<name>_bias`. The rebuilt network takes the fused
weights, and batch norms that add that bias and change nothing else, so it runs the same
operations as the trained network and gives the file's outputs (`parity` checks them).
"""

from __future__ import annotations

from pathlib import Path

# A network the export stage wrote is the served graph's `net`: its weights' names start so.
PREFIX = "net."


def rebuild_checkpoint(onnx_path: Path, checkpoint_path: Path) -> None:
    """Write the torch checkpoint of the float model file `onnx_path`; raises SystemExit
    with a sentence saying why when the file was not written by this project's export."""
    import onnx
    import torch
    from onnx import numpy_helper
    from torch import nn

    from service.contract import ModelCard
    from training.checkpoint import Trained, save_checkpoint
    from training.model import build_net

    model = onnx.load(str(onnx_path))
    card = ModelCard.from_metadata({p.key: p.value for p in model.metadata_props}, onnx_path)
    weights = {
        i.name.removeprefix(PREFIX): torch.from_numpy(numpy_helper.to_array(i).copy())
        for i in model.graph.initializer
    }
    try:
        model_params = {**card.training_params["model"], "pretrained": False}
        mean, std = float(weights["0.mean"]), float(weights["0.std"])
        net = build_net(model_params, mean, std, len(card.classes))
        state = net.state_dict()
        for name, module in net.named_modules():
            if isinstance(module, nn.BatchNorm2d):
                parent, index = name.rsplit(".", 1)
                state[f"{name}.bias"] = weights[f"{parent}.{int(index) - 1}.weight_bias"]
                state[f"{name}.weight"] = torch.ones_like(module.weight)
                state[f"{name}.running_mean"] = torch.zeros_like(module.running_mean)
                state[f"{name}.running_var"] = torch.full_like(module.running_var, 1 - module.eps)
            elif isinstance(module, nn.Conv2d):
                for kind in ("weight", "bias") if module.bias is not None else ("weight",):
                    state[f"{name}.{kind}"] = weights[f"{name}.{kind}"]
        net.load_state_dict(state)
    except (KeyError, TypeError, RuntimeError) as error:
        raise SystemExit(
            f"error: cannot rebuild torch weights from {onnx_path} ({error!r}); it was not "
            "exported by this project's export stage: pass --onnx and --checkpoint."
        ) from None
    save_checkpoint(Trained(net.eval(), model_params, card.classes), mean, std, checkpoint_path)
