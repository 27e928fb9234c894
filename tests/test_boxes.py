"""Box conversions, letterbox rescaling, IoU variants and NMS against hand-computed answers and a reference NMS."""

import math

import numpy as np
import pytest
import torch

import utils.boxes as boxes_mod
from utils.boxes import (
    bbox_iou,
    box_iou,
    clip_boxes,
    nms,
    nms_torch,
    non_max_suppression,
    scale_boxes,
    xyn2xy,
    xywh2xyxy,
    xywhn2xyxy,
    xyxy2xywh,
    xyxy2xywhn,
)


def reference_nms(boxes, scores, iou_thres):
    """Textbook greedy NMS, one box at a time, with IoU computed pair by pair in Python."""

    def iou(a, b):
        iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
        ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
        inter = iw * ih
        return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)

    b = boxes.tolist()
    order = sorted(range(len(b)), key=lambda i: -float(scores[i]))
    keep = []
    for i in order:
        if all(iou(b[i], b[k]) <= iou_thres for k in keep):
            keep.append(i)
    return keep


def random_boxes(n, size=100.0, max_wh=30.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g, dtype=torch.float64) * size
    wh = torch.rand(n, 2, generator=g, dtype=torch.float64) * max_wh + 1
    return torch.cat((xy, xy + wh), 1).float(), torch.rand(n, generator=g)


def test_conversions_round_trip_and_values():
    xyxy = torch.tensor([[10.0, 20.0, 50.0, 100.0]])
    xywh = xyxy2xywh(xyxy)
    assert xywh.tolist() == [[30.0, 60.0, 40.0, 80.0]]
    assert torch.equal(xywh2xyxy(xywh), xyxy)
    n = xyxy2xywhn(xyxy, w=200, h=400)
    assert torch.allclose(n, torch.tensor([[0.15, 0.15, 0.2, 0.2]]))
    assert torch.allclose(xywhn2xyxy(n, w=200, h=400, padw=5, padh=7), xyxy + torch.tensor([5.0, 7, 5, 7]))
    assert xyn2xy(np.array([[0.5, 0.25]]), w=200, h=400, padw=1, padh=2).tolist() == [[101.0, 102.0]]
    # numpy in, numpy out, same numbers; the input is not modified
    a = xyxy.numpy().copy()
    assert isinstance(xyxy2xywh(a), np.ndarray) and np.allclose(xyxy2xywh(a), xywh.numpy())
    assert a.tolist() == xyxy.tolist()


def test_xyxy2xywhn_clip():
    out = xyxy2xywhn(torch.tensor([[-10.0, 0.0, 110.0, 50.0]]), w=100, h=100, clip=True)
    assert torch.allclose(out, torch.tensor([[0.5, 0.25, 1.0, 0.5]]))


def test_clip_boxes_torch_and_numpy():
    b = torch.tensor([[-5.0, -1.0, 700.0, 300.0]])
    assert clip_boxes(b, (200, 640)).tolist() == [[0.0, 0.0, 640.0, 200.0]]
    a = np.array([[-5.0, -1.0, 700.0, 300.0]])
    assert clip_boxes(a, (200, 640)).tolist() == [[0.0, 0.0, 640.0, 200.0]]


def test_scale_boxes_undoes_letterbox():
    # a 480x640 (h, w) image letterboxed into 640x640: gain 1, 80 px of padding above and below
    b = torch.tensor([[100.0, 180.0, 200.0, 280.0]])
    assert scale_boxes((640, 640), b.clone(), (480, 640)).tolist() == [[100.0, 100.0, 200.0, 200.0]]
    # a 960x1280 image into 320x320: gain 0.25, pad (0, 40)
    b = torch.tensor([[40.0, 60.0, 80.0, 100.0]])
    assert torch.allclose(scale_boxes((320, 320), b.clone(), (960, 1280)), torch.tensor([[160.0, 80.0, 320, 240]]))
    # explicit ratio_pad as the dataloader reports it, clipping to the original image
    out = scale_boxes((320, 320), torch.tensor([[0.0, 0.0, 330.0, 100.0]]), (960, 1280), ((0.25, 0.25), (0, 40)))
    assert torch.allclose(out, torch.tensor([[0.0, 0.0, 1280.0, 240.0]]))
    # per-axis gains: 478x640 resized to 120x160 has gain_h 120/478 and gain_w 0.25
    out = scale_boxes((128, 160), torch.tensor([[40.0, 14.0, 80.0, 64.0]]), (478, 640), ((120 / 478, 0.25), (0, 4)))
    assert torch.allclose(out, torch.tensor([[160.0, 10 * 478 / 120, 320.0, 60 * 478 / 120]]))


