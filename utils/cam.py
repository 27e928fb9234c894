"""Class activation maps of convolutional networks: EigenCAM, Grad-CAM and LayerCAM, and heatmap figures.

Every function takes the network and the layers to read as arguments (no model classes are imported here):

- ``class_activation_map(model, layers, x, method, score)``: one forward pass (and a backward pass for the gradient
  methods) with forward hooks on ``layers``; each layer's map is normalised to [0, 1], upsampled to the input size
  and the layers are averaged into one (B, H, W) heatmap.
- EigenCAM (Muhammad and Yeasin, IJCNN 2020): the activations projected on their first principal component.
  Needs no gradient and no target.
- Grad-CAM (Selvaraju et al., ICCV 2017): channel weights = spatial mean of the gradient of a target score.
- LayerCAM (Jiang et al., IEEE TIP 2021): every position weighted by its own positive gradient.
- ``DetectionScore``: the target score of a detector for the gradient methods (see its docstring).
"""

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import cv2
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from utils.boxes import non_max_suppression, scale_boxes, xywh2xyxy
from utils.plots import Annotator, colors

CAM_METHODS = ("eigencam", "gradcam", "layercam")
PANEL_MAX_SIDE = 1024  # figure panels larger than this (pixels, longer side) are shrunk to it
OVERLAY_ALPHA = 0.5  # weight of the heatmap colours over the image


@contextmanager
def record_outputs(layers: Sequence[nn.Module]) -> Iterator[list[torch.Tensor]]:
    """Record the output of every call of ``layers`` during the block, in call order; the hooks are removed on exit
    (also after an error). A layer whose output is not a (B, C, H, W) tensor raises ValueError."""
    outputs = []

    def keep(module: nn.Module, inputs: tuple, output: object) -> None:
        if not isinstance(output, torch.Tensor) or output.dim() != 4:
            kind = type(output).__name__ if not isinstance(output, torch.Tensor) else f"a {output.dim()}-D tensor"
            raise ValueError(f"{type(module).__name__} outputs {kind}; a class activation map needs a (B, C, H, W) "
                             "feature map")
        outputs.append(output)

    handles = [layer.register_forward_hook(keep) for layer in layers]
    try:
        yield outputs
    finally:
        for h in handles:
            h.remove()


def normalize_maps(maps: torch.Tensor) -> torch.Tensor:
    """(B, H, W) non-negative maps divided by each one's maximum: values in [0, 1], an all-zero map stays zero."""
    peak = maps.flatten(1).amax(1).view(-1, 1, 1)
    return maps / peak.clamp_min(torch.finfo(maps.dtype).tiny)


