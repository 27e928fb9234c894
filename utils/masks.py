"""Instance-mask maths shared by the segmentation model, loss, metrics and prediction (YOLOv5 v7.0 semantics).

YOLACT-style masks (Bolya et al. 2019): the model predicts ``nm`` prototype maps ``protos (nm, mh, mw)`` at 1/4 of
the input resolution and ``nm`` coefficients per detection; an instance's mask is
``sigmoid(coeffs @ protos.view(nm, -1))`` reshaped to (mh, mw), cut to its box and thresholded at 0.5.

Shapes: masks (n, h, w); boxes (n, 4) xyxy; polygons (k, 2) pixel points (x, y). Pure torch / numpy / cv2.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F

Shape = Sequence[int]  # (height, width)


def crop_mask(masks: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Zero ``masks`` (n, h, w) outside their ``boxes`` (n, 4) xyxy in mask pixels; a pixel (column c, row r) is
    inside when x1 <= c < x2 and y1 <= r < y2. Returns a new tensor."""
    n, h, w = masks.shape
    x1, y1, x2, y2 = torch.chunk(boxes[:, :, None].to(masks.dtype if masks.is_floating_point() else torch.float32),
                                 4, 1)  # each (n, 1, 1)
    cols = torch.arange(w, device=masks.device, dtype=x1.dtype)[None, None, :]
    rows = torch.arange(h, device=masks.device, dtype=x1.dtype)[None, :, None]
    inside = (cols >= x1) & (cols < x2) & (rows >= y1) & (rows < y2)
    return masks * inside


def _assemble(protos: torch.Tensor, coeffs: torch.Tensor) -> torch.Tensor:
    """sigmoid(coeffs (n, nm) @ protos (nm, mh, mw)) -> (n, mh, mw) float."""
    nm, mh, mw = protos.shape
    return (coeffs.float() @ protos.float().view(nm, -1)).sigmoid().view(-1, mh, mw)


def process_mask(
    protos: torch.Tensor, coeffs: torch.Tensor, boxes: torch.Tensor, shape: Shape, upsample: bool = False
) -> torch.Tensor:
    """Binary masks of detections.

    Args:
        protos: (nm, mh, mw) prototypes of one image; coeffs: (n, nm) mask coefficients of its detections.
        boxes: (n, 4) xyxy in pixels of the network input of ``shape`` (H, W).
        upsample: False -> masks at prototype resolution (n, mh, mw), cropped to the boxes scaled to it;
            True -> bilinearly upsampled to (n, H, W) (after cropping, before thresholding, as official).
    Returns:
        (n, mh, mw) or (n, H, W) float tensor of 0/1 (sigmoid > 0.5).
    """
    _, mh, mw = protos.shape
    ih, iw = shape[0], shape[1]
    masks = _assemble(protos, coeffs)
    scaled = boxes.float().clone()
    scaled[:, [0, 2]] *= mw / iw
    scaled[:, [1, 3]] *= mh / ih
    masks = crop_mask(masks, scaled)
    if upsample and len(masks):
        masks = F.interpolate(masks[None], (int(ih), int(iw)), mode="bilinear", align_corners=False)[0]
    return masks.gt_(0.5)


