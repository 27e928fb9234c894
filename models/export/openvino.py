"""OpenVINO export into ``<stem>_openvino_model/`` (fp32; with ``--half`` fp16 weights and bf16 or fp16 execution
where this CPU computes in it, else fp32), or with calibration images NNCF post-training INT8 into
``<stem>_int8_openvino_model/``."""

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import yaml

from models.backends import OPENVINO_METADATA
from models.export.core import Exported, ExportOptions, quiet_tracer, replaced_folder
from models.export.nms import NMSModel
from models.export.onnx import export_onnx
from utils.amp import cpu_has_native_bf16
from utils.general import LOGGER, UserError, colorstr
from utils.optional import import_nncf, import_openvino


def _detect_head_ops(ov_model: Any, model: nn.Module) -> list[str]:
    """Names of the OpenVINO ops of the Detect layer other than its convolutions: the box decoding arithmetic, which
    INT8 would coarsen to a few pixels, is kept out of quantization."""
    idx = len(model.model) - 1
    keys = (f"model.{idx}/", f"model.{idx}.")
    return [op.get_friendly_name() for op in ov_model.get_ops()
            if any(k in op.get_friendly_name() for k in keys)
            and op.get_type_name() not in ("Convolution", "Constant", "Parameter", "Result", "FakeQuantize")]


def quantize_openvino(ov_model: Any, model: nn.Module, calib: list[np.ndarray], preset: str = "mixed",
                      head_float: bool = True) -> Any:
    """NNCF post-training INT8 of a converted ``ov_model`` (of ``model``) calibrated on ``calib`` images: ``preset``
    'mixed' (symmetric weights, asymmetric activations) or 'performance' (both symmetric), the Detect decoding kept
    float with ``head_float``. Defaults kept by measurement (benchmarks/bench_cpu.py --int8-variants, yolov5s 640): the
    preset and quantizing the head change latency by no more than the run-to-run spread (int8 convolutions are
    85-91% of the kernel time), and a float decoding keeps box coordinates off a coarse int8 grid."""
    nncf = import_nncf()
    presets = {"mixed": nncf.QuantizationPreset.MIXED, "performance": nncf.QuantizationPreset.PERFORMANCE}
    ignored = nncf.IgnoredScope(names=_detect_head_ops(ov_model, model) if head_float else [], validate=False)
    return nncf.quantize(ov_model, nncf.Dataset(calib), preset=presets[preset], subset_size=len(calib),
                         ignored_scope=ignored)


def half_precision(capabilities: list[str], native_bf16: bool | None = None) -> str:
    """What ``--half`` computes in on this CPU: 'bf16' where it has bf16 arithmetic (AVX512-BF16 or AMX: OpenVINO's
    OPTIMIZATION_CAPABILITIES lists BF16 and oneDNN agrees, so a ``ONEDNN_MAX_CPU_ISA`` cap counts), 'fp16' where it
    has fp16 arithmetic (AVX512-FP16 / AMX-FP16: FP16 listed), else 'fp32': on an AVX2 or plain AVX-512 CPU a "half"
    model would run in f32 anyway, only from rounded weights. ``native_bf16`` overrides the oneDNN query (tests)."""
    native = cpu_has_native_bf16() if native_bf16 is None else native_bf16
    if "BF16" in capabilities and native:
        return "bf16"
    return "fp16" if "FP16" in capabilities else "fp32"


def openvino_precision(half: bool = False, int8: bool = False, capabilities: list[str] | None = None) -> str:
    """The precision an OpenVINO export computes in: 'int8', ``half``'s choice for this CPU (``capabilities``: its
    OPTIMIZATION_CAPABILITIES, asked from OpenVINO when None) or 'fp32'."""
    if int8:
        return "int8"
    if not half:
        return "fp32"
    if capabilities is None:
        capabilities = list(import_openvino("OpenVINO export").Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    precision = half_precision(capabilities)
    if precision == "fp32":
        LOGGER.info(f"OpenVINO --half: this CPU has no bf16 or fp16 arithmetic (OpenVINO lists {capabilities}; "
                    f"bf16 needs avx512_bf16/amx_bf16, fp16 avx512_fp16/amx_fp16): exporting fp32, which runs as fast "
                    f"here. Export on the CPU that will run the model")
    return precision


def export_openvino(model: nn.Module, im: torch.Tensor, file: str | Path, metadata: dict[str, Any],
                    half: bool = False, calib: list[np.ndarray] | None = None, precision: str | None = None) -> Path:
    """Convert ``model`` with OpenVINO into ``<stem>_openvino_model/`` (``<stem>_int8_openvino_model/`` with
    ``calib`` images: NNCF post-training quantization): <stem>.xml, <stem>.bin and metadata.yaml. ``half`` stores
    fp16 weights and asks for bf16 (or fp16) execution where this CPU has it, else exports fp32
    (``openvino_precision``; ``precision`` when the caller resolved it). The folder is built beside the previous
    one and swapped in when complete."""
    ov = import_openvino("OpenVINO export")
    if isinstance(model, NMSModel) and calib is not None:
        raise UserError("--int8 and --nms cannot be combined for OpenVINO; export one or the other")
    int8 = calib is not None
    prefix = colorstr("OpenVINO:")
    file = Path(file)
    folder = file.with_name(f"{file.stem}_{'int8_' if int8 else ''}openvino_model")
    LOGGER.info(f"\n{prefix} starting export with openvino {ov.__version__}...")
    if isinstance(model, NMSModel):  # OpenVINO converts the ONNX NonMaxSuppression graph, not the traced op
        with tempfile.TemporaryDirectory() as tmp:
            onnx_file = export_onnx(model, im, Path(tmp) / file.name, metadata)
            ov_model = ov.convert_model(str(onnx_file))
    else:
        with quiet_tracer():
            ov_model = ov.convert_model(model, example_input=im, input=[tuple(im.shape)])
    precision = precision or openvino_precision(half, int8)
    half = precision in ("bf16", "fp16")  # fp16 weights only where the CPU computes in half precision
    if int8:
        LOGGER.info(f"{prefix} NNCF post-training quantization with {len(calib)} calibration images...")
        ov_model = quantize_openvino(ov_model, model, calib)
    with replaced_folder(folder) as work:  # the previous export stays in place until this one is complete
        try:
            ov.save_model(ov_model, str(work / f"{file.stem}.xml"), compress_to_fp16=half)
        except RuntimeError as e:  # OpenVINO's stream errors (a full disk) carry no errno
            raise UserError(f"cannot write {folder}: OpenVINO could not save the model ({str(e).splitlines()[0]}); "
                            f"{'the previous folder is intact' if folder.exists() else 'nothing was written'}") from e
        (work / OPENVINO_METADATA).write_text(yaml.safe_dump({**metadata, "precision": precision}, sort_keys=False))
    size = sum(f.stat().st_size for f in folder.iterdir()) / 1e6
    LOGGER.info(f"{prefix} export success ({precision}), saved as {folder} ({size:.1f} MB)")
    return folder


def openvino_exports(model: nn.Module, im: torch.Tensor, file: Path, metadata: dict[str, Any],
                     options: ExportOptions) -> list[Exported]:
    """``--include openvino``: converted from float32 whatever the input's dtype (OpenVINO picks its own)."""
    precision = openvino_precision(options.half, options.calib is not None)
    folder = export_openvino(model, im.float(), file, metadata, half=options.half, calib=options.calib,
                             precision=precision)
    return [Exported(folder, precision)]
