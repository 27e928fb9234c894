"""The official ``--include`` formats whose converters cannot be installed here next to the CPU torch build:
each exporter fails in one line naming what is missing.

TensorFlow's formats (saved_model, pb, tfjs, edgetpu) need the ``tensorflow`` package (onnx2tf's route also pins
numpy 1.x and an older onnx than requirements.txt); edgetpu also needs Google's ``edgetpu_compiler`` program, which
no package registry here provides; paddle needs ``paddlepaddle`` and ``x2paddle``.
"""

from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from models.export.core import Exported, Exporter, ExportOptions
from utils.general import UserError

MISSING = {
    "saved_model": "the tensorflow package (TensorFlow SavedModel); not installable next to this torch build's numpy",
    "pb": "the tensorflow package (a frozen GraphDef is written from a SavedModel)",
    "tfjs": "the tensorflow and tensorflowjs packages (converted from a SavedModel)",
    "edgetpu": "Google's edgetpu_compiler program (Linux x86 apt package from Google's own repository) and the "
               "tensorflow package; compile a --int8 .tflite with it on a machine that has it",
    "paddle": "the paddlepaddle and x2paddle packages (PaddlePaddle inference model)",
}


def _unavailable(name: str) -> Exporter:
    def exporter(model: nn.Module, im: torch.Tensor, file: Path, metadata: dict[str, Any],
                 options: ExportOptions) -> list[Exported]:
        raise UserError(f"--include {name} is not available here: it needs {MISSING[name]}")
    exporter.__doc__ = f"``--include {name}``: refused in one line saying what it needs."
    return exporter


UNAVAILABLE_EXPORTERS: dict[str, Exporter] = {name: _unavailable(name) for name in MISSING}
