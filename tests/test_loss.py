"""utils/loss.py: target assignment and loss values on hand-built cases."""

import math

import pytest
import torch
import torch.nn as nn

from models.yolo import Detect, Model
from utils.loss import ComputeLoss, FocalLoss, scale_loss_gains, smooth_BCE

HYP = dict(box=0.05, obj=1.0, cls=0.5, cls_pw=1.0, obj_pw=1.0, anchor_t=4.0, fl_gamma=0.0, label_smoothing=0.0)


class OneLevelModel(nn.Module):
    """Just a Detect head with one level (grid units = pixels, stride 1), enough for ComputeLoss."""

    def __init__(self, anchors, nc=2):
        super().__init__()
        self.model = nn.Sequential(Detect(nc=nc, anchors=[anchors], ch=(4,)))


def ciou_reference(b1, b2):
    """CIoU of two (x, y, w, h) boxes with plain floats (Zheng et al. 2020)."""
    (x1, y1, w1, h1), (x2, y2, w2, h2) = b1, b2
    l1, r1, t1, d1 = x1 - w1 / 2, x1 + w1 / 2, y1 - h1 / 2, y1 + h1 / 2
    l2, r2, t2, d2 = x2 - w2 / 2, x2 + w2 / 2, y2 - h2 / 2, y2 + h2 / 2
    inter = max(0.0, min(r1, r2) - max(l1, l2)) * max(0.0, min(d1, d2) - max(t1, t2))
    iou = inter / (w1 * h1 + w2 * h2 - inter)
    c2 = (max(r1, r2) - min(l1, l2)) ** 2 + (max(d1, d2) - min(t1, t2)) ** 2
    rho2 = (x1 - x2) ** 2 + (y1 - y2) ** 2
    v = 4 / math.pi**2 * (math.atan(w2 / h2) - math.atan(w1 / h1)) ** 2
    alpha = v / (v - iou + 1) if v else 0.0
    return iou - rho2 / c2 - alpha * v


def bce(logit, target):
    p = 1 / (1 + math.exp(-logit))
    return -(target * math.log(p) + (1 - target) * math.log(1 - p))


def test_loss_gains_scale_with_levels_classes_and_image_size():
    """Gains are tuned for 3 levels, 80 classes, 640 px: unchanged there; 4 levels, 20 classes at 320 px give
    box 0.05 * 3/4, cls 0.5 * 20/80 * 3/4, obj 1.0 * (320/640)^2 * 3/4; other keys are copied."""
    assert scale_loss_gains(HYP, nl=3, nc=80, imgsz=640) == pytest.approx(HYP)
    scaled = scale_loss_gains(HYP, nl=4, nc=20, imgsz=320)
    assert (scaled["box"], scaled["cls"], scaled["obj"]) == pytest.approx((0.0375, 0.09375, 0.1875))
    assert scaled["anchor_t"] == HYP["anchor_t"] and HYP["box"] == 0.05  # the input stays as it was


def test_smooth_bce():
    assert smooth_BCE(0.0) == (1.0, 0.0)
    assert smooth_BCE(0.1) == pytest.approx((0.95, 0.05))


def test_assignment_one_target_two_neighbours():
    """Grid 4x4; target centre (1.25, 2.75), size 2x2. Anchor (2, 2) matches, anchor (9, 9) (ratio 4.5) does not.
    x fraction 0.25 -> left neighbour; y fraction 0.75 -> the cell below. Three cells in all."""
    model = OneLevelModel([2, 2, 9, 9])
    loss = ComputeLoss(model, HYP)
    p = [torch.zeros(2, 2, 4, 4, 7)]
    targets = torch.tensor([[1, 1, 1.25 / 4, 2.75 / 4, 0.5, 0.5]])
    tcls, tbox, indices, anchors = loss.build_targets(p, targets)
    b, a, gj, gi = indices[0]
    cells = sorted(zip(gi.tolist(), gj.tolist()))
    assert cells == [(0, 2), (1, 2), (1, 3)]
    assert b.tolist() == [1, 1, 1] and a.tolist() == [0, 0, 0] and tcls[0].tolist() == [1, 1, 1]
    got = {(int(x), int(y)): box.tolist() for x, y, box in zip(gi, gj, tbox[0])}
    assert got[(1, 2)] == pytest.approx([0.25, 0.75, 2, 2])  # centre relative to the assigned cell's corner
    assert got[(0, 2)] == pytest.approx([1.25, 0.75, 2, 2])
    assert got[(1, 3)] == pytest.approx([0.25, -0.25, 2, 2])
    assert anchors[0].tolist() == [[2, 2]] * 3


