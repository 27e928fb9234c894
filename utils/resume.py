"""What ``train.py --resume`` takes from a checkpoint: training state and a fixed whitelist of options.

A last.pt is untrusted input (bare ``--resume`` picks up any last.pt under runs/), so the options stored in it are
not replayed wholesale. Taken: numbers and booleans from ``RESUME_OPTIONS`` (type- and range-checked), the two
enumerated strings, and the dataset/hyp/cfg yamls as plain local paths (never an inline dataset dict, never a
URL). Never taken: ``download`` (a download happens only when ``--download`` is typed on this command line), the
output location (the run folder is the one holding the checkpoint), device and workers (this command line's).
Anything else is ignored with a warning. Hyperparameters are taken only where they are numbers (utils/hyp.py's
``is_number``); their keys and ranges are checked by training as for any --hyp.
"""

import math
import re
from pathlib import Path

from utils.checkpoints import load_checkpoint
from utils.general import LOGGER, ROOT, UserError, yaml_load
from utils.hyp import is_number

# option -> (kind, smallest allowed value); kinds: int, float, bool, ints (list of int), or a tuple of choices
RESUME_OPTIONS = {
    "epochs": ("int", 1),
    "batch_size": ("int", 1),
    "imgsz": ("int", 1),
    "patience": ("int", 0),
    "save_period": ("int", -1),
    "seed": ("int", 0),
    "freeze": ("ints", 0),
    "label_smoothing": ("float", 0.0),
    "rect": ("bool", None),
    "nosave": ("bool", None),
    "noval": ("bool", None),
    "noautoanchor": ("bool", None),
    "noplots": ("bool", None),
    "image_weights": ("bool", None),
    "multi_scale": ("bool", None),
    "single_cls": ("bool", None),
    "sync_bn": ("bool", None),
    "cos_lr": ("bool", None),
    "optimizer": (("SGD", "Adam", "AdamW"), None),
    "cache": ((None, "ram", "disk", "val", "off"), None),
    "amp": (("auto", "on", "off"), None),  # the precision of the interrupted run, for an exact continuation
    "evolve": ((None,), None),  # a training run is never an evolution (which resumes from its evolve.csv)
}
PATH_OPTIONS = ("data", "hyp", "cfg")  # local yaml paths, read again on resume
# set by this command line or by where the checkpoint lies, never by the file: dropped without a warning
NOT_TAKEN = ("weights", "resume", "project", "name", "exist_ok", "device", "workers", "local_rank", "save_dir",
             "download")
RUNS_DIR = ROOT / "runs"  # where bare --resume looks
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:(//|\\\\)")  # any scheme://, also file:// and smb:\\


def _valid(value, kind, minimum):
    if isinstance(kind, tuple):
        return value in kind
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "ints":
        return isinstance(value, (list, tuple)) and len(value) > 0 and all(_valid(v, "int", minimum) for v in value)
    if isinstance(value, bool) or not isinstance(value, (int, float) if kind == "float" else int):
        return False
    return math.isfinite(value) and value >= minimum


def is_local_path(value):
    """True for a string that names a local file: no URL scheme, no control characters."""
    return isinstance(value, str) and bool(value) and not _URL.match(value) and value.isprintable()


def resume_options(saved, source):
    """The options of checkpoint ``source`` that a resumed run takes (see module docstring); warns about the rest."""
    if not isinstance(saved, dict):
        raise UserError(f"{source}: its 'opt' entry is not a mapping of options; it cannot be resumed")
    taken, ignored = {}, []
    for key, value in saved.items():
        if key in RESUME_OPTIONS:
            kind, minimum = RESUME_OPTIONS[key]
            if _valid(value, kind, minimum):
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


def latest_checkpoint(search_dir=None):
    """The newest last*.pt under ``search_dir`` (bare --resume); links are skipped, so a run folder is where the
    file really lies."""
    search_dir = Path(search_dir or RUNS_DIR)
    runs = [p for p in search_dir.rglob("last*.pt") if p.is_file() and not p.is_symlink()]
    if not runs:
        raise UserError(f"--resume: no last.pt found under {search_dir}; pass the checkpoint path: --resume PATH")
    return max(runs, key=lambda p: p.stat().st_mtime)


def load_resume_state(resume, search_dir=None):
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
    if ckpt.get("hyp"):
        hyp = resume_hyp(ckpt["hyp"], path)
    elif "hyp" in options:
        hyp = resume_hyp(yaml_load(options["hyp"]), path)
    else:
        raise UserError(f"{path} holds no hyperparameters; it cannot be resumed")
    return path, options, hyp
