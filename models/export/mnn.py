"""MNN export into ``<stem>_mnn_model/`` (model.mnn, metadata.yaml): the ONNX export converted by MNN's own
converter (``--half``: fp16 weight storage).

The converter is called through the ``_tools`` extension of the ``MNN`` package in a child process, never through
``MNN.tools.mnnconvert``: that wrapper imports a usage logger that sends the machine id to the vendor and runs
pip to install a missing dependency. The child process also keeps a converter crash from ending this one.
"""

import importlib.util
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import yaml

from models.edge_runtimes import EDGE_METADATA, MNN_FILE
from models.export.core import Exported, ExportOptions, replaced_folder
from models.export.onnx import export_onnx
from utils.general import LOGGER, UserError, colorstr

MNN_TIMEOUT_S = 600
# the converter alone: MNN's native _tools module, without the package's logging wrapper
CONVERT = "import sys, _tools; _tools.mnnconvert(sys.argv)"


def export_mnn(model: nn.Module, im: torch.Tensor, file: str | Path, metadata: dict[str, Any],
               half: bool = False) -> Path:
    """Convert ``model`` (through ONNX) into ``<stem>_mnn_model/``; returns the folder."""


    if importlib.util.find_spec("_tools") is None or importlib.util.find_spec("MNN") is None:
        raise UserError("--include mnn needs the MNN package, which is not installed (it is listed in "
                        "requirements-edge.txt)")
    prefix = colorstr("MNN:")
    file = Path(file)
    folder = file.with_name(f"{file.stem}_mnn_model")
    LOGGER.info(f"\n{prefix} starting export (ONNX -> MNN)...")
    with tempfile.TemporaryDirectory(prefix="mnn-") as tmp:
        tmp = Path(tmp)
        onnx_file = export_onnx(model, im[:1].float(), tmp / "model.onnx", metadata)
        out = tmp / MNN_FILE
        args = [sys.executable, "-c", CONVERT, "-f", "ONNX", "--modelFile", str(onnx_file), "--MNNModel", str(out),
                "--bizCode", "yolov5"] + (["--fp16"] if half else [])
        try:
            run = subprocess.run(args, capture_output=True, text=True, timeout=MNN_TIMEOUT_S)
        except subprocess.TimeoutExpired as e:
            raise UserError(f"--include mnn: the MNN converter did not finish in {MNN_TIMEOUT_S} s") from e
        text = run.stdout + run.stderr
        if run.returncode != 0 or not out.is_file() or "not support" in text.lower():
            lines = [x for x in text.splitlines() if "not support" in x.lower()] or text.strip().splitlines()[-1:]
            raise UserError(f"--include mnn: the MNN converter failed: {(lines or ['no output'])[0][:300]}")
        with replaced_folder(folder) as work:
            shutil.copyfile(out, work / MNN_FILE)
            precision = "fp16" if half else "fp32"
            (work / EDGE_METADATA).write_text(yaml.safe_dump({**metadata, "precision": precision}, sort_keys=False))
    size = sum(f.stat().st_size for f in folder.iterdir()) / 1e6
    LOGGER.info(f"{prefix} export success, saved as {folder} ({size:.1f} MB)")
    return folder


def mnn_exports(model: nn.Module, im: torch.Tensor, file: Path, metadata: dict[str, Any],
                options: ExportOptions) -> list[Exported]:
    """``--include mnn``: ``<stem>_mnn_model/``, fp32, or fp16 weight storage with ``--half``."""
    if options.dynamic:
        raise UserError("--include mnn converts one fixed --imgsz; drop --dynamic")
    return [Exported(export_mnn(model, im, file, metadata, half=options.half), "fp16" if options.half else "fp32")]
