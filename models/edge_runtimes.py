"""Runtimes for the edge formats detect.py, val.py and hub run through ``DetectMultiBackend``: NCNN
(``*_ncnn_model/``), TFLite (``.tflite``, through the LiteRT interpreter of ``ai-edge-litert``) and MNN
(``*_mnn_model/``).

Each runtime takes a float32 batch (N, 3, H, W) in 0-1 as a numpy array and returns the decoded predictions
(N, cells, 5 + nc) in input pixels, as the exported PyTorch model does, and exposes ``raw_metadata`` (the key/values
export.py stored; models/backends.py validates them) and ``imgsz`` (the graph's fixed (h, w), or None).
Exported models are untrusted input: their files must be regular files inside the model folder, their size is
bounded, and an NCNN layer list may only name layers the installed ncnn has (no custom layers).
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from utils.general import LOGGER, UserError, yaml_load
from utils.optional import require_edge

EDGE_METADATA = "metadata.yaml"  # in an NCNN or MNN model folder (the name official exports use)
NCNN_PARAM, NCNN_BIN = "model.ncnn.param", "model.ncnn.bin"
MNN_FILE = "model.mnn"
TFLITE_METADATA = "meta.txt"  # json inside a zip archive appended to the .tflite file, where official keeps it
MAX_PARAM_BYTES = 16 << 20  # an NCNN layer list of yolov5x is ~60 kB
MAX_MODEL_BYTES = 2 << 30


def edge_format(path: str | Path) -> str | None:
    """'ncnn', 'tflite', 'mnn' or 'coreml' for an edge-format weights path, else None."""
    p = Path(path)
    if p.suffix.lower() == ".tflite":
        return "tflite"
    if p.suffix.lower() in (".mlpackage", ".mlmodel"):
        return "coreml"
    if p.suffix.lower() == ".mnn" or (p.is_dir() and (p / MNN_FILE).exists()):
        return "mnn"
    if p.suffix.lower() == ".param" or (p.is_dir() and (p / NCNN_PARAM).exists()):
        return "ncnn"
    return None


def ncnn_layers(param_text: str) -> list[tuple[str, str]]:
    """(layer type, layer name) of each layer in an NCNN .param text (magic line, counts line, then one layer a
    line: type, name, input count, output count, ...)."""
    lines = param_text.splitlines()
    return [(f[0], f[1]) for f in (line.split() for line in lines[2:]) if len(f) >= 2]


def _model_file(folder: Path, name: str, limit: int = MAX_MODEL_BYTES) -> Path:
    """``folder/name`` if it is a regular file directly in ``folder`` and at most ``limit`` bytes; else a UserError."""
    f = folder / name
    if f.is_symlink() or not f.is_file():
        raise UserError(f"--weights {folder}: {name} must be a regular file in the model folder (export one with "
                        f"export.py)")
    if f.stat().st_size > limit:
        raise UserError(f"--weights {folder}: {name} is {f.stat().st_size / 1e6:.0f} MB, over the "
                        f"{limit / 1e6:.0f} MB limit")
    return f


def _folder_metadata(folder: Path) -> dict[str, Any]:
    meta = folder / EDGE_METADATA
    if not meta.is_file() or meta.is_symlink():
        return {}
    try:
        return yaml_load(meta)
    except UserError as e:
        LOGGER.warning(f"WARNING: {e}; its metadata is ignored")
        return {}


class NcnnRuntime:
    """An NCNN model folder (model.ncnn.param, model.ncnn.bin, metadata.yaml) on the CPU with ``threads`` threads.
    NCNN has no batch axis: images run one at a time."""

    def __init__(self, path: str | Path, threads: int = 1) -> None:
        ncnn = require_edge("ncnn", "running NCNN weights")
        folder = Path(path).parent if Path(path).suffix.lower() == ".param" else Path(path)
        param = _model_file(folder, NCNN_PARAM, MAX_PARAM_BYTES)
        weights = _model_file(folder, NCNN_BIN)
        text = param.read_text(errors="replace")
        if text.split()[:1] != ["7767517"]:
            raise UserError(f"--weights {folder}: {NCNN_PARAM} is not an NCNN text layer list (magic 7767517)")
        unknown = sorted({t for t, _ in ncnn_layers(text) if ncnn.layer_to_index(t) < 0})
        if unknown:
            raise UserError(f"--weights {folder} is refused: it names layers this ncnn does not have "
                            f"({', '.join(unknown[:3])}); custom layers are not run")
        self.raw_metadata = _folder_metadata(folder)
        self.net = ncnn.Net()
        self.net.opt.use_vulkan_compute = False
        self.net.opt.num_threads = int(threads)
        if self.net.load_param(str(param)) != 0 or self.net.load_model(str(weights)) != 0:
            raise UserError(f"--weights {folder}: ncnn could not load the model; re-export it with export.py")
        self.input_name, self.output_name = self.net.input_names()[0], self.net.output_names()[0]
        self.imgsz = None
        self._ncnn = ncnn

    def __call__(self, x: np.ndarray) -> np.ndarray:
        out = []
        for image in x:
            image = np.ascontiguousarray(image, dtype=np.float32)  # ncnn.Mat reads this memory: kept alive here
            with self.net.create_extractor() as ex:
                ex.input(self.input_name, self._ncnn.Mat(image))
                status, y = ex.extract(self.output_name)
                if status != 0:
                    raise UserError(f"ncnn could not run this model on a {image.shape} image (status {status})")
                out.append(np.array(y, dtype=np.float32, copy=True))
        return np.stack(out)


def tflite_metadata(data: bytes) -> dict[str, Any]:
    """The json of meta.txt in the zip archive appended to a .tflite file's bytes, or {} if there is none."""
    start = data.rfind(b"PK\x03\x04")
    if start < 0:
        return {}
    try:
        with zipfile.ZipFile(io.BytesIO(data[start:])) as z:
            info = z.getinfo(TFLITE_METADATA)
            if info.file_size > 1 << 20:
                return {}
            meta = json.loads(z.read(info).decode())
    except (zipfile.BadZipFile, KeyError, ValueError, UnicodeDecodeError, RecursionError):
        return {}
    return meta if isinstance(meta, dict) else {}