def test_box_iou_hand_computed():
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 1.0, 1.0]])
    b = torch.tensor([[1.0, 1.0, 3.0, 3.0], [0.0, 0.0, 2.0, 2.0], [5.0, 5.0, 6.0, 6.0]])
    expected = torch.tensor([[1 / 7, 1.0, 0.0], [0.0, 0.25, 0.0]])
    assert torch.allclose(box_iou(a, b), expected)


def test_bbox_iou_variants_hand_computed():
    # same aspect ratio: IoU 1/7, enclosing 3x3 box, centres (1,1) and (2,2)
    b1, b2 = torch.tensor([[0.0, 0.0, 2.0, 2.0]]), torch.tensor([[1.0, 1.0, 3.0, 3.0]])
    assert bbox_iou(b1, b2, xywh=False).item() == pytest.approx(1 / 7, abs=1e-6)
    assert bbox_iou(b1, b2, xywh=False, GIoU=True).item() == pytest.approx(1 / 7 - 2 / 9, abs=1e-6)
    assert bbox_iou(b1, b2, xywh=False, DIoU=True).item() == pytest.approx(1 / 7 - 2 / 18, abs=1e-6)
    assert bbox_iou(b1, b2, xywh=False, CIoU=True).item() == pytest.approx(1 / 7 - 2 / 18, abs=1e-6)  # v = 0
    # different aspect ratios: 4x2 and 2x2 boxes sharing a corner; IoU 0.5, enclosing box = the 4x2 box
    b1, b2 = torch.tensor([[0.0, 0.0, 4.0, 2.0]]), torch.tensor([[0.0, 0.0, 2.0, 2.0]])
    v = 4 / math.pi**2 * (math.atan(1.0) - math.atan(2.0)) ** 2
    alpha = v / (v - 0.5 + 1)
    assert bbox_iou(b1, b2, xywh=False, GIoU=True).item() == pytest.approx(0.5, abs=1e-6)
    assert bbox_iou(b1, b2, xywh=False, DIoU=True).item() == pytest.approx(0.5 - 1 / 20, abs=1e-6)
    assert bbox_iou(b1, b2, xywh=False, CIoU=True).item() == pytest.approx(0.5 - 1 / 20 - alpha * v, abs=1e-6)
    # xywh input gives the same as its xyxy form, and broadcasting (1, 4) against (n, 4)
    many = torch.tensor([[0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 4.0, 2.0]])
    out = bbox_iou(xyxy2xywh(b2), xyxy2xywh(many), CIoU=True)
    assert out.shape == (2, 1)
    assert out[1].item() == pytest.approx(0.5 - 1 / 20 - alpha * v, abs=1e-6)
    assert out[0].item() == pytest.approx(1.0, abs=1e-6)


def test_ciou_gradient_flows_and_alpha_is_constant():
    b1 = torch.tensor([[1.0, 1.0, 2.0, 1.0]], requires_grad=True)
    b2 = torch.tensor([[1.5, 1.0, 2.0, 2.0]])
    bbox_iou(b1, b2, CIoU=True).sum().backward()
    assert torch.isfinite(b1.grad).all() and b1.grad.abs().sum() > 0


