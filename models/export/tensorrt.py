"""TensorRT export: a fixed-size engine built from a static ONNX export, with the json metadata in front of it.
Needs CUDA and the tensorrt package."""

import json
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from models.export.core import Exported, ExportOptions, save_export
from models.export.onnx import export_onnx
from utils.general import LOGGER, UserError, colorstr
from utils.optional import require


def export_engine(model: nn.Module, im: torch.Tensor, file: str | Path, metadata: dict[str, Any],
                  half: bool = False, workspace_gb: int = 4) -> Path:
    """Build a TensorRT engine (via a static ONNX export) into <stem>.engine: a 4-byte little-endian length and the
    json metadata, then the serialized engine. Needs CUDA and the tensorrt package."""
    if im.device.type != "cuda":
        raise UserError("TensorRT export needs a CUDA device: pass --device 0")
    trt = require("tensorrt", "TensorRT export")
    prefix = colorstr("TensorRT:")
    file = Path(file)
    onnx_file = export_onnx(model, im, file.with_name(f"{file.stem}_trt"), metadata)
    try:
        engine = _build_engine(trt, onnx_file, half, workspace_gb, prefix)
    finally:
        onnx_file.unlink(missing_ok=True)
    meta = json.dumps({**metadata, "precision": "fp16" if half else "fp32"}).encode()
    file = save_export(file.with_suffix(".engine"), len(meta).to_bytes(4, byteorder="little") + meta + engine)
    LOGGER.info(f"{prefix} export success, saved as {file} ({file.stat().st_size / 1e6:.1f} MB)")
    return file


def _build_engine(trt, onnx_file: Path, half: bool, workspace_gb: int, prefix: str) -> bytes:
    """The serialized TensorRT engine built from ``onnx_file``."""
    LOGGER.info(f"\n{prefix} starting export with tensorrt {trt.__version__}...")
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_file)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise UserError(f"TensorRT could not parse {onnx_file}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_gb << 30)
    if half and builder.platform_has_fast_fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    engine = builder.build_serialized_network(network, config)
    if engine is None:
        raise UserError("TensorRT could not build an engine for this model (see the TensorRT log above)")
    return bytes(engine)


def engine_exports(model: nn.Module, im: torch.Tensor, file: Path, metadata: dict[str, Any],
                   options: ExportOptions) -> list[Exported]:
    """``--include engine``: <stem>.engine, fp16 with ``half``."""
    return [Exported(export_engine(model, im, file, metadata, half=options.half), "fp16" if options.half else "fp32")]