def test_assignment_counts_three_levels():
    """yolov5n (strides 8/16/32, default anchors) at 256x256; counts worked out by hand from the anchor ratios."""
    model = Model("yolov5n.yaml", nc=2)
    loss = ComputeLoss(model, HYP)
    p = [torch.zeros(1, 3, 256 // s, 256 // s, 7) for s in (8, 16, 32)]
    # 40x40 px box centred at (100, 60) px.
    # P3 (stride 8, anchors 10x13 16x30 33x23 px): ratios to 40x40 are <= 4 for 16x30 and 33x23 only (40/10 = 4 is
    #   not < 4). Centre (12.5, 7.5) in cells: x frac 0.5 -> no left (needs < 0.5); 32-12.5 = 19.5 -> right no;
    #   y frac 0.5 -> top no; 32 - 7.5 = 24.5 -> bottom no. One cell per anchor: 2.
    # P4 (stride 16, anchors 30x61 62x45 59x119 px): all three within 4. Centre (6.25, 3.75): left yes (0.25),
    #   top no (0.75), right: 9.75 frac 0.75 no; bottom: 12.25 frac 0.25 yes. Three cells per anchor: 9.
    # P5 (stride 32, anchors 116x90 156x198 373x326 px): 116/40 = 2.9 ok, 198/40 = 4.95 no, 373/40 no: 1 anchor.
    #   Centre (3.125, 1.875): left yes (0.125), top no (0.875), right 4.875 no, bottom 6.125 yes: 3 cells.
    targets = torch.tensor([[0, 1, 100 / 256, 60 / 256, 40 / 256, 40 / 256]])
    _, _, indices, _ = loss.build_targets(p, targets)
    assert [len(ix[0]) for ix in indices] == [2, 9, 3]
    # a centre inside the first cell has no left/top neighbour; one in the last cell none to the right/bottom
    corner = torch.tensor([[0, 0, 0.8 / 32, 0.2 / 32, 40 / 256, 40 / 256]])  # P5 centre (0.2, 0.05): no neighbours
    _, _, indices, _ = loss.build_targets(p, corner)
    assert len(indices[2][0]) == 1
    # no targets: empty assignments everywhere
    _, _, indices, _ = loss.build_targets(p, torch.zeros(0, 6))
    assert [len(ix[0]) for ix in indices] == [0, 0, 0]


@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_loss_values_one_target(eps):
    """All box logits 0 -> predicted box (0.5, 0.5, anchor) in each assigned cell; objectness logits -2 and
    class logits (1, -1) everywhere. Expected values computed with plain floats."""
    model = OneLevelModel([2, 2, 9, 9])
    loss = ComputeLoss(model, dict(HYP, label_smoothing=eps))
    p = torch.zeros(2, 2, 4, 4, 7)
    p[..., 4] = -2.0
    p[..., 5] = 1.0
    p[..., 6] = -1.0
    targets = torch.tensor([[1, 1, 1.25 / 4, 2.75 / 4, 0.5, 0.5]])
    total, items = loss([p.clone().requires_grad_()], targets)

    pred_box = (0.5, 0.5, 2, 2)
    cious = [ciou_reference(pred_box, t) for t in ((0.25, 0.75, 2, 2), (1.25, 0.75, 2, 2), (0.25, -0.25, 2, 2))]
    assert cious[0] == pytest.approx(0.620253 - 0.125 / 10.125, abs=1e-5)  # IoU 3.0625 / 4.9375, rho2/c2 0.125/10.125
    box = HYP["box"] * sum(1 - c for c in cious) / 3
    # objectness: 3 cells with target = CIoU (clamped at 0), 61 cells with target 0; balance 4.0 for level 0
    obj_sum = sum(bce(-2.0, max(c, 0.0)) for c in cious) + 61 * bce(-2.0, 0.0)
    obj = HYP["obj"] * 4.0 * obj_sum / 64
    pos, neg = 1 - eps / 2, eps / 2
    cls = HYP["cls"] * (bce(1.0, neg) + bce(-1.0, pos)) / 2  # class 1 is the positive one
    assert items.tolist() == pytest.approx([box, obj, cls], rel=1e-5)
    assert total.item() == pytest.approx(2 * (box + obj + cls), rel=1e-5)  # scaled by the batch size 2


def test_single_class_has_no_class_loss():
    model = OneLevelModel([2, 2, 9, 9], nc=1)
    loss = ComputeLoss(model, HYP)
    p = torch.randn(1, 2, 4, 4, 6)
    _, items = loss([p], torch.tensor([[0, 0, 0.4, 0.4, 0.5, 0.5]]))
    assert items[2] == 0 and items[0] > 0


def test_focal_loss_matches_formula():
    gamma, alpha = 1.5, 0.25
    logits, targets = torch.tensor([2.0, -1.0, 0.3]), torch.tensor([1.0, 0.0, 0.7])
    focal = FocalLoss(nn.BCEWithLogitsLoss(), gamma=gamma, alpha=alpha)
    expected = 0.0
    for z, t in zip(logits.tolist(), targets.tolist()):
        p = 1 / (1 + math.exp(-z))
        p_t = t * p + (1 - t) * (1 - p)
        a_t = t * alpha + (1 - t) * (1 - alpha)
        expected += bce(z, t) * a_t * (1 - p_t) ** gamma
    assert focal(logits, targets).item() == pytest.approx(expected / 3, rel=1e-6)
    # fl_gamma > 0 switches both BCEs to focal loss
    model = OneLevelModel([2, 2, 9, 9])
    assert isinstance(ComputeLoss(model, dict(HYP, fl_gamma=1.5)).bce_obj, FocalLoss)


def test_gradient_reduces_loss():
    """Twenty SGD steps on the raw maps of the hand-built case lower every loss term."""
    model = OneLevelModel([2, 2, 9, 9])
    loss = ComputeLoss(model, HYP)
    p = torch.zeros(1, 2, 4, 4, 7, requires_grad=True)
    targets = torch.tensor([[0, 1, 1.25 / 4, 2.75 / 4, 0.5, 0.5]])
    first = loss([p], targets)[1]
    opt = torch.optim.SGD([p], lr=1.0)
    for _ in range(20):
        opt.zero_grad()
        loss([p], targets)[0].backward()
        opt.step()
    assert (loss([p], targets)[1] < 0.95 * first).all()  # box, objectness and class losses all fall
