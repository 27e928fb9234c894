"""One interface over the weight formats detect.py and val.py accept: PyTorch .pt, TorchScript, ONNX (ONNX Runtime),
OpenVINO (a ``*_openvino_model/`` folder or its .xml), TensorRT .engine files (CUDA only) and the edge formats of
models/edge_runtimes.py (NCNN and MNN folders, .tflite files).

``DetectMultiBackend(weights)`` loads any of them and is called like a model on a float image batch
(N, 3, H, W) in 0-1, returning the decoded predictions (N, cells, 5 + nc) in input pixels, ready for NMS.
Files exported by export.py carry their stride, class names and input size as metadata. Files exported by
official YOLOv5 store names as a Python dict string and the stride as a string: both are read as literals
(``ast.literal_eval``, never ``eval``). Files without metadata get names from ``data`` (or class0, class1, ...)
and their input size from the graph.

TensorRT engines are programs (an engine can load plugin code) that no check here can see into: only engines that
carry this project's export metadata run, unless ``YOLOV5_TRUST_ENGINE=1`` says the user trusts the file.
"""

from __future__ import annotations

import ast
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from models.edge_runtimes import EDGE_RUNTIMES, edge_format
from models.experimental import attempt_load
from models.yolo import check_activation_size, is_segmentation_model
from utils.boxes import padded_detections
from utils.checkpoints import FORMAT, load_checkpoint
from utils.dataset_yaml import find_dataset_yaml
from utils.downloads import attempt_download, is_release_asset
from utils.general import LOGGER, ROOT, UserError, names_dict, yaml_load
from utils.optional import import_openvino, require
from utils.script_check import check_onnx_file, check_openvino_ir, load_torchscript
from utils.torch_utils import grid_stride

EXPORT_METADATA_KEY = "config.txt"  # TorchScript extra-file name holding the json metadata written by export.py
OPENVINO_METADATA = "metadata.yaml"  # file in an OpenVINO model folder (the name official YOLOv5 uses)
METADATA_KEYS = ("stride", "names", "imgsz", "dynamic", "precision", "nms")
NMS_SETTINGS = {"conf_thres": float, "iou_thres": float, "topk_per_class": int, "topk_all": int, "agnostic": bool}
TRUST_ENGINE_ENV = "YOLOV5_TRUST_ENGINE"  # "1": also run .engine files that export.py did not write


def weights_format(w: str | Path) -> str:
    """'pt', 'torchscript', 'onnx', 'openvino', 'engine', 'ncnn', 'tflite' or 'mnn' for a weights path; a UserError
    for anything else."""
    p = Path(w)
    edge = edge_format(p)
    if edge is not None:
        return edge
    if p.is_dir() or p.suffix.lower() == ".xml":
        return "openvino"
    fmt = {".pt": "pt", ".torchscript": "torchscript", ".onnx": "onnx", ".engine": "engine"}.get(p.suffix.lower())
    if fmt is None:
        raise UserError(f"--weights {w}: unsupported format '{p.suffix}'; use a .pt, .torchscript, .onnx, .engine or "
                        f".tflite file or an OpenVINO, NCNN or MNN model folder")
    return fmt


def newest_trained_weights(runs: str | Path = ROOT / "runs" / "train") -> Path:
    """The most recently written ``runs/train/*/weights/best.pt``; a UserError saying how to get weights if none."""
    candidates = sorted(Path(runs).glob("*/weights/best.pt"), key=lambda p: p.stat().st_mtime)
    if not candidates:
        raise UserError(
            f"no --weights given and no trained model found in {runs}/*/weights/best.pt. Train one with "
            f"`python train.py --data data/shapes.yaml --cfg yolov5n.yaml`, or pass an official YOLOv5 checkpoint "
            f"with --weights path/to/yolov5s.pt"
        )
    LOGGER.info(f"no --weights given: using the newest trained model {candidates[-1]}")
    return candidates[-1]


def fetch_weights(weights: str | Path | Sequence[str | Path] | None) -> str | Path | Sequence[str | Path] | None:
    """``weights`` after downloading each missing path that names an official release asset (``yolov5s.pt``, see
    utils/downloads.py), as official YOLOv5 does before loading; other missing paths are left for the loader to
    report."""
    for p in weights if isinstance(weights, (list, tuple)) else [weights]:
        if p and not Path(p).exists() and is_release_asset(p):
            attempt_download(p)
    return weights


