"""``--include official``: a checkpoint official YOLOv5 v7.0 loads (``<stem>_official.pt``).

Official checkpoints pickle whole modules, so official code finds its own classes by name when it unpickles them.
The file is written with a pickler that records each module of this project under the official class path
(``models.yolo.DetectionModel``, ``models.common.Conv``, ...) with the attribute layout official's classes have
(``i``/``f``/``type``/``np`` on each layer, ``Detect.grid`` lists, ``stride`` as a plain attribute), fp16 weights,
and the stripped-release keys (``ema`` and ``optimizer`` None, ``epoch`` -1). Only models built entirely from
modules official YOLOv5 has can be handed over; a plug-in module (ScConv, SPDConv, ...) is a UserError naming it.
This project reads such files back with its restricted loader (utils/checkpoints.py), never by unpickling code.
"""

from __future__ import annotations

import copy
import pickle
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
import torch.nn as nn

from models.experimental import model_from_checkpoint
from models.export.core import Exported, ExportOptions
from models.layers import C3, SPPF, Bottleneck, Concat, Conv
from models.yolo import Detect, Model
from utils.checkpoints import load_checkpoint, save_checkpoint
from utils.general import LOGGER, UserError, colorstr, names_dict

# this project's classes whose layout equals official v7.0's, and the class path official pickles them under
OFFICIAL_PATHS: dict[type, str] = {
    Model: "models.yolo.DetectionModel",
    Detect: "models.yolo.Detect",
    Conv: "models.common.Conv",
    C3: "models.common.C3",
    Bottleneck: "models.common.Bottleneck",
    SPPF: "models.common.SPPF",
    Concat: "models.common.Concat",
}
# the official attributes of each class beyond nn.Module's own (layer bookkeeping i/f/type/np is added per layer)
OFFICIAL_ATTRIBUTES: dict[type, tuple[str, ...]] = {
    Model: ("yaml_file", "yaml", "save", "inplace"),  # + names, stride (below)
    Detect: ("nc", "no", "nl", "na", "inplace"),  # + grid, anchor_grid, stride (below)
    Bottleneck: ("add",),
    Concat: ("d",),
}
TORCH_MODULES = "torch.nn.modules."  # torch's own layers pickle under their real class paths in both projects
MODULE_STATE = tuple(nn.Module().__dict__)  # nn.Module's bookkeeping entries, for this torch version
LAYER_ATTRIBUTES = ("i", "f", "type", "np", "booked_channels", "channel_rule")  # set on each layer by parse_model


class _OfficialClass:
    """Stand-in for an official class in the pickle: written as the GLOBAL ``module name``."""

    def __init__(self, path: str) -> None:
        self.module, self.name = path.rsplit(".", 1)


