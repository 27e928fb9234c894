"""Official YOLOv5 v7.0 import path ``utils.segment.general``: its mask functions under their official names and
arguments, for scripts written against official segment/*.py. Each is the project's ``utils/masks.py`` function."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch

from utils.masks import crop_mask, mask_iou, masks_iou, masks_to_polygons, process_mask, process_mask_native

__all__ = ["crop_mask", "mask_iou", "masks2segments", "masks_iou", "process_mask", "process_mask_native",
           "process_mask_upsample", "scale_image"]


def process_mask_upsample(protos: torch.Tensor, masks_in: torch.Tensor, bboxes: torch.Tensor,
                          shape: Sequence[int]) -> torch.Tensor:
    """Masks at the input size ``shape`` (h, w): ``process_mask(..., upsample=True)``."""
    return process_mask(protos, masks_in, bboxes, shape, upsample=True)


def masks2segments(masks: torch.Tensor | np.ndarray, strategy: str = "largest") -> list[np.ndarray]:
    """Polygons (k, 2) of binary masks (n, h, w): ``utils.masks.masks_to_polygons``."""
    return masks_to_polygons(masks, strategy)


def scale_image(im1_shape: Sequence[int], masks: np.ndarray, im0_shape: Sequence[int],
                ratio_pad: tuple | None = None) -> np.ndarray:
    """Masks (h, w, n) on a letterboxed image of ``im1_shape`` -> (h0, w0, n) on the original ``im0_shape``: the
    padding cut off (``ratio_pad`` = (gain, (padw, padh)) as the loader gives it, else centred), then a bilinear
    resize (values are not thresholded, as official)."""
    if ratio_pad is None:
        gain = min(im1_shape[0] / im0_shape[0], im1_shape[1] / im0_shape[1])
        pad = (im1_shape[1] - im0_shape[1] * gain) / 2, (im1_shape[0] - im0_shape[0] * gain) / 2
    else:
        pad = ratio_pad[1]
    top, left = int(pad[1]), int(pad[0])
    bottom, right = int(im1_shape[0] - pad[1]), int(im1_shape[1] - pad[0])
    if masks.ndim < 2:
        raise ValueError(f"masks must be (h, w) or (h, w, n), got shape {masks.shape}")
    out = cv2.resize(np.ascontiguousarray(masks[top:bottom, left:right]), (int(im0_shape[1]), int(im0_shape[0])))
    return out[:, :, None] if out.ndim == 2 else out
