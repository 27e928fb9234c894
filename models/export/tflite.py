"""TFLite export with litert-torch (torch -> LiteRT directly, no TensorFlow): ``<stem>_float32.tflite``,
``<stem>_float16.tflite`` (``--half``: float16 weights, float32 compute) and ``<stem>_int8.tflite`` (``--int8``:
static int8 weights and activations calibrated on ``--data`` images, the box decoding kept float), each with the
metadata as meta.txt in a zip archive appended to the file (where official YOLOv5's reader looks).

Converter choice (measured, see README "Edge formats"): litert-torch converts the project's models directly from
``torch.export``; the other route, ONNX -> onnx2tf, needs TensorFlow plus numpy 1.26 and onnx 1.19, which would
replace requirements.txt's versions. litert-torch itself brings jax, transformers and older pydantic /
typing_extensions, so it may live in its own virtual environment: the conversion runs in a child process
(litert_worker.py) with the interpreter of ``YOLOV5_LITERT_PYTHON``, else this one if it has litert-torch, else
``.venv-litert/bin/python`` in the repository. Running the exported file needs only ``ai-edge-litert``.
"""

import importlib.util
import io
import json
import os
import re
import subprocess
import sys
import tempfile
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from models.edge_runtimes import TFLITE_METADATA
from models.export.core import Exported, ExportOptions, quiet_tracer, save_export
from models.export.deploy import unsupported_layer_error
from utils.general import LOGGER, ROOT, UserError, colorstr

LITERT_PYTHON_ENV = "YOLOV5_LITERT_PYTHON"
EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Unsupported): ")
LITERT_VENV = ROOT / ".venv-litert"
LITERT_REQUIREMENTS = "requirements-tflite.txt"
WORKER = Path(__file__).with_name("litert_worker.py")
# the converter's dependencies stay quiet and offline: no Hugging Face hub telemetry or downloads, TF logs errors only
CONVERTER_ENV = {"TF_CPP_MIN_LOG_LEVEL": "2", "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_OFFLINE": "1",
                 "DO_NOT_TRACK": "1"}
CONVERT_TIMEOUT_S = 1800  # yolov5n at 640 converts in ~30 s, int8 calibration of 300 images takes minutes


def litert_python() -> str:
    """The interpreter that runs the litert-torch conversion; a UserError saying how to install it if none has it."""
    chosen = os.environ.get(LITERT_PYTHON_ENV)
    if chosen:
        return chosen
    if importlib.util.find_spec("litert_torch") is not None:
        return sys.executable
    venv = LITERT_VENV / "bin" / "python"
    if venv.is_file():
        return str(venv)
    raise UserError(f"--include tflite needs the litert-torch converter, which is not installed: it goes in a "
                    f"virtual environment of its own, .venv-litert (with the system site packages), from "
                    f"{LITERT_REQUIREMENTS} (here it would downgrade pydantic); or set {LITERT_PYTHON_ENV}")


class Predictions(nn.Module):
    """The prepared model returning its prediction tensor alone (torch.export wants tensors, not tuples)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.model(x)
        return y[0] if isinstance(y, (list, tuple)) else y


def exported_program(model: nn.Module, im: torch.Tensor, runtime: str) -> torch.export.ExportedProgram:
    """``torch.export`` of the model's prediction tensor on ``im``; a failure to capture it is one UserError line."""
    try:
        with quiet_tracer(), torch.no_grad():
            return torch.export.export(Predictions(model.float()).eval(), (im,))
    except Exception as e:  # torch.export's errors (dynamo, guards, data-dependent shapes) share no narrower base
        lines = [x for x in str(e).splitlines() if x.strip()] or [type(e).__name__]
        raise UserError(f"--include {runtime}: torch.export could not capture the model: {lines[0][:300]}") from e


