"""The built-in 'shapes' dataset: circles, squares and triangles on textured backgrounds, made deterministically.

``generate_shapes(path)`` writes path/images/{train,val}/*.jpg and path/labels/{train,val}/*.txt (YOLO format);
``generate_shapes_seg(path)`` writes the same images with polygon labels (``cls x1 y1 x2 y2 ...``, instance
segmentation): the exact outline of each drawn shape (the triangle's 3 corners, the square's 4, the ellipse as
ELLIPSE_POINTS points on it).
``generate_shapes_large(path)`` is its large-image mode (data/shapes_large.yaml): 1920x1080 scenes with many
8-24 px objects (all COCO-small), the val split whole and the train split as 320 px crops of such scenes, for
training a detector at native scale and measuring sliced inference (utils/slicing.py) on the whole images.
It builds everything in a temporary sibling folder and renames it into place, so concurrent processes (DDP
ranks) never see a half-written dataset.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from utils.general import UserError

CLASSES = ("circle", "square", "triangle")
ELLIPSE_POINTS = 64  # vertices of an ellipse's polygon: the chord deviates < 0.12% of the radius from the curve


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Smooth random colour field + fine noise + a few lines: texture the detector must learn to ignore."""
    coarse = rng.uniform(40, 215, size=(int(rng.integers(3, 9)), int(rng.integers(3, 9)), 3)).astype(np.float32)
    im = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)
    im += rng.normal(0, rng.uniform(3, 12), size=im.shape).astype(np.float32)
    for _ in range(int(rng.integers(0, 6))):
        p1, p2 = rng.integers(0, size, 2), rng.integers(0, size, 2)
        color = tuple(float(c) for c in rng.uniform(0, 255, 3))
        cv2.line(im, (int(p1[0]), int(p1[1])), (int(p2[0]), int(p2[1])), color, int(rng.integers(1, 3)))
    return im


def _iou(box: tuple[int, int, int, int], boxes: list[tuple[int, int, int, int]]) -> float:
    if not boxes:
        return 0.0
    b = np.array(boxes, dtype=np.float32)
    iw = np.clip(np.minimum(box[2], b[:, 2]) - np.maximum(box[0], b[:, 0]), 0, None)
    ih = np.clip(np.minimum(box[3], b[:, 3]) - np.maximum(box[1], b[:, 1]), 0, None)
    inter = iw * ih
    union = (box[2] - box[0]) * (box[3] - box[1]) + (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) - inter
    return float((inter / union).max())


def _draw_shape(im: np.ndarray, cls: int, box: tuple[int, int, int, int], color: tuple[float, float, float]) -> None:
    """Draw class ``cls`` filling ``box`` (x1, y1, x2, y2 pixels) so that ``box`` is its tight bounding box."""
    x1, y1, x2, y2 = box
    if cls == 0:
        center = ((x1 + x2) / 2, (y1 + y2) / 2)
        cv2.ellipse(im, (center, (x2 - x1, y2 - y1), 0), color, -1, cv2.LINE_AA)
    elif cls == 1:
        cv2.rectangle(im, (int(x1), int(y1)), (int(x2) - 1, int(y2) - 1), color, -1)
    else:
        pts = np.array([[(x1 + x2) / 2, y1], [x2, y2], [x1, y2]], dtype=np.float32)
        cv2.fillPoly(im, [np.round(pts * 16).astype(np.int32)], color, cv2.LINE_AA, shift=4)


def shape_polygon(cls: int, box: tuple[int, int, int, int]) -> np.ndarray:
    """Outline (k, 2) in pixels of the shape _draw_shape draws for class ``cls`` in ``box``."""
    x1, y1, x2, y2 = box
    if cls == 0:
        t = np.linspace(0, 2 * np.pi, ELLIPSE_POINTS, endpoint=False)
        return np.stack(((x1 + x2) / 2 + (x2 - x1) / 2 * np.cos(t), (y1 + y2) / 2 + (y2 - y1) / 2 * np.sin(t)), 1)
    if cls == 1:
        return np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]], dtype=np.float64)
    return np.array([[(x1 + x2) / 2, y1], [x2, y2], [x1, y2]], dtype=np.float64)


