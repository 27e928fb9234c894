"""``check_comet_resume``, imported by official YOLOv5 v7.0's train.py. Comet is not part of this project."""

from __future__ import annotations

import argparse


def check_comet_resume(opt: argparse.Namespace) -> bool:
    """Whether ``opt.resume`` names a Comet run to resume: never here (no Comet), so train.py resumes from
    local checkpoints as usual."""
    return False
