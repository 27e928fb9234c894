"""What every exporter shares: the model prepared for tracing, the tracer's notes silenced, and the exporter
interface. An exporter takes (model, example input, output file stem, metadata, ExportOptions) and returns the
files it wrote as ``Exported`` records; models/export/formats.py lists one per ``--include`` name."""

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


@dataclass(frozen=True)
class ExportOptions:
    """The export flags; each exporter reads the ones that apply to its format."""

    opset: int | None = None  # ONNX opset; None: the default, or the lowest the model's modules need if higher
    dynamic: bool = False  # ONNX: dynamic batch and image size
    simplify: bool = False  # ONNX: run onnxsim
    half: bool = False  # OpenVINO: fp16 weights, bf16 execution; TensorRT: an fp16 engine
    calib: list[np.ndarray] | None = None  # INT8 calibration images: adds <stem>_int8.onnx, makes OpenVINO INT8


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
