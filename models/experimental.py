"""Loading trained models: ``attempt_load`` (one checkpoint or an ensemble of several), as in YOLOv5."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from models.yolo import Detect, Model, SegmentationModel, is_segmentation_yaml
from utils.checkpoints import checkpoint_model_parts, load_checkpoint
from utils.general import LOGGER, UserError


class Ensemble(nn.ModuleList):
    """Several models whose inference outputs are concatenated (NMS then merges them)."""

    # set by attempt_load: names, nc and yaml of the first model, the stride of the coarsest one
    names: dict[int, str]
    nc: int
    yaml: dict[str, Any]
    stride: torch.Tensor

    def forward(
        self, x: torch.Tensor, augment: bool = False, visualize: bool | str | Path = False
    ) -> tuple[torch.Tensor, None]:
        return torch.cat([m(x, augment=augment, visualize=visualize)[0] for m in self], 1), None


def model_from_checkpoint(ckpt: dict[str, Any]) -> Model:
    """Rebuild a float Model from a checkpoint dict; the state dict must match the yaml exactly."""
    yaml, names, sd = checkpoint_model_parts(ckpt)
    model = (SegmentationModel if is_segmentation_yaml(yaml) else Model)(yaml, ch=yaml.get("ch", 3))
    model_sd = model.state_dict()
    missing = [k for k in model_sd if k not in sd]
    unexpected = [k for k in sd if k not in model_sd]
    mismatched = [k for k in sd if k in model_sd and sd[k].shape != model_sd[k].shape]
    if missing or unexpected or mismatched:
        raise UserError(
            f"checkpoint weights do not fit its own model description ({len(missing)} missing keys, e.g. "
            f"{missing[:3]}; {len(unexpected)} unexpected, e.g. {unexpected[:3]}; {len(mismatched)} of another "
            f"shape, e.g. {mismatched[:3]}): the file is from another version or was modified"
        )
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in sd.items()})
    model.names = names
    return model


def attempt_load(
    weights: str | Path | Sequence[str | Path],
    device: str | torch.device | None = None,
    inplace: bool = True,
    fuse: bool = True,
) -> Model | Ensemble:
    """Load a checkpoint (project format or official YOLOv5 v6.0-v7.0), or a list of them as an ensemble.

    Returns a float model in eval mode on ``device``, BatchNorm folded when ``fuse``, with ``names``, ``stride``
    and ``nc``. A missing file, a file that is not a checkpoint, or a pickle naming unknown objects raises
    ``UserError`` with the reason.
    """
    paths = weights if isinstance(weights, (list, tuple)) else [weights]
    if not paths:
        raise UserError("no weights given")
    models = []
    for w in paths:
        model = model_from_checkpoint(load_checkpoint(w)).to(device or "cpu").float()
        if fuse:
            model.fuse(verbose=False)
        model.eval().requires_grad_(False)  # inference only
        if fuse:  # official's summary line at load (without thop: no FLOP count, which costs ~1 s at each start)
            model.info(flops=False)
        for m in model.modules():
            if isinstance(m, Detect):
                m.inplace = inplace
        models.append(model)
    if len(models) == 1:
        return models[0]
    if any(isinstance(m, SegmentationModel) for m in models):
        raise UserError(f"{paths}: an ensemble of segmentation models is not supported (their mask prototypes "
                        f"cannot be merged); give one -seg weights file")
    ensemble = Ensemble(models)
    for attr in ("names", "nc", "yaml"):
        setattr(ensemble, attr, getattr(models[0], attr))
    ensemble.stride = models[int(torch.argmax(torch.stack([m.stride.max() for m in models])))].stride
    if any(m.nc != models[0].nc for m in models):
        raise UserError(f"ensemble models have different class counts: {[m.nc for m in models]}")
    LOGGER.info(f"Ensemble created with {paths}")
    return ensemble
