"""The segmentation loss (utils/segment_loss.py): a hand-computed mask term, and the whole loss equal to official
YOLOv5 v7.0's utils/segment/loss.py ComputeLoss on the same random inputs (fixture made by running the official
code, overlap and per-instance masks), and the overlap index map equivalent to per-instance masks."""

import math

import numpy as np
import torch
import torch.nn as nn

from utils.general import ROOT
from utils.segment_loss import ComputeSegmentLoss

FIXTURE = ROOT / "tests" / "fixtures" / "segment_loss_official.npz"
HYP = dict(box=0.05, obj=1.0, cls=0.5, cls_pw=1.0, obj_pw=1.0, anchor_t=4.0, fl_gamma=0.0, label_smoothing=0.0)
ANCHORS = [[10, 13, 16, 30, 33, 23], [30, 61, 62, 45, 59, 119], [116, 90, 156, 198, 373, 326]]  # P3-P5 pixels


class _Head(nn.Module):
    """What the loss reads from a Segment head: nl, na, nc, nm, stride and anchors in grid units."""

    def __init__(self, nc, nm):
        super().__init__()
        self.nl, self.na, self.nc, self.nm = 3, 3, nc, nm
        self.stride = torch.tensor([8.0, 16, 32])
        self.register_buffer("anchors", torch.tensor(ANCHORS).float().view(3, 3, 2) / self.stride.view(3, 1, 1))
        self.weight = nn.Parameter(torch.zeros(1))


class _Model(nn.Module):
    def __init__(self, nc=3, nm=4):
        super().__init__()
        self.model = nn.ModuleList([_Head(nc, nm)])


def test_single_mask_loss_by_hand():
    loss = ComputeSegmentLoss(_Model(nm=1), HYP)
    proto = torch.tensor([[[0.0, 2.0], [-1.0, 0.0]]])  # (nm=1, 2, 2) logits with coefficient 1
    gt = torch.tensor([[[1.0, 1.0], [0.0, 0.0]]])
    box = torch.tensor([[0.0, 0.0, 1.0, 2.0]])  # the left column, in mask pixels
    area = torch.tensor([0.5])  # normalised w * h of that box
    value = loss.single_mask_loss(gt, torch.ones(1, 1), proto, box, area)
    # inside the box: logit 0 vs 1 -> ln 2; logit -1 vs 0 -> ln(1 + e^-1); mean over 4 pixels, / area 0.5
    expected = (math.log(2) + math.log(1 + math.exp(-1))) / 4 / 0.5
    assert abs(value.item() - expected) < 1e-6


def _inputs(data, prefix):
    p = [torch.from_numpy(data[f"{prefix}_{k}"]) for k in ("p3", "p4", "p5")]
    return p, torch.from_numpy(data[f"{prefix}_proto"]), torch.from_numpy(data[f"{prefix}_targets"])


def test_loss_equals_official_v70():
    data = dict(np.load(FIXTURE))
    for prefix, overlap in (("overlap", True), ("instances", False)):
        p, proto, targets = _inputs(data, prefix)
        masks = torch.from_numpy(data[f"{prefix}_masks"]).float()
        p = [x.requires_grad_() for x in p]
        proto.requires_grad_()
        loss, items = ComputeSegmentLoss(_Model(), HYP, overlap=overlap)((p, proto), targets, masks)
        np.testing.assert_allclose(loss.detach().numpy(), data[f"{prefix}_loss"], rtol=1e-5)
        np.testing.assert_allclose(items.numpy(), data[f"{prefix}_items"], rtol=1e-5)  # box, seg, obj, cls
        assert items[1] > 0
        loss.sum().backward()
        assert proto.grad.abs().sum() > 0 and p[0].grad[..., 8:].abs().sum() > 0  # prototypes and coefficients


def test_overlap_index_map_equals_per_instance_masks():
    data = dict(np.load(FIXTURE))
    p, proto, targets = _inputs(data, "overlap")
    index_map = torch.from_numpy(data["overlap_masks"]).float()  # (2, 32, 32) at the input resolution
    index_map = torch.nn.functional.interpolate(index_map[None], (8, 8), mode="nearest")[0]
    ids = [int((targets[: i + 1, 0] == targets[i, 0]).sum()) for i in range(len(targets))]
    per_instance = torch.stack([(index_map[int(targets[i, 0])] == ids[i]).float() for i in range(len(targets))])
    a = ComputeSegmentLoss(_Model(), HYP, overlap=True)((p, proto), targets, index_map)[1]
    b = ComputeSegmentLoss(_Model(), HYP, overlap=False)((p, proto), targets, per_instance)[1]
    torch.testing.assert_close(a, b)
