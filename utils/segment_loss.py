"""YOLOv5 v7.0 instance-segmentation loss: the detection loss of utils/loss.py plus a mask loss.

Each positive (a target assigned to an anchor and cell by ComputeLoss.assign_targets, the detection assignment)
predicts nm mask coefficients; its mask logits are coefficients @ prototypes (nm, mh, mw) -> (mh, mw). The mask
loss of the positive is the per-pixel BCE-with-logits against its ground-truth mask (the loader's masks, brought to
(mh, mw) by nearest resampling when they differ), zeroed outside its ground-truth box (in mask pixels), summed and
divided by the box area: the mean BCE inside the box. Positives are averaged per image and level, the image terms
summed; the total is weighted by the box gain over the batch size (official v7.0):

    loss = (box + obj + cls + seg) * batch,   seg = hyp['box'] / batch * sum_levels sum_images mean_positives(
           sum_pixels_in_box BCE(c @ P, gt) / (mh * mw * w_n * h_n))

with w_n, h_n the normalised box size. Returned items: [box, seg, obj, cls] (official order).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from utils.boxes import xywh2xyxy
from utils.loss import ComputeLoss
from utils.masks import crop_mask
from utils.torch_utils import de_parallel

DEFAULT_NM = 32  # mask coefficients per anchor of the official Segment head


class ComputeSegmentLoss(ComputeLoss):
    """Loss of a segmentation model (Segment head: 5 + nc + nm outputs per anchor, prototypes (B, nm, mh, mw)).

    ``loss((p, proto), targets, masks)``: p the Segment training output (list of (B, na, ny, nx, 5 + nc + nm)),
    targets (n, 6) [image, class, x, y, w, h] normalised, masks (B, H, W) index maps with values k + 1 for the
    k-th target of each image (``overlap``, official overlap_mask) or (n, H, W) binary, one per target row.
    Returns ``(total * B, tensor([box, seg, obj, cls]))``, the second detached.
    """

    def __init__(self, model: nn.Module, hyp: dict, overlap: bool = True, autobalance: bool = False) -> None:
        super().__init__(model, hyp, autobalance)
        self.overlap = overlap
        self.nm = int(getattr(de_parallel(model).model[-1], "nm", DEFAULT_NM))

    def __call__(self, preds: tuple[Sequence[torch.Tensor], torch.Tensor], targets: torch.Tensor,
                 masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        p, proto = preds
        bs = proto.shape[0]
        detection, (lbox, lobj, lcls) = super().__call__([pi[..., :5 + self.nc] for pi in p], targets)
        lseg = self.mask_loss(p, proto, targets, masks) * (self.hyp["box"] / bs)
        return detection + lseg * bs, torch.cat((lbox.view(1), lseg, lobj.view(1), lcls.view(1))).detach()

    def mask_loss(self, p: Sequence[torch.Tensor], proto: torch.Tensor, targets: torch.Tensor,
                  masks: torch.Tensor) -> torch.Tensor:
        """The unweighted mask term: sum over levels and images of the mean per-positive box-normalised BCE."""
        bs, nm, mh, mw = proto.shape
        lseg = torch.zeros(1, device=proto.device)
        if not targets.shape[0]:
            return lseg + 0 * proto.sum()  # keeps the prototypes in the graph
        masks = masks.to(proto.device).float()
        if tuple(masks.shape[-2:]) != (mh, mw):
            masks = F.interpolate(masks[None], (mh, mw), mode="nearest")[0]
        _, _, indices, _, tidx = self.assign_targets(p, targets)
        mask_id = self._mask_ids(targets) if self.overlap else None
        xywhn = targets[:, 2:6]
        scale = torch.tensor([mw, mh, mw, mh], device=proto.device, dtype=xywhn.dtype)
        for i, pi in enumerate(p):
            b, a, gj, gi = indices[i]
            if not b.shape[0]:
                continue
            coeffs = pi[b, a, gj, gi][:, 5 + self.nc:]
            ti = tidx[i]
            area = xywhn[ti, 2:].prod(1)
            boxes = xywh2xyxy(xywhn[ti] * scale)
            for image in b.unique():
                j = b == image
                if self.overlap:
                    gt = (masks[image][None] == mask_id[ti[j]].view(-1, 1, 1)).float()
                else:
                    gt = masks[ti[j]]
                lseg += self.single_mask_loss(gt, coeffs[j], proto[image], boxes[j], area[j])
        return lseg

    def single_mask_loss(self, gt_mask: torch.Tensor, coeffs: torch.Tensor, proto: torch.Tensor,
                         boxes: torch.Tensor, area: torch.Tensor) -> torch.Tensor:
        """Mean over positives of the BCE inside each box divided by the box's normalised area."""
        logits = (coeffs @ proto.reshape(self.nm, -1)).view(-1, *proto.shape[1:])
        bce = F.binary_cross_entropy_with_logits(logits, gt_mask, reduction="none")
        return (crop_mask(bce, boxes).mean(dim=(1, 2)) / area).mean()

    @staticmethod
    def _mask_ids(targets: torch.Tensor) -> torch.Tensor:
        """Value of each target row in its image's overlap index map: 1 + its position among its image's rows."""
        image = targets[:, 0].long()
        ids = torch.zeros(len(image), device=targets.device, dtype=torch.float32)
        for value in image.unique():
            rows = (image == value).nonzero().view(-1)
            ids[rows] = torch.arange(1, len(rows) + 1, device=targets.device, dtype=torch.float32)
        return ids
