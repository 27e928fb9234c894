"""utils/masks.py and the mask columns of NMS, against hand-computed answers."""

import numpy as np
import pytest
import torch

from utils.boxes import non_max_suppression
from utils.masks import (
    crop_mask,
    mask_iou,
    masks_iou,
    masks_to_polygons,
    polygons_to_mask,
    polygons_to_masks,
    polygons_to_masks_overlap,
    process_mask,
    process_mask_native,
    scale_masks,
    scale_polygons,
)


def test_square_polygon_rasterises_to_its_area():
    square = np.array([10, 10, 29, 10, 29, 29, 10, 29], dtype=np.float32)  # cv2 fills both borders: 20 x 20
    mask = polygons_to_mask((64, 64), [square])
    assert mask.dtype == np.uint8 and mask.shape == (64, 64)
    assert mask.sum() == 400
    assert mask[10:30, 10:30].all() and not mask[:10].any() and not mask[30:].any()
    assert polygons_to_mask((64, 64), [square], color=3).max() == 3
    small = polygons_to_mask((64, 64), [square], downsample_ratio=4)
    # bilinear 4x reduction: cells 3..6 are fully inside, cells 2 and 7 straddle the border (0.5, rounded by cv2)
    assert small.shape == (16, 16) and small[3:7, 3:7].all() and 16 <= small.sum() <= 36
    assert not small[:2].any() and not small[8:].any() and not small[:, :2].any() and not small[:, 8:].any()
    assert polygons_to_masks((64, 64), [square, square + 2], downsample_ratio=2).shape == (2, 32, 32)
    assert polygons_to_masks((64, 64), [], downsample_ratio=2).shape == (0, 32, 32)


def test_overlap_index_map_ranks_by_area_smaller_on_top():
    big = np.array([[0, 0], [39, 0], [39, 39], [0, 39]], dtype=np.float32)  # 1600 px
    small = np.array([[10, 10], [19, 10], [19, 19], [10, 19]], dtype=np.float32)  # 100 px, inside big
    index_map, order = polygons_to_masks_overlap((64, 64), [small, big])
    assert order.tolist() == [1, 0]  # big ranked first
    assert index_map[0, 0] == 1 and index_map[15, 15] == 2 and index_map[50, 50] == 0
    assert (index_map == 2).sum() == 100 and (index_map == 1).sum() == 1500
    assert index_map.dtype == np.uint8


def test_crop_mask_zeroes_outside_the_box():
    masks = torch.ones(2, 8, 10)
    boxes = torch.tensor([[2.0, 1.0, 5.0, 4.0], [0.0, 0.0, 10.0, 8.0]])
    out = crop_mask(masks, boxes)
    assert out[0].sum() == 9 and out[0, 1:4, 2:5].all()  # columns 2..4, rows 1..3
    assert out[1].sum() == 80


def test_process_mask_of_a_known_prototype():
    # prototype 0: +10 on the left half, -10 on the right; coefficient +1 -> left half, -1 -> right half
    proto = torch.full((2, 8, 8), -10.0)
    proto[0, :, :4] = 10.0
    proto[0, :, 4:] = -10.0
    coeffs = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])
    boxes = torch.tensor([[0.0, 0.0, 32.0, 32.0], [0.0, 0.0, 32.0, 16.0]])  # input 32 x 32 -> proto scale 1/4
    m = process_mask(proto, coeffs, boxes, (32, 32))
    assert m.shape == (2, 8, 8)
    assert m[0, :, :4].all() and not m[0, :, 4:].any()
    assert m[1, :4, 4:].all() and m[1].sum() == 16  # right half, cut to rows 0..3 by the box
    up = process_mask(proto, coeffs, boxes, (32, 32), upsample=True)
    assert up.shape == (2, 32, 32) and up[0, :, :16].all() and not up[0, :, 16:].any()
    assert process_mask(proto, coeffs[:0], boxes[:0], (32, 32), upsample=True).shape == (0, 8, 8)


def test_process_mask_native_and_scale_masks_remove_the_letterbox():
    # original 16 x 32 (h, w) letterboxed into 32 x 32: 8 rows of padding above and below; proto 8 x 8
    proto = torch.full((1, 8, 8), 10.0)
    coeffs = torch.ones(1, 1)
    boxes = torch.tensor([[0.0, 0.0, 16.0, 16.0]])  # left half of the original
    m = process_mask_native(proto, coeffs, boxes, (16, 32))
    assert m.shape == (1, 16, 32) and m[0, :, :16].all() and not m[0, :, 16:].any()
    letterboxed = torch.zeros(1, 32, 32)
    letterboxed[0, 8:24, 0:16] = 1  # the left half of the content
    back = scale_masks(letterboxed, (16, 32))
    assert back.shape == (1, 16, 32) and back[0, :, :16].all() and not back[0, :, 17:].any()


def test_polygons_of_masks_and_their_scaling():
    masks = torch.zeros(2, 20, 20)
    masks[0, 5:10, 2:8] = 1
    polys = masks_to_polygons(masks)
    assert polys[1].shape == (0, 2)
    p = polys[0]
    assert p.dtype == np.float32 and p[:, 0].min() == 2 and p[:, 0].max() == 7 and p[:, 1].min() == 5
    two = torch.zeros(1, 20, 20)
    two[0, 0:2, 0:2] = 1
    two[0, 10:16, 10:16] = 1
    assert masks_to_polygons(two)[0][:, 0].min() == 10  # the largest contour only
    assert len(masks_to_polygons(two, "concat")[0]) == 8
    # letterbox 32 x 32 of a 16 x 32 original: y shifts by 8; normalised by (w, h) = (32, 16)
    q = scale_polygons((32, 32), np.array([[16.0, 8.0], [32.0, 24.0]]), (16, 32), normalize=True)
    np.testing.assert_allclose(q, [[0.5, 0.0], [1.0, 1.0]])
    with pytest.raises(ValueError):
        masks_to_polygons(masks, "all")


def test_mask_iou_known_values():
    a = torch.zeros(2, 16)
    a[0, :8] = 1
    a[1, :4] = 1
    b = torch.zeros(1, 16)
    b[0, 4:12] = 1
    iou = mask_iou(a, b)
    assert iou.shape == (2, 1)
    torch.testing.assert_close(iou, torch.tensor([[4 / 12], [0.0]]), atol=1e-6, rtol=0)
    torch.testing.assert_close(masks_iou(a, a), torch.ones(2), atol=1e-6, rtol=0)


def test_nms_carries_mask_coefficients():
    nm = 3
    pred = torch.zeros(1, 3, 5 + 2 + nm)
    pred[0, :, :4] = torch.tensor([[10.0, 10, 8, 8], [10.5, 10, 8, 8], [40, 40, 8, 8]])
    pred[0, :, 4] = torch.tensor([0.9, 0.8, 0.7])
    pred[0, :, 5] = 1.0
    pred[0, :, 7:] = torch.arange(9.0).view(3, 3)
    out = non_max_suppression(pred, 0.25, 0.45, nm=nm)[0]
    assert out.shape == (2, 6 + nm)
    torch.testing.assert_close(out[:, 6:], torch.tensor([[0.0, 1, 2], [6, 7, 8]]))
    torch.testing.assert_close(out[:, 4], torch.tensor([0.9, 0.7]))
    empty = non_max_suppression(pred, 0.95, 0.45, nm=nm)[0]
    assert empty.shape == (0, 6 + nm)
    assert non_max_suppression(pred[..., :7], 0.25, 0.45)[0].shape == (2, 6)  # detection unchanged
