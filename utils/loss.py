"""YOLOv5 (v6.0 to v7.0) training loss: target assignment, CIoU box loss, IoU-target objectness, BCE classes."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

from utils.boxes import bbox_iou
from utils.torch_utils import de_parallel

# Objectness weight of each level, finest first (P3, P4, P5 for three levels; P3..P7 otherwise)
LEVEL_BALANCE = {3: [4.0, 1.0, 0.4]}
LEVEL_BALANCE_DEFAULT = [4.0, 1.0, 0.25, 0.06, 0.02]

# Cell offsets tried for each target, in units of ``NEIGHBOUR_OFFSET``: the own cell, then the cells to the
# left, above, right and below (a target near a cell border is also assigned to the neighbour on that side).
NEIGHBOUR_OFFSET = 0.5
CELL_OFFSETS = ((0, 0), (1, 0), (0, 1), (-1, 0), (0, -1))


def scale_loss_gains(hyp: dict, nl: int, nc: int, imgsz: int) -> dict:
    """Loss gains of ``hyp`` adapted to a model with ``nl`` detection levels and ``nc`` classes trained at
    ``imgsz`` pixels; the other keys are copied unchanged.

    YOLOv5's gains are tuned for 3 levels, 80 classes and 640 px. Each level adds one loss term, so all three
    gains scale by 3 / nl; the class loss (a mean over nc outputs) scales by nc / 80; the objectness loss (a mean
    over every grid cell, whose count grows with the image area) by (imgsz / 640) ** 2:

        box * 3 / nl,   cls * nc / 80 * 3 / nl,   obj * (imgsz / 640) ** 2 * 3 / nl
    """
    scaled = dict(hyp)
    scaled["box"] = hyp["box"] * 3 / nl
    scaled["cls"] = hyp["cls"] * nc / 80 * 3 / nl
    scaled["obj"] = hyp["obj"] * (imgsz / 640) ** 2 * 3 / nl
    return scaled


def smooth_BCE(eps: float = 0.1) -> tuple[float, float]:
    """Positive and negative BCE targets with label smoothing ``eps``: (1 - eps / 2, eps / 2)."""
    return 1.0 - 0.5 * eps, 0.5 * eps


class FocalLoss(nn.Module):
    """Focal loss (Lin et al. 2017) around an element-wise BCE-with-logits loss.

    Each element's loss is scaled by ``alpha_t * (1 - p_t) ** gamma``; the result is reduced like the wrapped
    loss ('mean', 'sum' or 'none').
    """

    def __init__(self, loss_fcn: nn.BCEWithLogitsLoss, gamma: float = 1.5, alpha: float = 0.25) -> None:
        super().__init__()
        self.loss_fcn = loss_fcn
        self.gamma = gamma
        self.alpha = alpha
        self.reduction = loss_fcn.reduction
        self.loss_fcn.reduction = "none"  # the weighting is per element

    def forward(self, pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
        loss = self.loss_fcn(pred, true)
        prob = pred.sigmoid()
        p_t = true * prob + (1 - true) * (1 - prob)
        alpha_t = true * self.alpha + (1 - true) * (1 - self.alpha)
        loss = loss * alpha_t * (1.0 - p_t) ** self.gamma
        if self.reduction == "mean":
            return loss.mean()
        if self.reduction == "sum":
            return loss.sum()
        return loss


class ComputeLoss:
    """The YOLOv5 loss of a ``Model`` with hyperparameters ``hyp``: the gains box, obj, cls (already scaled for
    the model, see scale_loss_gains), cls_pw, obj_pw, anchor_t, and optionally fl_gamma and label_smoothing.

    ``loss(p, targets)`` with p the Detect training output (list of (N, na, ny, nx, 5 + nc) maps) and targets
    (n, 6) [image index, class, x, y, w, h] normalised xywh returns ``(total * N, tensor([box, obj, cls]))``,
    the second detached.
    """

    sort_obj_iou = False  # when several targets share a cell, let the highest IoU set its objectness target

    def __init__(self, model: nn.Module, hyp: dict, autobalance: bool = False) -> None:
        device = next(model.parameters()).device
        h = hyp
        self.hyp = h
        self.bce_cls = nn.BCEWithLogitsLoss(pos_weight=torch.tensor([h["cls_pw"]], device=device))
        self.bce_obj = nn.BCEWithLogitsLoss(pos_weight=torch.tensor([h["obj_pw"]], device=device))
        self.cls_pos, self.cls_neg = smooth_BCE(eps=h.get("label_smoothing", 0.0))
        gamma = h.get("fl_gamma", 0.0)
        if gamma > 0:
            self.bce_cls, self.bce_obj = FocalLoss(self.bce_cls, gamma), FocalLoss(self.bce_obj, gamma)

        detect = de_parallel(model).model[-1]
        self.nl, self.na, self.nc = detect.nl, detect.na, detect.nc
        self.anchors = detect.anchors  # (nl, na, 2) in grid units; a live view, so AutoAnchor changes apply
        self.balance = list(LEVEL_BALANCE.get(self.nl, LEVEL_BALANCE_DEFAULT[: self.nl]))
        self.ssi = list(detect.stride).index(16) if autobalance else 0  # level whose balance stays fixed
        self.autobalance = autobalance
        self.gr = 1.0  # objectness target = (1 - gr) + gr * IoU
        self.anchor_t = h["anchor_t"]
        self.device = device

    def __call__(self, p: Sequence[torch.Tensor], targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lcls = torch.zeros(1, device=self.device)
        lbox = torch.zeros(1, device=self.device)
        lobj = torch.zeros(1, device=self.device)
        tcls, tbox, indices, anchors = self.build_targets(p, targets)

        for i, pi in enumerate(p):
            b, a, gj, gi = indices[i]
            tobj = torch.zeros(pi.shape[:4], dtype=pi.dtype, device=self.device)
            n = b.shape[0]
            if n:
                pxy, pwh, _, pcls = pi[b, a, gj, gi].split((2, 2, 1, self.nc), 1)
                # Same decode as Detect, relative to the assigned cell's corner, in grid units
                pxy = pxy.sigmoid() * 2 - 0.5
                pwh = (pwh.sigmoid() * 2) ** 2 * anchors[i]
                pbox = torch.cat((pxy, pwh), 1)
                iou = bbox_iou(pbox, tbox[i], CIoU=True).view(-1)
                lbox += (1.0 - iou).mean()

                iou = iou.detach().clamp(0).type(tobj.dtype)
                if self.sort_obj_iou:
                    order = iou.argsort()  # written last = kept, so the highest IoU wins a shared cell
                    b, a, gj, gi, iou = b[order], a[order], gj[order], gi[order], iou[order]
                if self.gr < 1:
                    iou = (1.0 - self.gr) + self.gr * iou
                tobj[b, a, gj, gi] = iou

                if self.nc > 1:  # with one class, objectness already says it all
                    t = torch.full_like(pcls, self.cls_neg)
                    t[torch.arange(n, device=self.device), tcls[i]] = self.cls_pos
                    lcls += self.bce_cls(pcls, t)

            obji = self.bce_obj(pi[..., 4], tobj)
            lobj += obji * self.balance[i]
            if self.autobalance:
                self.balance[i] = self.balance[i] * 0.9999 + 0.0001 / obji.detach().item()

        if self.autobalance:
            self.balance = [x / self.balance[self.ssi] for x in self.balance]
        lbox *= self.hyp["box"]
        lobj *= self.hyp["obj"]
        lcls *= self.hyp["cls"]
        bs = p[0].shape[0]
        return (lbox + lobj + lcls) * bs, torch.cat((lbox, lobj, lcls)).detach()

    def build_targets(self, p: Sequence[torch.Tensor], targets: torch.Tensor) -> tuple[
        list[torch.Tensor],
        list[torch.Tensor],
        list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]],
        list[torch.Tensor],
    ]:
        """Assign each target to anchors and cells on every level.

        A target goes to every anchor whose width and height ratios to it are both within ``anchor_t``; on each
        such anchor it takes its own cell plus the two neighbouring cells nearest to its centre (left or right,
        above or below) when those exist. Returns per level: class (n,), box (n, 4) xywh in grid units with xy
        relative to the assigned cell's corner, indices (image, anchor, row, column), anchor wh (n, 2).
        """
        return self.assign_targets(p, targets)[:4]

    def assign_targets(self, p: Sequence[torch.Tensor], targets: torch.Tensor) -> tuple[list, list, list, list, list]:
        """build_targets plus, per level, the row of ``targets`` each assignment came from (n,) long (the
        segmentation loss finds a positive's mask and normalised box through it)."""
        na, nt = self.na, targets.shape[0]
        device = targets.device
        tcls, tbox, indices, anch, tidx = [], [], [], [], []
        gain = torch.ones(8, device=device)
        anchor_index = torch.arange(na, device=device).float().view(na, 1).repeat(1, nt)
        target_index = torch.arange(nt, device=device).float().view(1, nt).repeat(na, 1)
        targets = torch.cat((targets.repeat(na, 1, 1), anchor_index[..., None], target_index[..., None]), 2)
        g = NEIGHBOUR_OFFSET
        offsets_all = torch.tensor(CELL_OFFSETS, device=device).float() * g  # (5, 2)

        for i in range(self.nl):
            anchors, shape = self.anchors[i], p[i].shape
            gain[2:6] = torch.tensor(shape, device=device)[[3, 2, 3, 2]].float()  # xyxy gain to grid units
            t = targets * gain
            if nt:
                ratio = t[..., 4:6] / anchors[:, None]  # (na, nt, 2)
                keep = torch.max(ratio, 1 / ratio).max(2)[0] < self.anchor_t
                t = t[keep]  # (m, 8)

                gxy = t[:, 2:4]
                gxy_inv = gain[[2, 3]] - gxy  # distance to the far border
                # A neighbour exists when the centre is in the near half of its cell and not in the border cell
                left, top = ((gxy % 1 < g) & (gxy > 1)).T
                right, bottom = ((gxy_inv % 1 < g) & (gxy_inv > 1)).T
                chosen = torch.stack((torch.ones_like(left), left, top, right, bottom))  # (5, m)
                t = t.repeat((5, 1, 1))[chosen]
                offsets = (torch.zeros_like(gxy)[None] + offsets_all[:, None])[chosen]
            else:
                t = targets[0]
                offsets = 0

            bc, gxy, gwh, a, ti = t.split((2, 2, 2, 1, 1), 1)
            a = a.long().view(-1)
            b, c = bc.long().T
            gij = (gxy - offsets).long()
            gi = gij[:, 0].clamp(0, shape[3] - 1)
            gj = gij[:, 1].clamp(0, shape[2] - 1)
            indices.append((b, a, gj, gi))
            tbox.append(torch.cat((gxy - torch.stack((gi, gj), 1), gwh), 1))
            anch.append(anchors[a])
            tcls.append(c)
            tidx.append(ti.long().view(-1))
        return tcls, tbox, indices, anch, tidx
