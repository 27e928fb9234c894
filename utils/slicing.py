"""Sliced inference for small objects in large images (SAHI: Akyon, Altinuc and Temizel, "Slicing Aided Hyper
Inference and Fine-tuning for Small Object Detection", ICIP 2022).

A large image letterboxed to the model's input size shrinks its small objects below what the detector sees (a
16 px object in a 1920x1080 image is 5 px at 640). Slicing cuts the image into overlapping tiles of ``size`` pixels
(``tile_grid``), runs each tile at the model's input size together with the whole image letterboxed as usual (so
large objects are still found whole), shifts each tile's boxes back into the image (``shift_boxes``) and merges the
detections of all passes into one set:

- ``merge_nms``: class-wise NMS at an IoU threshold, the same rule as ordinary detection;
- ``greedy_merge``: SAHI's greedy non-maximum merging: in order of confidence, each remaining box absorbs the
  remaining boxes of its class that it matches by IoS (intersection over the smaller box) or IoU, and becomes their
  enclosing box. IoS joins the piece of an object cut at a tile edge with the whole object seen elsewhere, which
  IoU (piece area / whole area) often does not.

Before merging, a tile's detection that touches an edge of its tile lying inside the image (a cut object) is
dropped when it is no wider (taller) than the tiles' overlap there: the overlap guarantees such an object lies
whole in the neighbouring tile, which reports it uncut (``drop_cut_boxes``).

Shapes: detections are (n, 6) tensors [x1, y1, x2, y2, conf, cls] in pixels; tiles are (x1, y1, x2, y2) pixel
tuples with x2, y2 exclusive. ``Slicer`` ties it together around any forward function (utils never imports
models: detect.py, val.py and AutoShape pass their model's forward in).
"""

from collections.abc import Callable, Sequence

import numpy as np
import torch

from utils.augmentations import letterbox
from utils.boxes import box_area, box_iou, nms, scale_boxes
from utils.general import UserError

MERGES = ("nms", "greedy")  # --slice-merge choices; the first is the default, chosen by measurement (README)
CUT_EDGE_PX = 2.0  # a box within this many pixels of a tile edge inside the image counts as cut by it
Tile = tuple[int, int, int, int]


def check_slice_settings(size: int, overlap: float, merge: str = MERGES[0]) -> None:
    """A UserError for a slice size below 32 px, an overlap outside [0, 0.9] or an unknown merge."""
    if int(size) < 32:
        raise UserError(f"--slice {size}: give a tile size of at least 32 pixels")
    if not 0 <= overlap <= 0.9:
        raise UserError(f"--slice-overlap {overlap}: give a fraction of the tile between 0 and 0.9")
    if merge not in MERGES:
        raise UserError(f"--slice-merge {merge}: choose one of {', '.join(MERGES)}")


def _starts(length: int, size: int, overlap: float) -> list[int]:
    """Tile start offsets along one axis: every ``size * (1 - overlap)`` pixels (rounded down, so neighbours
    overlap by at least the fraction asked), the last tile flush with the far edge."""
    if length <= size:
        return [0]
    step = max(1, int(size * (1 - overlap)))
    return [*range(0, length - size, step), length - size]


def tile_grid(height: int, width: int, size: int, overlap: float = 0.2) -> list[Tile]:
    """The tiles (x1, y1, x2, y2) that cover a ``height`` x ``width`` image: squares of ``size`` (the image's own
    extent along an axis shorter than ``size``), neighbours overlapping by at least ``overlap * size`` pixels,
    row by row from the top left."""
    check_slice_settings(size, overlap)
    xs, ys = _starts(width, size, overlap), _starts(height, size, overlap)
    return [(x, y, min(x + size, width), min(y + size, height)) for y in ys for x in xs]


def shift_boxes(det: torch.Tensor, dx: float, dy: float) -> torch.Tensor:
    """A copy of ``det`` (n, >=4) with its xyxy boxes moved by (dx, dy): a tile's boxes into image pixels."""
    det = det.clone()
    det[:, [0, 2]] += dx
    det[:, [1, 3]] += dy
    return det


