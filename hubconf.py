"""torch.hub entry points, offline:

    model = torch.hub.load("path/to/this/repo", "custom", path="runs/train/exp/weights/best.pt", source="local")
    model = torch.hub.load("path/to/this/repo", "yolov5s", pretrained=False, classes=3, source="local")
    results = model("data/images/bus.jpg"); results.pandas().xyxy[0]

``custom`` loads any weights DetectMultiBackend reads (.pt, .torchscript, .onnx, OpenVINO folder, .engine).
``yolov5n/s/m/l/x`` build from the stock yamls; ``pretrained=True`` needs ``yolov5s.pt`` (etc.) on disk, in the
current folder or the repository root: nothing is downloaded. With ``autoshape=True`` (default) the model takes
paths, PIL images and numpy arrays and returns Detections (models/autoshape.py).
"""

import logging
from contextlib import contextmanager
from pathlib import Path

from models.autoshape import AutoShape
from models.backends import DetectMultiBackend
from models.yolo import Model
from utils.checkpoints import checkpoint_model_parts, load_checkpoint, transfer_weights
from utils.general import LOGGER, ROOT, UserError
from utils.torch_utils import select_device

dependencies = ["torch", "numpy", "cv2", "yaml", "PIL"]


@contextmanager
def _verbosity(verbose):
    level = LOGGER.level
    if not verbose:
        LOGGER.setLevel(logging.WARNING)
    try:
        yield
    finally:
        LOGGER.setLevel(level)


def _local_weights(name):
    """``<name>.pt`` in the current folder or the repository root; a UserError saying where to put it."""
    for folder in (Path.cwd(), ROOT):
        if (folder / f"{name}.pt").is_file():
            return folder / f"{name}.pt"
    raise UserError(f"pretrained=True needs {name}.pt on disk (nothing is downloaded): put the official YOLOv5 "
                    f"release file in {Path.cwd()} or {ROOT}, or load any weights with custom(path=...)")


def _wrap(model, autoshape, channels=3):
    if not autoshape:
        return model
    if channels != 3:
        LOGGER.warning("WARNING: AutoShape takes RGB images; returning the bare model for channels != 3")
        return model
    return AutoShape(model)


def _create(name, pretrained=False, channels=3, classes=80, autoshape=True, verbose=True, device=None):
    """A stock model by name (yolov5s, ...), randomly initialised or from local weights."""
    with _verbosity(verbose):
        device = select_device(device or "cpu")
        if pretrained and channels == 3 and classes == 80:
            model = DetectMultiBackend(_local_weights(name), device=device)
        else:
            model = Model(ROOT / "models" / f"{name}.yaml", ch=channels, nc=classes).to(device)
            if pretrained:  # another class or channel count: take every tensor that fits
                _, names, state_dict = checkpoint_model_parts(load_checkpoint(_local_weights(name)))
                transfer_weights(model, state_dict, exclude=("anchor",))
                if len(names) == classes:
                    model.names = names
        return _wrap(model, autoshape, channels)


def custom(path="path/to/model.pt", autoshape=True, _verbose=True, device=None):
    """Any weights file or OpenVINO folder, e.g. runs/train/exp/weights/best.pt."""
    with _verbosity(_verbose):
        return _wrap(DetectMultiBackend(path, device=select_device(device or "cpu")), autoshape)


def yolov5n(pretrained=False, channels=3, classes=80, autoshape=True, _verbose=True, device=None):
    return _create("yolov5n", pretrained, channels, classes, autoshape, _verbose, device)


def yolov5s(pretrained=False, channels=3, classes=80, autoshape=True, _verbose=True, device=None):
    return _create("yolov5s", pretrained, channels, classes, autoshape, _verbose, device)


def yolov5m(pretrained=False, channels=3, classes=80, autoshape=True, _verbose=True, device=None):
    return _create("yolov5m", pretrained, channels, classes, autoshape, _verbose, device)


def yolov5l(pretrained=False, channels=3, classes=80, autoshape=True, _verbose=True, device=None):
    return _create("yolov5l", pretrained, channels, classes, autoshape, _verbose, device)


def yolov5x(pretrained=False, channels=3, classes=80, autoshape=True, _verbose=True, device=None):
    return _create("yolov5x", pretrained, channels, classes, autoshape, _verbose, device)
