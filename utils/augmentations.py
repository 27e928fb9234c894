"""Image augmentations for detection: letterbox, random perspective, HSV jitter, mixup, copy-paste.

Boxes here are pixel xyxy. Random functions take ``rng`` (a numpy Generator, or the np.random module when None)
so that a dataset can own its random stream and be reproducible with any number of workers.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

GRAY = (114, 114, 114)  # padding colour


def letterbox(
    im: np.ndarray,
    new_shape: int | tuple[int, int] = 640,
    color: tuple[int, int, int] = GRAY,
    auto: bool = True,
    scaleFill: bool = False,
    scaleup: bool = True,
    stride: int = 32,
) -> tuple[np.ndarray, tuple[float, float], tuple[float, float]]:
    """Resize ``im`` (HWC) keeping its aspect ratio, then pad to ``new_shape`` (int or (h, w)).

    auto: pad only up to the next multiple of ``stride`` (minimum rectangle); scaleFill: stretch without padding;
    scaleup=False: only shrink. Returns (image, (ratio_w, ratio_h), (pad_w, pad_h)) with the padding per side.
    """
    shape = im.shape[:2]  # h, w
    if isinstance(new_shape, int):
        new_shape = (new_shape, new_shape)
    r = min(new_shape[0] / shape[0], new_shape[1] / shape[1])
    if not scaleup:
        r = min(r, 1.0)
    ratio = r, r
    new_unpad = max(1, int(round(shape[1] * r))), max(1, int(round(shape[0] * r)))  # w, h; a sliver keeps 1 px
    dw, dh = new_shape[1] - new_unpad[0], new_shape[0] - new_unpad[1]
    if auto:
        dw, dh = np.mod(dw, stride), np.mod(dh, stride)
    elif scaleFill:
        dw, dh = 0.0, 0.0
        new_unpad = (new_shape[1], new_shape[0])
        ratio = new_shape[1] / shape[1], new_shape[0] / shape[0]
    dw, dh = float(dw) / 2, float(dh) / 2  # split the padding between both sides
    if shape[::-1] != new_unpad:
        im = cv2.resize(im, new_unpad, interpolation=cv2.INTER_LINEAR)
    # +-0.1 puts the odd pixel at the bottom/right, matching YOLOv5
    top, bottom = int(round(dh - 0.1)), int(round(dh + 0.1))
    left, right = int(round(dw - 0.1)), int(round(dw + 0.1))
    im = cv2.copyMakeBorder(im, top, bottom, left, right, cv2.BORDER_CONSTANT, value=color)
    return im, ratio, (dw, dh)


def augment_hsv(
    im: np.ndarray, hgain: float = 0.5, sgain: float = 0.5, vgain: float = 0.5, rng: np.random.Generator | None = None
) -> None:
    """Jitter hue, saturation and value of a BGR uint8 image in place by random gains in [1-g, 1+g]."""
    if not (hgain or sgain or vgain):
        return
    rng = rng if rng is not None else np.random
    r = rng.uniform(-1, 1, 3) * [hgain, sgain, vgain] + 1
    hue, sat, val = cv2.split(cv2.cvtColor(im, cv2.COLOR_BGR2HSV))
    x = np.arange(0, 256, dtype=r.dtype)
    lut_hue = ((x * r[0]) % 180).astype(np.uint8)  # OpenCV hue range is 0..179
    lut_sat = np.clip(x * r[1], 0, 255).astype(np.uint8)
    lut_val = np.clip(x * r[2], 0, 255).astype(np.uint8)
    im_hsv = cv2.merge((cv2.LUT(hue, lut_hue), cv2.LUT(sat, lut_sat), cv2.LUT(val, lut_val)))
    cv2.cvtColor(im_hsv, cv2.COLOR_HSV2BGR, dst=im)


def perspective_matrix(
    height: float,
    width: float,
    out_height: float,
    out_width: float,
    degrees: float = 0.0,
    translate: float = 0.0,
    scale: float = 0.0,
    shear: float = 0.0,
    perspective: float = 0.0,
    rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, float]:
    """Random 3x3 transform from a (height, width) image to an (out_height, out_width) one, and its scale gain.

    Order: move the centre to the origin, perspective, rotate+scale, shear, translate to a random spot around the
    output centre (+- translate * size).
    """
    rng = rng if rng is not None else np.random
    C = np.eye(3)
    C[0, 2], C[1, 2] = -width / 2, -height / 2
    P = np.eye(3)
    P[2, 0], P[2, 1] = rng.uniform(-perspective, perspective), rng.uniform(-perspective, perspective)
    R = np.eye(3)
    angle, s = rng.uniform(-degrees, degrees), rng.uniform(1 - scale, 1 + scale)
    R[:2] = cv2.getRotationMatrix2D(center=(0, 0), angle=angle, scale=s)
    S = np.eye(3)
    S[0, 1] = math.tan(math.radians(rng.uniform(-shear, shear)))
    S[1, 0] = math.tan(math.radians(rng.uniform(-shear, shear)))
    T = np.eye(3)
    T[0, 2] = rng.uniform(0.5 - translate, 0.5 + translate) * out_width
    T[1, 2] = rng.uniform(0.5 - translate, 0.5 + translate) * out_height
    return T @ S @ R @ P @ C, s


def warp_boxes(boxes: np.ndarray, M: np.ndarray, width: float, height: float) -> np.ndarray:
    """Transform xyxy boxes (n, 4) by the 3x3 matrix ``M``: the enclosing box of the 4 moved corners, clipped."""
    n = len(boxes)
    if n == 0:
        return np.zeros((0, 4), dtype=np.float32)
    corners = np.ones((n * 4, 3))
    corners[:, :2] = boxes[:, [0, 1, 2, 3, 0, 3, 2, 1]].reshape(n * 4, 2)  # x1y1, x2y2, x1y2, x2y1
    corners = corners @ M.T
    xy = (corners[:, :2] / corners[:, 2:3]).reshape(n, 8)  # divide by w for perspective (w == 1 when affine)
    x, y = xy[:, [0, 2, 4, 6]], xy[:, [1, 3, 5, 7]]
    new = np.stack((x.min(1), y.min(1), x.max(1), y.max(1)), 1)
    new[:, [0, 2]] = new[:, [0, 2]].clip(0, width)
    new[:, [1, 3]] = new[:, [1, 3]].clip(0, height)
    return new.astype(np.float32)


def box_candidates(
    box1: np.ndarray,
    box2: np.ndarray,
    wh_thr: float = 2,
    ar_thr: float = 100,
    area_thr: float = 0.1,
    eps: float = 1e-16,
) -> np.ndarray:
    """Keep boxes (4, n) xyxy that after augmentation (box2) are > wh_thr px wide and tall, keep > area_thr of their
    scaled area before (box1), and have an aspect ratio < ar_thr."""
    w1, h1 = box1[2] - box1[0], box1[3] - box1[1]
    w2, h2 = box2[2] - box2[0], box2[3] - box2[1]
    ar = np.maximum(w2 / (h2 + eps), h2 / (w2 + eps))
    return (w2 > wh_thr) & (h2 > wh_thr) & (w2 * h2 / (w1 * h1 + eps) > area_thr) & (ar < ar_thr)


def random_perspective(
    im: np.ndarray,
    targets: np.ndarray | tuple = (),
    degrees: float = 10,
    translate: float = 0.1,
    scale: float = 0.1,
    shear: float = 10,
    perspective: float = 0.0,
    border: tuple[int, int] = (0, 0),
    rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Random affine/perspective warp of ``im`` and its targets (n, 5) [cls, x1, y1, x2, y2] pixels.

    ``border`` (negative) crops the output, e.g. (-s/2, -s/2) turns a 2s mosaic into an s x s image. Boxes are
    clipped to the output and degenerate ones (too small, too thin, mostly cut off) are dropped.
    """
    height, width = im.shape[0] + border[0] * 2, im.shape[1] + border[1] * 2
    M, s = perspective_matrix(im.shape[0], im.shape[1], height, width, degrees, translate, scale, shear,
                              perspective, rng)
    if border[0] or border[1] or (M != np.eye(3)).any():
        if perspective:
            im = cv2.warpPerspective(im, M, dsize=(width, height), borderValue=GRAY)
        else:
            im = cv2.warpAffine(im, M[:2], dsize=(width, height), borderValue=GRAY)
    targets = np.asarray(targets, dtype=np.float32).reshape(-1, 5)
    if len(targets):
        new = warp_boxes(targets[:, 1:5], M, width, height)
        keep = box_candidates(targets[:, 1:5].T * s, new.T, area_thr=0.10)
        targets = targets[keep]
        targets[:, 1:5] = new[keep]
    return im, targets