@pytest.mark.parametrize("n", [1, 7, 300, 700])  # 700 spans two NMS blocks of 512
@pytest.mark.parametrize("iou_thres", [0.3, 0.6])
def test_nms_torch_equals_reference(n, iou_thres):
    b, s = random_boxes(n, seed=n)
    assert nms_torch(b, s, iou_thres).tolist() == reference_nms(b, s, iou_thres)


def test_nms_torch_small_blocks_and_chunks(monkeypatch):
    """Tiny block and chunk sizes exercise the cross-block and chunked paths on a dense overlapping set."""
    monkeypatch.setattr(boxes_mod, "NMS_BLOCK", 16)
    monkeypatch.setattr(boxes_mod, "IOU_CHUNK", 40)
    b, s = random_boxes(400, size=60.0, seed=3)
    assert nms_torch(b, s, 0.5).tolist() == reference_nms(b, s, 0.5)
    assert nms_torch(b, s, 0.5, max_keep=5).tolist() == reference_nms(b, s, 0.5)[:5]


def test_nms_long_suppression_chain():
    """Boxes shifted by one unit each: keep/suppress alternates down the chain (worst case for the fixed point)."""
    x = torch.arange(200, dtype=torch.float32)
    b = torch.stack((x, torch.zeros_like(x), x + 10, torch.full_like(x, 10)), 1)
    s = 1 - x / 1000
    expected = reference_nms(b, s, 0.75)  # IoU 9 / 11 with the next box, 8 / 12 with the one after
    assert nms_torch(b, s, 0.75).tolist() == expected
    assert expected == list(range(0, 200, 2))


@pytest.mark.skipif(boxes_mod.TORCHVISION_NMS is None, reason="torchvision NMS not available here")
def test_torchvision_and_pure_torch_identical():
    for seed in range(3):
        b, s = random_boxes(2000, size=200.0, seed=seed)
        assert torch.equal(boxes_mod.TORCHVISION_NMS(b, s, 0.5), nms_torch(b, s, 0.5))


def test_nms_dispatch_matches_reference():
    b, s = random_boxes(500, seed=11)
    assert nms(b, s, 0.45).tolist() == reference_nms(b, s, 0.45)
    assert nms(b, s, 0.45, max_keep=4).tolist() == reference_nms(b, s, 0.45)[:4]


def pred_row(xywh, obj, cls_scores):
    return [*xywh, obj, *cls_scores]


def test_non_max_suppression_overlap_confidence_and_classes():
    # 20x20 boxes A and B shifted by 1 px overlap with IoU 361 / 439 = 0.82
    rows = [
        pred_row([50, 50, 20, 20], 0.9, [0.9, 0.1]),  # conf 0.81 class 0
        pred_row([51, 51, 20, 20], 0.8, [0.8, 0.2]),  # conf 0.64 class 0: suppressed by A
        pred_row([51, 51, 20, 20], 0.9, [0.1, 0.7]),  # conf 0.63 class 1: other class, survives
        pred_row([200, 200, 10, 10], 0.5, [0.4, 0.0]),  # conf 0.20 < 0.25: dropped
    ]
    pred = torch.tensor([rows])
    out = non_max_suppression(pred, conf_thres=0.25, iou_thres=0.45)
    assert len(out) == 1
    det = out[0]
    assert det[:, 5].tolist() == [0.0, 1.0]
    assert torch.allclose(det[:, 4], torch.tensor([0.81, 0.63]))
    assert torch.allclose(det[0, :4], torch.tensor([40.0, 40.0, 60.0, 60.0]))
    # agnostic: the class-1 box overlaps A too and goes
    det = non_max_suppression(pred, 0.25, 0.45, agnostic=True)[0]
    assert det[:, 5].tolist() == [0.0]
    # class filter, single- and multi-label
    det = non_max_suppression(pred, 0.25, 0.45, classes=[1])[0]
    assert det[:, 5].tolist() == [1.0]
    det = non_max_suppression(pred, 0.25, 0.45, classes=[1], multi_label=True)[0]
    assert det[:, 5].tolist() == [1.0] and det[0, 4].item() == pytest.approx(0.63)
    # multi-label without a filter adds the class-1 reading of the first box (0.9 * 0.1 = 0.09 < 0.25: not)
    # and of the second (0.8 * 0.2 = 0.16: not), so the same detections as single-label here
    assert torch.equal(non_max_suppression(pred, 0.25, 0.45, multi_label=True)[0], non_max_suppression(pred)[0])
    # IoU threshold above their overlap: the two class-0 boxes both stay
    det = non_max_suppression(pred, 0.25, 0.9)[0]
    assert det[:, 5].tolist() == [0.0, 0.0, 1.0]