class TFLiteRuntime:
    """A .tflite file through the LiteRT interpreter with ``threads`` threads; an INT8 model's quantized input and
    output are converted with the scale and zero point the file gives. NCHW and NHWC inputs both run."""

    def __init__(self, path: str | Path, threads: int = 1) -> None:
        interpreter = require_edge("ai_edge_litert.interpreter", "running .tflite weights", package="ai-edge-litert")
        path = Path(path)
        if path.is_symlink() or not path.is_file():
            raise UserError(f"--weights {path}: a .tflite model must be a regular file")
        data = _model_file(path.parent, path.name).read_bytes()
        self.raw_metadata = tflite_metadata(data)
        try:
            self.interpreter = interpreter.Interpreter(model_content=data, num_threads=int(threads))
            self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as e:
            raise UserError(f"--weights {path} is not a readable TFLite model (re-export it with export.py): "
                            f"{str(e).splitlines()[0][:200]}") from e
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]
        shape = [int(d) for d in self.input["shape"]]
        self.nhwc = len(shape) == 4 and shape[-1] == 3 and shape[1] != 3
        self.imgsz = (shape[1], shape[2]) if self.nhwc else (shape[2], shape[3])
        self.batch = shape[0]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self.nhwc:
            x = x.transpose(0, 2, 3, 1)
        if x.shape[0] != self.batch:  # a fixed-batch graph: run image by image
            return np.concatenate([self(xi[None].transpose(0, 3, 1, 2) if self.nhwc else xi[None]) for xi in x])
        dtype = self.input["dtype"]
        if dtype in (np.int8, np.uint8):
            scale, zero = self.input["quantization"]
            x = np.clip(np.round(x / scale + zero), np.iinfo(dtype).min, np.iinfo(dtype).max)
        self.interpreter.set_tensor(self.input["index"], np.ascontiguousarray(x, dtype=dtype))
        self.interpreter.invoke()
        y = self.interpreter.get_tensor(self.output["index"]).copy()
        if self.output["dtype"] in (np.int8, np.uint8):
            scale, zero = self.output["quantization"]
            y = (y.astype(np.float32) - zero) * scale
        return y.astype(np.float32, copy=False)


class MNNRuntime:
    """An MNN model folder (model.mnn, metadata.yaml) on the CPU with ``threads`` threads."""

    def __init__(self, path: str | Path, threads: int = 1) -> None:
        mnn = require_edge("MNN", "running MNN weights")
        folder = Path(path).parent if Path(path).suffix.lower() == ".mnn" else Path(path)
        model = _model_file(folder, Path(path).name if Path(path).suffix.lower() == ".mnn" else MNN_FILE)
        self.raw_metadata = _folder_metadata(folder)
        config = {"backend": "CPU", "numThread": int(threads), "precision": "high"}
        runtime = mnn.nn.create_runtime_manager((config,))
        self.module = mnn.nn.load_module_from_file(str(model), [], [], runtime_manager=runtime)
        if self.module is None:
            raise UserError(f"--weights {folder}: MNN could not load {model.name}; re-export it with export.py")
        shape = self.raw_metadata.get("imgsz")
        if not (isinstance(shape, list) and len(shape) == 2 and all(isinstance(s, int) and s > 0 for s in shape)):
            # MNN crashes the process on an input of another shape than the graph's: the size must be known
            raise UserError(f"--weights {folder}: {EDGE_METADATA} with the input size (imgsz) is required to run an "
                            f"MNN model; re-export it with export.py")
        self.imgsz = (shape[0], shape[1])
        self._mnn = mnn

    def __call__(self, x: np.ndarray) -> np.ndarray:
        expr = self._mnn.expr
        out = []
        for image in x:  # the graph takes one image (export's batch 1); another batch size crashes MNN
            image = np.ascontiguousarray(image[None], dtype=np.float32)
            y = self.module.forward(expr.const(image, list(image.shape), expr.NCHW))
            y = y[0] if isinstance(y, (list, tuple)) else y
            out.append(np.array(y.read(), dtype=np.float32, copy=True)[0])
        return np.stack(out)


class CoreMLRuntime:
    """CoreML packages predict only through Apple's Core ML framework: refused here in one line."""

    def __init__(self, path: str | Path, threads: int = 1) -> None:
        raise UserError(f"--weights {path}: CoreML .mlpackage models run only on macOS (Core ML framework); export.py "
                        f"checked its spec (input, output, shapes) instead")


EDGE_RUNTIMES = {"ncnn": NcnnRuntime, "tflite": TFLiteRuntime, "mnn": MNNRuntime, "coreml": CoreMLRuntime}