def checkpoint_dataset(weights: str | Path | Sequence[str | Path]) -> Path | None:
    """The dataset yaml a .pt checkpoint records as trained on (its saved options' ``data``, as train.py and
    official YOLOv5 store them), when that file exists here; None for other formats or when nothing is recorded.
    For an ensemble the first checkpoint is asked."""
    w = Path(weights[0] if isinstance(weights, (list, tuple)) else weights)
    if w.suffix.lower() != ".pt" or not w.is_file():
        return None
    try:
        opt = load_checkpoint(w).get("opt")
    except UserError:
        return None  # the model load that follows reports what is wrong with the file
    data = opt.get("data") if isinstance(opt, dict) else None
    if not isinstance(data, str) or not data.strip():
        return None
    try:
        return find_dataset_yaml(data)
    except UserError:
        LOGGER.warning(f"WARNING: {w} was trained on {data}, which is not found here; pass --data")
        return None


def default_dataset(weights: str | Path | Sequence[str | Path], fallback: str | Path | None) -> Path | None:
    """The dataset to use when --data is not given: the one ``weights`` was trained on, else ``fallback``; logged."""
    recorded = checkpoint_dataset(weights)
    if recorded is not None:
        first = weights[0] if isinstance(weights, (list, tuple)) else weights
        LOGGER.info(f"no --data given: using {recorded}, the dataset {first} was trained on")
        return recorded
    if fallback is not None:
        LOGGER.info(f"no --data given and none recorded in the weights: using {fallback}")
    return None if fallback is None else Path(fallback)


def names_from_data(names: dict[int, str] | None, data: str | Path | dict | None) -> dict[int, str] | None:
    """``names``, or the class names of dataset yaml ``data`` where the weights carry none or only placeholders
    ('0', 'class0', ...) for as many classes."""
    if not data:
        return names
    data_names = names_dict((data if isinstance(data, dict) else yaml_load(find_dataset_yaml(data))).get("names"))
    placeholder = names and all(v in (str(k), f"class{k}") for k, v in names.items())
    if data_names and (not names or (placeholder and len(data_names) == len(names))):
        return data_names
    return names


def _literal(value):
    """A metadata value: json (this project), a Python literal (official YOLOv5's str(dict)), or the string."""
    if not isinstance(value, str):
        return value
    for parse in (json.loads, ast.literal_eval):
        try:
            return parse(value)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            continue
    return value


def read_metadata(raw: dict[str, Any], source: str = "") -> dict[str, Any]:
    """Validated metadata {stride, names, imgsz, dynamic, precision} from an exported file's key/value strings or
    values: official YOLOv5's layouts (names as a Python literal or with int keys) and this project's older files
    (names as json with string keys) alike.

    Unknown keys are ignored; a malformed value is a warning and is left out, so the caller falls back to
    --data names, numbered names, stride 32 and the graph's input size.
    """
    meta = {}
    for key in METADATA_KEYS:
        if key not in raw:
            continue
        value = _literal(raw[key])
        try:
            if key == "stride":
                value = int(value)
            elif key == "names":
                value = names_dict(value)
            elif key == "imgsz":
                value = [int(x) for x in value]
                if len(value) != 2:
                    raise ValueError
            elif key == "dynamic":
                value = bool(value)
            elif key == "nms":  # export --nms: the settings of the NMS inside the graph
                value = {k: cast(value[k]) for k, cast in NMS_SETTINGS.items()}
            else:
                value = str(value)
        except (TypeError, ValueError, AttributeError, KeyError):
            LOGGER.warning(f"WARNING: {source}: metadata '{key}' = {str(raw[key])[:60]!r} is not readable; ignored")
            continue
        meta[key] = value
    return meta


def export_metadata(model: nn.Module, imgsz: Sequence[int], dynamic: bool = False, precision: str = "fp32",
                    batch_size: int = 1) -> dict[str, Any]:
    """The metadata export.py stores with an exported model, in official YOLOv5 v7.0's layout (``stride`` an int,
    ``names`` {int: name}, ``shape`` the example input's) plus this project's input size and precision. Each format
    writes it the way official does: json for TorchScript's config.txt, yaml for OpenVINO's metadata.yaml and
    :func:`metadata_strings` for ONNX."""
    return {
        "stride": int(grid_stride(model)),
        "names": names_dict(model.names),
        "shape": [int(batch_size), 3, *(int(x) for x in imgsz)],
        "imgsz": [int(x) for x in imgsz],
        "dynamic": bool(dynamic),
        "precision": precision,
        "format": FORMAT,  # marks this project's exports; a TensorRT engine without it is refused
    }


