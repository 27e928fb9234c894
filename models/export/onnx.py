"""ONNX export (input 'images', output 'output0', metadata in metadata_props), the opset it needs, and static INT8
quantization of the exported file with ONNX Runtime."""

import io
import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from models.backends import metadata_strings
from models.export.core import Exported, ExportOptions, quiet_tracer, report_unwritable, save_export
from models.export.nms import NMS_OUTPUTS, NMSModel
from models.yolo import is_segmentation_model
from utils.general import LOGGER, UserError, colorstr
from utils.optional import require

DEFAULT_OPSET = 17
BASE_OPSET = 11  # enough for the plain convolutional network; a module class may need more (its ``onnx_opset``)


def module_opsets(model: nn.Module) -> dict[str, int]:
    """Class name -> ``onnx_opset`` of each module class in ``model`` that declares one."""
    return {type(m).__name__: type(m).onnx_opset for m in model.modules() if hasattr(type(m), "onnx_opset")}


def required_opset(model: nn.Module) -> int:
    """The lowest ONNX opset able to express every module in ``model``."""
    return max([BASE_OPSET, *module_opsets(model).values()])


def export_onnx(model: nn.Module, im: torch.Tensor, file: str | Path, metadata: dict[str, Any],
                opset: int | None = None, dynamic: bool = False, simplify: bool = False) -> Path:
    """Export ``model`` to ONNX (input 'images', output 'output0') with metadata in metadata_props. The graph is
    built in memory and the file replaced only once the new one is complete."""
    try:
        import onnx
    except ImportError as e:
        raise UserError("ONNX export needs the onnx and onnxruntime packages (listed in requirements.txt)") from e

    prefix = colorstr("ONNX:")
    file = Path(file).with_suffix(".onnx")
    need = required_opset(model)
    opset = opset or max(DEFAULT_OPSET, need)
    if opset < need:
        used = sorted(k for k, v in module_opsets(model).items() if v > opset)
        raise UserError(f"--opset {opset} cannot express {', '.join(used)}; use --opset {need} or higher")
    LOGGER.info(f"\n{prefix} starting export with onnx {onnx.__version__} opset {opset}...")
    segmentation = is_segmentation_model(model)
    in_graph_nms = isinstance(model, NMSModel)
    # official: pred, then the prototypes for segmentation; (detections, num_dets) with NMS inside
    output_names = list(NMS_OUTPUTS) if in_graph_nms else ["output0", "output1"] if segmentation else ["output0"]
    dynamic_axes = None
    if dynamic:
        dynamic_axes = {"images": {0: "batch", 2: "height", 3: "width"}, "output0": {0: "batch", 1: "anchors"}}
        if segmentation:
            dynamic_axes["output1"] = {0: "batch", 2: "mask_height", 3: "mask_width"}
        if in_graph_nms:
            dynamic_axes.update(output0={0: "batch"}, num_dets={0: "batch"})
    buffer = io.BytesIO()  # in memory: a disk error is reported as one, not as an opset problem
    try:
        with quiet_tracer():
            torch.onnx.export(
                model,
                (im,),
                buffer,
                dynamo=False,  # the tracing exporter: no onnxscript dependency, handles every module here
                opset_version=opset,
                do_constant_folding=True,
                input_names=["images"],
                output_names=output_names,
                dynamic_axes=dynamic_axes,
            )
    except Exception as e:
        raise UserError(f"ONNX export failed at opset {opset}: {e}. Try a higher --opset (up to 20)") from e
    model_onnx = onnx.load_model_from_string(buffer.getvalue())
    onnx.checker.check_model(model_onnx)
    if simplify:
        model_onnx = _simplify(model_onnx, prefix)
    for k, v in metadata_strings(metadata).items():  # official YOLOv5's layout: it reads names with eval
        model_onnx.metadata_props.add(key=k, value=v)
    save_export(file, model_onnx.SerializeToString())
    LOGGER.info(f"{prefix} export success, saved as {file} ({file.stat().st_size / 1e6:.1f} MB)")
    return file


