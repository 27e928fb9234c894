"""One interface over the weight formats detect.py and val.py accept: PyTorch .pt, TorchScript and ONNX.

``DetectMultiBackend(weights)`` loads any of them and is called like a model on a float image batch
(N, 3, H, W) in 0-1, returning the decoded predictions (N, cells, 5 + nc) in input pixels, ready for NMS.
Exported files carry their stride, class names and input size as metadata written by export.py.
"""

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from models.experimental import attempt_load
from utils.dataset_yaml import find_dataset_yaml
from utils.general import LOGGER, ROOT, UserError, yaml_load
from utils.script_check import check_onnx_file, load_torchscript

EXPORT_METADATA_KEY = "config.txt"  # TorchScript extra-file name holding the json metadata written by export.py


def newest_trained_weights(runs=ROOT / "runs" / "train"):
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


def _names_dict(names):
    """Class names as {int: str} from a list, a dict with int or str keys, or None."""
    if names is None:
        return None
    if isinstance(names, (list, tuple)):
        return dict(enumerate(names))
    return {int(k): str(v) for k, v in names.items()}


def export_metadata(model, imgsz, dynamic=False):
    """The metadata export.py stores with an exported model: stride, class names, input size."""
    return {
        "stride": int(max(int(model.stride.max()), 32)),
        "names": {str(k): v for k, v in _names_dict(model.names).items()},
        "imgsz": list(imgsz),
        "dynamic": bool(dynamic),
        "format": "yolov5-plugins",
    }


class DetectMultiBackend(nn.Module):
    """Inference with .pt, .torchscript or .onnx weights behind one call.

    Attributes: ``pt``, ``jit``, ``onnx`` (which format), ``stride`` (int), ``names`` ({i: name}), ``nc``,
    ``imgsz`` (the fixed (h, w) an exported model needs, or None when any stride multiple works),
    ``fp16`` and ``model`` (the torch module for .pt / .torchscript).
    """

    def __init__(self, weights, device=torch.device("cpu"), dnn=False, data=None, fp16=False, fuse=True):
        super().__init__()
        if isinstance(weights, (list, tuple)) and len(weights) == 1:
            weights = weights[0]
        w = str(weights[0] if isinstance(weights, (list, tuple)) else weights)
        suffix = Path(w).suffix.lower()
        self.pt = suffix == ".pt" or isinstance(weights, (list, tuple))
        self.jit = suffix == ".torchscript"
        self.onnx = suffix == ".onnx"
        if not (self.pt or self.jit or self.onnx):
            raise UserError(f"--weights {w}: unsupported format '{suffix}'; use a .pt, .torchscript or .onnx file")
        for p in weights if isinstance(weights, (list, tuple)) else [weights]:
            if not Path(p).is_file():
                raise UserError(f"--weights {p}: file not found")
        if dnn:
            LOGGER.warning("WARNING: --dnn (OpenCV DNN) is not supported; using ONNX Runtime for .onnx files")
        self.device = device
        self.fp16 = bool(fp16) and device.type == "cuda"
        self.imgsz = None
        self.model = None
        self._warned_pt_only = False
        meta = {}
        if self.pt:
            model = attempt_load(weights, device=device, inplace=True, fuse=fuse)
            self.model = model.half() if self.fp16 else model.float()
            stride, names = int(max(int(model.stride.max()), 32)), model.names
        elif self.jit:
            LOGGER.info(f"Loading {w} for TorchScript inference...")
            extra = {EXPORT_METADATA_KEY: ""}
            try:
                self.model = load_torchscript(w, map_location=device, _extra_files=extra)  # checked first
            except RuntimeError as e:
                raise UserError(f"--weights {w} is not a readable TorchScript file (re-export it with export.py): "
                                f"{str(e).splitlines()[0]}") from e
            self.model = self.model.half() if self.fp16 else self.model.float()
            meta = json.loads(extra[EXPORT_METADATA_KEY]) if extra[EXPORT_METADATA_KEY] else {}
            stride, names = meta.get("stride", 32), meta.get("names")
        else:
            self.session, meta = self._load_onnx(w, device)
            stride, names = meta.get("stride", 32), meta.get("names")
        if (self.jit or self.onnx) and not meta.get("dynamic", False) and meta.get("imgsz"):
            self.imgsz = tuple(int(x) for x in meta["imgsz"])
        names = _names_dict(names)
        if data:  # a dataset yaml names the classes when the weights do not (or use placeholder names)
            data_names = _names_dict(yaml_load(find_dataset_yaml(data)).get("names"))
            if data_names and (not names or all(str(k) == v for k, v in names.items())):
                names = data_names
        self.stride = int(stride)
        self.names = names or {i: f"class{i}" for i in range(self._probe_nc())}
        self.nc = len(self.names)

    def _load_onnx(self, w, device):
        try:
            import onnxruntime as ort
        except ImportError as e:
            raise UserError("running .onnx weights needs the onnxruntime package (listed in requirements.txt)") from e
        LOGGER.info(f"Loading {w} for ONNX Runtime inference...")
        available = ort.get_available_providers()
        providers = ["CPUExecutionProvider"]
        if device.type == "cuda" and "CUDAExecutionProvider" in available:
            providers.insert(0, "CUDAExecutionProvider")
        check_onnx_file(w)  # standard operators and embedded weights only
        try:
            session = ort.InferenceSession(w, providers=providers)
        except Exception as e:  # onnxruntime's load errors share no base class narrower than Exception
            raise UserError(f"--weights {w} is not a readable ONNX model (re-export it with export.py): "
                            f"{str(e).splitlines()[0]}") from e
        props = session.get_modelmeta().custom_metadata_map
        meta = {k: json.loads(v) for k, v in props.items() if k in ("stride", "names", "imgsz", "dynamic")}
        inp = session.get_inputs()[0]
        self.fp16 = inp.type == "tensor(float16)"
        self.input_name = inp.name
        self.output_names = [o.name for o in session.get_outputs()]
        return session, meta

    def _probe_nc(self):
        """Class count from the output width when the weights carry no names (exported elsewhere)."""
        if self.onnx:
            no = self.session.get_outputs()[0].shape[-1]
            if isinstance(no, int):
                return no - 5
        h, w = self.imgsz or (64, 64)
        return self.forward(torch.zeros(1, 3, h, w, device=self.device)).shape[-1] - 5

    def forward(self, im, augment=False, visualize=False):
        """im (N, 3, H, W) float in 0-1 -> predictions (N, cells, 5 + nc) [x, y, w, h, obj, cls...] in pixels."""
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
            if self.jit:
                y = self.model(im)
            else:
                out = self.session.run(self.output_names, {self.input_name: im.cpu().numpy()})
                y = torch.from_numpy(np.asarray(out[0])).to(self.device)
        y = y[0] if isinstance(y, (list, tuple)) else y
        return y.float()

    def warmup(self, imgsz=(1, 3, 640, 640)):
        """One forward pass so first-image timings do not include lazy initialisation."""
        if self.imgsz:
            imgsz = (*imgsz[:2], *self.imgsz)
        dtype = torch.half if self.fp16 else torch.float
        with torch.inference_mode():
            self.forward(torch.zeros(*imgsz, device=self.device, dtype=dtype))
