"""Export of trained models to deployment formats (TorchScript, ONNX, OpenVINO, TensorRT), the check of each
exported file against PyTorch, and the cached conversions behind detect.py / val.py ``--backend``.

One file per format family (torchscript.py, onnx.py, openvino.py, tensorrt.py); ``EXPORTERS`` (formats.py) maps
each ``--include`` name to its exporter, so a new format is a new file and one table row. core.py holds what the
exporters share, pipeline.py the orchestration (``export_weights`` is ``export.run``), check.py the comparison
with PyTorch, calibration.py the INT8 calibration images and backend_cache.py the ``--backend`` conversions.
The metadata an exported file carries is defined, written and read in models/backends.py, next to its reader;
this package imports models.backends and never the other way round.
"""

from models.export.backend_cache import backend_weights, file_hash
from models.export.calibration import DEFAULT_CALIB, calibration_images
from models.export.check import CHECK_ATOL, PRECISION_ATOL, check_export, run_exported
from models.export.core import Exported, Exporter, ExportOptions, prepare_model
from models.export.formats import EXPORTERS, FORMATS, check_formats
from models.export.onnx import BASE_OPSET, DEFAULT_OPSET, export_onnx, export_onnx_int8, module_opsets, required_opset
from models.export.openvino import export_openvino
from models.export.pipeline import MAX_BATCH_SIZE, export_model, export_weights
from models.export.tensorrt import export_engine
from models.export.torchscript import export_torchscript

__all__ = [
    "BASE_OPSET", "CHECK_ATOL", "DEFAULT_CALIB", "DEFAULT_OPSET", "EXPORTERS", "FORMATS", "MAX_BATCH_SIZE",
    "PRECISION_ATOL", "ExportOptions", "Exported", "Exporter", "backend_weights", "calibration_images",
    "check_export", "check_formats", "export_engine", "export_model", "export_onnx", "export_onnx_int8",
    "export_openvino", "export_torchscript", "export_weights", "file_hash", "module_opsets", "prepare_model",
    "required_opset", "run_exported",
]
