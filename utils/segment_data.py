"""Instance-segmentation data (YOLOv5 v7.0): polygon labels through the detection augmentations, then masks.

Labels are the detection label files with polygon rows ``class x1 y1 x2 y2 ...`` (normalised), verified and cached
by utils/labels.py, which keeps each row's polygon as its segment. Here the polygons travel through the same
augmentations as the boxes (letterbox, mosaic, copy-paste, random perspective, mixup, flips; HSV leaves them
alone), and the boxes are re-derived from the transformed polygons, so a box always encloses its mask:

- before a random affine/perspective warp every polygon is resampled to ``SEGMENT_POINTS`` points (evenly along
  its vertex sequence, closed), so a rotated or sheared edge stays an edge; after it, the box of a polygon is the
  box of its points inside the image, and boxes are kept or dropped with box_candidates (area ratio 0.01, as
  official: a polygon's box shrinks more than a rectangle's under rotation).
- masks are rasterised at ``img_size / mask_ratio`` (the prototype resolution, mask_ratio 4 by default) by
  utils/masks.py: ``overlap`` (official ``overlap_mask``, the default) writes one index map per image (0 background,
  k + 1 for label k, labels re-ordered by area descending so a small object lying on a large one stays visible);
  otherwise one binary mask per label.

A box row (no polygon) in a segmentation dataset gets its rectangle as its polygon.

Items: (image uint8 (3, H, W), targets (n, 6) [0, cls, x, y, w, h], path, shapes, masks) with masks (1, H/r, W/r)
(overlap) or (n, H/r, W/r); ``collate_fn`` concatenates masks to (B, H/r, W/r) or (n_total, H/r, W/r).
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import torch

from utils.augmentations import GRAY, augment_hsv, box_candidates, letterbox, perspective_matrix
from utils.boxes import xyn2xy, xywhn2xyxy, xyxy2xywhn
from utils.dataloaders import LoadImagesAndLabels, create_dataloader
from utils.general import UserError
from utils.masks import polygons_to_masks, polygons_to_masks_overlap

SEGMENT_POINTS = 1000  # points per polygon before a warp (official's resample count)
SEGMENT_AREA_THR = 0.01  # box_candidates area ratio for warped polygons (official; boxes use 0.10)


def box_polygon(box_xywhn: np.ndarray) -> np.ndarray:
    """The 4-corner polygon (4, 2) of a normalised xywh box: the segment of a label row without a polygon."""
    x, y, w, h = (float(v) for v in box_xywhn)
    x1, y1, x2, y2 = x - w / 2, y - h / 2, x + w / 2, y + h / 2
    return np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]], dtype=np.float32)


def resample_polygon(polygon: np.ndarray, n: int = SEGMENT_POINTS) -> np.ndarray:
    """``n`` points (n, 2) spread evenly along the closed vertex sequence of ``polygon`` (k, 2): vertex j sits at
    parameter j, the closing edge from the last vertex back to the first included."""
    closed = np.concatenate((polygon, polygon[:1]), 0).astype(np.float64)
    t = np.linspace(0, len(closed) - 1, n)
    knots = np.arange(len(closed))
    return np.stack((np.interp(t, knots, closed[:, 0]), np.interp(t, knots, closed[:, 1])), 1).astype(np.float32)


def polygon_box(polygon: np.ndarray, width: float, height: float) -> np.ndarray:
    """xyxy box (4,) of the points of ``polygon`` that lie inside the width x height image (zeros when none do)."""
    x, y = polygon[:, 0], polygon[:, 1]
    inside = (x >= 0) & (y >= 0) & (x <= width) & (y <= height)
    if not inside.any():
        return np.zeros(4, dtype=np.float32)
    x, y = x[inside], y[inside]
    return np.array([x.min(), y.min(), x.max(), y.max()], dtype=np.float32)


def random_perspective_segments(
    im: np.ndarray, labels: np.ndarray, segments: list[np.ndarray], degrees: float = 10, translate: float = 0.1,
    scale: float = 0.1, shear: float = 10, perspective: float = 0.0, border: tuple[int, int] = (0, 0),
    rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """utils.augmentations.random_perspective for labels (n, 5) [cls, x1, y1, x2, y2] pixels with one pixel
    polygon per label: the same random matrix (same draws from ``rng``) moves the image and the resampled
    polygons; the boxes become the boxes of the moved polygons. Returns (image, labels, polygons)."""
    height, width = im.shape[0] + border[0] * 2, im.shape[1] + border[1] * 2
    M, s = perspective_matrix(im.shape[0], im.shape[1], height, width, degrees, translate, scale, shear,
                              perspective, rng)
    if border[0] or border[1] or (M != np.eye(3)).any():
        if perspective:
            im = cv2.warpPerspective(im, M, dsize=(width, height), borderValue=GRAY)
        else:
            im = cv2.warpAffine(im, M[:2], dsize=(width, height), borderValue=GRAY)
    labels = np.asarray(labels, dtype=np.float32).reshape(-1, 5)
    if not len(labels):
        return im, labels, []
    moved, boxes = [], np.zeros((len(labels), 4), dtype=np.float32)
    for k, polygon in enumerate(segments):
        xy = np.ones((SEGMENT_POINTS, 3))
        xy[:, :2] = resample_polygon(polygon)
        xy = xy @ M.T
        xy = (xy[:, :2] / xy[:, 2:3]).astype(np.float32)  # the division matters only for a perspective warp
        moved.append(xy)
        boxes[k] = polygon_box(xy, width, height)
    keep = box_candidates(labels[:, 1:5].T * s, boxes.T, area_thr=SEGMENT_AREA_THR)
    labels = labels[keep]
    labels[:, 1:5] = boxes[keep]
    return im, labels, [xy for xy, kept in zip(moved, keep) if kept]


def copy_paste_segments(im: np.ndarray, labels: np.ndarray, segments: list[np.ndarray], p: float = 0.5,
                        rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Copy-paste with the objects' own shapes: a random fraction ``p`` of the objects is mirrored left-right and
    pasted (only the pixels inside its polygon) where the mirrored box covers < 30% of every existing box.
    Pixel labels (n, 5) and polygons; ``im`` is modified in place."""
    n = len(labels)
    if not p or not n:
        return im, labels, segments
    rng = rng if rng is not None else np.random
    w = im.shape[1]
    labels, segments = np.asarray(labels, dtype=np.float32), list(segments)
    mask = np.zeros(im.shape[:2], dtype=np.uint8)
    for j in rng.permutation(n)[: round(p * n)]:
        cls, x1, y1, x2, y2 = labels[j]
        mirrored_box = np.array([w - x2, y1, w - x1, y2], dtype=np.float32)
        iw = (np.minimum(mirrored_box[2], labels[:, 3]) - np.maximum(mirrored_box[0], labels[:, 1])).clip(0)
        ih = (np.minimum(mirrored_box[3], labels[:, 4]) - np.maximum(mirrored_box[1], labels[:, 2])).clip(0)
        ioa = iw * ih / ((labels[:, 3] - labels[:, 1]) * (labels[:, 4] - labels[:, 2]) + 1e-7)
        if (ioa < 0.30).all():
            labels = np.concatenate((labels, [[cls, *mirrored_box]]), 0)
            segments.append(np.stack((w - segments[j][:, 0], segments[j][:, 1]), 1).astype(np.float32))
            cv2.fillPoly(mask, [np.round(segments[j]).astype(np.int32)], 1)
    if mask.any():  # the mirror image of the chosen objects' pixels lands on their mirrored polygons
        flipped, flipped_mask = im[:, ::-1], mask[:, ::-1].astype(bool)
        im[flipped_mask] = flipped[flipped_mask]
    return im, labels, segments