def first_principal_map(activations: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, H, W): each image's activations (pixels as samples, channels as features, centred on the
    channel means) projected on their first principal component.

    The component's sign is arbitrary; it is chosen so that the map correlates positively with the channel mean
    of the activations (the sign under which strongly activated places are high).
    """
    b, c, h, w = activations.shape
    maps = []
    for a in activations.detach().float().reshape(b, c, h * w):
        samples = (a - a.mean(1, keepdim=True)).t()  # (H*W, C), centred
        direction = torch.linalg.svd(samples, full_matrices=False).Vh[0]  # (C,)
        projection = samples @ direction
        channel_mean = a.mean(0)
        if torch.dot(projection, channel_mean - channel_mean.mean()) < 0:
            projection = -projection
        maps.append(projection.view(h, w))
    return torch.stack(maps)


def eigen_cam(activations: torch.Tensor) -> torch.Tensor:
    """EigenCAM (B, C, H, W) -> (B, H, W) in [0, 1]: ReLU of the first principal component map, normalised."""
    return normalize_maps(first_principal_map(activations).relu())


def grad_cam(activations: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
    """Grad-CAM (B, C, H, W) x2 -> (B, H, W) in [0, 1]: ReLU of the channels weighted by their mean gradient."""
    weights = gradients.mean((2, 3), keepdim=True)
    return normalize_maps((weights * activations).sum(1).relu())


def layer_cam(activations: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
    """LayerCAM (B, C, H, W) x2 -> (B, H, W) in [0, 1]: every element weighted by its own positive gradient,
    summed over the channels (ReLU of the sum)."""
    return normalize_maps((gradients.relu() * activations).sum(1).relu())


def combine_maps(maps: Sequence[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
    """Average of (B, h, w) maps of several layers after bilinear upsampling each to ``size`` (H, W)."""
    resized = [F.interpolate(m[:, None], size=size, mode="bilinear", align_corners=False)[:, 0] for m in maps]
    return torch.stack(resized).mean(0)


def class_activation_map(model: nn.Module, layers: Sequence[nn.Module], x: torch.Tensor, method: str,
                         score: Callable[[object], torch.Tensor]) -> torch.Tensor:
    """Heatmap (B, H, W) in [0, 1] of ``model`` on input ``x`` (B, C, H, W) from the outputs of ``layers``.

    ``score(output)`` returns the scalar target whose gradient the gradient methods follow: one number for the batch,
    e.g. a sum over its images (in eval mode each image's part depends on that image only). It is called for
    EigenCAM too, without gradients, so that a score object can keep what it saw (``DetectionScore.detections``).
    The input is made to require a gradient, so frozen parameters (``requires_grad=False``) do not stop the
    backward pass.
    """
    if method not in CAM_METHODS:
        raise ValueError(f"unknown CAM method '{method}'; choose one of {', '.join(CAM_METHODS)}")
    needs_grad = method != "eigencam"
    with record_outputs(layers) as activations, torch.set_grad_enabled(needs_grad):
        x = x.detach().requires_grad_(needs_grad)
        target = score(model(x))
        if not activations:
            raise ValueError("none of the given layers ran in the forward pass")
        if needs_grad:  # a target that no layer output influences gives all-zero maps
            gradients = (torch.autograd.grad(target, activations, allow_unused=True) if target.requires_grad
                         else [None] * len(activations))
    if not needs_grad:
        maps = [eigen_cam(a) for a in activations]
    else:
        cam = grad_cam if method == "gradcam" else layer_cam
        maps = [cam(a.detach().float(), torch.zeros_like(a, dtype=torch.float) if g is None else g.float())
                for a, g in zip(activations, gradients)]
    return combine_maps(maps, tuple(x.shape[2:]))


class DetectionScore:
    """Target score of a YOLO detector for Grad-CAM and LayerCAM: the sum of the confidences (obj * cls of the
    detected class) of the detections that NMS keeps, or, in an image where none is kept, of its ``top_k``
    highest-confidence raw predictions (obj * best cls), so that an untrained or unsure model still has a target.

    Called on the model's inference output (``(pred, raw)`` or ``pred``, pred (B, N, 5 + nc) decoded); NMS runs on
    a detached copy with ``conf_thres``, ``iou_thres`` and ``max_det``, and each kept detection is found back among
    the raw predictions by its box. ``detections`` holds the last call's NMS result: B tensors (k, 6)
    [x1, y1, x2, y2, conf, cls] in input pixels.
    """

    def __init__(
        self, conf_thres: float = 0.25, iou_thres: float = 0.45, max_det: int = 300, top_k: int = 10
    ) -> None:
        self.conf_thres, self.iou_thres, self.max_det, self.top_k = conf_thres, iou_thres, max_det, top_k
        self.detections = []

    def __call__(self, output: torch.Tensor | list | tuple) -> torch.Tensor:
        pred = output[0] if isinstance(output, (list, tuple)) else output
        self.detections = non_max_suppression(pred.detach(), self.conf_thres, self.iou_thres, max_det=self.max_det)
        total = pred.new_zeros(())
        for p, det in zip(pred, self.detections):
            if len(det):
                rows = torch.cdist(det[:, :4], xywh2xyxy(p[:, :4].detach().float()), p=1).argmin(1)
                total = total + (p[rows, 4] * p[rows, 5 + det[:, 5].long()]).sum()
            else:
                confidence = p[:, 4] * p[:, 5:].amax(1)
                total = total + confidence.topk(min(self.top_k, confidence.numel())).values.sum()
        return total


def unletterbox_map(heatmap: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A map (H, W) of a letterboxed input (centred padding, as utils.augmentations.letterbox makes it) cropped to
    the image area and resized to the original image's ``shape`` (h, w)."""
    big_h, big_w = heatmap.shape
    h, w = shape
    gain = min(big_h / h, big_w / w)
    inner_h, inner_w = max(1, round(h * gain)), max(1, round(w * gain))
    top, left = round((big_h - inner_h) / 2 - 0.1), round((big_w - inner_w) / 2 - 0.1)
    inner = heatmap[top : top + inner_h, left : left + inner_w]
    return cv2.resize(np.ascontiguousarray(inner, dtype=np.float32), (w, h), interpolation=cv2.INTER_LINEAR)


def panel_size(shape: tuple[int, int]) -> tuple[int, int]:
    """(h, w) of a figure panel for an image of ``shape`` (h, w): the image, shrunk to PANEL_MAX_SIDE if larger."""
    h, w = shape
    s = min(1.0, PANEL_MAX_SIDE / max(h, w))
    return max(1, round(h * s)), max(1, round(w * s))


def _titled(panel: np.ndarray, title: str) -> np.ndarray:
    annotator = Annotator(panel)
    scale = annotator.lw / 3
    (tw, th), _ = cv2.getTextSize(title, 0, fontScale=scale, thickness=1)
    annotator.rectangle((0, 0, tw + 8, th + 10), fill=(0, 0, 0))
    annotator.text((4, 4), title, scale=scale)
    return annotator.result()


def heatmap_panel(image: np.ndarray, heatmap: np.ndarray | None, detections: torch.Tensor | None,
                  names: dict[int, str] | None = None, title: str = "") -> np.ndarray:
    """One panel (BGR uint8 of ``panel_size``): the BGR image, the heatmap (original image size, [0, 1]) blended
    over it in the JET colours, the detections (k, 6) in original-image pixels drawn as labelled boxes, the title
    on a dark strip at the top left. ``heatmap`` and ``detections`` None: the plain image."""
    h, w = panel_size(image.shape[:2])
    panel = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA) if (h, w) != image.shape[:2] else image.copy()
    if heatmap is not None:
        heat = cv2.resize(np.clip(heatmap, 0, 1).astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
        colour = cv2.applyColorMap((heat * 255).astype(np.uint8), cv2.COLORMAP_JET)
        panel = cv2.addWeighted(panel, 1 - OVERLAY_ALPHA, colour, OVERLAY_ALPHA, 0)
    if detections is not None and len(detections):
        annotator = Annotator(panel)
        gain = w / image.shape[1], h / image.shape[0]
        for *box, conf, cls in detections.tolist():
            c = int(cls)
            name = (names or {}).get(c, str(c))
            annotator.box_label([box[0] * gain[0], box[1] * gain[1], box[2] * gain[0], box[3] * gain[1]],
                                f"{name} {conf:.2f}", color=colors(c, bgr=True))
        panel = annotator.result()
    return _titled(panel, title) if title else panel


def model_panel(image: np.ndarray, input_shape: tuple[int, int], heatmap: torch.Tensor, detections: torch.Tensor,
                names: dict[int, str], title: str) -> np.ndarray:
    """The panel of one model: its (H, W) heatmap and (k, 6) detections on the letterboxed input of ``input_shape``
    mapped back to the original BGR ``image``."""
    boxes = detections.detach().float().cpu().clone()
    scale_boxes(input_shape, boxes[:, :4], image.shape[:2])
    heat = unletterbox_map(heatmap.detach().float().cpu().numpy(), image.shape[:2])
    return heatmap_panel(image, heat, boxes, names, title)