def make_image(rng: np.random.Generator, size: int = 256, max_objects: int = 5,
               polygons: list | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One image (uint8 BGR, size x size) and its labels (n, 5) [cls, x, y, w, h] normalised; with a list as
    ``polygons``, each object's normalised outline (k, 2) is appended to it (the image and labels stay the same)."""
    im = _background(rng, size)
    boxes, labels = [], []
    for _ in range(int(rng.integers(1, max_objects + 1))):
        for _attempt in range(10):  # place without heavy overlap so every object stays visible
            cls = int(rng.integers(0, len(CLASSES)))
            w = float(rng.uniform(0.1, 0.4) * size)
            h = w if cls == 1 else w * float(rng.uniform(0.8, 1.25))
            x1, y1 = float(rng.uniform(0, size - w)), float(rng.uniform(0, size - h))
            box = (round(x1), round(y1), round(x1 + w), round(y1 + h))
            if _iou(box, boxes) < 0.05:
                break
        else:
            continue
        # fill colour far from the local background so the shape is visible
        patch_mean = im[box[1]:box[3], box[0]:box[2]].reshape(-1, 3).mean(0)
        color = np.where(patch_mean > 128, rng.uniform(0, 70, 3), rng.uniform(185, 255, 3))
        _draw_shape(im, cls, box, tuple(float(c) for c in color))
        boxes.append(box)
        bx, by, bw, bh = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2, box[2] - box[0], box[3] - box[1]
        labels.append([cls, bx / size, by / size, bw / size, bh / size])
        if polygons is not None:
            polygons.append(shape_polygon(cls, box) / size)
    return np.clip(im, 0, 255).astype(np.uint8), np.array(labels, dtype=np.float32).reshape(-1, 5)


def _background_rect(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """``_background`` for a height x width image: a smooth colour field, fine noise and a few lines."""
    coarse = rng.uniform(40, 215, size=(int(rng.integers(3, 9)), int(rng.integers(5, 15)), 3)).astype(np.float32)
    im = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    im += rng.normal(0, rng.uniform(3, 12), size=im.shape).astype(np.float32)
    for _ in range(int(rng.integers(0, 10))):
        p1 = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        p2 = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        cv2.line(im, p1, p2, tuple(float(c) for c in rng.uniform(0, 255, 3)), int(rng.integers(1, 3)))
    return im


def make_large_image(rng: np.random.Generator, height: int = 1080, width: int = 1920,
                     n_objects: tuple[int, int] = (15, 40),
                     object_px: tuple[int, int] = (8, 24)) -> tuple[np.ndarray, np.ndarray]:
    """One large scene (uint8 BGR, height x width) with ``n_objects`` (inclusive range) shapes whose width is
    ``object_px`` pixels, and its boxes (n, 5) [cls, x1, y1, x2, y2] in pixels."""
    im = _background_rect(rng, height, width)
    boxes, labels = [], []
    for _ in range(int(rng.integers(n_objects[0], n_objects[1] + 1))):
        for _attempt in range(10):
            cls = int(rng.integers(0, len(CLASSES)))
            w = float(rng.uniform(*object_px))
            h = w if cls == 1 else w * float(rng.uniform(0.8, 1.25))
            x1, y1 = float(rng.uniform(0, width - w)), float(rng.uniform(0, height - h))
            box = (round(x1), round(y1), round(x1 + w), round(y1 + h))
            if _iou(box, boxes) == 0:  # small objects: no overlap at all, so each stays recognisable
                break
        else:
            continue
        patch_mean = im[box[1]:box[3], box[0]:box[2]].reshape(-1, 3).mean(0)
        color = np.where(patch_mean > 128, rng.uniform(0, 70, 3), rng.uniform(185, 255, 3))
        _draw_shape(im, cls, box, tuple(float(c) for c in color))
        boxes.append(box)
        labels.append([cls, *box])
    return np.clip(im, 0, 255).astype(np.uint8), np.array(labels, dtype=np.float32).reshape(-1, 5)


def crop_scene(im: np.ndarray, boxes: np.ndarray, size: int = 640,
               min_visible: float = 0.6) -> list[tuple[np.ndarray, np.ndarray]]:
    """Cut a scene into size x size crops (a grid, the last row and column flush with the far edges) with their
    labels (n, 5) [cls, x, y, w, h] normalised: boxes with at least ``min_visible`` of their area inside a crop,
    clipped to it."""
    height, width = im.shape[:2]
    xs = [*range(0, width - size, size), width - size]
    ys = [*range(0, height - size, size), height - size]
    out = []
    for y0 in ys:
        for x0 in xs:
            clipped = boxes.copy()
            clipped[:, [1, 3]] = (clipped[:, [1, 3]] - x0).clip(0, size)
            clipped[:, [2, 4]] = (clipped[:, [2, 4]] - y0).clip(0, size)
            area = (boxes[:, 3] - boxes[:, 1]) * (boxes[:, 4] - boxes[:, 2])
            inside = (clipped[:, 3] - clipped[:, 1]) * (clipped[:, 4] - clipped[:, 2])
            keep = clipped[inside >= min_visible * area]
            xywh = np.stack([keep[:, 0], (keep[:, 1] + keep[:, 3]) / 2 / size, (keep[:, 2] + keep[:, 4]) / 2 / size,
                             (keep[:, 3] - keep[:, 1]) / size, (keep[:, 4] - keep[:, 2]) / size], 1)
            out.append((im[y0:y0 + size, x0:x0 + size], xywh))
    return out


def _write_image(root: Path, split: str, name: str, im: np.ndarray, labels: np.ndarray) -> None:
    """One image and its YOLO label file (labels (n, 5) [cls, x, y, w, h] normalised)."""
    cv2.imwrite(str(root / "images" / split / f"{name}.jpg"), im, [cv2.IMWRITE_JPEG_QUALITY, 95])
    lines = [f"{int(c)} {x:.6f} {y:.6f} {w:.6f} {h:.6f}" for c, x, y, w, h in labels]
    (root / "labels" / split / f"{name}.txt").write_text("\n".join(lines) + "\n")


def _write_large_splits(root: Path, rng: np.random.Generator, n_train: int, n_val: int, crop: int) -> None:
    """train: the ``crop`` px crops of ``n_train`` scenes; val: ``n_val`` whole scenes."""
    for split in ("train", "val"):
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
    for i in range(n_train):
        im, boxes = make_large_image(rng)
        for j, (part, labels) in enumerate(crop_scene(im, boxes, crop)):
            _write_image(root, "train", f"train_{i:05d}_{j}", part, labels)
    for i in range(n_val):
        im, boxes = make_large_image(rng)
        h, w = im.shape[:2]
        xywh = np.stack([boxes[:, 0], (boxes[:, 1] + boxes[:, 3]) / 2 / w, (boxes[:, 2] + boxes[:, 4]) / 2 / h,
                         (boxes[:, 3] - boxes[:, 1]) / w, (boxes[:, 4] - boxes[:, 2]) / h], 1)
        _write_image(root, "val", f"val_{i:05d}", im, xywh)


def _write_split(root: Path, split: str, n: int, rng: np.random.Generator, size: int, segments: bool = False) -> None:
    (root / "images" / split).mkdir(parents=True)
    (root / "labels" / split).mkdir(parents=True)
    for i in range(n):
        polygons = [] if segments else None
        im, labels = make_image(rng, size, polygons=polygons)
        cv2.imwrite(str(root / "images" / split / f"{split}_{i:05d}.jpg"), im, [cv2.IMWRITE_JPEG_QUALITY, 95])
        if segments:
            lines = [f"{int(lb[0])} " + " ".join(f"{v:.6f}" for v in pg.clip(0, 1).reshape(-1))
                     for lb, pg in zip(labels, polygons)]
        else:
            lines = [f"{int(c)} {x:.6f} {y:.6f} {w:.6f} {h:.6f}" for c, x, y, w, h in labels]
        (root / "labels" / split / f"{split}_{i:05d}.txt").write_text("\n".join(lines) + "\n")


def generate_shapes(
    path: str | Path, n_train: int = 384, n_val: int = 96, size: int = 256, seed: int = 0, segments: bool = False
) -> Path:
    """Write the shapes dataset to ``path`` (a no-op when it is already there); same seed -> same files.
    ``segments``: polygon labels (instance segmentation) instead of boxes."""
    return _generate(path, seed, lambda root, rng: (_write_split(root, "train", n_train, rng, size, segments),
                                                    _write_split(root, "val", n_val, rng, size, segments)))


def generate_shapes_large(path: str | Path, n_train: int = 40, n_val: int = 30, crop: int = 320,
                          seed: int = 0) -> Path:
    """Write the large-image shapes dataset to ``path`` (a no-op when it is there): train = the ``crop`` px crops
    of ``n_train`` 1920x1080 scenes (24 each at 320), val = ``n_val`` whole scenes; same seed -> same files."""
    return _generate(path, seed, lambda root, rng: _write_large_splits(root, rng, n_train, n_val, crop))


def _generate(path: str | Path, seed: int, write: Callable[[Path, np.random.Generator], object]) -> Path:
    """Run ``write(folder, rng)`` into a temporary sibling of ``path`` and rename it into place (a no-op when
    ``path`` already holds both splits)."""
    path = Path(path)
    if (path / "images" / "train").is_dir() and (path / "images" / "val").is_dir():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        write(tmp, np.random.default_rng(seed))
        try:
            os.rename(tmp, path)  # atomic: another process either sees nothing or the whole dataset
        except OSError as e:
            if not (path / "images" / "val").is_dir():  # not a concurrent winner: something else is in the way
                raise UserError(f"{path} exists but is not a complete shapes dataset; delete it to regenerate") from e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def generate_shapes_seg(path: str | Path, n_train: int = 384, n_val: int = 96, size: int = 256, seed: int = 0) -> Path:
    """The shapes dataset with polygon labels (data/shapes-seg.yaml, the demo of segment/train.py)."""
    return generate_shapes(path, n_train, n_val, size, seed, segments=True)


if __name__ == "__main__":
    from utils.general import ROOT

    print(generate_shapes(ROOT / "datasets" / "shapes"))