class LoadImagesAndMasks(LoadImagesAndLabels):
    """LoadImagesAndLabels for instance segmentation: items carry masks rasterised from the augmented polygons
    (see the module docstring). ``mask_ratio``: mask resolution is image size / mask_ratio; ``overlap``: one
    index map per image (official overlap_mask) instead of one mask per instance."""

    def __init__(self, *args: Any, mask_ratio: int = 4, overlap: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not isinstance(mask_ratio, int) or mask_ratio < 1:
            raise UserError(f"--mask-ratio must be a positive integer, got {mask_ratio!r}")
        self.mask_ratio, self.overlap = mask_ratio, overlap
        # a box row has no polygon: its rectangle stands in, so every label has a mask
        self.segments = [[sg if len(sg) else box_polygon(lb[1:5]) for lb, sg in zip(labels, segs)]
                         for labels, segs in zip(self.labels, self.segments)]

    def load_mosaic_segments(self, index: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, list]:
        """The mosaic of LoadImagesAndLabels.load_mosaic with the polygons moved along. Returns (image (s, s, 3),
        labels (n, 5) pixel xyxy, polygons in pixels)."""
        s = self.img_size
        canvas, tiles = self.mosaic_canvas(index, rng)
        all_labels, segments = [], []
        for i, w, h, padw, padh in tiles:
            labels = self.labels[i].copy()
            if len(labels):
                labels[:, 1:] = xywhn2xyxy(labels[:, 1:], w, h, padw=padw, padh=padh)
            all_labels.append(labels)
            segments += [xyn2xy(sg, w, h, padw, padh) for sg in self.segments[i]]
        labels = np.concatenate(all_labels, 0)
        labels[:, 1:] = labels[:, 1:].clip(0, 2 * s)
        segments = [sg.clip(0, 2 * s) for sg in segments]
        hyp = self.hyp
        canvas, labels, segments = copy_paste_segments(canvas, labels, segments, p=hyp["copy_paste"], rng=rng)
        return random_perspective_segments(canvas, labels, segments, degrees=hyp["degrees"],
                                           translate=hyp["translate"], scale=hyp["scale"], shear=hyp["shear"],
                                           perspective=hyp["perspective"], border=self.mosaic_border, rng=rng)

    def _load_letterboxed_segments(self, index: int, rng: np.random.Generator) -> tuple:
        """One image letterboxed to its (rect) batch shape with pixel labels and polygons, and its shapes."""
        im, (h0, w0), (h, w) = self.load_image(index)
        shape = self.batch_shapes[self.batch[index]] if self.rect else self.img_size
        im, ratio, pad = letterbox(im, shape, auto=False, scaleup=self.augment)
        shapes = (h0, w0), ((h / h0, w / w0), pad)
        labels = self.labels[index].copy()
        sw, sh = ratio[0] * w, ratio[1] * h
        segments = [xyn2xy(sg, sw, sh, padw=pad[0], padh=pad[1]) for sg in self.segments[index]]
        if len(labels):
            labels[:, 1:] = xywhn2xyxy(labels[:, 1:], sw, sh, padw=pad[0], padh=pad[1])
        if self.augment:
            hyp = self.hyp
            im, labels, segments = random_perspective_segments(
                im, labels, segments, degrees=hyp["degrees"], translate=hyp["translate"], scale=hyp["scale"],
                shear=hyp["shear"], perspective=hyp["perspective"], rng=rng)
        return im, labels, segments, shapes

    def rasterise(self, labels: np.ndarray, segments: list[np.ndarray], shape: tuple[int, int]) -> tuple[
            np.ndarray, torch.Tensor]:
        """Masks of pixel ``segments`` on an image of ``shape`` (h, w) at 1 / mask_ratio resolution; returns the
        labels (re-ordered by area, largest first, in overlap mode) and the masks (see the module docstring)."""
        h, w = shape
        mh, mw = h // self.mask_ratio, w // self.mask_ratio
        if not len(labels):
            return labels, torch.zeros((1 if self.overlap else 0, mh, mw), dtype=torch.float32)
        if self.overlap:
            masks, order = polygons_to_masks_overlap((h, w), segments, downsample_ratio=self.mask_ratio)
            return labels[order], torch.from_numpy(np.asarray(masks)[None]).float()
        masks = polygons_to_masks((h, w), segments, color=1, downsample_ratio=self.mask_ratio)
        return labels, torch.from_numpy(np.asarray(masks)).float()

    def __getitem__(self, index: int | tuple[int, int]) -> tuple:
        epoch, position = index if isinstance(index, tuple) else (0, index)
        position = range(len(self.indices))[position]
        rng = np.random.default_rng([self.seed, epoch, position])
        index = self.indices[position]
        hyp = self.hyp
        if self.mosaic and rng.random() < hyp["mosaic"]:
            im, labels, segments = self.load_mosaic_segments(index, rng)
            shapes = None
            if rng.random() < hyp["mixup"]:
                im2, labels2, segments2 = self.load_mosaic_segments(int(rng.choice(self.indices)), rng)
                r = rng.beta(32.0, 32.0)
                im = (im * r + im2 * (1 - r)).astype(np.uint8)
                labels, segments = np.concatenate((labels, labels2), 0), segments + segments2
        else:
            im, labels, segments, shapes = self._load_letterboxed_segments(index, rng)

        labels = np.asarray(labels, dtype=np.float32).reshape(-1, 5)
        labels, masks = self.rasterise(labels, list(segments), im.shape[:2])
        if len(labels):
            labels[:, 1:5] = xyxy2xywhn(labels[:, 1:5], w=im.shape[1], h=im.shape[0], clip=True, eps=1e-3)
        if self.augment:
            augment_hsv(im, hgain=hyp["hsv_h"], sgain=hyp["hsv_s"], vgain=hyp["hsv_v"], rng=rng)
            if rng.random() < hyp["flipud"]:
                im = np.flipud(im)
                labels[:, 2] = 1 - labels[:, 2]
                masks = torch.flip(masks, dims=[1])
            if rng.random() < hyp["fliplr"]:
                im = np.fliplr(im)
                labels[:, 1] = 1 - labels[:, 1]
                masks = torch.flip(masks, dims=[2])

        targets = torch.zeros((len(labels), 6))
        targets[:, 1:] = torch.from_numpy(labels)
        im = np.ascontiguousarray(im.transpose((2, 0, 1))[::-1])  # HWC BGR -> CHW RGB
        return torch.from_numpy(im), targets, self.im_files[index], shapes, masks

    @staticmethod
    def collate_fn(batch: list[tuple]) -> tuple[torch.Tensor, torch.Tensor, tuple, tuple, torch.Tensor]:
        """Stack images, concatenate targets (image index in column 0) and masks."""
        ims, targets, paths, shapes, masks = zip(*batch)
        for i, t in enumerate(targets):
            t[:, 0] = i
        return torch.stack(ims, 0), torch.cat(targets, 0), paths, shapes, torch.cat(masks, 0)

    @staticmethod
    def collate_fn4(batch: list[tuple]) -> tuple:
        raise UserError("--quad is not supported for segmentation training")


def create_segment_dataloader(path: Any, imgsz: int, batch_size: int, stride: float, mask_ratio: int = 4,
                              overlap: bool = True, quad: bool = False, **kwargs: Any) -> tuple:
    """utils.dataloaders.create_dataloader with LoadImagesAndMasks: batches are (imgs, targets, paths, shapes,
    masks). ``quad`` is refused (no quad collation for masks)."""
    if quad:
        raise UserError("--quad is not supported for segmentation training")
    return create_dataloader(path, imgsz, batch_size, stride, dataset_class=LoadImagesAndMasks,
                             mask_ratio=mask_ratio, overlap=overlap, **kwargs)