def drop_cut_boxes(det: torch.Tensor, tile: Tile, tiles: Sequence[Tile], width: int, height: int,
                   margin: float = CUT_EDGE_PX) -> torch.Tensor:
    """``det`` (image pixels) of ``tile`` without the boxes cut by one of its edges inside the image that the
    neighbouring tile sees whole: those touching (within ``margin``) such an edge and no larger than the overlap
    across it. Boxes on the image border, and boxes larger than the overlap (no tile holds them whole), stay."""
    if not len(det):
        return det
    x1, y1, x2, y2 = tile
    bx1, by1, bx2, by2 = det[:, 0], det[:, 1], det[:, 2], det[:, 3]
    bw, bh = bx2 - bx1, by2 - by1
    cut = torch.zeros(len(det), dtype=torch.bool, device=det.device)
    # the overlap across each inner edge: with the nearest tile starting (ending) inside this one
    right = [t[0] for t in tiles if t[1] == y1 and x1 < t[0] < x2]
    left = [t[2] for t in tiles if t[1] == y1 and x1 < t[2] < x2]
    down = [t[1] for t in tiles if t[0] == x1 and y1 < t[1] < y2]
    up = [t[3] for t in tiles if t[0] == x1 and y1 < t[3] < y2]
    if x2 < width and right:
        cut |= (bx2 >= x2 - margin) & (bw <= x2 - min(right))
    if x1 > 0 and left:
        cut |= (bx1 <= x1 + margin) & (bw <= max(left) - x1)
    if y2 < height and down:
        cut |= (by2 >= y2 - margin) & (bh <= y2 - min(down))
    if y1 > 0 and up:
        cut |= (by1 <= y1 + margin) & (bh <= max(up) - y1)
    return det[~cut]


