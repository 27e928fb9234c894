"""Box helpers: format conversions, clipping, letterbox rescaling, IoU variants and non-maximum suppression.

Formats: xyxy = (x1, y1, x2, y2) corners, xywh = (x_center, y_center, width, height); a trailing ``n`` means the
values are normalised by the image width/height. Conversions accept torch tensors or numpy arrays of shape (n, 4)
(or (..., 4)) and return a new object of the same kind.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TypeVar

import numpy as np
import torch

MAX_NMS = 30000  # candidates per image kept (highest scores first) before NMS; hitting it is counted, not silent
NMS_BLOCK = 512  # boxes resolved together in the blocked NMS; bounds the IoU matrices to NMS_BLOCK x NMS_BLOCK
IOU_CHUNK = 1 << 20  # elements per IoU matrix when testing a block against the kept boxes (cache-sized chunks)

Boxes = TypeVar("Boxes", torch.Tensor, np.ndarray)  # conversions return the kind they were given


def _empty_like(x: Boxes) -> Boxes:
    return x.clone() if isinstance(x, torch.Tensor) else np.copy(x)


def xyxy2xywh(x: Boxes) -> Boxes:
    """(x1, y1, x2, y2) -> (x_center, y_center, w, h)."""
    y = _empty_like(x)
    y[..., 0] = (x[..., 0] + x[..., 2]) / 2
    y[..., 1] = (x[..., 1] + x[..., 3]) / 2
    y[..., 2] = x[..., 2] - x[..., 0]
    y[..., 3] = x[..., 3] - x[..., 1]
    return y


def xywh2xyxy(x: Boxes) -> Boxes:
    """(x_center, y_center, w, h) -> (x1, y1, x2, y2)."""
    y = _empty_like(x)
    y[..., 0] = x[..., 0] - x[..., 2] / 2
    y[..., 1] = x[..., 1] - x[..., 3] / 2
    y[..., 2] = x[..., 0] + x[..., 2] / 2
    y[..., 3] = x[..., 1] + x[..., 3] / 2
    return y


def xywhn2xyxy(x: Boxes, w: float = 640, h: float = 640, padw: float = 0, padh: float = 0) -> Boxes:
    """Normalised (x_center, y_center, w, h) -> pixel (x1, y1, x2, y2) in a w x h image shifted by (padw, padh)."""
    y = _empty_like(x)
    y[..., 0] = w * (x[..., 0] - x[..., 2] / 2) + padw
    y[..., 1] = h * (x[..., 1] - x[..., 3] / 2) + padh
    y[..., 2] = w * (x[..., 0] + x[..., 2] / 2) + padw
    y[..., 3] = h * (x[..., 1] + x[..., 3] / 2) + padh
    return y


def xyxy2xywhn(x: Boxes, w: float = 640, h: float = 640, clip: bool = False, eps: float = 0.0) -> Boxes:
    """Pixel (x1, y1, x2, y2) -> normalised (x_center, y_center, w, h); ``clip`` first clips to (h - eps, w - eps)."""
    if clip:
        x = clip_boxes(_empty_like(x), (h - eps, w - eps))
    y = _empty_like(x)
    y[..., 0] = ((x[..., 0] + x[..., 2]) / 2) / w
    y[..., 1] = ((x[..., 1] + x[..., 3]) / 2) / h
    y[..., 2] = (x[..., 2] - x[..., 0]) / w
    y[..., 3] = (x[..., 3] - x[..., 1]) / h
    return y


def xyn2xy(x: Boxes, w: float = 640, h: float = 640, padw: float = 0, padh: float = 0) -> Boxes:
    """Normalised points (n, 2) -> pixel points in a w x h image shifted by (padw, padh)."""
    y = _empty_like(x)
    y[..., 0] = w * x[..., 0] + padw
    y[..., 1] = h * x[..., 1] + padh
    return y


def clip_boxes(boxes: Boxes, shape: Sequence[float]) -> Boxes:
    """Clip xyxy boxes (n, 4) in place to an image of ``shape`` (height, width); returns ``boxes``."""
    h, w = shape[0], shape[1]
    if isinstance(boxes, torch.Tensor):
        boxes[..., 0].clamp_(0, w)
        boxes[..., 1].clamp_(0, h)
        boxes[..., 2].clamp_(0, w)
        boxes[..., 3].clamp_(0, h)
    else:
        boxes[..., [0, 2]] = boxes[..., [0, 2]].clip(0, w)
        boxes[..., [1, 3]] = boxes[..., [1, 3]].clip(0, h)
    return boxes


def scale_boxes(
    img1_shape: Sequence[float],
    boxes: Boxes,
    img0_shape: Sequence[float],
    ratio_pad: tuple[tuple[float, float], tuple[float, float]] | None = None,
) -> Boxes:
    """Map xyxy boxes (n, 4) in place from a letterboxed image of ``img1_shape`` (h, w) back to the original image of
    ``img0_shape`` (h, w), then clip to it. Returns ``boxes``.

    ``ratio_pad`` = ((gain_h, gain_w), (padw, padh)) as the dataloader reports it (gains of the resize, which differ
    slightly per axis after rounding to whole pixels); without it one gain and centred padding are recomputed from
    the two shapes.
    """
    if ratio_pad is None:
        gain_h = gain_w = min(img1_shape[0] / img0_shape[0], img1_shape[1] / img0_shape[1])
        pad = (img1_shape[1] - img0_shape[1] * gain_w) / 2, (img1_shape[0] - img0_shape[0] * gain_h) / 2
    else:
        (gain_h, gain_w), pad = ratio_pad
    boxes[..., [0, 2]] -= pad[0]
    boxes[..., [1, 3]] -= pad[1]
    boxes[..., [0, 2]] /= gain_w
    boxes[..., [1, 3]] /= gain_h
    return clip_boxes(boxes, img0_shape)


def box_area(boxes: Boxes) -> Boxes:
    """Areas of xyxy boxes (n, 4) -> (n,)."""
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def box_iou(box1: torch.Tensor, box2: torch.Tensor, eps: float = 0.0) -> torch.Tensor:
    """Pairwise IoU of xyxy boxes: box1 (N, 4), box2 (M, 4) -> (N, M)."""
    lt = torch.max(box1[:, None, :2], box2[None, :, :2])
    rb = torch.min(box1[:, None, 2:4], box2[None, :, 2:4])
    inter = (rb - lt).clamp_(min=0).prod(2)
    return inter / (box_area(box1)[:, None] + box_area(box2)[None, :] - inter + eps)


def bbox_iou(
    box1: torch.Tensor,
    box2: torch.Tensor,
    xywh: bool = True,
    GIoU: bool = False,
    DIoU: bool = False,
    CIoU: bool = False,
    eps: float = 1e-7,
) -> torch.Tensor:
    """Element-wise IoU (or GIoU / DIoU / CIoU) of box1 (n, 4) or (1, 4) with box2 (n, 4) -> (n, 1).

    GIoU = IoU - (C - U) / C with C the smallest enclosing box's area and U the union;
    DIoU = IoU - rho^2 / c^2 with rho the distance of the centres and c the enclosing box's diagonal;
    CIoU = DIoU - alpha * v with v = 4 / pi^2 (atan(w2 / h2) - atan(w1 / h1))^2 and alpha = v / (v - IoU + 1 + eps)
    (alpha is a constant for the gradient, as in the CIoU paper).
    """
    if xywh:
        (x1, y1, w1, h1), (x2, y2, w2, h2) = box1.chunk(4, -1), box2.chunk(4, -1)
        b1_x1, b1_x2, b1_y1, b1_y2 = x1 - w1 / 2, x1 + w1 / 2, y1 - h1 / 2, y1 + h1 / 2
        b2_x1, b2_x2, b2_y1, b2_y2 = x2 - w2 / 2, x2 + w2 / 2, y2 - h2 / 2, y2 + h2 / 2
    else:
        b1_x1, b1_y1, b1_x2, b1_y2 = box1.chunk(4, -1)
        b2_x1, b2_y1, b2_x2, b2_y2 = box2.chunk(4, -1)
        w1, h1 = b1_x2 - b1_x1, b1_y2 - b1_y1
        w2, h2 = b2_x2 - b2_x1, b2_y2 - b2_y1
    h1, h2 = h1.clamp(min=eps), h2.clamp(min=eps)  # keeps atan(w / h) finite for degenerate boxes

    inter = (torch.min(b1_x2, b2_x2) - torch.max(b1_x1, b2_x1)).clamp(0) * (
        torch.min(b1_y2, b2_y2) - torch.max(b1_y1, b2_y1)
    ).clamp(0)
    union = w1 * h1 + w2 * h2 - inter + eps
    iou = inter / union
    if not (GIoU or DIoU or CIoU):
        return iou
    cw = torch.max(b1_x2, b2_x2) - torch.min(b1_x1, b2_x1)  # enclosing box
    ch = torch.max(b1_y2, b2_y2) - torch.min(b1_y1, b2_y1)
    if GIoU:
        c_area = cw * ch + eps
        return iou - (c_area - union) / c_area
    c2 = cw**2 + ch**2 + eps
    rho2 = ((b2_x1 + b2_x2 - b1_x1 - b1_x2) ** 2 + (b2_y1 + b2_y2 - b1_y1 - b1_y2) ** 2) / 4
    if DIoU:
        return iou - rho2 / c2
    v = (4 / math.pi**2) * (torch.atan(w2 / h2) - torch.atan(w1 / h1)).pow(2)
    with torch.no_grad():
        alpha = v / (v - iou + (1 + eps))
    return iou - (rho2 / c2 + v * alpha)


def _load_torchvision_nms() -> Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor] | None:
    """torchvision.ops.nms when torchvision imports and runs here, else None (the one guarded torchvision import)."""
    try:
        from torchvision.ops import nms

        nms(torch.tensor([[0.0, 0.0, 1.0, 1.0]]), torch.tensor([1.0]), 0.5)
        return nms
    except Exception:  # missing, or installed but built for another torch: fall back to the pure-torch NMS
        return None


TORCHVISION_NMS = _load_torchvision_nms()


def _overlaps(box1: torch.Tensor, box2: torch.Tensor, iou_thres: float) -> torch.Tensor:
    """IoU(box1 (N, 4), box2 (M, 4)) > iou_thres as (N, M) bool, with box_iou's arithmetic in (N, M) buffers only."""
    x1, y1, x2, y2 = (c[:, None] for c in box1.unbind(1))
    u1, v1, u2, v2 = (c[None, :] for c in box2.unbind(1))
    inter = torch.minimum(x2, u2).sub_(torch.maximum(x1, u1)).clamp_(min=0)
    inter.mul_(torch.minimum(y2, v2).sub_(torch.maximum(y1, v1)).clamp_(min=0))
    union = ((x2 - x1) * (y2 - y1)) + ((u2 - u1) * (v2 - v1))
    return inter.div_(union.sub_(inter)) > iou_thres


