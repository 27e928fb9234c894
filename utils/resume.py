"""What ``train.py --resume`` takes from a checkpoint: training state and a fixed whitelist of options.

A last.pt is untrusted input (bare ``--resume`` picks up any last.pt under runs/), so the options stored in it are
not replayed wholesale. Taken: numbers and booleans from ``RESUME_OPTIONS`` (type- and range-checked), the two
enumerated strings, and the dataset/hyp/cfg yamls as plain local paths (never an inline dataset dict, never a
URL). Never taken: ``download`` (a download happens only when ``--download`` is typed on this command line), the
output location (the run folder is the one holding the checkpoint), device and workers (this command line's).
Anything else is ignored with a warning. Hyperparameters are taken only where they are numbers (utils/hyp.py's
``is_number``); their keys and ranges are checked by training as for any --hyp.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import torch
from torch import nn

from utils.checkpoints import load_checkpoint
from utils.general import LOGGER, ROOT, UserError, yaml_load
from utils.hyp import is_number

MAX_EPOCHS = 1_000_000  # per-epoch seeds are seed + 1 + rank + epoch: with MAX_SEED they stay below 2**32
MAX_SEED = 2**31 - 1
MAX_IMGSZ = 8192  # a 60000 px training image would ask for ~40 GB per mosaic
# option -> (kind, smallest allowed value, largest allowed value or None); kinds: int, float, bool, ints (list of
# int), or a tuple of choices. Below the smallest: ignored with a warning; above the largest: refused (a file that
# would overflow a seed or allocate gigabytes is not resumed with a silently different value)
RESUME_OPTIONS = {
    "epochs": ("int", 1, MAX_EPOCHS),
    "batch_size": ("int", 1, 65536),
    "imgsz": ("int", 1, MAX_IMGSZ),
    "patience": ("int", 0, None),
    "save_period": ("int", -1, None),
    "seed": ("int", 0, MAX_SEED),
    "freeze": ("ints", 0, None),  # indices past the model's last layer are ignored by training
    "label_smoothing": ("float", 0.0, 1.0),
    "rect": ("bool", None, None),
    "nosave": ("bool", None, None),
    "noval": ("bool", None, None),
    "noautoanchor": ("bool", None, None),
    "noplots": ("bool", None, None),
    "image_weights": ("bool", None, None),
    "multi_scale": ("bool", None, None),
    "single_cls": ("bool", None, None),
    "sync_bn": ("bool", None, None),
    "cos_lr": ("bool", None, None),
    "optimizer": (("SGD", "Adam", "AdamW"), None, None),
    "cache": ((None, "ram", "disk", "val", "off"), None, None),
    "amp": (("auto", "on", "off"), None, None),  # the precision of the interrupted run, for an exact continuation
    "evolve": ((None,), None, None),  # a training run is never an evolution (which resumes from its evolve.csv)
    "mask_ratio": ("int", 1, 64),  # segment/train.py
    "no_overlap": ("bool", None, None),  # segment/train.py
}
PATH_OPTIONS = ("data", "hyp", "cfg")  # local yaml paths, read again on resume
# set by this command line or by where the checkpoint lies, never by the file: dropped without a warning
NOT_TAKEN = ("weights", "resume", "project", "name", "exist_ok", "device", "workers", "local_rank", "save_dir",
             "download")
RUNS_DIR = ROOT / "runs"  # where bare --resume looks
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:(//|\\\\)")  # any scheme://, also file:// and smb:\\


def _valid(value: object, kind: str | tuple, minimum: float | None) -> bool:
    if isinstance(kind, tuple):
        return value in kind
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "ints":
        return isinstance(value, (list, tuple)) and len(value) > 0 and all(_valid(v, "int", minimum) for v in value)
    if isinstance(value, bool) or not isinstance(value, (int, float) if kind == "float" else int):
        return False
    return math.isfinite(value) and value >= minimum


def check_option_bounds(options: dict) -> None:
    """Refuse, with a UserError naming the flag, a typed number outside the range a run can use (the same bounds as
    a resumed checkpoint's options): ``--seed 2**40`` would overflow the per-epoch seeds, ``--epochs 2**40`` never
    ends, ``--imgsz 60000`` asks for tens of gigabytes per mosaic."""
    for key, (kind, minimum, maximum) in RESUME_OPTIONS.items():
        if kind not in ("int", "float", "ints") or options.get(key) is None:
            continue
        values = options[key] if kind == "ints" else [options[key]]
        for value in values:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise UserError(f"--{key.replace('_', '-')} {value!r:.40}: not a number")
            if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
                allowed = f"{minimum} to {maximum:,}" if maximum is not None else f"at least {minimum}"
                raise UserError(f"--{key.replace('_', '-')} {value}: out of range ({allowed})")


def is_local_path(value: object) -> bool:
    """True for a string that names a local file: no URL scheme, no control characters."""
    return isinstance(value, str) and bool(value) and not _URL.match(value) and value.isprintable()


def resume_options(saved: object, source: str | Path) -> dict:
    """The options of checkpoint ``source`` that a resumed run takes (see module docstring); warns about the rest."""
    if not isinstance(saved, dict):
        raise UserError(f"{source}: its 'opt' entry is not a mapping of options; it cannot be resumed")
    taken, ignored = {}, []
    for key, value in saved.items():
        if key in RESUME_OPTIONS:
            kind, minimum, maximum = RESUME_OPTIONS[key]
            if _valid(value, kind, minimum):
                too_large = max(value) if kind == "ints" else value
                if maximum is not None and too_large > maximum:
                    raise UserError(f"{source}: its option {key}={too_large!r:.40} is out of range {minimum}..{maximum}"
                                    f"; it cannot be resumed")
                taken[key] = list(value) if kind == "ints" else value
            else:
                ignored.append(f"{key}={value!r:.60} (not a valid value)")
        elif key in PATH_OPTIONS:
            if is_local_path(value):
                taken[key] = value
            elif key == "data":
                raise UserError(
                    f"{source}: its dataset is {type(value).__name__} {value!r:.80}, not a local dataset yaml path; "
                    f"resume takes only a path. Start a new run instead: --weights {source} --data your.yaml"
                )
            else:
                ignored.append(f"{key}={value!r:.60} (not a local path)")
        elif key == "download" and value:
            ignored.append("download (pass --download on this command line to fetch a dataset)")
        elif key not in NOT_TAKEN:
            ignored.append(f"{key!s:.40}")
    if ignored:
        LOGGER.warning(f"WARNING: --resume {source}: ignored option(s) stored in the checkpoint: {', '.join(ignored)}")
    if "data" not in taken:
        raise UserError(f"{source} names no dataset yaml; it cannot be resumed. Start a new run instead: "
                        f"--weights {source} --data your.yaml")
    return taken


def resume_hyp(hyp: object, source: str | Path) -> dict:
    """The numeric hyperparameters stored in the checkpoint (others are ignored with a warning)."""
    if not isinstance(hyp, dict):
        raise UserError(f"{source}: its 'hyp' entry is not a mapping of hyperparameters; it cannot be resumed")
    numbers = {k: v for k, v in hyp.items() if isinstance(k, str) and is_number(v)}
    ignored = [f"{k!s:.40}" for k in hyp if k not in numbers]
    if ignored:
        LOGGER.warning(f"WARNING: --resume {source}: ignored non-numeric hyperparameter(s): {', '.join(ignored)}")
    return numbers


def latest_checkpoint(search_dir: str | Path | None = None) -> Path:
    """The newest last*.pt under ``search_dir`` (bare --resume); links are skipped, so a run folder is where the
    file really lies."""
    search_dir = Path(search_dir or RUNS_DIR)
    runs = [p for p in search_dir.rglob("last*.pt") if p.is_file() and not p.is_symlink()]
    if not runs:
        raise UserError(f"--resume: no last.pt found under {search_dir}; pass the checkpoint path: --resume PATH")
    return max(runs, key=lambda p: p.stat().st_mtime)


def load_resume_state(resume: bool | str | Path, search_dir: str | Path | None = None) -> tuple[Path, dict, dict]:
    """(checkpoint path, whitelisted options, numeric hyp) for ``--resume`` (True: the newest run; else a path)."""
    path = Path(resume) if isinstance(resume, (str, Path)) else latest_checkpoint(search_dir)
    if not path.is_file():
        raise UserError(f"--resume {resume}: checkpoint not found")
    ckpt = load_checkpoint(path)
    epoch = ckpt.get("epoch")
    if not ckpt.get("opt") or ckpt.get("optimizer") is None or isinstance(epoch, bool) or not isinstance(epoch, int):
        raise UserError(f"{path} cannot be resumed (no training state; finished runs are stripped). "
                        f"Start a new run with --weights {path}")
    options = resume_options(ckpt["opt"], path)
    check_training_state(ckpt, options.get("epochs", MAX_EPOCHS), path)
    if ckpt.get("hyp"):
        hyp = resume_hyp(ckpt["hyp"], path)
    elif "hyp" in options:
        hyp = resume_hyp(yaml_load(options["hyp"]), path)
    else:
        raise UserError(f"{path} holds no hyperparameters; it cannot be resumed")
    return path, options, hyp


def _finite_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**63


def check_training_state(ckpt: dict, epochs: int, source: str | Path) -> None:
    """Refuse, naming the field, loop state that passes the type checks but cannot continue a run: an epoch
    outside 0..``epochs``, a best fitness that is not a finite number, per-class mAPs that are not one finite
    number per class, counters that are not counts."""
    epoch = ckpt["epoch"]
    if not 0 <= epoch <= epochs:
        raise UserError(f"{source}: its epoch {epoch} is outside 0..{epochs} (its epochs); it cannot be resumed")
    best = ckpt.get("best_fitness")
    if best is not None and not _finite_number(best):
        raise UserError(f"{source}: its best_fitness {best!r:.40} is not a finite number; it cannot be resumed")
    if not _count(ckpt.get("updates", 0)):
        raise UserError(f"{source}: its EMA 'updates' {ckpt.get('updates')!r:.40} is not a count; it cannot be resumed")
    saved = ckpt.get("train_state") or {}
    if not isinstance(saved, dict):
        raise UserError(f"{source}: its train_state is {type(saved).__name__}, not a mapping; it cannot be resumed")
    for key in ("best_epoch", "last_opt_step"):
        if key in saved and not (_count(saved[key]) or saved[key] == -1):
            raise UserError(f"{source}: its train_state {key} {saved[key]!r:.40} is not a count; it cannot be resumed")
    names = ckpt.get("names")
    nc = len(names) if isinstance(names, (dict, list, tuple)) else None
    maps = saved.get("maps")
    if maps is not None and not (isinstance(maps, (list, tuple)) and all(_finite_number(x) for x in maps)
                                 and (nc is None or len(maps) == nc)):
        raise UserError(f"{source}: its train_state maps {maps!r:.40} is not a list of {nc or 'nc'} finite numbers "
                        f"(one mAP per class); it cannot be resumed")


def _mismatches(own: dict, saved: dict) -> list[str]:
    """Human-readable differences between two {name: tensor} mappings: missing, unexpected, wrong shapes."""
    out = [f"{k} missing" for k in own if k not in saved]
    out += [f"{k!s:.60} unexpected" for k in saved if k not in own]
    return out + [f"{k} {tuple(v.shape)} != {tuple(own[k].shape)}" for k, v in saved.items()
                  if k in own and isinstance(v, torch.Tensor) and v.shape != own[k].shape]


def load_resumed_weights(module: nn.Module, state_dict: dict, source: str | Path, what: str = "model") -> None:
    """Load a resumed checkpoint's ``what`` weights (as fp32) into ``module``, which the checkpoint's own yaml
    built; weights of another model or of other shapes are a UserError listing the first differences."""
    if not isinstance(state_dict, dict) or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise UserError(f"{source}: its '{what}' entry is not a mapping of tensors; it cannot be resumed")
    wrong = _mismatches(module.state_dict(), state_dict)
    if wrong:
        raise UserError(f"{source}: its '{what}' weights do not fit the model its yaml builds ({len(wrong)} "
                        f"differences: {'; '.join(wrong[:3])}); it cannot be resumed")
    module.load_state_dict({k: v.float() for k, v in state_dict.items()})


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: dict, source: str | Path) -> None:
    """Load a resumed optimizer state after checking it belongs to this model: the same groups of the same sizes,
    each saved per-parameter tensor (momentum, Adam moments) of its parameter's shape, numeric settings numbers."""
    where = f"{source}: its optimizer state"
    if not isinstance(state, dict):
        raise UserError(f"{where} is {type(state).__name__}, not a mapping; it cannot be resumed")
    groups, per_param = state.get("param_groups"), state.get("state")
    if not isinstance(groups, list) or not isinstance(per_param, dict) or len(groups) != len(optimizer.param_groups):
        raise UserError(f"{where} does not have this model's {len(optimizer.param_groups)} parameter groups; "
                        f"it cannot be resumed")
    for i, (saved, live) in enumerate(zip(groups, optimizer.param_groups)):
        if not isinstance(saved, dict) or not isinstance(saved.get("params"), list) or \
                len(saved["params"]) != len(live["params"]):
            raise UserError(f"{where}: group {i} does not hold this model's {len(live['params'])} parameters; "
                            f"it cannot be resumed")
        for key, value in live.items():
            if _finite_number(value) and key in saved and not _finite_number(saved[key]):
                raise UserError(f"{where}: group {i} {key} {saved[key]!r:.40} is not a finite number; "
                                f"it cannot be resumed")
        for index, param in zip(saved["params"], live["params"]):
            if not _count(index):
                raise UserError(f"{where}: group {i} names parameter {index!r:.40}, not an index; "
                                f"it cannot be resumed")
            entry = per_param.get(index, {})
            tensors = entry.items() if isinstance(entry, dict) else [("entry", entry)]
            for name, value in tensors:
                if isinstance(value, torch.Tensor) and value.dim() and value.shape != param.shape:
                    raise UserError(f"{where}: {name} of parameter {index} has shape {tuple(value.shape)}, this "
                                    f"model's is {tuple(param.shape)} (the state of another model); "
                                    f"it cannot be resumed")
    try:
        optimizer.load_state_dict(state)
    except (ValueError, KeyError, TypeError, RuntimeError) as e:
        raise UserError(f"{where} does not load: {type(e).__name__}: {str(e)[:120]}") from e
