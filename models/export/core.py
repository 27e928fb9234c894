"""What every exporter shares: the model prepared for tracing, the tracer's notes silenced, and the exporter
interface. An exporter takes (model, example input, output file stem, metadata, ExportOptions) and returns the
files it wrote as ``Exported`` records; models/export/formats.py lists one per ``--include`` name.

Exporters never write their final name directly: a file is written under a temporary name beside it and renamed
over it when complete (``save_export``), an OpenVINO folder is built beside the old one and swapped in
(``replaced_folder``), so a full disk or a read-only folder leaves the previous export as it was.
"""

import errno
import os
import secrets
import shutil
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn as nn

from models.yolo import Detect, Model
from utils.cache_files import write_atomic
from utils.general import UserError

# a full disk or quota, a file over the size limit, a read-only or forbidden folder: the user's to fix
UNWRITABLE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EACCES, errno.EPERM, errno.EROFS})


@dataclass(frozen=True)
class ExportOptions:
    """The export flags; each exporter reads the ones that apply to its format."""

    opset: int | None = None  # ONNX opset; None: the default, or the lowest the model's modules need if higher
    dynamic: bool = False  # ONNX: dynamic batch and image size
    simplify: bool = False  # ONNX: slim the graph with onnxslim
    half: bool = False  # OpenVINO: fp16 weights, bf16 execution; TensorRT: an fp16 engine
    calib: list[np.ndarray] | None = None  # INT8 calibration images: adds <stem>_int8.onnx, makes OpenVINO INT8
    nms: dict[str, Any] | None = None  # ONNX / OpenVINO: NMS inside the graph, these settings (export/nms.py)


class Exported(NamedTuple):
    """One written file (or OpenVINO folder) and the precision it computes in, which sets its check tolerance."""

    path: Path
    precision: str  # 'fp32', 'fp16', 'bf16' or 'int8'


Exporter = Callable[[nn.Module, torch.Tensor, Path, dict[str, Any], ExportOptions], list[Exported]]


def prepare_model(model: nn.Module, inplace: bool = False) -> nn.Module:
    """Fuse, switch to eval, freeze and make Detect return only the decoded predictions, as exporters need."""
    model = model.float().eval()
    if isinstance(model, Model):
        model.fuse(verbose=False)
    for p in model.parameters():
        p.requires_grad_(False)
    for m in model.modules():
        if isinstance(m, Detect):
            m.inplace = inplace
            m.export = True
    return model


@contextmanager
def quiet_tracer() -> Iterator[None]:
    """Silence the tracer's notes about Python-level branches (e.g. ``if augment``): they are constant here."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
        yield


@contextmanager
def report_unwritable(target: Path) -> Iterator[None]:
    """Turn an OSError of a full disk, a read-only folder or a file too large inside the block into one UserError
    line about ``target`` that says whether a previous export is still there; other errors pass unchanged."""
    try:
        yield
    except OSError as e:
        if e.errno not in UNWRITABLE_ERRNOS:
            raise
        kept = f"the previous {target.name} is intact" if target.exists() else "nothing was written"
        raise UserError(f"cannot write {target}: {e.strerror or e}; {kept}") from e


def save_export(file: Path, data: bytes) -> Path:
    """Write ``data`` to ``file`` through a temporary file beside it, renamed over ``file`` only when complete."""
    error = write_atomic(file, lambda f: f.write(data))
    if error is not None:
        with report_unwritable(file):
            raise error
    return file


@contextmanager
def replaced_folder(folder: Path) -> Iterator[Path]:
    """A new empty folder beside ``folder`` for the block to fill; when the block completes it takes the place of
    ``folder``, whose old contents are removed only then. When the block fails, the new folder is removed and
    ``folder`` is untouched."""
    work = folder.with_name(f".{folder.name}.{secrets.token_hex(4)}.tmp")
    old = None
    with report_unwritable(folder):
        work.mkdir()
        try:
            yield work
            if folder.exists() or folder.is_symlink():
                old = work.with_name(f"{work.name}.old")
                os.rename(folder, old)
            try:
                os.rename(work, folder)
            except OSError:
                if old is not None:
                    os.rename(old, folder)
                raise
        finally:
            shutil.rmtree(work, ignore_errors=True)
    if old is not None:  # the new folder is in place: a failure to tidy up the old one is no failure of the export
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink(missing_ok=True)
