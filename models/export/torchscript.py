"""TorchScript export: a traced model with the json metadata stored as an extra file."""

import io
import json
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from models.backends import EXPORT_METADATA_KEY
from models.export.core import Exported, ExportOptions, quiet_tracer, save_export
from utils.general import LOGGER, colorstr


def export_torchscript(model: nn.Module, im: torch.Tensor, file: str | Path, metadata: dict[str, Any]) -> Path:
    """Trace ``model`` on ``im`` and save it with the json metadata as an extra file (the previous file is replaced
    only once the new one is complete). Returns the path."""
    prefix = colorstr("TorchScript:")
    file = Path(file).with_suffix(".torchscript")
    LOGGER.info(f"\n{prefix} starting export with torch {torch.__version__}...")
    with quiet_tracer():
        traced = torch.jit.trace(model, im, strict=False, check_trace=False)  # check_export compares outputs
    buffer = io.BytesIO()  # torch's own file writer aborts the interpreter on a full disk: Python writes the file
    torch.jit.save(traced, buffer, _extra_files={EXPORT_METADATA_KEY: json.dumps(metadata)})
    save_export(file, buffer.getvalue())
    LOGGER.info(f"{prefix} export success, saved as {file} ({file.stat().st_size / 1e6:.1f} MB)")
    return file


def torchscript_exports(model: nn.Module, im: torch.Tensor, file: Path, metadata: dict[str, Any],
                        options: ExportOptions) -> list[Exported]:
    """``--include torchscript``: <stem>.torchscript, in the input's precision."""
    return [Exported(export_torchscript(model, im, file, metadata), metadata["precision"])]
