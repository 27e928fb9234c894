"""Heatmaps of where detectors look: one figure per image with the image and, side by side, each model's class
activation map over it with its detections (e.g. the baseline against a variant).

    python benchmarks/cam.py --weights yolov5s.pt yolov5s_ScConv.pt --source data/images
    python benchmarks/cam.py --weights a.pt b.pt --source imgs/ --method layercam --layer 17 20 23 --imgsz 640

``--layer`` takes row indices of the model yaml (``model.model[i]``, the same numbers ``python models/yolo.py``
lists); by default each model uses the layers that feed its Detect layer (Detect's ``from`` list), so models with
shifted indices are still compared at their detection inputs. Several layers are averaged after upsampling each
map to the input size. Methods (utils/cam.py): ``eigencam`` (first principal component of the activations; no
target), ``gradcam`` and ``layercam``, whose target is the summed confidence (obj * cls) of the detections kept
after NMS at ``--conf-thres``/``--iou-thres``, or of the ``--top-k`` most confident raw predictions in an image
where none is kept. Boxes drawn are those detections. Figures: ``--out`` (default runs/cam/exp, exp2, ...), one
``<image stem>.png`` per image: the image, then one panel per model in ``--weights`` order, each shrunk to at most
1024 pixels on its longer side.
"""

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2
import numpy as np
import torch

from models.experimental import attempt_load
from models.yolo import Detect
from utils.cam import CAM_METHODS, DetectionScore, class_activation_map, heatmap_panel, model_panel
from utils.general import LOGGER, ROOT, UserError, check_img_size, exit_code, increment_path, safe_filename
from utils.sources import IMG_FORMATS, LoadImages, list_source_files
from utils.torch_utils import select_device


def cam_layers(model, layers=None):
    """Indices and modules of the rows of ``model`` to read: ``layers`` (yaml row indices), else the inputs of its
    Detect layer. An index out of range or naming the Detect layer is a UserError."""
    rows = model.model
    if not layers:
        detect = rows[-1]
        layers = [detect.f] if isinstance(detect.f, int) else list(detect.f)
    for i in layers:
        if not -len(rows) <= i < len(rows):
            raise UserError(f"--layer {i}: the model has layers 0 to {len(rows) - 1}")
        if isinstance(rows[i], Detect):
            raise UserError(f"--layer {i} is the Detect layer, whose output is predictions; give a feature layer "
                            f"(default: its inputs {rows[i].f})")
    indices = [i % len(rows) for i in layers]
    return indices, [rows[i] for i in indices]


def image_files(source):
    """The images of a source (videos are left out with a warning)."""
    files = list_source_files(source)
    images = [f for f in files if Path(f).suffix[1:].lower() in IMG_FORMATS]
    if len(images) < len(files):
        LOGGER.warning(f"WARNING: {len(files) - len(images)} video(s) in {source} left out: heatmaps are for images")
    if not images:
        raise UserError(f"--source {source}: no images")
    return images


def run(weights=None, source=ROOT / "data/images", layer=None, method="eigencam", imgsz=640, conf_thres=0.25,
        iou_thres=0.45, max_det=300, top_k=10, device="", out=None):
    """Write one heatmap figure per image of ``source`` and return the figure paths."""
    if not weights:
        raise UserError("--weights: give one or more .pt files (e.g. the baseline and a variant)")
    if method not in CAM_METHODS:
        raise UserError(f"--method {method}: choose one of {', '.join(CAM_METHODS)}")
    device = select_device(device)
    models = [attempt_load(w, device=device, fuse=False) for w in weights]  # eval-mode BatchNorm: same maps unfused
    chosen = [cam_layers(m, layer) for m in models]
    stride = int(max(m.stride.max() for m in models))
    imgsz = check_img_size(imgsz, s=stride)
    images = image_files(source)
    save_dir = Path(out) if out else increment_path(ROOT / "runs/cam/exp", mkdir=True)
    save_dir.mkdir(parents=True, exist_ok=True)
    score = DetectionScore(conf_thres, iou_thres, max_det, top_k)
    written, taken = [], set()
    for path, im, im0, _, s in LoadImages(images, img_size=imgsz, stride=stride):
        x = torch.from_numpy(im).to(device).float()[None] / 255
        panels = [heatmap_panel(im0, None, None, title=Path(path).name)]
        for w, model, (indices, modules) in zip(weights, models, chosen):
            heat = class_activation_map(model, modules, x, method, score)
            title = f"{Path(w).stem}: {method}, layers {','.join(map(str, indices))}"
            panels.append(model_panel(im0, x.shape[2:], heat[0], score.detections[0], model.names, title))
        stem = base = safe_filename(Path(path).stem)
        n = 2
        while stem in taken:  # a second a.jpg (another folder, or a.png) writes a_2.png
            stem, n = f"{base}_{n}", n + 1
        taken.add(stem)
        file = save_dir / f"{stem}.png"
        if not cv2.imwrite(str(file), np.concatenate(panels, 1)):
            raise UserError(f"cannot write {file}")
        written.append(file)
        LOGGER.info(f"{s}{file}")
    LOGGER.info(f"{len(written)} heatmap figure(s) saved to {save_dir}")
    return written


def parse_opt(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", nargs="+", help="model .pt files, one panel each (baseline first)")
    p.add_argument("--source", default=str(ROOT / "data/images"), help="image, folder, glob or .txt list")
    p.add_argument("--layer", type=int, nargs="+", default=None, help="yaml row indices (default: Detect's inputs)")
    p.add_argument("--method", default="eigencam", choices=CAM_METHODS, help="class activation map method")
    p.add_argument("--imgsz", "--img", "--img-size", type=int, default=640, help="inference size (pixels)")
    p.add_argument("--conf-thres", type=float, default=0.25, help="confidence threshold of the drawn detections")
    p.add_argument("--iou-thres", type=float, default=0.45, help="NMS IoU threshold")
    p.add_argument("--max-det", type=int, default=300, help="detections per image")
    p.add_argument("--top-k", type=int, default=10, help="raw predictions targeted where NMS keeps none")
    p.add_argument("--device", default="", help="cuda device, i.e. 0, or cpu")
    p.add_argument("--out", default=None, help="output folder (default runs/cam/exp, exp2, ...)")
    return p.parse_args(argv)


def main(argv=None):
    return exit_code(lambda: run(**vars(parse_opt(argv))))


if __name__ == "__main__":
    sys.exit(main())
