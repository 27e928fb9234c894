"""The post-export check: an exported file, run through the backend detect.py and val.py use, against PyTorch's
outputs on the same input."""

from pathlib import Path

import torch
import torch.nn as nn

from models.backends import DetectMultiBackend
from utils.general import LOGGER, UserError

CHECK_ATOL = 1e-3  # outputs are in pixels; float32 rounding keeps exported models well inside this
# max abs output difference (pixels) above which the post-export check warns, by precision; INT8 is only reported
# (its accuracy is what val.py / benchmarks/formats.py measure)
PRECISION_ATOL = {"fp32": CHECK_ATOL, "fp16": 1.0, "bf16": 8.0, "int8": None}


def run_exported(file: str | Path, im: torch.Tensor) -> torch.Tensor:
    """Outputs of an exported file on ``im``, through the backend detect.py and val.py use."""
    with torch.no_grad():
        return DetectMultiBackend(file, device=im.device)(im).cpu()


def check_export(model: nn.Module, file: str | Path, im: torch.Tensor,
                 atol: float | None = CHECK_ATOL) -> float | None:
    """Max abs difference between PyTorch's and the exported file's outputs on ``im``; logs it, warns above atol
    (atol None: report only). None where the file could not be run here (a missing package, float16 kernels)."""
    with torch.no_grad():
        expected = model(im)
    expected = (expected[0] if isinstance(expected, (list, tuple)) else expected).float().cpu()
    try:
        got = run_exported(file, im).float()
    except UserError as e:
        if "package" not in str(e):
            raise
        LOGGER.warning(f"WARNING: {file} not checked against PyTorch: {e}")
        return None
    except Exception as e:  # ONNX Runtime's CPU provider lacks some float16 kernels; float32 failures stay loud
        if im.dtype != torch.float16:
            raise
        LOGGER.warning(f"WARNING: {file} (float16) could not be run for the check: {e}")
        return None
    if got.shape != expected.shape:
        raise RuntimeError(f"{file}: output shape {tuple(got.shape)} differs from PyTorch's {tuple(expected.shape)}")
    diff = (got - expected).abs().max().item()
    msg = f"{Path(file).name}: max abs difference to PyTorch {diff:.2e} on input {tuple(im.shape)}"
    if atol is not None and diff > atol:
        LOGGER.warning(f"WARNING: {msg} exceeds {atol:g}")
    else:
        LOGGER.info(f"check OK, {msg}")
    return diff