def box_ios(box1: torch.Tensor, box2: torch.Tensor, eps: float = 1e-9) -> torch.Tensor:
    """Intersection over the smaller box's area, (N, M) for xyxy boxes (N, 4) and (M, 4): 1 when one box lies
    inside the other."""
    lt = torch.max(box1[:, None, :2], box2[None, :, :2])
    rb = torch.min(box1[:, None, 2:], box2[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(2)
    smaller = torch.min(box_area(box1)[:, None], box_area(box2)[None, :])
    return inter / (smaller + eps)


def merge_nms(det: torch.Tensor, iou_thres: float = 0.45, agnostic: bool = False,
              max_det: int | None = None) -> torch.Tensor:
    """Class-wise NMS of the pooled detections (n, 6) of all passes, most confident first."""
    if not len(det):
        return det
    offsets = 0.0 if agnostic else det[:, 5:6] * (det[:, :4].max() + 1)  # boxes of different classes never overlap
    keep = nms(det[:, :4] + offsets, det[:, 4], iou_thres)
    return det[keep[:max_det] if max_det else keep]


def greedy_merge(det: torch.Tensor, match_thres: float = 0.5, metric: str = "ios", agnostic: bool = False,
                 max_det: int | None = None) -> torch.Tensor:
    """SAHI's greedy non-maximum merging of the pooled detections (n, 6): taking boxes by confidence, each one not
    yet merged absorbs every other unmerged box of its class whose ``metric`` ('ios' or 'iou') with it exceeds
    ``match_thres``; the result is their enclosing box with its confidence and class. Most confident first."""
    if not len(det):
        return det
    det = det[det[:, 4].argsort(descending=True)]
    boxes = det[:, :4]
    match = (box_ios(boxes, boxes) if metric == "ios" else box_iou(boxes, boxes)) > match_thres
    if not agnostic:
        match &= det[:, 5:6] == det[:, 5:6].T
    match = match.cpu().numpy()
    merged = np.zeros(len(det), dtype=bool)
    out = []
    for i in range(len(det)):
        if merged[i]:
            continue
        group = match[i] & ~merged
        group[i] = True
        merged |= group
        members = boxes[torch.from_numpy(group).to(boxes.device)]
        out.append(torch.cat((members[:, :2].min(0).values, members[:, 2:].max(0).values, det[i, 4:])))
        if max_det and len(out) == max_det:
            break
    return torch.stack(out)


class Slicer:
    """Sliced inference around a model's forward: ``Slicer(...)(image)`` -> detections (n, 6) in the image's
    pixels, merged over the tiles and the whole image.

    ``forward`` takes a float (B, 3, H, W) batch in [0, 1] and returns raw predictions (a tensor, or a tuple whose
    first item is one); ``nms`` turns them into per-image detections (utils.boxes.non_max_suppression with the
    caller's thresholds). ``imgsz`` (h, w): the input size every tile and the whole image are letterboxed to;
    ``batch_size``: tiles per forward call (1 for models exported with a fixed batch).
    """

    def __init__(self, forward: Callable[[torch.Tensor], torch.Tensor | tuple], nms: Callable,
                 imgsz: int | Sequence[int], size: int = 640, overlap: float = 0.2, merge: str = MERGES[0],
                 iou_thres: float = 0.45, match_thres: float = 0.5, agnostic: bool = False, max_det: int = 1000,
                 full_image: bool = True, batch_size: int = 16, device: torch.device | str = "cpu",
                 half: bool = False) -> None:
        check_slice_settings(size, overlap, merge)
        self.forward, self.nms = forward, nms
        self.imgsz = (imgsz, imgsz) if isinstance(imgsz, int) else tuple(int(x) for x in imgsz)
        self.size, self.overlap, self.merge = int(size), float(overlap), merge
        self.iou_thres, self.match_thres, self.agnostic, self.max_det = iou_thres, match_thres, agnostic, max_det
        self.full_image, self.batch_size = full_image, max(1, int(batch_size))
        self.device, self.half = torch.device(device), half

    def __call__(self, im: np.ndarray) -> torch.Tensor:
        """Detections (n, 6) [x1, y1, x2, y2, conf, cls] of ``im`` (HWC uint8 in the channel order the model takes)
        in its pixels."""
        return self.merged(self.passes(im))

    def passes(self, im: np.ndarray) -> torch.Tensor:
        """The detections of every tile (cut boxes dropped) and of the whole image, pooled in ``im``'s pixels,
        before merging (n, 6)."""
        height, width = im.shape[:2]
        tiles = tile_grid(height, width, self.size, self.overlap)
        crops = [im[y1:y2, x1:x2] for x1, y1, x2, y2 in tiles] + ([im] if self.full_image else [])
        batch = np.stack([letterbox(c, self.imgsz, auto=False)[0] for c in crops]).transpose(0, 3, 1, 2)
        x = torch.from_numpy(np.ascontiguousarray(batch)).to(self.device)
        x = (x.half() if self.half else x.float()) / 255
        dets = []
        for b in range(0, len(x), self.batch_size):
            pred = self.forward(x[b:b + self.batch_size])
            dets += self.nms(pred[0] if isinstance(pred, (list, tuple)) else pred)
        pooled = []
        for det, crop, tile in zip(dets, crops, [*tiles, (0, 0, width, height)]):
            det = det.float()
            det[:, :4] = scale_boxes(self.imgsz, det[:, :4], crop.shape)  # letterbox -> crop pixels
            det = shift_boxes(det, tile[0], tile[1])
            if crop is not im:
                det = drop_cut_boxes(det, tile, tiles, width, height)
            pooled.append(det)
        return torch.cat(pooled)

    def merged(self, pooled: torch.Tensor, merge: str | None = None) -> torch.Tensor:
        """``pooled`` detections merged by ``merge`` (default: this Slicer's)."""
        if (merge or self.merge) == "nms":
            return merge_nms(pooled, self.iou_thres, self.agnostic, self.max_det)
        return greedy_merge(pooled, self.match_thres, "ios", self.agnostic, self.max_det)

    def describe(self) -> str:
        """'640 px tiles, overlap 0.2, greedy merge, plus the whole image'."""
        return (f"{self.size} px tiles, overlap {self.overlap:g}, {self.merge} merge"
                f"{', plus the whole image' if self.full_image else ''}")
