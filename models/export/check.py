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


def run_exported(file: str | Path, im: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Outputs of an exported file on ``im``, through the backend detect.py and val.py use (segmentation models:
    (pred, proto))."""
    with torch.no_grad():
        y = DetectMultiBackend(file, device=im.device)(im)
    return tuple(t.cpu() for t in y) if isinstance(y, tuple) else y.cpu()


def check_export(model: nn.Module, file: str | Path, im: torch.Tensor,
                 atol: float | None = CHECK_ATOL) -> float | None:
    """Max abs difference between PyTorch's and the exported file's outputs on ``im``; logs it, warns above atol
    (atol None: report only). None where the file could not be run here (a missing package, float16 kernels)."""
    with torch.no_grad():
        expected = model(im)
    # segmentation: (pred, proto) both compared; detection: pred
    segmentation = isinstance(expected, (list, tuple)) and len(expected) == 2 and getattr(expected[1], "ndim", 0) == 4
    expected = [t.float().cpu() for t in (expected if segmentation else [
        expected[0] if isinstance(expected, (list, tuple)) else expected])]
    try:
        got = run_exported(file, im)
        got = [t.float() for t in (got if isinstance(got, tuple) else [got])]
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
    shapes = [tuple(t.shape) for t in got], [tuple(t.shape) for t in expected]
    if shapes[0] != shapes[1]:
        raise RuntimeError(f"{file}: output shape(s) {shapes[0]} differ from PyTorch's {shapes[1]}")
    diff = max((g - e).abs().max().item() for g, e in zip(got, expected))
    msg = f"{Path(file).name}: max abs difference to PyTorch {diff:.2e} on input {tuple(im.shape)}"
    if atol is not None and diff > atol:
        LOGGER.warning(f"WARNING: {msg} exceeds {atol:g}")
    else:
        LOGGER.info(f"check OK, {msg}")
    return diff