def _suppress_within(boxes: torch.Tensor, iou_thres: float) -> torch.Tensor:
    """Greedy NMS of score-sorted boxes (B, 4) -> keep mask (B,), via the fixed point of
    keep[i] = not any(keep[j] and IoU(j, i) > thr for j < i).

    Iterating from all-True fixes entry i after at most i + 1 rounds and the greedy result is the only fixed point,
    so stopping at the first unchanged mask gives exactly greedy NMS (Cluster-NMS, Zheng et al. 2021).
    """
    over = _overlaps(boxes, boxes, iou_thres).triu_(1)  # over[j, i]: j ranks above i and overlaps it
    keep = ~over.any(0)
    if keep.all():
        return keep
    over_f = over.to(torch.float32)
    while True:
        new = (keep.to(torch.float32) @ over_f) == 0  # no kept box above overlaps
        if torch.equal(new, keep):
            return keep
        keep = new


def nms_torch(
    boxes: torch.Tensor, scores: torch.Tensor, iou_thres: float, max_keep: int | None = None
) -> torch.Tensor:
    """Greedy NMS in plain vectorised torch, equal to torchvision.ops.nms.

    boxes (n, 4) xyxy, scores (n,) -> indices (k,) of kept boxes, highest score first. Boxes are taken in blocks of
    NMS_BLOCK by descending score: each block is first tested against every box kept so far (chunked IoU), then
    resolved inside itself; ``max_keep`` stops once that many are kept (the result is its first max_keep entries).
    """
    n = boxes.shape[0]
    if n == 0:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    order = scores.argsort(descending=True, stable=True)
    sorted_boxes = boxes[order].float()
    kept = []  # positions in sorted order, per block
    kept_boxes = sorted_boxes[:0]
    n_kept = 0
    for start in range(0, n, NMS_BLOCK):
        block = sorted_boxes[start : start + NMS_BLOCK]
        alive = torch.ones(block.shape[0], dtype=torch.bool, device=boxes.device)
        step = max(1, IOU_CHUNK // block.shape[0])
        for k in range(0, kept_boxes.shape[0], step):
            alive &= ~_overlaps(block, kept_boxes[k : k + step], iou_thres).any(1)
        idx = alive.nonzero().squeeze(1)
        if idx.numel() == 0:
            continue
        idx = idx[_suppress_within(block[idx], iou_thres)]
        kept.append(idx + start)
        kept_boxes = torch.cat((kept_boxes, block[idx]))
        n_kept += idx.numel()
        if max_keep is not None and n_kept >= max_keep:
            break
    keep = order[torch.cat(kept)] if kept else order[:0]
    return keep[:max_keep] if max_keep is not None else keep


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_thres: float, max_keep: int | None = None) -> torch.Tensor:
    """Greedy NMS: torchvision's kernel where it loads, else ``nms_torch``; both give the same indices."""
    if TORCHVISION_NMS is not None:
        keep = TORCHVISION_NMS(boxes.float(), scores.float(), iou_thres)
        return keep[:max_keep] if max_keep is not None else keep
    return nms_torch(boxes, scores, iou_thres, max_keep=max_keep)