def _unpad_window(inner: Shape, outer: Shape) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of the letterboxed content of an ``outer`` (h, w) image whose original is ``inner``
    (h, w), centred padding as the letterbox adds it."""
    gain = min(outer[0] / inner[0], outer[1] / inner[1])
    padw, padh = (outer[1] - inner[1] * gain) / 2, (outer[0] - inner[0] * gain) / 2
    return int(padh), int(outer[0] - padh), int(padw), int(outer[1] - padw)


def process_mask_native(protos: torch.Tensor, coeffs: torch.Tensor, boxes: torch.Tensor, shape: Shape) -> torch.Tensor:
    """Retina masks: prototypes cut to the letterboxed content, upsampled to the ORIGINAL image ``shape`` (h, w),
    then cropped to ``boxes`` (n, 4) xyxy in original-image pixels. Returns (n, h, w) float 0/1."""
    _, mh, mw = protos.shape
    masks = _assemble(protos, coeffs)
    top, bottom, left, right = _unpad_window(shape, (mh, mw))
    masks = masks[:, top:bottom, left:right]
    if len(masks):
        masks = F.interpolate(masks[None], (int(shape[0]), int(shape[1])), mode="bilinear", align_corners=False)[0]
    else:
        masks = masks.new_zeros((0, int(shape[0]), int(shape[1])))
    return crop_mask(masks, boxes.float()).gt_(0.5)


def scale_masks(masks: torch.Tensor, im0_shape: Shape) -> torch.Tensor:
    """Masks (n, h, w) on a letterboxed image -> (n, H0, W0) on the original image of ``im0_shape`` (H0, W0):
    the padding is cut off and the rest resized bilinearly, then thresholded at 0.5 (input 0/1 or probabilities)."""
    n, h, w = masks.shape
    top, bottom, left, right = _unpad_window(im0_shape, (h, w))
    content = masks[:, top:bottom, left:right].float()
    if not n:
        return masks.new_zeros((0, int(im0_shape[0]), int(im0_shape[1])), dtype=torch.float32)
    out = F.interpolate(content[None], (int(im0_shape[0]), int(im0_shape[1])), mode="bilinear", align_corners=False)
    return out[0].gt_(0.5)


def masks_to_polygons(masks: torch.Tensor | np.ndarray, strategy: str = "largest") -> list[np.ndarray]:
    """Outline of each binary mask (n, h, w) as a (k, 2) float32 array of pixel points (x, y).

    strategy 'largest': the external contour with the most points (official ``--save-txt``); 'concat': all external
    contours joined. An empty mask gives a (0, 2) array.
    """
    if strategy not in ("largest", "concat"):
        raise ValueError(f"strategy must be 'largest' or 'concat', got {strategy!r}")
    if isinstance(masks, torch.Tensor):
        masks = masks.detach().cpu().numpy()
    polygons = []
    for m in np.asarray(masks):
        contours = cv2.findContours((m > 0.5).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)[0]
        if not contours:
            polygons.append(np.zeros((0, 2), dtype=np.float32))
        elif strategy == "concat":
            polygons.append(np.concatenate([c.reshape(-1, 2) for c in contours]).astype(np.float32))
        else:
            longest = max(contours, key=len)
            polygons.append(longest.reshape(-1, 2).astype(np.float32))
    return polygons


def scale_polygons(
    img1_shape: Shape,
    polygon: np.ndarray,
    img0_shape: Shape,
    ratio_pad: tuple[tuple[float, float], tuple[float, float]] | None = None,
    normalize: bool = False,
) -> np.ndarray:
    """Points (k, 2) on a letterboxed image of ``img1_shape`` (h, w) -> points on the original ``img0_shape``,
    clipped to it; ``normalize`` divides by its width/height. Returns a new array."""
    p = np.array(polygon, dtype=np.float32).reshape(-1, 2)
    if ratio_pad is None:
        gain = min(img1_shape[0] / img0_shape[0], img1_shape[1] / img0_shape[1])
        gain_h = gain_w = gain
        pad = (img1_shape[1] - img0_shape[1] * gain) / 2, (img1_shape[0] - img0_shape[0] * gain) / 2
    else:
        (gain_h, gain_w), pad = ratio_pad
    p[:, 0] = ((p[:, 0] - pad[0]) / gain_w).clip(0, img0_shape[1])
    p[:, 1] = ((p[:, 1] - pad[1]) / gain_h).clip(0, img0_shape[0])
    if normalize:
        p[:, 0] /= img0_shape[1]
        p[:, 1] /= img0_shape[0]
    return p


def polygons_to_mask(
    imgsz: Shape, polygons: Sequence[np.ndarray] | np.ndarray, color: int = 1, downsample_ratio: int = 1
) -> np.ndarray:
    """Rasterise polygons (each a flat [x1, y1, x2, y2, ...] or (k, 2) pixel array; points truncated to int) into one
    uint8 mask of ``imgsz`` (h, w) filled with ``color``, then resized to (h // ratio, w // ratio)."""
    mask = np.zeros((int(imgsz[0]), int(imgsz[1])), dtype=np.uint8)
    pts = [np.asarray(p, dtype=np.float64).reshape(-1, 2).astype(np.int32) for p in polygons]
    pts = [p for p in pts if len(p)]
    if pts:
        cv2.fillPoly(mask, pts, color=int(color))
    if downsample_ratio != 1:
        nh, nw = int(imgsz[0]) // downsample_ratio, int(imgsz[1]) // downsample_ratio
        mask = cv2.resize(mask, (nw, nh))
    return mask


def polygons_to_masks(
    imgsz: Shape, polygons: Sequence[np.ndarray], color: int = 1, downsample_ratio: int = 1
) -> np.ndarray:
    """One mask per polygon: (n, h // ratio, w // ratio) uint8."""
    h, w = int(imgsz[0]) // downsample_ratio, int(imgsz[1]) // downsample_ratio
    if not len(polygons):
        return np.zeros((0, h, w), dtype=np.uint8)
    return np.stack([polygons_to_mask(imgsz, [np.asarray(p).reshape(-1)], color, downsample_ratio) for p in polygons])


def polygons_to_masks_overlap(
    imgsz: Shape, polygons: Sequence[np.ndarray], downsample_ratio: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """All polygons of an image in one index map (official ``overlap_mask``).

    Instances are ranked by mask area, largest first; pixel value i + 1 marks the i-th ranked instance, a smaller
    instance overwriting a larger one where they overlap (0 = background). Returns (index map (h // r, w // r),
    uint8 or int32 beyond 255 instances; sort index (n,): ranked position -> original polygon index).
    """
    h, w = int(imgsz[0]) // downsample_ratio, int(imgsz[1]) // downsample_ratio
    dtype = np.int32 if len(polygons) > 255 else np.uint8
    index_map = np.zeros((h, w), dtype=dtype)
    if not len(polygons):
        return index_map, np.zeros(0, dtype=np.int64)
    masks = polygons_to_masks(imgsz, polygons, 1, downsample_ratio)
    order = np.argsort(-masks.reshape(len(masks), -1).sum(1), kind="stable")
    for rank, idx in enumerate(order):
        index_map[masks[idx] > 0] = rank + 1
    return index_map, order


def mask_iou(mask1: torch.Tensor, mask2: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Pairwise IoU of flattened binary masks: mask1 (n, h*w), mask2 (m, h*w) -> (n, m)."""
    mask1, mask2 = mask1.float(), mask2.float()
    inter = (mask1 @ mask2.T).clamp_(min=0)
    union = mask1.sum(1)[:, None] + mask2.sum(1)[None, :] - inter
    return inter / (union + eps)


def masks_iou(mask1: torch.Tensor, mask2: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Element-wise IoU of flattened binary masks: mask1 (n, h*w), mask2 (n, h*w) -> (n,)."""
    mask1, mask2 = mask1.float(), mask2.float()
    inter = (mask1 * mask2).sum(1).clamp_(min=0)
    return inter / (mask1.sum(1) + mask2.sum(1) - inter + eps)


def overlay_masks(
    im: np.ndarray, masks: torch.Tensor | np.ndarray, mask_colors: Sequence[Sequence[int]], alpha: float = 0.5
) -> np.ndarray:
    """Blend binary ``masks`` (n, h, w) onto the uint8 HWC image ``im`` (h, w, 3) in place, one colour per mask in
    the image's channel order, the first mask on top (detections come highest confidence first). Returns ``im``."""
    if isinstance(masks, torch.Tensor):
        masks = masks.detach().cpu().numpy()
    masks = np.asarray(masks) > 0.5
    if not len(masks):
        return im
    if masks.shape[1:] != im.shape[:2]:
        raise ValueError(f"masks of shape {masks.shape[1:]} do not fit an image of shape {im.shape[:2]}")
    for m, color in zip(masks[::-1], list(mask_colors)[::-1]):  # last drawn = first mask
        im[m] = (im[m] * (1 - alpha) + np.asarray(color, dtype=np.float32) * alpha).astype(np.uint8)
    return im
