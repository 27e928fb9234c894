"""The export formats: each ``--include`` name and the exporter that writes it, in the order files are written.
A new format is a new file in models/export/ with an exporter of the ``Exporter`` signature (core.py) and a row
here."""

from collections.abc import Iterable

from models.export.core import Exporter
from models.export.coreml import coreml_exports
from models.export.mnn import mnn_exports
from models.export.ncnn import ncnn_exports
from models.export.official import official_exports
from models.export.onnx import onnx_exports
from models.export.openvino import openvino_exports
from models.export.tensorrt import engine_exports
from models.export.tflite import tflite_exports
from models.export.torchscript import torchscript_exports
from models.export.unavailable import UNAVAILABLE_EXPORTERS
from utils.general import UserError

EXPORTERS: dict[str, Exporter] = {
    "torchscript": torchscript_exports,
    "onnx": onnx_exports,
    "openvino": openvino_exports,
    "engine": engine_exports,
    "ncnn": ncnn_exports,
    "tflite": tflite_exports,
    "mnn": mnn_exports,
    "coreml": coreml_exports,
    **UNAVAILABLE_EXPORTERS,  # saved_model, pb, tfjs, edgetpu, paddle: each says what it lacks
    "official": official_exports,
}
FORMATS = tuple(EXPORTERS)


def check_formats(include: Iterable[str]) -> list[str]:
    """Lower-cased ``include`` after checking every entry is a known format."""
    include = [x.lower() for x in include]
    unknown = [x for x in include if x not in EXPORTERS]
    if unknown:
        raise UserError(f"--include {unknown}: unknown format(s); choose from {list(EXPORTERS)}")
    return include
