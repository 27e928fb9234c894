"""Export orchestration: a torch model to the requested formats with a check of each file against PyTorch
(``export_model``), and a weights file to them with the flags of export.py (``export_weights``, which is
``export.run``)."""

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from models.backends import (
    checkpoint_dataset,
    default_dataset,
    export_metadata,
    fetch_weights,
    names_from_data,
    newest_trained_weights,
)
from models.experimental import attempt_load
from models.export.calibration import DEFAULT_CALIB, calibration_images
from models.export.check import PRECISION_ATOL, check_export
from models.export.core import Exported, ExportOptions, prepare_model
from models.export.formats import EXPORTERS, FORMATS, check_formats
from models.export.nms import NMSModel
from models.yolo import check_activation_size, is_segmentation_model
from utils.general import LOGGER, UserError, check_img_size, colorstr, names_dict
from utils.torch_utils import grid_stride, select_device

CPU_HALF_FORMATS = {"openvino", "ncnn", "tflite", "mnn", "coreml"}  # --half without CUDA: fp16/bf16 weights
INT8_FORMATS = {"onnx", "openvino", "tflite"}
NMS_FORMATS = ("onnx", "openvino")  # the formats --nms puts NMS inside
MAX_BATCH_SIZE = 1024  # the export input is a real tensor: batch 0 crashes the tracer (SIGFPE), huge ones the RAM


def export_model(model: nn.Module, im: torch.Tensor, file: str | Path, include: Iterable[str] = FORMATS[:2],
                 opset: int | None = None, dynamic: bool = False, simplify: bool = False, inplace: bool = False,
                 check: bool = True, half: bool = False, calib: list[np.ndarray] | None = None,
                 nms: dict[str, Any] | None = None) -> tuple[list[Path], dict[Path, float | None]]:
    """Export a torch model (fused and prepared here) to each format in ``include`` next to ``file``.

    im is the example input (N, 3, H, W). ``half``: bf16 OpenVINO (float16 ``im`` makes float16 TorchScript/ONNX,
    and ``half`` an fp16 engine); ``calib``: INT8 calibration images, which add <stem>_int8.onnx and make the OpenVINO
    model INT8. Returns (list of exported paths, {path: max abs diff to PyTorch or None}).
    """
    include = check_formats(include)
    model = prepare_model(model, inplace=inplace)
    if im.dtype == torch.float16:
        model = model.half()
    with torch.no_grad():
        model(im)  # a dry run builds anything lazily initialised (Detect grids) before tracing
    names = getattr(model, "names", None) or {i: f"class{i}" for i in range(model.model[-1].nc)}
    model.names = names
    fp = "fp16" if im.dtype == torch.float16 else "fp32"
    metadata = export_metadata(model, im.shape[2:], dynamic=dynamic, precision=fp, batch_size=im.shape[0])
    options = ExportOptions(opset=opset, dynamic=dynamic, simplify=simplify, half=half, calib=calib, nms=nms)
    if nms and is_segmentation_model(model):
        raise UserError("--nms puts detection NMS inside the graph; segmentation models export without it "
                        "(segment/predict.py and segment/val.py run NMS and the masks)")
    nms_model = NMSModel(model, **nms) if nms else None
    if nms and set(include) - set(NMS_FORMATS):
        LOGGER.warning(f"WARNING: --nms applies to {' and '.join(NMS_FORMATS)}; "
                       f"{', '.join(sorted(set(include) - set(NMS_FORMATS)))} exported without NMS inside")
    exported: list[Exported] = []
    in_graph: set[Path] = set()
    for name, exporter in EXPORTERS.items():  # table order, whatever the order of ``include``
        if name in include:
            if nms_model is not None and name in NMS_FORMATS:
                files = exporter(nms_model, im, Path(file), {**metadata, "nms": nms_model.settings()}, options)
                in_graph.update(f.path for f in files)
            else:
                files = exporter(model, im, Path(file), metadata, options)
            exported += files
    diffs = {}
    if check:
        for f, precision in exported:
            reference = nms_model if f in in_graph else model
            diffs[f] = check_export(reference, f, im, atol=PRECISION_ATOL[precision])
            if dynamic and f.suffix == ".onnx":  # a second batch size and shape exercises the dynamic axes
                h, w = im.shape[2:]
                other = torch.rand(im.shape[0] + 1, 3, h + 32, w + 64, dtype=im.dtype, device=im.device)
                diffs[f] = max(diffs[f] or 0.0, check_export(model, f, other, atol=PRECISION_ATOL[precision]) or 0.0)
    return [f for f, _ in exported], diffs


