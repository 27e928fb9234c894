"""The built-in 'shapes' dataset: circles, squares and triangles on textured backgrounds, made deterministically.

``generate_shapes(path)`` writes path/images/{train,val}/*.jpg and path/labels/{train,val}/*.txt (YOLO format);
``generate_shapes_seg(path)`` writes the same images with polygon labels (``cls x1 y1 x2 y2 ...``, instance
segmentation): the exact outline of each drawn shape (the triangle's 3 corners, the square's 4, the ellipse as
ELLIPSE_POINTS points on it).
It builds everything in a temporary sibling folder and renames it into place, so concurrent processes (DDP
ranks) never see a half-written dataset.
"""

from __future__ import annotations

import os
import shutil
import uuid
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
    path = Path(path)
    if (path / "images" / "train").is_dir() and (path / "images" / "val").is_dir():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        rng = np.random.default_rng(seed)
        _write_split(tmp, "train", n_train, rng, size, segments)
        _write_split(tmp, "val", n_val, rng, size, segments)
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