def engine_trusted() -> bool:
    """Whether the user opted in (``YOLOV5_TRUST_ENGINE=1``) to running TensorRT engines from anywhere."""
    return os.environ.get(TRUST_ENGINE_ENV, "") == "1"


def split_engine(data: bytes, source: str = "") -> tuple[dict, bytes]:
    """(metadata key/values, serialized engine) of an .engine file's bytes: export.py writes a 4-byte little-endian
    length, json metadata with this project's ``format`` mark, then the engine. Any other file is refused with a
    UserError before TensorRT sees it (engines can run plugin code), unless ``YOLOV5_TRUST_ENGINE=1``; then an
    official YOLOv5 header is read the same way and a bare engine runs without metadata."""
    meta_len = int.from_bytes(data[:4], byteorder="little")
    raw = None
    if 2 <= meta_len <= len(data) - 4:
        try:
            raw = json.loads(data[4:4 + meta_len].decode())
        except (UnicodeDecodeError, ValueError, RecursionError):
            raw = None
    raw = raw if isinstance(raw, dict) else None
    if raw is not None and raw.get("format") == FORMAT:
        return raw, data[4 + meta_len:]
    if not engine_trusted():
        raise UserError(f"--weights {source} is refused: TensorRT engines are programs (they can load plugin code) "
                        f"and this one lacks the metadata of this project's export.py. Re-export it with "
                        f"`python export.py --include engine --device 0`, or set {TRUST_ENGINE_ENV}=1 to run an "
                        f"engine you trust")
    return (raw, data[4 + meta_len:]) if raw is not None else ({}, data)


def metadata_strings(metadata: dict[str, Any]) -> dict[str, str]:
    """ONNX metadata_props as official YOLOv5 writes and reads them: ``stride`` as str(int) and ``names`` as a Python
    dict literal with int keys ("{0: 'person'}"), which official parses with eval; the other keys as json."""
    out = {}
    for key, value in metadata.items():
        if key == "stride":
            out[key] = str(int(value))
        elif key == "names":
            out[key] = repr({int(k): str(v) for k, v in names_dict(value).items()})
        else:
            out[key] = json.dumps(value)
    return out


def onnx_session(file: str | Path, device: torch.device = torch.device("cpu"), threads: int | None = None) -> Any:
    """An ONNX Runtime session set up for low latency: full graph optimisation, ``threads`` (default: torch's
    thread count) intra-op threads, one inter-op thread, sequential execution; CUDA first when asked and present.
    Workers keep ORT's default short spin after a run: switching it off cost yolov5n 20% on an idle 2-core CPU."""
    ort = require("onnxruntime", "running .onnx weights")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = int(threads or torch.get_num_threads())
    options.inter_op_num_threads = 1
    providers = ["CPUExecutionProvider"]
    if device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    try:
        return ort.InferenceSession(str(file), options, providers=providers)
    except Exception as e:  # onnxruntime's load errors share no base class narrower than Exception
        raise UserError(f"--weights {file} is not a readable ONNX model (re-export it with export.py): "
                        f"{str(e).splitlines()[0]}") from e


def openvino_files(folder: str | Path) -> tuple[Path, Path]:
    """(xml, bin) of an OpenVINO model folder or .xml path, checked as a plain IR (``check_openvino_ir``) before
    OpenVINO reads anything; a UserError when they are missing or refused."""
    folder = Path(folder)
    xml = folder if folder.suffix.lower() == ".xml" else next(iter(sorted(folder.glob("*.xml"))), None)
    if xml is None or not xml.is_file() or not xml.with_suffix(".bin").is_file():
        raise UserError(f"--weights {folder}: no OpenVINO model (.xml with its .bin) found; export one with "
                        f"`python export.py --include openvino`")
    check_openvino_ir(xml, xml.with_suffix(".bin"))
    return xml, xml.with_suffix(".bin")


def openvino_config(core: Any, precision: str, threads: int | None = None) -> dict[str, Any]:
    """compile_model settings: latency hint, ``threads`` (default torch's) and the precision the file asks for.

    fp32 files run in f32 even where the CPU plugin would default to bf16; 'bf16' (export --half) runs bf16 on
    CPUs that support it and f16 elsewhere; 'fp16' (export --half on an AVX512-FP16 CPU) f16; int8 files keep the
    plugin's default for their float parts.
    """
    config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": int(threads or torch.get_num_threads())}
    if precision in ("fp32", "bf16", "fp16"):
        hint = "f16" if precision == "fp16" else "f32"
        if precision == "bf16":
            hint = "bf16" if "BF16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES") else "f16"
        config["INFERENCE_PRECISION_HINT"] = hint
    return config


