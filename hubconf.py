"""torch.hub entry points, as official YOLOv5's:

    model = torch.hub.load("path/to/this/repo", "yolov5s", source="local")             # pretrained (yolov5s.pt)
    model = torch.hub.load("path/to/this/repo", "yolov5s", pretrained=False, classes=3, source="local")  # random
    model = torch.hub.load("path/to/this/repo", "custom", path="runs/train/exp/weights/best.pt", source="local")
    results = model("data/images/bus.jpg"); results.pandas().xyxy[0]

``yolov5n/s/m/l/x`` and the P6 models ``yolov5n6/s6/m6/l6/x6`` load the official release weights by default
(``pretrained=True``): ``<name>.pt`` from the current folder or the repository root, else downloaded into the
current folder (utils/downloads.py; with ``YOLOV5_OFFLINE=1`` or no network a UserError says where to put the
file). ``pretrained=False`` builds the model from its yaml with random weights; another ``classes`` or ``channels``
count takes every pretrained tensor that fits. ``custom`` loads any weights DetectMultiBackend reads (.pt,
.torchscript, .onnx, OpenVINO folder, .engine); a path without suffix means ``.pt`` (``path="yolov5n"``). With
``autoshape=True`` (default) the model takes paths, PIL images and numpy arrays and returns Detections
(models/autoshape.py). ``python hubconf.py [--model yolov5s]`` runs a short demo on data/images.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch.nn as nn

from models.autoshape import AutoShape
from models.backends import DetectMultiBackend
from models.yolo import Model
from utils.checkpoints import checkpoint_model_parts, load_checkpoint, transfer_weights
from utils.downloads import attempt_download
from utils.general import LOGGER, ROOT, UserError, exit_code
from utils.torch_utils import select_device

dependencies = ["torch", "numpy", "cv2", "yaml", "PIL"]


@contextmanager
def _verbosity(verbose: bool) -> Iterator[None]:
    level = LOGGER.level
    if not verbose:
        LOGGER.setLevel(logging.WARNING)
    try:
        yield
    finally:
        LOGGER.setLevel(level)


def _model_yaml(name: str) -> Path:
    """The yaml a stock name is built from: models/ for P5 models, models/hub/ for the P6 ones."""
    for folder in (ROOT / "models", ROOT / "models" / "hub"):
        if (folder / f"{name}.yaml").is_file():
            return folder / f"{name}.yaml"
    raise UserError(f"no model yaml for '{name}' in models/ or models/hub/")


def _pretrained_weights(name: str) -> Path:
    """``<name>.pt`` from the current folder or the repository root, else fetched into the current folder (a
    UserError naming the file and its download address when that is not possible)."""
    for folder in (Path.cwd(), ROOT):
        if (folder / f"{name}.pt").is_file():
            return folder / f"{name}.pt"
    return attempt_download(Path(f"{name}.pt"))


def _weights_path(path: str | os.PathLike) -> Path:
    """A custom() path: without suffix it means ``.pt`` (``yolov5n`` -> ``yolov5n.pt``) unless it is a folder (an
    OpenVINO model); a missing official release name is fetched."""
    path = Path(path)
    if not path.suffix and not path.is_dir():
        path = path.with_suffix(".pt")
    return path if path.exists() else attempt_download(path)


def _wrap(model: nn.Module, autoshape: bool, channels: int = 3) -> nn.Module:
    if not autoshape:
        return model
    if channels != 3:
        LOGGER.warning("WARNING: AutoShape takes RGB images; returning the bare model for channels != 3")
        return model
    return AutoShape(model)


def _create(name: str, pretrained: bool = True, channels: int = 3, classes: int = 80, autoshape: bool = True,
            verbose: bool = True, device: str | None = None) -> nn.Module:
    """A stock model by name (yolov5s, yolov5s6, ...): the official release weights, or random ones."""
    with _verbosity(verbose):
        device = select_device(device or "cpu")
        if pretrained and channels == 3 and classes == 80:
            model = DetectMultiBackend(_pretrained_weights(name), device=device)
        else:
            model = Model(_model_yaml(name), ch=channels, nc=classes).to(device)
            if pretrained:  # another class or channel count: take every tensor that fits
                _, names, state_dict = checkpoint_model_parts(load_checkpoint(_pretrained_weights(name)))
                transfer_weights(model, state_dict, exclude=("anchor",))
                if len(names) == classes:
                    model.names = names
        return _wrap(model, autoshape, channels)


def custom(path: str | os.PathLike = "path/to/model.pt", autoshape: bool = True, _verbose: bool = True,
           device: str | None = None) -> nn.Module:
    """Any weights file or OpenVINO folder, e.g. runs/train/exp/weights/best.pt (``yolov5n`` means yolov5n.pt)."""
    with _verbosity(_verbose):
        return _wrap(DetectMultiBackend(_weights_path(path), device=select_device(device or "cpu")), autoshape)


def _stock_entry(name: str) -> Callable[..., nn.Module]:
    """The torch.hub entry point of a stock model: ``name(pretrained=True, channels=3, classes=80, ...)``."""

    def entry(pretrained: bool = True, channels: int = 3, classes: int = 80, autoshape: bool = True,
              _verbose: bool = True, device: str | None = None) -> nn.Module:
        return _create(name, pretrained, channels, classes, autoshape, _verbose, device)

    entry.__name__ = entry.__qualname__ = name
    entry.__doc__ = f"{name}, with the official v7.0 weights ({name}.pt) unless pretrained=False."
    return entry


yolov5n, yolov5s, yolov5m, yolov5l, yolov5x = (_stock_entry(f"yolov5{s}") for s in "nsmlx")
yolov5n6, yolov5s6, yolov5m6, yolov5l6, yolov5x6 = (_stock_entry(f"yolov5{s}6") for s in "nsmlx")


def demo(model: str = "yolov5s", images: str | os.PathLike = ROOT / "data" / "images") -> None:
    """Load ``model`` (a stock name or a weights path), detect on the images in ``images`` and print the results."""
    loaded = globals()[model]() if model in STOCK_MODELS else custom(path=model)
    files = sorted(str(p) for p in Path(images).iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not files:
        raise UserError(f"no .jpg/.png images in {images}")
    results = loaded(files, size=640)
    LOGGER.info(str(results))
    LOGGER.info(str(results.pandas().xyxy[0]))


STOCK_MODELS = tuple(f"yolov5{s}{p6}" for p6 in ("", "6") for s in "nsmlx")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="torch.hub demo: load a model and detect on data/images")
    parser.add_argument("--model", default="yolov5s", help=f"{', '.join(STOCK_MODELS)} or a weights path")
    parser.add_argument("--images", default=str(ROOT / "data" / "images"), help="folder of images")
    opt = parser.parse_args(argv)
    LOGGER.setLevel(logging.INFO)
    code = exit_code(lambda: demo(opt.model, opt.images))
    if code and opt.model in STOCK_MODELS:
        LOGGER.error(f"the demo needs {opt.model} weights: connect to the internet once, or put the file where the "
                     f"message above says, or run `python hubconf.py --model path/to/best.pt`")
    return code


if __name__ == "__main__":
    sys.exit(main())