def _simplify(model_onnx: Any, prefix: str) -> Any:
    """``--simplify``: the graph slimmed by onnxslim (as official YOLOv5 after v7.0), else onnxsim where only that is
    installed; the model unchanged, with a warning saying what to install, when neither is or the tool fails."""
    onnx = require("onnx", "ONNX export")
    try:
        import onnxslim
    except ImportError:
        onnxslim = None
    if onnxslim is not None:
        try:
            slimmed = onnxslim.slim(model_onnx)
            onnx.checker.check_model(slimmed)
        except Exception as e:  # a tool's failure costs the simplification, not the export
            LOGGER.warning(f"{prefix} WARNING: onnxslim failed ({str(e).splitlines()[0][:200]}); keeping the graph "
                           f"as exported")
            return model_onnx
        LOGGER.info(f"{prefix} simplified with onnxslim {onnxslim.__version__}: {len(model_onnx.graph.node)} -> "
                    f"{len(slimmed.graph.node)} nodes")
        return slimmed
    try:
        import onnxsim
    except ImportError:
        LOGGER.warning(f"{prefix} WARNING: --simplify needs the onnxslim package, which is not installed (it is "
                       f"listed in requirements-extra.txt); exported without simplification")
        return model_onnx
    simplified, ok = onnxsim.simplify(model_onnx)
    if not ok:
        LOGGER.warning(f"{prefix} WARNING: onnxsim could not verify the simplified model; keeping the original")
        return model_onnx
    return simplified


def detect_decoding_nodes(graph: Any) -> list[str]:
    """Names of the nodes of an exported ONNX graph that INT8 keeps float: those of the last ``model.<i>`` layer (the
    Detect/Segment head, named ``/model.<i>/...`` by the exporter) other than its convolutions. One int8 scale over
    the decoded pixels and scores would coarsen boxes to several pixels and scores to a few levels."""
    indices = [int(m.group(1)) for n in graph.graph.node if (m := re.match(r"/model\.(\d+)/", n.name))]
    head = f"/model.{max(indices, default=-1)}/"
    return [n.name for n in graph.graph.node if n.name.startswith(head) and n.op_type != "Conv"]


ONNX_CALIB_PIXELS = 32 * 640 * 640  # ONNX INT8 calibrates on at most this many input pixels (see export_onnx_int8)