class DetectMultiBackend(nn.Module):
    """Inference with .pt, .torchscript, .onnx, OpenVINO or TensorRT weights behind one call.

    Segmentation weights (a Segment head; exported files with a second output, 'output1'): ``segmentation`` is True
    and the call returns ``(pred, proto)`` with proto (N, nm, H/4, W/4) instead of pred alone.

    Attributes: ``format`` and the flags ``pt``, ``jit``, ``onnx``, ``openvino``, ``engine``; ``stride`` (int),
    ``names`` ({i: name}), ``nc``, ``imgsz`` (the fixed (h, w) an exported model needs, or None when any stride
    multiple works), ``fp16`` and ``model`` (the torch module for .pt / .torchscript).
    """

    def __init__(self, weights: str | Path | list, device: torch.device = torch.device("cpu"), dnn: bool = False,
                 data: str | Path | dict | None = None, fp16: bool = False, fuse: bool = True) -> None:
        super().__init__()
        if isinstance(weights, (list, tuple)) and len(weights) == 1:
            weights = weights[0]
        fetch_weights(weights)
        w = str(weights[0] if isinstance(weights, (list, tuple)) else weights)
        self.format = "pt" if isinstance(weights, (list, tuple)) else weights_format(w)
        self.pt, self.jit, self.onnx = self.format == "pt", self.format == "torchscript", self.format == "onnx"
        self.openvino, self.engine = self.format == "openvino", self.format == "engine"
        self.edge = None  # the runtime of an edge format (models/edge_runtimes.py)
        for p in weights if isinstance(weights, (list, tuple)) else [weights]:
            if not Path(p).exists():
                raise UserError(f"--weights {p}: file not found")
        if dnn:
            LOGGER.warning("WARNING: --dnn (OpenCV DNN) is not supported; using ONNX Runtime for .onnx files")
        self.device = device
        self.weights = w  # named in runtime errors
        self.fp16 = bool(fp16) and device.type == "cuda"
        self.imgsz = None
        self.model = None
        self._warned_pt_only = False
        self.segmentation = False  # exported files: set by their output count (torchscript: on the first call)
        meta, graph_imgsz = {}, None
        if self.pt:
            model = attempt_load(weights, device=device, inplace=True, fuse=fuse)
            self.model = model.half() if self.fp16 else model.float()
            self.segmentation = is_segmentation_model(model)
            meta = {"stride": grid_stride(model), "names": names_dict(model.names)}
        elif self.jit:
            LOGGER.info(f"Loading {w} for TorchScript inference...")
            extra = {EXPORT_METADATA_KEY: ""}
            try:
                self.model = load_torchscript(w, map_location=device, _extra_files=extra)  # checked first
            except RuntimeError as e:
                raise UserError(f"--weights {w} is not a readable TorchScript file (re-export it with export.py): "
                                f"{str(e).splitlines()[0]}") from e
            self.model = self.model.half() if self.fp16 else self.model.float()
            meta = read_metadata(json.loads(extra[EXPORT_METADATA_KEY]) if extra[EXPORT_METADATA_KEY] else {}, w)
        elif self.onnx:
            meta, graph_imgsz = self._load_onnx(w, device)
        elif self.openvino:
            meta, graph_imgsz = self._load_openvino(w)
        elif self.format in EDGE_RUNTIMES:
            LOGGER.info(f"Loading {w} for {self.format.upper()} inference...")
            self.edge = EDGE_RUNTIMES[self.format](w, threads=torch.get_num_threads())
            meta, graph_imgsz = read_metadata(self.edge.raw_metadata, w), self.edge.imgsz
        else:
            meta, graph_imgsz = self._load_engine(w, device)
        # export --nms: the file returns detections (output0, num_dets); forward gives them per image, NMS done
        self.nms_in_graph = meta.get("nms") if (self.onnx or self.openvino) and meta.get("nms") else None
        if not self.pt and not meta.get("dynamic", False):
            self.imgsz = tuple(meta["imgsz"]) if meta.get("imgsz") else graph_imgsz
        names = names_from_data(meta.get("names"), data)
        self.stride = int(meta.get("stride", 32))
        self.names = names or {i: f"class{i}" for i in range(self._probe_nc())}
        self.nc = len(self.names)

    @staticmethod
    def _static_shape(shape):
        """(h, w) of a (1, 3, h, w) input shape whose sizes are all numbers, else None (dynamic axes)."""
        if len(shape) == 4 and all(isinstance(x, int) and x > 0 for x in shape[2:]):
            return int(shape[2]), int(shape[3])
        return None

    def _load_onnx(self, w, device):
        LOGGER.info(f"Loading {w} for ONNX Runtime inference...")
        check_onnx_file(w)  # standard operators and embedded weights only
        self.session = onnx_session(w, device)
        inp = self.session.get_inputs()[0]
        self.fp16 = inp.type == "tensor(float16)"
        self.input_name = inp.name
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.segmentation = len(self.output_names) > 1 and len(self.session.get_outputs()[1].shape) == 4
        return read_metadata(self.session.get_modelmeta().custom_metadata_map, w), self._static_shape(inp.shape)

    def _load_openvino(self, w):
        ov = import_openvino("running OpenVINO weights")
        xml, _ = openvino_files(w)
        LOGGER.info(f"Loading {xml.parent} for OpenVINO inference...")
        meta_file = xml.parent / OPENVINO_METADATA
        raw = {}
        if meta_file.is_file():
            try:  # the project's safe loader: an alias bomb in a model folder is refused like any other yaml
                raw = yaml_load(meta_file)
            except UserError as e:
                LOGGER.warning(f"WARNING: {e}; its metadata is ignored")
        meta = read_metadata(raw, str(meta_file))
        core = ov.Core()
        try:
            model = core.read_model(str(xml))
        except RuntimeError as e:
            raise UserError(f"--weights {w} is not a readable OpenVINO model (re-export it with export.py): "
                            f"{str(e).splitlines()[0]}") from e
        shape = model.inputs[0].get_partial_shape()
        graph_imgsz = None
        if shape.is_static:
            graph_imgsz = self._static_shape([int(d.get_length()) for d in shape])
        config = openvino_config(core, meta.get("precision", "fp32"))
        self.ov_request = core.compile_model(model, "CPU", config).create_infer_request()
        self.segmentation = len(model.outputs) > 1 and model.outputs[1].get_partial_shape().rank.get_length() == 4
        return meta, graph_imgsz

    def _load_engine(self, w: str, device: torch.device) -> tuple[dict, tuple[int, int] | None]:
        if not Path(w).is_file():
            raise UserError(f"--weights {w}: a TensorRT engine must be a regular file")
        raw, engine_bytes = split_engine(Path(w).read_bytes(), w)  # refused here, before TensorRT is imported
        meta = read_metadata(raw, w)
        trt = require("tensorrt", "running TensorRT .engine weights")
        if device.type != "cuda":
            raise UserError(f"--weights {w}: TensorRT engines run on CUDA devices only; pass --device 0")
        LOGGER.info(f"Loading {w} for TensorRT inference...")
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        if hasattr(runtime, "engine_host_code_allowed"):  # TensorRT 8.6+: no code embedded in the engine file
            runtime.engine_host_code_allowed = engine_trusted()
        engine = runtime.deserialize_cuda_engine(engine_bytes)
        if engine is None:
            raise UserError(f"--weights {w} is not a TensorRT engine for this GPU and TensorRT version; re-export it "
                            f"here with `python export.py --include engine --device 0`")
        self.trt_context = engine.create_execution_context()
        self.trt_buffers, graph_imgsz = {}, None
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            shape = tuple(engine.get_tensor_shape(name))
            dtype = torch.float16 if engine.get_tensor_dtype(name) == trt.DataType.HALF else torch.float32
            is_input = engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            if is_input:
                self.trt_input, graph_imgsz = name, self._static_shape(list(shape))
                self.fp16 = dtype == torch.float16
            else:
                self.trt_output = name
            self.trt_buffers[name] = torch.empty(shape, dtype=dtype, device=device)
            self.trt_context.set_tensor_address(name, self.trt_buffers[name].data_ptr())
        return meta, graph_imgsz

    def _probe_nc(self):
        """Class count from the output width when the weights carry no names (exported elsewhere)."""
        if self.onnx:
            outputs = self.session.get_outputs()
            no, nm = outputs[0].shape[-1], outputs[1].shape[1] if self.segmentation else 0
            if isinstance(no, int) and isinstance(nm, int):
                return no - 5 - nm
        h, w = self.imgsz or (64, 64)
        y = self.forward(torch.zeros(1, 3, h, w, device=self.device))
        return y[0].shape[-1] - 5 - y[1].shape[1] if self.segmentation else y.shape[-1] - 5

    def forward(self, im: torch.Tensor, augment: bool = False, visualize: bool | Path = False
                ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor] | list[torch.Tensor]:
        """im (N, 3, H, W) float in 0-1 -> predictions (N, cells, 5 + nc) [x, y, w, h, obj, cls...] in pixels;
        segmentation weights: (predictions (N, cells, 5 + nc + nm) with raw mask coefficients, proto); a file
        exported with --nms (``nms_in_graph``): a list of N (n, 6) [x1, y1, x2, y2, conf, cls] detections."""
        if self.fp16 and im.dtype != torch.float16:
            im = im.half()
        if self.imgsz and tuple(im.shape[2:]) != self.imgsz:
            h, w = self.imgsz
            raise UserError(
                f"this exported model takes {h}x{w} images but got {im.shape[2]}x{im.shape[3]}; run with "
                f"--imgsz {h if h == w else f'{h} {w}'} or export with --dynamic"
            )
        if self.pt:
            y = self.model(im, augment=augment, visualize=visualize)
        else:
            if (augment or visualize) and not self._warned_pt_only:
                LOGGER.warning("WARNING: --augment and --visualize need .pt weights; ignored for exported models")
                self._warned_pt_only = True
            y = self._forward_exported(im)
        if self.nms_in_graph:
            return padded_detections(*(t.float() for t in y[:2]))
        if self.jit and isinstance(y, (list, tuple)) and len(y) == 2 and getattr(y[1], "ndim", 0) == 4:
            self.segmentation = True  # a traced Segment model returns (pred, proto)
        if self.segmentation:
            return y[0].float(), y[1].float()
        y = y[0] if isinstance(y, (list, tuple)) else y
        return y.float()

    RUNTIMES = {"torchscript": "TorchScript", "onnx": "ONNX Runtime", "openvino": "OpenVINO", "engine": "TensorRT"}

    def _forward_exported(self, im):
        try:
            return self._run_runtime(im)
        except UserError:
            raise
        except Exception as e:  # the runtimes' errors share no base class narrower than Exception
            lines = str(e).strip().splitlines() or [type(e).__name__]
            runtime = self.RUNTIMES.get(self.format, self.format)
            raise UserError(f"{runtime} could not run {self.weights} on a {tuple(im.shape)} input: "
                            f"{lines[0][:300]}") from e

    def _run_runtime(self, im):
        if self.jit:
            return self.model(im)
        if self.engine:
            self.trt_buffers[self.trt_input].copy_(im)
            self.trt_context.execute_async_v3(torch.cuda.current_stream(self.device).cuda_stream)
            return self.trt_buffers[self.trt_output].clone()
        # the runtimes read a C-contiguous numpy array in place: no copy when the tensor already is one
        x = np.ascontiguousarray(im.detach().cpu().numpy())
        if self.edge is not None:
            return torch.from_numpy(self.edge(x)).to(self.device)
        if self.onnx:
            y = self.session.run(self.output_names, {self.input_name: x})
        else:
            results = self.ov_request.infer({0: x})
            y = [results[o].copy() for o in self.ov_request.model_outputs]  # buffers are reused next call
        y = [torch.from_numpy(np.asarray(t)).to(self.device) for t in y]
        if self.segmentation:
            return y[:2]  # (pred, proto)
        return y if self.nms_in_graph else y[0]

    def warmup(self, imgsz: tuple[int, int, int, int] = (1, 3, 640, 640)) -> None:
        """One forward pass so first-image timings do not include lazy initialisation; skipped on a CPU, as official
        does: there the set-up is per input shape (oneDNN primitives), so a pass at one size mostly adds a whole
        inference to the process time (detect.py's letterboxed images come in other sizes)."""
        if self.imgsz:
            imgsz = (*imgsz[:2], *self.imgsz)
        if self.pt:  # a model whose feature maps at this size would take gigabytes is refused before it runs
            check_activation_size(self.model, imgsz[2:])
        if self.device.type == "cpu":
            return
        dtype = torch.half if self.fp16 else torch.float
        with torch.inference_mode():
            self.forward(torch.zeros(*imgsz, device=self.device, dtype=dtype))