def with_metadata(data: bytes, metadata: dict[str, Any]) -> bytes:
    """``data`` with a zip archive holding meta.txt (json metadata) appended; interpreters ignore trailing bytes."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr(TFLITE_METADATA, json.dumps(metadata))
    return data + buffer.getvalue()


def _converter_error(model: nn.Module, stderr: str) -> UserError:
    """One line from the converter's failure: the module and operator where it names a TFLite op it cannot
    legalize, else its last line."""
    for line in stderr.splitlines():
        if "failed to legalize operation" in line:
            op = line.split("failed to legalize operation", 1)[1].split("'")[1]
            return unsupported_layer_error(model, "tflite", op.removeprefix("tfl.").removeprefix("stablehlo."))
    lines = [line.strip() for line in stderr.strip().splitlines() if line.strip()]
    raised = [line for line in lines if EXCEPTION_LINE.match(line)]  # the exception, not the advice printed after it
    last = (raised or lines or ["no output"])[-1]
    return UserError(f"--include tflite: the litert-torch conversion failed: {last[:300]}")


def export_tflite(model: nn.Module, im: torch.Tensor, file: str | Path, metadata: dict[str, Any],
                  mode: str = "fp32", calib: list[np.ndarray] | None = None) -> Path:
    """Convert ``model`` to ``<stem>_{float32,float16,int8}.tflite`` (``mode`` fp32, fp16 or int8 with ``calib``)."""
    python = litert_python()
    prefix = colorstr("TFLite:")
    file = Path(file)
    out = file.with_name(f"{file.stem}_{ {'fp32': 'float32', 'fp16': 'float16', 'int8': 'int8'}[mode] }.tflite")
    LOGGER.info(f"\n{prefix} starting {mode} export with litert-torch ({python})...")
    # the box decoding (Detect's ops, named <Class>_<index> by litert-torch) and the output stay float32: one int8
    # scale over pixels (0-640) and scores (0-1) would round every score to 0 or 1
    head = "serving_default_output"
    if hasattr(model, "model"):
        head = f"{type(model.model[-1]).__name__}_{len(model.model) - 1}\\b|{head}"
    with tempfile.TemporaryDirectory(prefix="litert-") as tmp:
        tmp = Path(tmp)
        program = exported_program(model, im[:1].float(), "tflite")
        with warnings.catch_warnings():  # torch's note on tensors sharing storage: all are on the CPU here
            warnings.filterwarnings("ignore", message="No complete tensor found")
            torch.export.save(program, str(tmp / "model.pt2"))
        args = [python, str(WORKER), str(tmp / "model.pt2"), str(tmp / "model.tflite"), mode]
        if mode == "int8":
            images = np.lib.format.open_memmap(tmp / "calib.npy", mode="w+", dtype=np.float32,
                                               shape=(len(calib), *calib[0].shape[1:]))
            for i, x in enumerate(calib):
                images[i] = x[0]
            images.flush()
            del images
            args += [str(tmp / "calib.npy"), head]
        try:
            run = subprocess.run(args, capture_output=True, text=True, timeout=CONVERT_TIMEOUT_S,
                                 env={**os.environ, **CONVERTER_ENV})
        except subprocess.TimeoutExpired as e:
            raise UserError(f"--include tflite: the conversion did not finish in {CONVERT_TIMEOUT_S} s") from e
        result = tmp / "model.tflite"
        if run.returncode != 0 or not result.is_file():
            raise _converter_error(model, run.stderr)
        save_export(out, with_metadata(result.read_bytes(), {**metadata, "precision": mode}))
    LOGGER.info(f"{prefix} export success ({mode}), saved as {out} ({out.stat().st_size / 1e6:.1f} MB)")
    return out


def tflite_exports(model: nn.Module, im: torch.Tensor, file: Path, metadata: dict[str, Any],
                   options: ExportOptions) -> list[Exported]:
    """``--include tflite``: float32, float16 with ``--half``, and int8 with calibration images (``--int8``)."""
    if options.dynamic:
        raise UserError("--include tflite converts one fixed --imgsz; drop --dynamic")
    modes = ["fp16" if options.half else "fp32"] + (["int8"] if options.calib is not None else [])
    return [Exported(export_tflite(model, im, file, metadata, mode, options.calib), mode) for mode in modes]