def export_weights(
    weights: str | Path | None = None,
    imgsz: int | Sequence[int] = (640, 640),
    batch_size: int = 1,
    device: str = "cpu",
    include: Iterable[str] = ("torchscript", "onnx"),
    half: bool = False,
    inplace: bool = False,
    dynamic: bool = False,
    simplify: bool = False,
    opset: int | None = None,
    int8: bool = False,
    data: str | Path | None = None,
    calib: int = DEFAULT_CALIB,
    nms: dict[str, Any] | None = None,
) -> list[str]:
    """Export ``weights`` to the formats in ``include``; returns the list of exported files. ``nms``: NMS inside
    the ONNX / OpenVINO graph with these NMSModel settings."""
    include = check_formats(include)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or not 1 <= batch_size <= MAX_BATCH_SIZE:
        raise UserError(f"--batch-size {batch_size}: must be a whole number from 1 to {MAX_BATCH_SIZE}")
    weights = Path(fetch_weights(weights) or newest_trained_weights())
    if not weights.is_file():
        raise UserError(f"--weights {weights}: file not found")
    imgsz = [imgsz] * 2 if isinstance(imgsz, int) else list(imgsz) * (2 if len(imgsz) == 1 else 1)
    device = select_device(device)
    cuda_half = half and device.type == "cuda"
    if half and not cuda_half and set(include) - CPU_HALF_FORMATS:
        raise UserError(f"--half for torchscript, onnx and engine needs a CUDA device (--device 0); on CPU --half "
                        f"applies to --include {', '.join(sorted(CPU_HALF_FORMATS))} only")
    if half and dynamic:
        raise UserError("--half and --dynamic cannot be combined; export one or the other")
    if int8 and not set(include) & INT8_FORMATS:
        raise UserError(f"--int8 applies to --include {', '.join(sorted(INT8_FORMATS))}")
    data_given = bool(data)
    if int8 and not data:
        data = default_dataset(weights, fallback=None)
    if int8 and not data:
        raise UserError("--int8 needs --data dataset.yaml: calibration images come from its train split")
    if int8 and dynamic:
        raise UserError("--int8 and --dynamic cannot be combined; INT8 models are calibrated at one --imgsz")
    if "engine" in include and dynamic:
        raise UserError("--include engine builds a fixed-size engine; drop --dynamic")
    model = attempt_load(weights, device=device, inplace=True, fuse=True)
    if not data_given:  # metadata class names from the dataset the weights record, where their own are placeholders
        model.names = names_from_data(names_dict(model.names), checkpoint_dataset(weights)) or model.names
    gs = grid_stride(model)
    imgsz = check_img_size(imgsz, s=gs)
    check_activation_size(model, imgsz)
    calib_images = calibration_images(data, imgsz, stride=gs, n=calib) if int8 else None
    torch.manual_seed(0)
    im = torch.rand(batch_size, 3, *imgsz, device=device)  # random pixels exercise every output channel
    if cuda_half and set(include) & {"torchscript", "onnx"}:
        im, model = im.half(), model.half()
    LOGGER.info(f"\n{colorstr('PyTorch:')} starting from {weights} with input {tuple(im.shape)}")
    files, _ = export_model(model, im, weights, include=include, opset=opset, dynamic=dynamic,
                            simplify=simplify, inplace=inplace, half=half, calib=calib_images, nms=nms)
    seg = is_segmentation_model(model)  # official names the task's own scripts
    predict, val = ("segment/predict.py", "segment/val.py") if seg else ("detect.py", "val.py")
    LOGGER.info(
        f"\nExport complete: {', '.join(str(f) for f in files)}\n"
        f"{'Predict:  ' if seg else 'Detect:   '}python {predict} --weights {files[-1]}" +
        ("" if dynamic else f" --imgsz {imgsz[0]} {imgsz[1]}") +
        f"\nValidate: python {val} --weights {files[-1]}" + ("" if dynamic else f" --imgsz {max(imgsz)}")
    )
    return [str(f) for f in files]
