"""NMS inside the exported graph (``export.py --nms``, ONNX and the OpenVINO model converted from that ONNX).

The graph ends in ONNX's standard ``NonMaxSuppression`` operator and returns, like official YOLOv5's TensorFlow
``--nms`` exports, fixed-size results per image:

    output0   (B, topk_all, 6) float   [x1, y1, x2, y2, confidence, class] in input pixels, best first, zero-padded
    num_dets  (B,) int64                how many rows of output0 are detections

Scoring follows detect.py: confidence = objectness x class score, each box competing in its best class only
(``--agnostic-nms``: across classes), boxes with confidence above ``--conf-thres`` suppressed per class at
``--iou-thres``, at most ``--topk-per-class`` per class and ``--topk-all`` per image. Run on the same input, the
rows equal utils.boxes.non_max_suppression(pred, conf_thres, iou_thres, agnostic=..., max_det=topk_all) while no
class has more than topk_per_class detections.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from utils.boxes import nms

NMS_OUTPUTS = ("output0", "num_dets")


@torch.library.custom_op("yolov5::non_max_suppression", mutates_args=())
def onnx_nms(boxes: torch.Tensor, scores: torch.Tensor, max_per_class: torch.Tensor, iou_thres: torch.Tensor,
             conf_thres: torch.Tensor) -> torch.Tensor:
    """ONNX NonMaxSuppression (corner boxes): selected (K, 3) int64 [image, class, box] of boxes (B, N, 4) and
    scores (B, C, N). PyTorch computes it with the project's greedy NMS; an ONNX export records the operator
    (one traced node, turned into NonMaxSuppression by ``_onnx_nms_symbolic``)."""
    selected = []
    for b in range(scores.shape[0]):
        for c in range(scores.shape[1]):
            idx = (scores[b, c] > conf_thres).nonzero().squeeze(1)
            if len(idx):
                keep = idx[nms(boxes[b, idx], scores[b, c, idx], float(iou_thres), int(max_per_class))]
                selected.append(torch.stack((torch.full_like(keep, b), torch.full_like(keep, c), keep), 1))
    return torch.cat(selected) if selected else torch.zeros((0, 3), dtype=torch.long, device=boxes.device)


def _onnx_nms_symbolic(g: Any, boxes: Any, scores: Any, max_per_class: Any, iou_thres: Any, conf_thres: Any) -> Any:
    return g.op("NonMaxSuppression", boxes, scores, max_per_class, iou_thres, conf_thres, center_point_box_i=0)


torch.onnx.register_custom_op_symbolic("yolov5::non_max_suppression", _onnx_nms_symbolic, 11)


class NMSModel(nn.Module):
    """``model`` (decoded predictions (B, N, 5 + nc)) followed by NMS; returns (output0, num_dets) as above."""

    def __init__(self, model: nn.Module, conf_thres: float = 0.25, iou_thres: float = 0.45, topk_per_class: int = 100,
                 topk_all: int = 100, agnostic: bool = False) -> None:
        super().__init__()
        self.model, self.topk_all, self.agnostic = model, int(topk_all), bool(agnostic)
        self.register_buffer("max_per_class", torch.tensor([int(topk_per_class)]), persistent=False)
        self.register_buffer("iou_thres", torch.tensor([float(iou_thres)]), persistent=False)
        self.register_buffer("conf_thres", torch.tensor([float(conf_thres)]), persistent=False)
        for attr in ("names", "stride", "yaml"):
            if hasattr(model, attr):
                setattr(self, attr, getattr(model, attr))
        self.eval()  # a new module starts in training mode, and exporters restore the mode they found

    def settings(self) -> dict[str, Any]:
        """The NMS settings recorded in the exported file's metadata (``nms``)."""
        return {"conf_thres": float(self.conf_thres), "iou_thres": float(self.iou_thres),
                "topk_per_class": int(self.max_per_class), "topk_all": self.topk_all, "agnostic": self.agnostic}

    def forward(self, im: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = self.model(im)
        y = y[0] if isinstance(y, (list, tuple)) else y
        xy, wh = y[..., :2], y[..., 2:4]
        boxes = torch.cat((xy - wh / 2, xy + wh / 2), 2)  # (B, N, 4) corners
        conf = y[..., 5:] * y[..., 4:5]  # (B, N, nc) objectness x class score
        best, label = conf.max(2, keepdim=True)  # (B, N, 1): each box competes in its best class only
        scores = best if self.agnostic else torch.zeros_like(conf).scatter(2, label, best)
        selected = torch.ops.yolov5.non_max_suppression(boxes, scores.transpose(1, 2).contiguous(),
                                                        self.max_per_class, self.iou_thres, self.conf_thres)
        image, box = selected[:, 0], selected[:, 2]
        det = torch.cat((boxes[image, box], best[image, box], label[image, box].to(boxes.dtype)), 1)  # (K, 6)
        order = torch.argsort(image.to(det.dtype) * 2 - det[:, 4])  # by image, then confidence (in (0, 1]) down
        det, image = det[order], image[order]
        images = torch.ones_like(im[:, 0, 0, 0], dtype=torch.long).cumsum(0) - 1  # 0..B-1
        first = (image[None, :] < images[:, None]).sum(1)  # each image's first row in the sorted list
        # position within its image; (image * 0 + 1) rather than ones_like: an elementwise op keeps the size
        # visibly bounded by NMS's output for the ONNX checks (utils/script_check.py)
        rank = (image * 0 + 1).cumsum(0) - 1 - first[image]
        keep = rank < self.topk_all
        out = torch.zeros((im.shape[0] * self.topk_all, 6), dtype=det.dtype, device=det.device)
        out = out.index_put((image[keep] * self.topk_all + rank[keep],), det[keep])
        num = (image[None, :] == images[:, None]).sum(1).clamp(max=self.topk_all)
        return out.view(im.shape[0], self.topk_all, 6), num
