"""Official YOLOv5 v7.0 names, with official's arguments, whose code builds on modules above utils/general.py:
``check_amp``, ``get_latest_run`` and ``print_mutation``. ``from utils.general import ...`` finds them here (the
general module resolves them on first access, so it never imports this file while loading)."""

from __future__ import annotations

from pathlib import Path

import torch

from utils.amp import check_amp as check_amp_policy
from utils.amp import select_amp
from utils.evolve import append_evolve_csv, write_best_hyp
from utils.general import LOGGER, UserError, colorstr
from utils.resume import latest_checkpoint


def check_amp(model: torch.nn.Module) -> bool:
    """Whether fp16 mixed precision checks out for ``model``: False on a CPU model (official trains CPU in fp32),
    else the project's AMP check of the CUDA fp16 policy."""
    device = next(model.parameters()).device
    if device.type != "cuda":
        return False
    return check_amp_policy(model, select_amp("on", "cuda")).enabled


def get_latest_run(search_dir: str | Path = ".") -> str:
    """The newest last*.pt under ``search_dir`` as a string ('' when there is none), for ``--resume``."""
    try:
        return str(latest_checkpoint(search_dir))
    except UserError:
        return ""


def print_mutation(keys: tuple | list, results: tuple | list, hyp: dict, save_dir: str | Path,
                   bucket: str = "", prefix: str = colorstr("evolve: ")) -> None:
    """Record one evolution generation: its 7 validation ``results`` and ``hyp`` appended to save_dir/evolve.csv
    (this project's columns; ``keys`` are implied) and the fittest generation so far saved as hyp_evolve.yaml.
    ``bucket`` (cloud storage) is not supported."""
    if bucket:
        LOGGER.warning(f"{prefix}WARNING: bucket {bucket!r} ignored; cloud storage is not part of this project")
    evolve_csv = Path(save_dir) / "evolve.csv"
    append_evolve_csv(evolve_csv, list(results)[:7], hyp)
    write_best_hyp(evolve_csv, list(hyp), Path(save_dir) / "hyp_evolve.yaml")