def non_max_suppression(
    prediction: torch.Tensor | list | tuple,
    conf_thres: float = 0.25,
    iou_thres: float = 0.45,
    classes: Sequence[int] | None = None,
    agnostic: bool = False,
    multi_label: bool = False,
    labels: Sequence[torch.Tensor] | None = (),
    max_det: int = 300,
    max_nms: int = MAX_NMS,
    stats: dict[str, int] | None = None,
    nm: int = 0,
) -> list[torch.Tensor]:
    """Per-image NMS of decoded model output.

    Args:
        prediction: (B, n, 5 + nc + nm) [x, y, w, h, obj, cls scores..., mask coefficients...] in pixels, or the
            model's (pred, ...) tuple.
        conf_thres: keep candidates with confidence obj * cls above it; iou_thres: suppress overlaps above it.
        classes: keep only these class ids; agnostic: suppress across classes; multi_label: one candidate per
            (box, class) with confidence above conf_thres instead of the best class only.
        labels: optional per-image (m, 5) [cls, x, y, w, h] pixel labels added as confidence-1 candidates (hybrid
            auto-labelling).
        max_det: detections kept per image; max_nms: candidates per image that enter NMS (highest confidence).
        stats: optional dict; counts 'images', 'candidates' and 'capped' (images whose candidates exceeded max_nms,
            whose lowest-confidence candidates were left out) are added to it so callers can report them.
        nm: number of trailing mask coefficients (segmentation models: 32); they are carried through unchanged
            (official v7.0 multiplies them by the objectness too; raw coefficients keep a mask independent of its
            confidence, and the sign of each mask logit, hence the thresholded mask at prototype size, is the same).
    Returns:
        list of B tensors (k, 6 + nm) [x1, y1, x2, y2, conf, cls, mask coefficients...], highest confidence first.
    """
    if isinstance(prediction, (list, tuple)):
        prediction = prediction[0]
    if not 0 <= conf_thres <= 1:
        raise ValueError(f"conf_thres={conf_thres} must be between 0 and 1")
    if not 0 <= iou_thres <= 1:
        raise ValueError(f"iou_thres={iou_thres} must be between 0 and 1")
    bs, nc = prediction.shape[0], prediction.shape[2] - 5 - nm
    if nc < 1:
        raise ValueError(f"prediction has {prediction.shape[2]} columns: too few for 5 + classes + nm={nm}")
    mi = 5 + nc  # first mask coefficient column
    multi_label &= nc > 1
    device = prediction.device
    candidates = prediction[..., 4] > conf_thres
    output = [torch.zeros((0, 6 + nm), device=device)] * bs
    if stats is not None:
        for key in ("images", "candidates", "capped"):
            stats.setdefault(key, 0)
        stats["images"] += bs
    for xi, x in enumerate(prediction):
        x = x[candidates[xi]].float()
        if labels is not None and len(labels) and len(labels[xi]):
            lb = labels[xi].to(device=device, dtype=torch.float32)
            v = torch.zeros((len(lb), nc + 5 + nm), device=device)
            v[:, :4] = lb[:, 1:5]
            v[:, 4] = 1.0
            v[torch.arange(len(lb), device=device), lb[:, 0].long() + 5] = 1.0
            x = torch.cat((x, v), 0)
        if not x.shape[0]:
            continue
        scores = x[:, 5:mi] * x[:, 4:5]  # (n, nc) confidence = obj * cls
        allowed = None if classes is None else torch.tensor(classes, device=device).long()
        if multi_label:  # one candidate per (box, class) above the threshold
            if allowed is not None:
                scores = torch.zeros_like(scores).index_copy_(1, allowed, scores.index_select(1, allowed))
            flat = scores.flatten()
        else:  # the best class of each box
            flat, best = scores.max(1)
            if allowed is not None:
                flat = flat * torch.isin(best, allowed)
        above = flat > conf_thres
        n = int(above.sum())
        if not n:
            continue
        if n > max_nms:  # only the max_nms most confident enter NMS; counted so callers can report it
            conf, idx = flat.topk(max_nms)
        else:
            idx = above.nonzero().squeeze(1)
            conf, order = flat[idx].sort(descending=True, stable=True)
            idx = idx[order]
        if stats is not None:
            stats["candidates"] += n
            stats["capped"] += int(n > max_nms)
        rows, cls = (idx // scores.shape[1], idx % scores.shape[1]) if multi_label else (idx, best[idx])
        x = torch.cat((xywh2xyxy(x[rows, :4]), conf[:, None], cls[:, None].float(), x[rows, mi:]), 1)
        boxes = x[:, :4]
        if not agnostic:
            # shift each class into its own region so boxes of different classes never overlap
            span = float(boxes.max() - boxes.min()) + 1.0
            boxes = boxes + x[:, 5:6] * span
        keep = nms(boxes, x[:, 4], iou_thres, max_keep=max_det)
        output[xi] = x[keep]
    return output


def padded_detections(out: torch.Tensor, num: torch.Tensor) -> list[torch.Tensor]:
    """Per image (n, 6) [x1, y1, x2, y2, conf, cls] detections, as non_max_suppression returns them, from the
    (B, topk, 6) zero-padded rows and (B,) counts of a model exported with NMS inside (export.py --nms)."""
    return [out[i, : int(n)] for i, n in enumerate(num.reshape(-1).tolist())]


def filter_detections(detections: Sequence[torch.Tensor], conf_thres: float = 0.0,
                      classes: Sequence[int] | None = None, max_det: int | None = None) -> list[torch.Tensor]:
    """The caller's own limits on detections a model with NMS inside already made: confidence above ``conf_thres``,
    class in ``classes``, at most ``max_det`` per image (rows stay best first)."""
    kept = []
    for det in detections:
        mask = det[:, 4] > conf_thres
        if classes is not None:
            mask &= torch.isin(det[:, 5].long(), torch.tensor(list(classes), device=det.device).long())
        kept.append(det[mask][:max_det])
    return kept
