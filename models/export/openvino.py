"""OpenVINO export into ``<stem>_openvino_model/`` (fp32, or fp16 weights with bf16 execution), or with calibration
images NNCF post-training INT8 into ``<stem>_int8_openvino_model/``."""

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


def openvino_precision(half: bool = False, int8: bool = False) -> str:
    """The precision an OpenVINO export computes in: 'int8', 'bf16' (``half``) or 'fp32'."""
    return "int8" if int8 else "bf16" if half else "fp32"


def export_openvino(model: nn.Module, im: torch.Tensor, file: str | Path, metadata: dict[str, Any],
                    half: bool = False, calib: list[np.ndarray] | None = None) -> Path:
    """Convert ``model`` with OpenVINO into ``<stem>_openvino_model/`` (``<stem>_int8_openvino_model/`` with
    ``calib`` images: NNCF post-training quantization): <stem>.xml, <stem>.bin and metadata.yaml. ``half`` stores
    fp16 weights and asks for bf16 execution (fp16 on CPUs without bf16). The folder is built beside the previous
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
    precision = openvino_precision(half, int8)
    if int8:
        nncf = import_nncf()
        LOGGER.info(f"{prefix} NNCF post-training quantization with {len(calib)} calibration images...")
        ov_model = nncf.quantize(
            ov_model,
            nncf.Dataset(calib),
            preset=nncf.QuantizationPreset.MIXED,
            subset_size=len(calib),
            ignored_scope=nncf.IgnoredScope(names=_detect_head_ops(ov_model, model), validate=False),
        )
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
    folder = export_openvino(model, im.float(), file, metadata, half=options.half, calib=options.calib)
    return [Exported(folder, openvino_precision(options.half, options.calib is not None))]
