"""NCNN export through PNNX into ``<stem>_ncnn_model/``: model.ncnn.param (the layer list, text), model.ncnn.bin
(weights, fp32 or with ``--half`` fp16 storage) and metadata.yaml.

The model is traced to TorchScript here and the ``pnnx`` package's converter (a program, run as a child process
with a time limit) turns it into NCNN layers. NCNN has no batch axis: the graph is converted for one (3, H, W)
image and the runtime (models/edge_runtimes.py) runs a batch image by image. Every layer type in the result is
checked against the layers the installed ``ncnn`` knows, so a module NCNN cannot run fails the export in one line
naming the module, the operator and the runtime, not at load time on a phone.
"""

import shutil
import subprocess
import tempfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import yaml

from models.edge_runtimes import EDGE_METADATA, NCNN_BIN, NCNN_PARAM, ncnn_layers
from models.export.core import Exported, ExportOptions, quiet_tracer, replaced_folder
from models.export.deploy import unsupported_layer_error
from utils.general import LOGGER, UserError, colorstr
from utils.optional import require_edge

PNNX_TIMEOUT_S = 600  # yolov5x at 640 converts in well under a minute; a hung converter is stopped


def pnnx_program() -> Path:
    """Path of the PNNX converter program shipped in the ``pnnx`` package; a UserError naming it if absent."""
    pnnx = require_edge("pnnx", "--include ncnn (the PNNX converter)")
    program = Path(pnnx.EXEC_PATH)
    if not program.is_file():
        raise UserError(f"--include ncnn: the pnnx package has no converter program at {program}; reinstall pnnx")
    return program


def export_ncnn(model: nn.Module, im: torch.Tensor, file: str | Path, metadata: dict[str, Any],
                half: bool = False) -> Path:
    """Convert ``model`` into ``<stem>_ncnn_model/`` (fp16 weight storage with ``half``); returns the folder."""
    program = pnnx_program()
    ncnn = require_edge("ncnn", "--include ncnn (checking the converted layers)")
    prefix = colorstr("NCNN:")
    file = Path(file)
    folder = file.with_name(f"{file.stem}_ncnn_model")
    one = im[:1].float()
    LOGGER.info(f"\n{prefix} starting export with pnnx {_version('pnnx')} and ncnn {ncnn.__version__}...")
    with tempfile.TemporaryDirectory(prefix="pnnx-") as tmp:
        tmp = Path(tmp)
        with quiet_tracer():
            traced = torch.jit.trace(model.float(), one, strict=False, check_trace=False)
        traced.save(str(tmp / "model.torchscript"))
        args = [str(program), "model.torchscript", f"inputshape=[{','.join(str(d) for d in one.shape)}]f32",
                f"fp16={int(half)}", "device=cpu", "optlevel=2"]
        try:
            run = subprocess.run(args, cwd=tmp, capture_output=True, text=True, timeout=PNNX_TIMEOUT_S)
        except subprocess.TimeoutExpired as e:
            raise UserError(f"--include ncnn: the PNNX converter did not finish in {PNNX_TIMEOUT_S} s") from e
        param, weights = tmp / "model.ncnn.param", tmp / "model.ncnn.bin"
        if run.returncode != 0 or not param.is_file() or not weights.is_file():
            last = (run.stderr or run.stdout).strip().splitlines()[-1:] or ["no output"]
            raise UserError(f"--include ncnn: the PNNX converter failed (exit {run.returncode}): {last[0][:200]}")
        unknown = [(t, name) for t, name in ncnn_layers(param.read_text()) if ncnn.layer_to_index(t) < 0]
        if unknown:
            raise unsupported_layer_error(model, "ncnn", unknown[0][0])
        with replaced_folder(folder) as work:
            shutil.copyfile(param, work / NCNN_PARAM)
            shutil.copyfile(weights, work / NCNN_BIN)
            precision = "fp16" if half else "fp32"
            (work / EDGE_METADATA).write_text(yaml.safe_dump({**metadata, "precision": precision}, sort_keys=False))
    size = sum(f.stat().st_size for f in folder.iterdir()) / 1e6
    LOGGER.info(f"{prefix} export success ({'fp16' if half else 'fp32'} storage), saved as {folder} ({size:.1f} MB)")
    return folder


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "?"


def ncnn_exports(model: nn.Module, im: torch.Tensor, file: Path, metadata: dict[str, Any],
                 options: ExportOptions) -> list[Exported]:
    """``--include ncnn``: ``<stem>_ncnn_model/``, fp32, or fp16 weight storage with ``--half``."""
    if options.dynamic:
        raise UserError("--include ncnn converts one fixed --imgsz; drop --dynamic")
    folder = export_ncnn(model, im, file, metadata, half=options.half)
    return [Exported(folder, "fp16" if options.half else "fp32")]