class _OfficialPickler(pickle._Pickler):  # the Python pickler: each object's opcodes can be chosen here
    """Writes each module as ``GLOBAL <official class>; NEWOBJ; <official __dict__>; BUILD``, the opcodes torch.save
    writes for a module, naming the official class instead of this project's (see module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._classes: dict[str, _OfficialClass] = {}

    def save(self, obj: Any, save_persistent_id: bool = True) -> None:
        if id(obj) in self.memo:
            super().save(obj, save_persistent_id)
        elif isinstance(obj, _OfficialClass):
            self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode())
            self.memoize(obj)
        elif isinstance(obj, nn.Module):
            path = official_class_path(obj)
            self.save(type(obj) if path.startswith(TORCH_MODULES) else self._classes.setdefault(path,
                                                                                               _OfficialClass(path)))
            self.save(())
            self.write(pickle.NEWOBJ)
            self.memoize(obj)
            self.save(_official_state(obj))
            self.write(pickle.BUILD)
        else:
            super().save(obj, save_persistent_id)


_OFFICIAL_PICKLE = ModuleType("official_pickle")  # what torch.save takes as pickle_module: only Pickler is used
_OFFICIAL_PICKLE.Pickler = _OfficialPickler


def official_class_path(module: nn.Module) -> str:
    """The class path official YOLOv5 knows ``module`` by; a UserError for a module official YOLOv5 lacks."""
    cls = type(module)
    if cls in OFFICIAL_PATHS:
        return OFFICIAL_PATHS[cls]
    if cls.__module__.startswith(TORCH_MODULES):
        return f"{cls.__module__}.{cls.__qualname__}"
    raise UserError(f"official YOLOv5 cannot run {cls.__name__}: --include official needs a model built only from "
                    f"official modules (Conv, C3, SPPF, Bottleneck, Concat, Detect and torch.nn layers)")


def _official_state(module: nn.Module) -> dict[str, Any]:
    """``module.__dict__`` as official's class has it: nn.Module's entries, the class's own attributes and, for a
    layer of the model, official parse_model's i, f, type and np."""
    d = module.__dict__
    cls = type(module)
    if cls.__module__.startswith(TORCH_MODULES):
        state = {k: v for k, v in d.items() if k not in LAYER_ATTRIBUTES}
    else:
        state = {k: d[k] for k in MODULE_STATE if k in d}
        state.update({k: getattr(module, k) for k in OFFICIAL_ATTRIBUTES.get(cls, ())})
    if cls is Detect:  # official keeps stride as an attribute and rebuilds the grids on the first forward
        state["_buffers"] = {k: v for k, v in d["_buffers"].items() if k != "stride"}
        state["_non_persistent_buffers_set"] = set()
        state["grid"] = [torch.empty(0) for _ in range(module.nl)]
        state["anchor_grid"] = [torch.empty(0) for _ in range(module.nl)]
        state["stride"] = module.stride.clone().half()
    if cls is Model:
        state["stride"] = module.stride.clone().float()
        state["names"] = names_dict(module.names)
    if "i" in d:  # a layer of model.model
        state.update(i=d["i"], f=d["f"], type=official_class_path(module), np=d.get("np", 0))
    return state


def official_checkpoint(model: Model, opt: dict[str, Any] | None = None) -> dict[str, Any]:
    """The dict official YOLOv5 v7.0 saves for a released model: ``model`` (fp16 copy of ``model``), stripped keys."""
    for m in model.modules():
        official_class_path(m)  # every module checked before anything is written
    half = copy.deepcopy(model).half().eval()
    overflow = [k for k, v in half.state_dict().items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if overflow:
        raise UserError(f"official checkpoints are fp16 and {len(overflow)} weight tensors exceed its range (e.g. "
                        f"{overflow[:2]}); hand this model over as ONNX or TorchScript instead")
    return {"epoch": -1, "best_fitness": None, "model": half, "ema": None, "updates": None, "optimizer": None,
            "opt": dict(opt or {}), "git": None, "date": datetime.now().isoformat()}


def save_official(model: Model, file: str | Path, opt: dict[str, Any] | None = None) -> Path:
    """Write ``model`` as an official-format checkpoint at ``file`` (atomically, like every checkpoint)."""
    ckpt = official_checkpoint(model, opt)
    return save_checkpoint(ckpt, file, pickle_module=_OFFICIAL_PICKLE)


def export_official(weights: str | Path) -> Path:
    """``<stem>_official.pt`` next to ``weights`` (a checkpoint of this project or an official one)."""
    prefix = colorstr("Official YOLOv5:")
    weights = Path(weights)
    ckpt = load_checkpoint(weights)
    model = model_from_checkpoint(ckpt)
    opt = ckpt.get("opt") if isinstance(ckpt.get("opt"), dict) else {}
    file = save_official(model, weights.with_name(f"{weights.stem}_official.pt"), opt)
    LOGGER.info(f"\n{prefix} export success, saved as {file} ({file.stat().st_size / 1e6:.1f} MB); official "
                f"YOLOv5 loads it with torch.load, attempt_load or its hub 'custom' entry point (path=...)")
    return file


def official_exports(model: nn.Module, im: torch.Tensor, file: Path, metadata: dict[str, Any],
                     options: ExportOptions) -> list[Exported]:
    """``--include official``: rebuilt from the weights file itself, since the model exporters get is fused."""
    if Path(file).suffix != ".pt" or not Path(file).is_file():
        raise UserError(f"--include official converts a .pt checkpoint; {file} is not one")
    return [Exported(export_official(file), "fp16")]
