"""Project utilities. ``notebook_init`` is here because official YOLOv5 v7.0 code imports it as
``from utils import notebook_init``."""

from __future__ import annotations

import os
import platform
import shutil


def notebook_init(verbose: bool = True) -> None:
    """Log a one-line system summary (Python, torch, CPUs, RAM, disk) at the top of a notebook; official also
    checks its requirements and fonts, which this project does not need."""
    import torch  # a summary of torch; importing ``utils`` alone stays light

    gib = 2**30
    disk = shutil.disk_usage("/")
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / gib if hasattr(os, "sysconf") else 0.0
    summary = (f"Python-{platform.python_version()} torch-{torch.__version__} "
               f"{'CUDA ' + torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'CPU'}, "
               f"{os.cpu_count()} CPUs, {ram:.1f} GB RAM, {(disk.total - disk.free) / gib:.1f}/{disk.total / gib:.1f} "
               f"GB disk")
    if verbose:
        print(f"notebook ready: {summary}")