def export_onnx_int8(onnx_file: str | Path, calib: list[np.ndarray], conv_only: bool = False,
                     reduce_range: bool = True) -> Path:
    """Static INT8 quantization (QDQ, per-channel int8 weights, uint8 activations) of an exported float ONNX file:
    every operator (convolutions and also SiLU's Sigmoid/Mul, Concat, Resize, MaxPool, so that activations stay
    int8 between convolutions) except the Detect layer's decoding after its convolutions (sigmoid, grid and anchor
    arithmetic), which stays float. ``conv_only`` quantizes the convolutions alone (the earlier default, kept for
    benchmarks/bench_cpu.py --int8-variants).

    ``reduce_range``: weights in 7 bits ([-64, 64]). A CPU without VNNI (AVX2, plain AVX-512) multiplies uint8 by
    int8 in pairs summed into int16 (``vpmaddubsw``), which saturates with 8-bit weights: on an AVX2-only EPYC a
    trained yolov5n's scores moved by up to 0.58 against the same quantized model computed exactly, and it ran 1.24x
    slower than with 7-bit weights at 256 px (equal at 640). VNNI CPUs compute either exactly at the same
    speed, so one export serves every CPU. Activation ranges are the mean over the calibration images of each
    image's min and max (ORT's CalibMovingAverage) rather than the extremes over all of them: the extremes gave
    that yolov5n 0.020 below fp32's mAP50-95, the means +0.012 (README, CPU speed without bf16).
    Writes <stem>_int8.onnx."""
    quantization = require("onnxruntime.quantization", "ONNX --int8 export", package="onnxruntime")
    onnx = require("onnx", "ONNX --int8 export")
    prefix = colorstr("ONNX INT8:")
    onnx_file = Path(onnx_file)
    file = onnx_file.with_name(f"{onnx_file.stem}_int8.onnx")
    # ORT's MinMax calibrator keeps every intermediate output of every image until the end (its chunked mode,
    # CalibMaxIntermediateOutputs, drops each full chunk uncomputed in onnxruntime 1.32): bound the memory by the
    # number of images, 32 at 640x640
    limit = max(1, ONNX_CALIB_PIXELS // (calib[0].shape[-1] * calib[0].shape[-2])) if calib else 0
    if len(calib) > limit:
        LOGGER.info(f"{prefix} calibrating on {limit} of the {len(calib)} images (memory: ONNX Runtime keeps every "
                    f"intermediate output)")
        calib = calib[:limit]
    LOGGER.info(f"\n{prefix} starting static quantization with {len(calib)} calibration images...")
    graph = onnx.load(str(onnx_file))
    input_name = graph.graph.input[0].name

    class Reader(quantization.CalibrationDataReader):
        def __init__(self):
            self.batches = iter(calib)

        def get_next(self):
            x = next(self.batches, None)
            return None if x is None else {input_name: x}

    # ORT writes its steps to files: temporary names beside the output, removed whatever happens
    prepared = file.with_name(f".{file.stem}.{os.getpid()}.prep.onnx")  # shape inference and clean-up, as ORT advises
    quantized_file = file.with_name(f".{file.stem}.{os.getpid()}.quant.onnx")
    try:
        with report_unwritable(file):
            quantization.shape_inference.quant_pre_process(str(onnx_file), str(prepared))
            head_float = detect_decoding_nodes(onnx.load(str(prepared)))  # names after pre-processing's fusions
            # without the exporter's layer names the head is not found: then only the convolutions, as before
            selection = ({"nodes_to_exclude": head_float} if head_float and not conv_only else
                         {"nodes_to_quantize": [n.name for n in graph.graph.node if n.op_type == "Conv"]})
            quantization.quantize_static(
                str(prepared), str(quantized_file), Reader(),
                quant_format=quantization.QuantFormat.QDQ,
                activation_type=quantization.QuantType.QUInt8,
                weight_type=quantization.QuantType.QInt8,
                per_channel=True,
                reduce_range=reduce_range,
                # conv-only quantization left a float SiLU between every pair of int8 convolutions (dequantize,
                # sigmoid, mul, quantize), measured slower (README, CPU speed without bf16)
                **selection,
                calibrate_method=quantization.CalibrationMethod.MinMax,
                extra_options={"CalibMovingAverage": True},
            )
            quantized = onnx.load(str(quantized_file))
    finally:
        prepared.unlink(missing_ok=True)
        quantized_file.unlink(missing_ok=True)
    del quantized.metadata_props[:]
    for entry in graph.metadata_props:
        value = json.dumps("int8") if entry.key == "precision" else entry.value
        quantized.metadata_props.add(key=entry.key, value=value)
    save_export(file, quantized.SerializeToString())
    LOGGER.info(f"{prefix} export success, saved as {file} ({file.stat().st_size / 1e6:.1f} MB)")
    return file


def onnx_exports(model: nn.Module, im: torch.Tensor, file: Path, metadata: dict[str, Any],
                 options: ExportOptions) -> list[Exported]:
    """``--include onnx``: <stem>.onnx in the input's precision, and <stem>_int8.onnx with calibration images."""
    onnx_file = export_onnx(model, im, file, metadata, opset=options.opset, dynamic=options.dynamic,
                            simplify=options.simplify)
    exported = [Exported(onnx_file, metadata["precision"])]
    if options.calib is not None and isinstance(model, NMSModel):
        LOGGER.warning("WARNING: --int8 ONNX is not made for a model with NMS inside (--nms); skipped")
    elif options.calib is not None:
        exported.append(Exported(export_onnx_int8(onnx_file, options.calib), "int8"))
    return exported