def test_non_max_suppression_multi_label_and_max_det():
    rows = [pred_row([30 * i + 10, 10, 8, 8], 1.0 - 0.01 * i, [0.9, 0.5]) for i in range(10)]
    second = rows[:2] + [pred_row([0, 0, 1, 1], 0.0, [0.0, 0.0])] * 8  # two boxes, the rest below threshold
    pred = torch.tensor([rows, second])
    out = non_max_suppression(pred, 0.25, 0.45, multi_label=True)
    assert [len(o) for o in out] == [20, 4]  # each box once per class above threshold
    assert sorted(out[1][:, 5].tolist()) == [0.0, 0.0, 1.0, 1.0]
    out = non_max_suppression(pred, 0.25, 0.45, max_det=3)
    assert len(out[0]) == 3
    assert torch.allclose(out[0][:, 4], torch.tensor([0.9, 0.99 * 0.9, 0.98 * 0.9]))
    # confidences sorted high to low
    full = non_max_suppression(pred, 0.25, 0.45, multi_label=True)[0][:, 4]
    assert torch.equal(full, full.sort(descending=True).values)


def test_non_max_suppression_matches_per_class_reference():
    g = torch.Generator().manual_seed(5)
    n, nc = 600, 3
    xy = torch.rand(n, 2, generator=g) * 200
    wh = torch.rand(n, 2, generator=g) * 40 + 4
    scores = torch.rand(n, nc + 1, generator=g)
    pred = torch.cat((xy, wh, scores), 1)[None]
    det = non_max_suppression(pred, conf_thres=0.1, iou_thres=0.5, max_det=1000)[0]
    conf, cls = (scores[:, 1:] * scores[:, :1]).max(1)
    ok = (scores[:, 0] > 0.1) & (conf > 0.1)
    boxes = xywh2xyxy(torch.cat((xy, wh), 1))
    expected = []
    for c in range(nc):
        idx = (ok & (cls == c)).nonzero().squeeze(1)
        expected += [idx[k].item() for k in reference_nms(boxes[idx], conf[idx], 0.5)]
    expected = torch.tensor(expected)
    expected = expected[conf[expected].argsort(descending=True)]
    rows = torch.cat((boxes[expected], conf[expected, None], cls[expected, None].float()), 1)
    assert det.shape == rows.shape and torch.allclose(det, rows)


def test_non_max_suppression_max_nms_counted_and_labels():
    rows = [pred_row([20 * i + 10, 10, 8, 8], 0.9, [0.9]) for i in range(6)]
    pred = torch.tensor([rows])
    stats = {}
    out = non_max_suppression(pred, 0.25, 0.45, max_nms=4, stats=stats)
    assert len(out[0]) == 4 and stats == {"images": 1, "candidates": 6, "capped": 1}
    # hybrid labels: added as confidence-1 detections of their class
    labels = [torch.tensor([[0.0, 500.0, 500.0, 10.0, 10.0]])]
    det = non_max_suppression(pred, 0.25, 0.45, labels=labels)[0]
    assert det[0].tolist() == [495.0, 495.0, 505.0, 505.0, 1.0, 0.0] and len(det) == 7


def test_non_max_suppression_empty_and_tuple_input():
    pred = torch.zeros(2, 5, 7)
    out = non_max_suppression((pred, None))
    assert len(out) == 2 and all(o.shape == (0, 6) for o in out)
    with pytest.raises(ValueError, match="conf_thres"):
        non_max_suppression(pred, conf_thres=2)
