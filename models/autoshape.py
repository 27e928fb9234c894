"""Python API: ``AutoShape`` wraps a model so it takes images as they come and ``Detections`` holds the results.

    model = AutoShape(DetectMultiBackend("best.pt"))  # or torch.hub.load(repo_dir, "custom", path=..., source="local")
    results = model(["data/images/bus.jpg", pil_image, rgb_array], size=640)
    results.print(); results.pandas().xyxy[0]; results.save(); crops = results.crop(save=False)

Inputs: a path, a PIL image, an RGB HWC uint8 numpy array, or a list of these (letterboxed to one batch shape,
NMS, boxes scaled back to each original image); a (N, 3, H, W) float tensor goes straight to the model and its
raw predictions come back. URLs are refused: nothing is downloaded. As in detect.py, a path must be a regular
file (a FIFO named x.jpg is refused, never opened) and an image over the pixel limit (YOLOV5_MAX_PIXELS, default
100 million) is refused from its header before it is decoded. Boxes equal detect.py's for the same image, size and
thresholds (the same letterbox, NMS and scale_boxes) but keep fractional pixels, as official AutoShape does
(detect.py rounds them to whole pixels). ``str(results)`` is the text ``results.print()`` logs. Files written by
``save``/``crop`` take plain names (class and image names through ``safe_filename``), so they stay inside the run
folder.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn as nn
from PIL import Image

from models.yolo import is_segmentation_model
from utils.augmentations import letterbox
from utils.boxes import non_max_suppression, scale_boxes, xyxy2xywh
from utils.general import LOGGER, ROOT, UserError, increment_path, make_divisible, safe_filename
from utils.masks import overlay_masks, process_mask_native
from utils.plots import Annotator, colors, save_one_box
from utils.sources import STREAM_PREFIXES, max_image_pixels, oversized_image
from utils.torch_utils import time_sync

DETECT_DIR = ROOT / "runs" / "detect"


def _load_rgb(x, i):
    """(RGB HWC uint8 array, file name) from a path, PIL image or numpy array; a UserError for anything else."""
    if isinstance(x, (str, Path)):
        path = str(x)
        if path.lower().startswith(STREAM_PREFIXES):
            raise UserError(f"{path}: URLs are not fetched (no network at run time); download the image and pass "
                            f"its path")
        if not os.path.exists(path):
            raise UserError(f"{path}: not a readable image file (no such file)")
        if not os.path.isfile(path):  # a FIFO would block the decoder, a device could stream without end
            raise UserError(f"{path}: not a readable image file (a folder, FIFO or device, not a regular file)")
        too_large = oversized_image(path, max_image_pixels())  # from the header, as detect.py does
        if too_large:
            raise UserError(f"{path}: {too_large}")
        im = cv2.imread(path)  # BGR, EXIF orientation applied, as detect.py reads images
        if im is None:
            raise UserError(f"{path}: not a readable image file")
        return np.ascontiguousarray(im[..., ::-1]), Path(path).with_suffix(".jpg").name
    if isinstance(x, Image.Image):
        w, h = x.size  # known before decoding: an image opened lazily is refused before convert() reads it
        if w * h > max_image_pixels():
            raise UserError(f"input {i}: {w}x{h} = {w * h:,} pixels, over the limit of {max_image_pixels():,} "
                            f"(raise it with YOLOV5_MAX_PIXELS)")
        name = Path(getattr(x, "filename", "") or f"image{i}.jpg").name
        return np.asarray(x.convert("RGB")), f"{Path(name).stem or f'image{i}'}.jpg"
    if isinstance(x, np.ndarray):
        im = x
        if im.ndim == 2:
            im = np.stack([im] * 3, axis=-1)
        if im.ndim != 3 or im.shape[2] not in (1, 3, 4):
            raise UserError(f"input {i}: numpy images must be HWC with 1, 3 or 4 channels, got shape {x.shape}")
        if im.shape[2] == 1:
            im = np.repeat(im, 3, axis=2)
        im = im[..., :3]  # drop alpha
        if im.dtype != np.uint8:
            im = np.clip(im, 0, 255).astype(np.uint8)
        return np.ascontiguousarray(im), f"image{i}.jpg"
    raise UserError(f"input {i}: unsupported type {type(x).__name__}; give a path, PIL image, numpy HWC RGB array, "
                    f"a list of these, or a (N, 3, H, W) tensor")


class AutoShape(nn.Module):
    """Pre-processing, inference, NMS and box scaling around a model (a DetectMultiBackend or a yolo Model)."""

    conf = 0.25  # NMS confidence threshold
    iou = 0.45  # NMS IoU threshold
    agnostic = False  # class-agnostic NMS
    multi_label = False  # several labels per box
    classes = None  # keep only these class indices, e.g. [0, 15, 16]
    max_det = 1000  # detections per image
    amp = False  # CUDA automatic mixed precision

    def __init__(self, model: nn.Module, verbose: bool = True) -> None:
        super().__init__()
        if verbose:
            LOGGER.info("Adding AutoShape... ")
        self.model = model.eval()
        self.stride = int(max(int(torch.as_tensor(model.stride).max()), 32))
        names = getattr(model, "names", None) or {i: f"class{i}" for i in range(int(model.nc))}
        self.names = dict(enumerate(names)) if isinstance(names, (list, tuple)) else dict(names)
        self.fixed_size = getattr(model, "imgsz", None)  # exported models take one input size
        # segmentation weights: the model also returns prototypes, and Detections carries masks
        self.segmentation = bool(getattr(model, "segmentation", False)) or is_segmentation_model(model)

    @property
    def device(self) -> torch.device:
        device = getattr(self.model, "device", None)
        if device is None:
            device = next(self.model.parameters()).device
        return torch.device(device)

    def _forward_model(self, x, augment=False):
        """Predictions, or (predictions, prototypes) for segmentation weights."""
        y = self.model(x, augment=augment)
        if self.segmentation and isinstance(y, (list, tuple)) and len(y) > 1 and getattr(y[1], "ndim", 0) == 4:
            return y[0], y[1]
        return y[0] if isinstance(y, (list, tuple)) else y

    @torch.inference_mode()
    def forward(self, ims: Any, size: int | tuple[int, int] = 640, augment: bool = False) -> Detections | torch.Tensor:
        """ims: a path, PIL image, RGB HWC array or a list of them -> Detections; a BCHW tensor -> raw predictions."""
        device = self.device
        use_amp = self.amp and device.type == "cuda"
        if isinstance(ims, torch.Tensor):
            with torch.autocast("cuda", enabled=use_amp):
                return self._forward_model(ims.to(device).float(), augment)
        t0 = time_sync()
        items = list(ims) if isinstance(ims, (list, tuple)) else [ims]
        if not items:
            raise UserError("no images given")
        loaded = [_load_rgb(x, i) for i, x in enumerate(items)]
        originals, files = [x[0] for x in loaded], [x[1] for x in loaded]
        shape = self._batch_shape(originals, size)
        batch = np.stack([letterbox(im, shape, auto=False)[0] for im in originals])
        x = torch.from_numpy(np.ascontiguousarray(batch.transpose(0, 3, 1, 2))).to(device).float() / 255
        t1 = time_sync()
        with torch.autocast("cuda", enabled=use_amp):
            y = self._forward_model(x, augment)
        pred, proto = (y[0].float(), y[1].float()) if isinstance(y, tuple) else (y.float(), None)
        t2 = time_sync()
        nm = 0 if proto is None else proto.shape[1]
        pred = non_max_suppression(pred, self.conf, self.iou, self.classes, self.agnostic, self.multi_label,
                                   max_det=self.max_det, nm=nm)
        masks = None if proto is None else []
        for i, (det, im) in enumerate(zip(pred, originals)):
            det[:, :4] = scale_boxes(shape, det[:, :4], im.shape)  # fractional pixels kept, as official
            if masks is not None:  # retina masks: prototypes upsampled to the original image, cut to the boxes
                masks.append(process_mask_native(proto[i], det[:, 6:], det[:, :4], im.shape[:2]).bool())
        pred = [det[:, :6] for det in pred]
        t3 = time_sync()
        times = tuple((b - a) * 1e3 / len(items) for a, b in ((t0, t1), (t1, t2), (t2, t3)))
        return Detections(originals, pred, files, times, self.names, tuple(x.shape), masks=masks)

    def _batch_shape(self, originals, size):
        """(h, w) for the batch: the fixed size of an exported model, else each image scaled so that its long side
        is ``size``, the largest of those rounded up to stride multiples (detect.py's minimum rectangle)."""
        if self.fixed_size:
            return tuple(self.fixed_size)
        size = (size, size) if isinstance(size, int) else tuple(size)
        hs, ws = [], []
        for im in originals:
            h, w = im.shape[:2]
            r = min(size[0] / h, size[1] / w)
            hs.append(max(1, round(h * r)))
            ws.append(max(1, round(w * r)))
        return make_divisible(max(hs), self.stride), make_divisible(max(ws), self.stride)


class Detections:
    """Detections of one AutoShape call: per image, boxes in original-image pixels.

    ``xyxy``, ``xywh`` (pixels) and ``xyxyn``, ``xywhn`` (normalised): lists of (n, 6) tensors [box, conf, cls];
    ``pandas()``, ``print()``, ``save()``, ``crop()``, ``render()``, ``show()``, ``tolist()``; ``t``: (pre-process,
    inference, NMS) ms per image; ``shape``: the batch shape the model saw. ``masks``: for segmentation weights, per
    image a bool tensor (n, H, W) of instance masks in original-image pixels, in the order of the boxes (drawn by
    ``render``/``save``/``show``); None for detection weights.
    """

    def __init__(self, ims: list[np.ndarray], pred: list[torch.Tensor], files: list[str],
                 times: Sequence[float] = (0.0, 0.0, 0.0), names: dict[int, str] | None = None,
                 shape: tuple | None = None, masks: list[torch.Tensor] | None = None) -> None:
        self.ims = ims  # RGB HWC uint8 originals
        self.pred = pred
        self.masks = masks
        self.files = files
        self.names = names or {}
        self.t = times
        self.shape = shape
        self.n = len(pred)
        gains = [torch.tensor([im.shape[1], im.shape[0]] * 2 + [1.0, 1.0], device=p.device) for im, p in zip(ims, pred)]
        self.xyxy = pred
        self.xywh = [torch.cat((xyxy2xywh(p[:, :4]), p[:, 4:]), 1) for p in pred]
        self.xyxyn = [p / g for p, g in zip(self.xyxy, gains)]
        self.xywhn = [p / g for p, g in zip(self.xywh, gains)]

    def __len__(self):
        return self.n

    def _summary(self, i, det):
        s = f"image {i + 1}/{self.n}: {self.ims[i].shape[0]}x{self.ims[i].shape[1]} "
        if not len(det):
            return s + "(no detections)"
        counts = {}
        for c in det[:, 5].int().tolist():
            counts[c] = counts.get(c, 0) + 1
        return s + ", ".join(f"{n} {self.names.get(c, c)}{'s' * (n > 1)}" for c, n in sorted(counts.items()))

    def _annotated(self, i, labels=True):
        im = self.ims[i].copy()
        if self.masks is not None:
            overlay_masks(im, self.masks[i], [colors(int(c)) for c in self.pred[i][:, 5].tolist()])
        annotator = Annotator(im)
        for *box, conf, cls in reversed(self.pred[i].tolist()):
            label = f"{self.names.get(int(cls), int(cls))} {conf:.2f}" if labels else ""
            annotator.box_label(box, label, color=colors(int(cls)))
        return annotator.result()

    def _file_name(self, i):
        """The file name image ``i`` is saved under: a plain name, whatever the input was called."""
        return safe_filename(self.files[i], default=f"image{i}.jpg")

    def timing(self) -> str:
        """The speed line, as detect.py prints it."""
        return (f"Speed: %.1fms pre-process, %.1fms inference, %.1fms NMS per image at shape {self.shape}"
                % tuple(self.t))

    def __str__(self):
        return "\n".join([self._summary(i, det) for i, det in enumerate(self.pred)] + [self.timing()])

    def __repr__(self):
        return f"YOLOv5 {self.__class__.__name__}\n{self}"

    def print(self) -> None:
        LOGGER.info(str(self))

    def pandas(self) -> Detections:
        """A copy whose xyxy, xyxyn, xywh, xywhn are lists of DataFrames (one per image) with class names."""
        import pandas as pd

        new = Detections(self.ims, self.pred, self.files, self.t, self.names, self.shape, masks=self.masks)
        columns = {
            "xyxy": ["xmin", "ymin", "xmax", "ymax", "confidence", "class", "name"],
            "xyxyn": ["xmin", "ymin", "xmax", "ymax", "confidence", "class", "name"],
            "xywh": ["xcenter", "ycenter", "width", "height", "confidence", "class", "name"],
            "xywhn": ["xcenter", "ycenter", "width", "height", "confidence", "class", "name"],
        }
        for key, cols in columns.items():
            frames = []
            for t in getattr(self, key):
                rows = [[*row[:5], int(row[5]), self.names.get(int(row[5]), str(int(row[5])))] for row in t.tolist()]
                dtypes = {**{c: "float64" for c in cols[:5]}, "class": "int64", "name": "object"}
                frames.append(pd.DataFrame(rows, columns=cols).astype(dtypes))
            setattr(new, key, frames)
        return new

    def tolist(self) -> list[Detections]:
        """One Detections per image."""
        return [Detections([self.ims[i]], [self.pred[i]], [self.files[i]], self.t, self.names, self.shape,
                           masks=None if self.masks is None else [self.masks[i]]) for i in range(self.n)]

    def render(self, labels: bool = True) -> list[np.ndarray]:
        """Draw the boxes into the images (self.ims) and return them (RGB)."""
        self.ims = [self._annotated(i, labels) for i in range(self.n)]
        return self.ims

    def save(self, labels: bool = True, save_dir: str | Path = DETECT_DIR / "exp", exist_ok: bool = False) -> Path:
        """Write the annotated images to a new run folder (runs/detect/exp{N}); returns the folder."""
        save_dir = increment_path(save_dir, exist_ok=exist_ok, mkdir=True)
        for i in range(self.n):
            cv2.imwrite(str(save_dir / self._file_name(i)), self._annotated(i, labels)[..., ::-1])
        LOGGER.info(f"Saved {self.n} image{'s' * (self.n > 1)} to {save_dir}")
        return save_dir

    def crop(self, save: bool = True, save_dir: str | Path = DETECT_DIR / "exp", exist_ok: bool = False) -> list[dict]:
        """The detected boxes as crops: a list of {box, conf, cls, label, im (RGB)}; ``save`` also writes them to
        <run folder>/crops/<class>/<image>.jpg."""
        if save:
            save_dir = increment_path(save_dir, exist_ok=exist_ok, mkdir=True)
        crops = []
        for i in range(self.n):
            bgr = self.ims[i][..., ::-1]
            for *box, conf, cls in reversed(self.pred[i].tolist()):
                name = self.names.get(int(cls), str(int(cls)))
                file = Path(save_dir) / "crops" / safe_filename(name, default=str(int(cls))) / self._file_name(i)
                crop = save_one_box(box, bgr, file=file, BGR=True, save=save)
                crops.append({"box": box, "conf": conf, "cls": int(cls), "label": f"{name} {conf:.2f}",
                              "im": np.ascontiguousarray(crop[..., ::-1])})
        if save:
            LOGGER.info(f"Saved {len(crops)} crops to {Path(save_dir) / 'crops'}")
        return crops

    def show(self, labels: bool = True, save_dir: str | Path = DETECT_DIR / "exp") -> None:
        """Show the annotated images in windows; with no display (or no GUI support in OpenCV) save them to a new
        run folder instead and return it."""
        if os.name != "nt" and not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
            LOGGER.info("no display: saving the images instead of showing them")
            return self.save(labels, save_dir=save_dir)
        try:
            for i in range(self.n):
                cv2.imshow(self.files[i], self._annotated(i, labels)[..., ::-1])
            cv2.waitKey(1)
        except cv2.error:
            LOGGER.info("OpenCV has no GUI support here: saving the images instead of showing them")
            return self.save(labels, save_dir=save_dir)
        return None