def mixup(
    im: np.ndarray, labels: np.ndarray, im2: np.ndarray, labels2: np.ndarray, rng: np.random.Generator | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Blend two equally sized images with a Beta(32, 32) ratio and keep both label sets."""
    rng = rng if rng is not None else np.random
    r = rng.beta(32.0, 32.0)
    im = (im * r + im2 * (1 - r)).astype(np.uint8)
    return im, np.concatenate((labels, labels2), 0)


def _ioa(box: np.ndarray, boxes: np.ndarray, eps: float = 1e-7) -> np.ndarray:
    """Intersection of ``box`` (4,) with each of ``boxes`` (n, 4) over the area of each of ``boxes``."""
    iw = (np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0])).clip(0)
    ih = (np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1])).clip(0)
    return iw * ih / ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) + eps)


def copy_paste(
    im: np.ndarray, labels: np.ndarray, p: float = 0.5, rng: np.random.Generator | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Copy-paste augmentation with rectangular patches: a random fraction ``p`` of the objects is mirrored
    left-right and pasted at the mirrored position when that spot covers < 30% of every existing box.

    im: HWC uint8 (modified in place); labels (n, 5) [cls, x1, y1, x2, y2] pixels. Returns (im, labels).
    """
    n = len(labels)
    if not p or not n:
        return im, labels
    rng = rng if rng is not None else np.random
    w = im.shape[1]
    labels = np.asarray(labels, dtype=np.float32)
    new_labels = [labels]
    for j in rng.permutation(n)[: round(p * n)]:
        cls, x1, y1, x2, y2 = labels[j]
        mirrored = np.array([w - x2, y1, w - x1, y2], dtype=np.float32)
        if (_ioa(mirrored, np.concatenate(new_labels, 0)[:, 1:5]) < 0.30).all():
            ix1, iy1, ix2, iy2 = (int(round(v)) for v in (x1, y1, x2, y2))
            patch = im[iy1:iy2, ix1:ix2][:, ::-1]
            im[iy1:iy2, w - ix2:w - ix1] = patch
            new_labels.append(np.array([[cls, w - ix2, iy1, w - ix1, iy2]], dtype=np.float32))
    return im, np.concatenate(new_labels, 0)
