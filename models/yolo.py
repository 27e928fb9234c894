"""YOLOv5 detection model: Detect head, Model, and ``parse_model`` that builds a model from a yaml.

Run as a script for a structure check of a model yaml::

    python models/yolo.py --cfg models/yolov5s.yaml [--img 640] [--batch-size 1] [--strict]
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
from collections.abc import Sequence
from copy import deepcopy
from pathlib import Path
from typing import Any, ClassVar

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
import torch.nn as nn
import yaml

from models import common
from models.classify_head import Classify
from models.layers import C1_C2, C1_C2_N, CONCAT, KEEP, PLAIN, Conv
from models.segment_head import Proto
from utils.autoanchor import check_anchor_order
from utils.general import LOGGER, ROOT, UserError, end_process, make_divisible, yaml_load
from utils.plots import feature_visualization
from utils.torch_utils import initialize_weights, model_info, scale_img, select_device, time_sync

DETECT = "detect"  # Detect(nc, anchors, [channels of each input])
# torch.nn layers cannot carry the contract (see models/layers.py); any other nn.<Module> is PLAIN
TORCH_YAML_ARGS = {"BatchNorm2d": KEEP, "ConvTranspose2d": C1_C2}

# top-level keys of a model yaml (ch, yaml_file: set by Model); any other key is ignored with a warning
MODEL_YAML_KEYS = ("nc", "depth_multiple", "width_multiple", "anchors", "activation", "backbone", "head", "ch",
                   "inplace", "yaml_file")
ACTIVATION_CALL = re.compile(r"nn\.([A-Za-z_]\w*)\(([^()]*)\)")
NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")

# Bounds on model-yaml numbers, far beyond every official model (largest: x6, 1280 channels, 12 repeats, 80
# classes, 3 anchors): a hostile or mistyped yaml fails at once instead of allocating for hours.
MAX_MULTIPLE = 10.0  # depth_multiple, width_multiple
MAX_REPEATS = 100  # a layer's repeats after depth scaling
MAX_CHANNELS = 8192  # input channels, any layer's output channels, and any other number in a layer's arguments
MAX_CLASSES = 10000  # nc
MAX_ANCHORS = 16  # anchors per level
MAX_LAYERS = 1000  # backbone + head rows
# Weights (parameters and buffers) of the whole model: yolov5x6 has 140M. Numbers within the bounds above can
# still describe a model of billions (12 x Conv(8192, 8192, 3) is 29 GB), so each layer is counted on the meta
# device (no memory) before it is built. YOLOV5_MAX_PARAMS raises the limit for a model that really is larger.
MAX_PARAMS = 500_000_000
# Feature-map values of one image summed over every layer's output (4 bytes each in fp32): yolov5x has 105 per input
# pixel (43M at 640 px), yolov5x6 at 1536 px ~300M. Few parameters can still describe maps of many gigabytes
# (Conv(3, 8192, 1) at stride 1, an Upsample by 1000), so parse_model runs the layers' meta-device twins (shapes, no
# memory) on a 640 px image and refuses a model over the limit before anything runs; detect, val, train, export
# and the hub check the same per-image count at the chosen size. YOLOV5_MAX_ACTIVATIONS raises the limit.
MAX_ACTIVATIONS = 2_000_000_000
ACTIVATION_PROBE = 640  # the image size parse_model checks the feature maps at (the default --imgsz)

# depth_multiple, width_multiple of the five official scales
SCALES = {"n": (0.33, 0.25), "s": (0.33, 0.50), "m": (0.67, 0.75), "l": (1.0, 1.0), "x": (1.33, 1.25)}

# What Detect (and so Model) returns: the raw maps when training; (pred, raw maps) at inference, or pred alone
# for export; (pred, None) with test-time augmentation
DetectOutput = list[torch.Tensor] | torch.Tensor | tuple[torch.Tensor, list[torch.Tensor] | None]


class Detect(nn.Module):
    """YOLOv5 detection head: one 1x1 conv per level to na * (5 + nc) channels.

    Training: returns the raw maps, each (N, na, ny, nx, 5 + nc).
    Inference: returns ``(pred, raw)`` with pred (N, na * sum(ny * nx), 5 + nc) decoded to pixels as
    xy = (2 sigmoid - 0.5 + grid) * stride, wh = (2 sigmoid) ** 2 * anchor, and sigmoid scores.
    ``anchors`` is a buffer in grid units (pixels / stride), as in official state dicts.
    """

    yaml_args: ClassVar[str] = DETECT
    export: bool = False  # export: return only the decoded predictions
    anchors: torch.Tensor  # buffer (nl, na, 2)
    stride: torch.Tensor  # buffer (nl,)

    def __init__(
        self, nc: int = 80, anchors: Sequence[Sequence[float]] = (), ch: Sequence[int] = (), inplace: bool = True
    ) -> None:
        super().__init__()
        self.nc = nc
        self.no = nc + 5
        self.nl = len(anchors)
        self.na = len(anchors[0]) // 2
        self.inplace = inplace
        self.register_buffer("anchors", torch.tensor(anchors, dtype=torch.float32).view(self.nl, -1, 2))
        self.register_buffer("stride", torch.ones(self.nl), persistent=False)
        self.m = nn.ModuleList(nn.Conv2d(x, self.no * self.na, 1) for x in ch)
        self._grids = {}  # (level, ny, nx, device, dtype) -> (grid, anchor_grid); rebuilt when shapes change

    def forward(self, x: list[torch.Tensor]) -> DetectOutput:
        z = []
        for i in range(self.nl):
            x[i] = self.m[i](x[i])
            bs, _, ny, nx = x[i].shape
            x[i] = x[i].view(bs, self.na, self.no, ny, nx).permute(0, 1, 3, 4, 2).contiguous()
            if not self.training:
                grid, anchor_grid = self._grid(i, ny, nx, x[i])
                z.append(self._decode(x[i], grid, anchor_grid, self.stride[i]).view(bs, self.na * ny * nx, self.no))
        if self.training:
            return x
        return torch.cat(z, 1) if self.export else (torch.cat(z, 1), x)

    def _decode(self, p, grid, anchor_grid, stride):
        """Raw level (N, na, ny, nx, no) -> pixels xywh and sigmoid scores."""
        xy, wh, conf = p.sigmoid().split((2, 2, self.nc + 1), 4)
        wh = wh * 2
        # x * x, not x ** 2: TFLite has no 5-D pow kernel; same value
        return torch.cat(((xy * 2 + grid) * stride, wh * wh * anchor_grid, conf), 4)

    def _grid(self, i, ny, nx, like):
        if torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
            return self._make_grid(i, ny, nx, like)  # keep grids in the traced graph, never cached constants
        key = (i, ny, nx, like.device, like.dtype)
        if key not in self._grids:
            self._grids = {k: v for k, v in self._grids.items() if k[0] != i}
            self._grids[key] = self._make_grid(i, ny, nx, like)
        return self._grids[key]

    def _make_grid(self, i, ny, nx, like):
        d, t = like.device, like.dtype
        shape = 1, self.na, ny, nx, 2
        yv, xv = torch.meshgrid(torch.arange(ny, device=d, dtype=t), torch.arange(nx, device=d, dtype=t), indexing="ij")
        grid = torch.stack((xv, yv), 2).expand(shape) - 0.5  # the -0.5 folds the "2 * s - 0.5" offset
        anchor_grid = (self.anchors[i] * self.stride[i]).to(t).view(1, self.na, 1, 1, 2).expand(shape)
        return grid, anchor_grid


class Segment(Detect):
    """YOLOv5 v7.0 instance-segmentation head: Detect with ``nm`` mask coefficients per anchor (no = 5 + nc + nm)
    and a ``Proto`` on the first (P3) input giving ``nm`` prototype maps at twice its resolution.

    Training: ``(raw levels, proto)``; inference: ``(pred (N, A, 5 + nc + nm), proto, raw levels)``, the
    coefficients left raw (not sigmoid); export: ``(pred, proto)``. ``npr`` = hidden channels of the Proto (the
    yaml's value is width-scaled by parse_model, as official).
    """

    width_scaled_args: ClassVar[tuple[int, ...]] = (3,)  # npr: scaled by width_multiple like a layer's channels

    def __init__(
        self,
        nc: int = 80,
        anchors: Sequence[Sequence[float]] = (),
        nm: int = 32,
        npr: int = 256,
        ch: Sequence[int] = (),
        inplace: bool = True,
    ) -> None:
        super().__init__(nc, anchors, ch, inplace)
        self.nm = nm
        self.npr = npr
        self.no = 5 + nc + nm
        self.m = nn.ModuleList(nn.Conv2d(x, self.no * self.na, 1) for x in ch)
        self.proto = Proto(ch[0], npr, nm)

    def forward(self, x: list[torch.Tensor]) -> tuple:
        proto = self.proto(x[0])  # before Detect.forward replaces x[0] by the level's raw output
        out = super().forward(x)
        if self.training:
            return out, proto
        return (out, proto) if self.export else (out[0], proto, out[1])

    def _decode(self, p, grid, anchor_grid, stride):
        xy, wh, conf, coeffs = p.split((2, 2, self.nc + 1, self.nm), 4)
        xy = (xy.sigmoid() * 2 + grid) * stride
        wh = wh.sigmoid() * 2
        wh = wh * wh * anchor_grid  # not ** 2: TFLite has no 5-D pow kernel
        return torch.cat((xy, wh, conf.sigmoid(), coeffs), 4)


def layer_input(
    m: nn.Module, x: torch.Tensor | list[torch.Tensor], outputs: Sequence[torch.Tensor | None]
) -> torch.Tensor | list[torch.Tensor]:
    """The input of layer ``m``: the previous output ``x`` (from -1), or the saved ``outputs`` its ``from`` names."""
    if m.f == -1:
        return x
    return outputs[m.f] if isinstance(m.f, int) else [x if j == -1 else outputs[j] for j in m.f]


class Model(nn.Module):
    """YOLOv5 detection model built from a yaml file or dict.

    Args:
        cfg: yaml path (see ``load_model_yaml`` for scale letters) or an already loaded dict.
        ch: input channels; nc: number of classes and anchors: anchors, overriding the yaml's (logged).
    Input (N, ch, H, W) with H, W multiples of the largest stride (32). Output as ``Detect``.
    """

    yaml: dict[str, Any]  # the model dict, after overrides
    yaml_file: str  # name of the yaml it was built from
    model: nn.Sequential
    save: list[int]  # indices of the layers whose outputs later layers read
    names: dict[int, str]  # class index -> name
    stride: torch.Tensor  # stride of each Detect level

    def __init__(
        self,
        cfg: str | Path | dict[str, Any] = "yolov5s.yaml",
        ch: int = 3,
        nc: int | None = None,
        anchors: float | list[list[float]] | None = None,
    ) -> None:
        super().__init__()
        if isinstance(cfg, dict):
            self.yaml = deepcopy(cfg)
            self.yaml_file = self.yaml.get("yaml_file", "")
        else:
            self.yaml_file = Path(cfg).name
            self.yaml = load_model_yaml(cfg)
        ch = self.yaml["ch"] = self.yaml.get("ch", ch)
        if nc and nc != self.yaml.get("nc"):
            LOGGER.info(f"Overriding model.yaml nc={self.yaml.get('nc')} with nc={nc}")
            self.yaml["nc"] = nc
        if anchors:
            LOGGER.info(f"Overriding model.yaml anchors with anchors={anchors}")
            self.yaml["anchors"] = round(anchors) if isinstance(anchors, float) else anchors
        self.model, self.save = parse_model(deepcopy(self.yaml), ch=[ch])
        self.feature_values_bound = vars(self.model).pop("feature_values_bound", None)  # from the yaml alone
        self.names = {i: f"{i}" for i in range(self.yaml["nc"])}
        self.inplace = self.yaml.get("inplace", True)

        m = self.model[-1]
        if isinstance(m, Detect):
            m.inplace = self.inplace
            s = 256  # 2x the largest stride: a dry run gives each level's stride and checks the structure
            levels = self._dry_run(torch.zeros(1, ch, s, s))
            levels = levels[0] if isinstance(m, Segment) else levels  # Segment: (levels, proto)
            m.stride.copy_(torch.tensor([s / x.shape[-2] for x in levels]))
            check_anchor_order(m)
            m.anchors /= m.stride.view(-1, 1, 1)
            self.stride = m.stride.clone()
            self._initialize_biases()
        else:
            self.stride = torch.tensor([32.0])
        initialize_weights(self)

    @property
    def nc(self) -> int:
        return self.yaml["nc"]

    def forward(self, x: torch.Tensor, augment: bool = False, visualize: bool | str | Path = False) -> DetectOutput:
        if augment:
            return self._forward_augment(x)
        return self._forward_once(x, visualize=visualize)

    def _forward_once(self, x, visualize=False):
        y = []
        for m in self.model:
            x = layer_input(m, x, y)
            x = m(x)
            y.append(x if m.i in self.save else None)
            if visualize:
                feature_visualization(x, m.type, m.i, save_dir=visualize)
        return x

    @torch.no_grad()  # shapes only: no autograd graph to record (BatchNorm still updates its running stats)
    def _dry_run(self, x):
        """Forward layer by layer in train mode, turning a failure into an error that names the layer; measures the
        feature-map values per input pixel (``feature_values_per_pixel``, see check_activation_size)."""
        y, values, pixels = [], 0, x.shape[0] * x.shape[-2] * x.shape[-1]
        for m in self.model:
            x = layer_input(m, x, y)
            if isinstance(m, common.Concat):
                sizes = [tuple(t.shape[2:]) for t in x]
                if len(set(sizes)) > 1:
                    raise UserError(
                        f"layer {m.i} Concat: inputs from {m.f} have different spatial sizes {sizes} "
                        f"(at a {tuple(x[0].shape[2:])} input); check the 'from' indices"
                    )
            try:
                x = m(x)
            except Exception as e:
                shapes = [tuple(t.shape) for t in x] if isinstance(x, list) else tuple(x.shape)
                raise UserError(f"layer {m.i} {m.type} (from {m.f}) fails on input of shape {shapes}: {e}") from e
            # checked here, else the next layer would take the blame
            if isinstance(x, torch.Tensor) and x.shape[1] != m.booked_channels:
                raise UserError(
                    f"layer {m.i} {m.type} (from {m.f}) outputs {x.shape[1]} channels, but the yaml parser booked "
                    f"{m.booked_channels} for it by its channel rule '{m.channel_rule}', and built later layers for "
                    f"that. Fix the row's arguments, or the module's yaml_args (see models/layers.py)"
                )
            y.append(x)
            values += _output_values(x)
        self.feature_values_per_pixel = values / pixels
        return x

    def _forward_augment(self, x):
        """Test-time augmentation: scales 1, 0.83, 0.67 with a left-right flip at 0.83; merged predictions."""
        img_size = x.shape[-2:]
        gs = int(self.stride.max())
        y = []
        for scale, flip in ((1.0, None), (0.83, 3), (0.67, None)):
            xi = scale_img(x.flip(flip) if flip else x, scale, gs=gs)
            yi = self._forward_once(xi)[0]
            y.append(self._descale_pred(yi, flip, scale, img_size))
        return torch.cat(self._clip_augmented(y), 1), None

    @staticmethod
    def _descale_pred(p, flip, scale, img_size):
        xy, wh, rest = p[..., :2] / scale, p[..., 2:4] / scale, p[..., 4:]
        if flip == 2:
            xy = torch.stack((xy[..., 0], img_size[0] - xy[..., 1]), -1)
        elif flip == 3:
            xy = torch.stack((img_size[1] - xy[..., 0], xy[..., 1]), -1)
        return torch.cat((xy, wh, rest), -1)

    def _clip_augmented(self, y):
        """Drop the largest-stride predictions of the upscaled pass and the smallest of the downscaled one."""
        nl = self.model[-1].nl
        cells = sum(4**k for k in range(nl))  # cells per level relative to the coarsest level
        y[0] = y[0][:, : -(y[0].shape[1] // cells)]  # first pass: drop the coarsest level
        y[-1] = y[-1][:, (y[-1].shape[1] // cells) * 4 ** (nl - 1):]  # last pass: drop the finest level
        return y

    def _initialize_biases(self):
        """Objectness prior of 8 objects per 640 image and class prior 0.6 / nc (Focal loss paper, sec. 3.3)."""
        m = self.model[-1]
        for mi, s in zip(m.m, m.stride):
            b = mi.bias.view(m.na, -1)
            b.data[:, 4] += math.log(8 / (640 / s) ** 2)
            b.data[:, 5 : 5 + m.nc] += math.log(0.6 / (m.nc - 0.99999))

    def fuse(self, verbose: bool = True) -> Model:
        """Fold BatchNorm into convolutions (and multi-branch blocks into one conv) for inference."""
        LOGGER.info("Fusing layers... ")
        for m in self.model.modules():
            if m is not self and callable(getattr(m, "fuse", None)):
                m.fuse()
        if verbose:  # the summary counts FLOPs with a forward pass: skipped where a caller fuses many models
            self.info()
        return self

    def info(
        self, verbose: bool = False, img_size: int = 640, flops: bool = True
    ) -> tuple[int, int, int, float | None]:
        return model_info(self, verbose, img_size, flops=flops)


DetectionModel = Model  # the name v7.0 uses


class SegmentationModel(Model):
    """YOLOv5 v7.0 instance-segmentation model: a Model whose last layer is ``Segment``.

    A yaml whose last layer is Detect (any detection variant, e.g. yolov5s_ScConv.yaml) is turned into its
    segmentation form by ``segmentation_yaml`` (the task switch), so every plug-in variant builds as -seg.
    Outputs as ``Segment``.
    """

    def __init__(
        self,
        cfg: str | Path | dict[str, Any] = "yolov5s-seg.yaml",
        ch: int = 3,
        nc: int | None = None,
        anchors: float | list[list[float]] | None = None,
    ) -> None:
        d = cfg if isinstance(cfg, dict) else load_model_yaml(cfg)
        super().__init__(segmentation_yaml(d), ch=ch, nc=nc, anchors=anchors)
        if not isinstance(cfg, dict):
            self.yaml_file = Path(cfg).name


class ClassificationModel(nn.Module):
    """YOLOv5 v7.0 image classifier (official name): the first ``cutoff`` layers of a detection model (its backbone,
    10 layers in the official yamls) with ``Classify`` in place of the last of them. Shape: (N, 3, H, W) -> (N, nc)
    logits.

    ``model``: a detection Model (or anything holding one as ``.model``, e.g. DetectMultiBackend) whose weights are
    kept; ``cfg``: a detection yaml to build that model from (random weights) when ``model`` is not given.
    """

    def __init__(self, cfg: str | Path | dict[str, Any] | None = None, model: nn.Module | None = None,
                 nc: int = 1000, cutoff: int = 10) -> None:
        super().__init__()
        if model is None:
            if cfg is None:
                raise UserError("ClassificationModel needs a detection model (model=) or its yaml (cfg=)")
            model = Model(cfg)
        while not isinstance(model, Model) and isinstance(getattr(model, "model", None), nn.Module):
            model = model.model
        if not isinstance(model, Model) or not 1 < cutoff <= len(model.model):
            raise UserError(f"ClassificationModel: cutoff {cutoff} must lie in 2..{len(getattr(model, 'model', []))} "
                            f"layers of a detection model")
        layers = model.model[:cutoff]
        last = layers[-1]
        first_conv = last.conv if hasattr(last, "conv") else next(m for m in last.modules() if isinstance(m, nn.Conv2d))
        head = Classify(first_conv.in_channels, nc)
        head.i, head.f, head.type = last.i, last.f, "models.common.Classify"
        head.np = sum(p.numel() for p in head.parameters())
        layers[-1] = head
        self.model = layers
        self.stride = model.stride
        self.save = sorted({j for m in layers for j in ([m.f] if isinstance(m.f, int) else m.f) if j != -1})
        self.nc = nc
        self.names = {i: f"class{i}" for i in range(nc)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = []
        for m in self.model:
            x = m(layer_input(m, x, y))
            y.append(x if m.i in self.save else None)
        return x


SEG_VARIANT = re.compile(r"(yolov5[nsmlx])-seg(_.+)?\.ya?ml")  # yolov5s-seg.yaml, yolov5n-seg_ScConv.yaml


def is_segmentation_model(model: nn.Module) -> bool:
    """Whether a model (or ensemble) has a Segment head."""
    return any(isinstance(m, Segment) for m in model.modules())


def is_segmentation_yaml(d: dict[str, Any]) -> bool:
    """Whether a model dict's last layer is a Segment head."""
    head = d.get("head") if isinstance(d, dict) else None
    return isinstance(head, list) and bool(head) and isinstance(head[-1], (list, tuple)) and len(head[-1]) == 4 \
        and head[-1][2] == "Segment"


def segmentation_yaml(d: dict[str, Any], nm: int = 32, npr: int = 256) -> dict[str, Any]:
    """A copy of model dict ``d`` whose Detect head ``[from, 1, Detect, [nc, anchors]]`` becomes
    ``[from, 1, Segment, [nc, anchors, nm, npr]]`` (official v7.0 -seg yamls are exactly this); a dict already
    ending in Segment is returned as a copy unchanged."""
    d = deepcopy(d)
    if is_segmentation_yaml(d):
        return d
    head = d.get("head")
    last = head[-1] if isinstance(head, list) and head else None
    if not (isinstance(last, (list, tuple)) and len(last) == 4 and last[2] == "Detect"):
        raise UserError(f"model yaml {d.get('yaml_file', '')}: the last layer must be Detect (or Segment) to build a "
                        f"segmentation model")
    f, n, _, args = last
    args = list(args or [])
    if len(args) < 2:
        raise UserError(f"model yaml {d.get('yaml_file', '')}: Detect arguments must be [nc, anchors]")
    head[-1] = [f, n, "Segment", [args[0], args[1], nm, npr]]
    return d


def resolve_cfg(cfg: str | Path) -> tuple[Path, str | None]:
    """Find a model yaml: as given, under models/ or models/hub/ (the official zoo), or a variant at another scale
    letter.

    Returns (path, scale) where scale is the letter requested in the file name (yolov5n_ScConv.yaml -> 'n') when
    that file does not exist itself and another scale's file of the same variant does, else None.
    """
    p = Path(cfg)
    if p.suffix not in (".yaml", ".yml"):
        p = p.with_suffix(".yaml")
    candidates = [p, ROOT / "models" / p.name, ROOT / "models" / "hub" / p.name, ROOT / "models" / "segment" / p.name,
                  ROOT / p]
    for c in candidates:
        if c.is_file():
            return c, None
    match = re.fullmatch(r"(yolov5)([nsmlx])(.*\.ya?ml)", p.name)
    if match:
        prefix, scale, rest = match.groups()
        for letter in "snmlx":
            for folder in (p.parent, ROOT / "models", ROOT / "models" / "hub", ROOT / "models" / "segment"):
                c = folder / f"{prefix}{letter}{rest}"
                if c.is_file():
                    return c, scale
    folders = dict.fromkeys(str(c.parent.resolve()) for c in candidates)
    raise UserError(
        f"model yaml '{cfg}' not found (looked in {', '.join(folders)}); "
        f"available: {', '.join(sorted(x.name for x in (ROOT / 'models').glob('*.yaml')))}, and in models/hub: "
        f"{', '.join(sorted(x.name for x in (ROOT / 'models' / 'hub').glob('yolo*.yaml')))}"
    )


def load_model_yaml(cfg: str | Path) -> dict[str, Any]:
    """Load a model yaml; ``yolov5{n,s,m,l,x}<variant>.yaml`` gets that scale's depth and width multiples when only
    another scale's file of the variant exists. ``yolov5{n,s,m,l,x}-seg_<Variant>.yaml`` with no such file is the
    detection variant ``yolov5{scale}_<Variant>.yaml`` turned into its segmentation form (``segmentation_yaml``)."""
    seg = SEG_VARIANT.fullmatch(Path(cfg).name)
    if seg and seg.group(2):
        try:
            resolve_cfg(cfg)
        except UserError:
            d = segmentation_yaml(load_model_yaml(Path(cfg).with_name(f"{seg.group(1)}{seg.group(2)}.yaml")))
            d["yaml_file"] = Path(cfg).name
            return d
    path, scale = resolve_cfg(cfg)
    d = yaml_load(path)
    check_index_comments(path.read_text(errors="ignore"), path)
    if scale:
        d["depth_multiple"], d["width_multiple"] = SCALES[scale]
    d["yaml_file"] = Path(cfg).name if scale else path.name
    return d


def check_index_comments(text: str, path: str | Path = "", strict: bool = False) -> None:
    """Warn about (with ``strict``: reject) a yaml whose layer-index comments (``# 9``, ``# 17 (P3/8-small)``)
    disagree with the real indices.

    YOLOv5 yamls number their key rows in comments. A layer inserted or removed above a numbered row shifts the
    real indices; when the comments were not updated, the absolute ``from`` indices below were usually not updated
    either, and the model still builds, silently wired to the wrong layers. Only a warning by default: a comment
    can also simply be wrong (official yolov5s-transformer.yaml comments its layer 8 '# 9').
    """
    lines = text.splitlines()
    root = yaml.compose(text)
    if not isinstance(root, yaml.MappingNode):
        return
    sections = {k.value: v for k, v in root.value if isinstance(k, yaml.ScalarNode)}
    rows = [r for key in ("backbone", "head") if isinstance(sections.get(key), yaml.SequenceNode)
            for r in sections[key].value]
    stale = []
    for i, row in enumerate(rows):
        comment = lines[row.start_mark.line].partition("#")[2] if row.start_mark.line < len(lines) else ""
        match = re.match(r"\s*(\d+)\b", comment)
        if match and int(match.group(1)) != i:
            module = row.value[2].value if isinstance(row, yaml.SequenceNode) and len(row.value) > 2 else "?"
            stale.append((i, module, int(match.group(1)), row.start_mark.line + 1))
    if not stale:
        return
    i, module, said, line = stale[0]
    more = f" (and {len(stale) - 1} more rows)" if len(stale) > 1 else ""
    message = (
        f"{Path(path).name} line {line}: layer {i} ({module}) is commented '# {said}'{more}, so layers were "
        f"inserted or removed above it without renumbering, or the comment is wrong. Check every absolute 'from' "
        f"index from layer {min(i, said)} on (Concat and Detect rows) against the real layer indices, then update "
        f"the comments"
    )
    if strict:
        raise UserError(message)
    LOGGER.warning(f"WARNING: {message}")


def registered_modules() -> dict[str, type[nn.Module]]:
    """Name -> class of every module a yaml may name: the classes re-exported by models/common.py that carry the
    yaml contract (``yaml_args``, see models/layers.py), and Detect. torch layers are named ``nn.<Module>``."""
    modules = {k: v for k, v in vars(common).items()
               if isinstance(v, type) and issubclass(v, nn.Module) and hasattr(v, "yaml_args")}
    modules["Detect"] = Detect
    modules["Segment"] = Segment
    return modules


def _resolve_module(name, layer, modules):
    """The class a yaml module name refers to, and its ``yaml_args`` rule."""
    if not isinstance(name, str):
        raise UserError(f"layer {layer}: module must be a name, got {name!r}")
    if name.startswith("nn."):
        cls = getattr(nn, name[3:], None)
        if isinstance(cls, type) and issubclass(cls, nn.Module):
            return cls, TORCH_YAML_ARGS.get(name[3:], PLAIN)
    elif name in modules:
        return modules[name], modules[name].yaml_args
    raise UserError(f"layer {layer}: unknown module '{name}'. Known modules: {', '.join(sorted(modules))}, "
                    f"and nn.<Module> (torch.nn layers)")


def _parse_arg(a, nc, anchors):
    """Resolve the symbolic yaml arguments (nc, anchors, None, True, False); other values stay as written."""
    if isinstance(a, str):
        return {"nc": nc, "anchors": anchors, "None": None, "True": True, "False": False}.get(a, a)
    return a


def parse_activation(text: str) -> nn.Module:
    """The module of a yaml ``activation: nn.<Activation>(numbers)`` entry, e.g. ``nn.LeakyReLU(0.1)``.

    Parsed without eval: a regex, the class looked up on torch.nn (a parameter-free activation, since one instance
    is shared by every Conv) and int/float literal arguments.
    """
    usage = "model yaml 'activation' must be a torch activation without parameters called with numbers, e.g. " \
            "nn.LeakyReLU(0.1) or nn.ReLU()"
    match = ACTIVATION_CALL.fullmatch(text.strip()) if isinstance(text, str) else None
    if not match:
        raise UserError(f"{usage}; got {text!r}")
    name, arg_text = match.groups()
    cls = getattr(nn, name, None)
    args = [a.strip() for a in arg_text.split(",")] if arg_text.strip() else []
    if not (isinstance(cls, type) and issubclass(cls, nn.Module) and cls.__module__ == nn.ReLU.__module__):
        raise UserError(f"{usage}; nn.{name} is not a torch activation")
    bad = [a for a in args if not NUMBER.fullmatch(a)]
    if bad:
        raise UserError(f"{usage}; got the argument(s) {', '.join(bad)} in {text!r}")
    try:
        act = cls(*(int(a) if a.lstrip("+-").isdigit() else float(a) for a in args))
    except Exception as e:
        raise UserError(f"model yaml 'activation: {text}' cannot be built: {e}") from e
    if any(True for _ in act.parameters()):
        raise UserError(f"{usage}; nn.{name} has parameters, which every Conv would share")
    return act


def parse_model(d: dict[str, Any], ch: list[int]) -> tuple[nn.Sequential, list[int]]:
    """Build ``nn.Sequential`` of the layers in model dict ``d``; ``ch`` = [input channels].

    Each layer gets ``.i`` (index), ``.f`` (from), ``.type`` (module name) and ``.np`` (parameters).
    Returns (model, save) where save lists the layer indices whose outputs later layers read.
    An ``activation`` entry is the default activation of every Conv of this model only (Conv.default_act is
    restored afterwards, so models built later are not affected).
    """
    unknown = [str(k) for k in d if k not in MODEL_YAML_KEYS]
    if unknown:
        LOGGER.warning(f"WARNING: model yaml {d.get('yaml_file', '')}: unknown key(s) {', '.join(unknown)} ignored "
                       f"(known keys: {', '.join(MODEL_YAML_KEYS[:7])})")
    act = d.get("activation")
    previous_act = Conv.default_act
    if act is not None:
        Conv.default_act = parse_activation(act)
        LOGGER.info(f"activation: {Conv.default_act} in every Conv")
    try:
        return _parse_layers(d, ch)
    finally:
        Conv.default_act = previous_act


def _parse_layers(d, ch):
    for key in ("nc", "backbone", "head"):
        if key not in d:
            raise UserError(f"model yaml has no '{key}' entry")
    nc, gd, gw = d["nc"], d.get("depth_multiple", 1.0), d.get("width_multiple", 1.0)
    if isinstance(nc, bool) or not isinstance(nc, int) or nc < 1:
        raise UserError(f"model yaml 'nc' must be a positive integer (the number of classes), got {nc!r}")
    if nc > MAX_CLASSES:
        raise UserError(f"model yaml 'nc' is {nc}; at most {MAX_CLASSES} classes are supported")
    for key, multiple in (("depth_multiple", gd), ("width_multiple", gw)):
        if isinstance(multiple, bool) or not isinstance(multiple, (int, float)) or not 0 < multiple <= MAX_MULTIPLE:
            raise UserError(f"model yaml '{key}' must be a positive number up to {MAX_MULTIPLE:g}, got {multiple!r}")
    if not all(isinstance(c, int) and not isinstance(c, bool) and 0 < c <= MAX_CHANNELS for c in ch):
        raise UserError(f"input channels must be integers from 1 to {MAX_CHANNELS}, got {ch}")
    anchors = d.get("anchors", [[10, 13, 16, 30, 33, 23], [30, 61, 62, 45, 59, 119], [116, 90, 156, 198, 373, 326]])
    na = _check_anchors(anchors)
    no = na * (nc + 5)
    if not all(isinstance(d[key], list) for key in ("backbone", "head")):
        raise UserError("model yaml 'backbone' and 'head' must be lists of [from, number, module, args] rows")
    if len(d["backbone"]) + len(d["head"]) > MAX_LAYERS:
        raise UserError(f"model yaml has {len(d['backbone']) + len(d['head'])} layers; at most {MAX_LAYERS}")
    LOGGER.info(f"\n{'':>3}{'from':>18}{'n':>3}{'params':>10}  {'module':<40}{'arguments':<30}")
    layers, save, c2 = [], [], ch[-1]
    consumed = set()
    total, limit = 0, max_params()
    probe = _FeatureMapProbe(ch[0], max_activations())
    meta_layers = []  # run for their feature-map sizes once every layer has passed the parameter bound
    # feature-map values per input pixel, bounded from the yaml alone (areas: each output's area / the input's);
    # None once a layer's output size cannot be bounded that way
    areas, static_values = [], 0.0
    modules = registered_modules()
    rows = d["backbone"] + d["head"]
    for i, row in enumerate(rows):
        if not isinstance(row, (list, tuple)) or len(row) != 4:
            raise UserError(f"layer {i}: expected [from, number, module, args], got {row!r}")
        f, n, name, args = row
        cls, rule = _resolve_module(name, i, modules)
        args = [_parse_arg(a, nc, anchors) for a in (args or [])]
        sources = _check_from(f, i, name)
        consumed.update(sources)
        if not isinstance(n, int) or n < 1:
            raise UserError(f"layer {i} {name}: number of repeats must be a positive integer, got {n!r}")
        n = n_ = max(round(n * gd), 1) if n > 1 else n
        if n > MAX_REPEATS:
            raise UserError(f"layer {i} {name}: {n} repeats (after depth_multiple); at most {MAX_REPEATS}")
        if rule != DETECT:
            _check_numbers(args, i, name)
        c1 = ch[f] if isinstance(f, int) else None
        if rule in (C1_C2, C1_C2_N, KEEP) and not isinstance(f, int):
            raise UserError(f"layer {i} {name}: takes one input, but 'from' is {f}")
        if rule in (C1_C2, C1_C2_N):
            if not args or not isinstance(args[0], int):
                raise UserError(f"layer {i} {name}: first argument must be the output channels, got {args}")
            c2 = args[0] if args[0] == no else make_divisible(args[0] * gw, 8)
            args = [c1, c2, *args[1:]]
            if rule == C1_C2_N:
                args.insert(2, n)
                n = 1
        elif rule == KEEP:
            if args and isinstance(args[0], int):
                c2 = make_divisible(args[0] * gw, 8)
                if c2 != c1:
                    raise UserError(
                        f"layer {i} {name}: keeps channels, but its argument {args[0]} scales to {c2} while its "
                        f"input (from {f}) has {c1} channels"
                    )
                args = args[1:]
            args, c2 = [c1, *args], c1
        elif rule == CONCAT:
            c2 = sum(ch[x] for x in ([f] if isinstance(f, int) else f))
        elif rule == DETECT:
            f_list = [f] if isinstance(f, int) else list(f)
            if len(args) < 2:
                raise UserError(f"layer {i} Detect: arguments must be [nc, anchors]")
            if isinstance(args[1], int):  # number of anchors per level: placeholders until AutoAnchor
                args[1] = [list(range(args[1] * 2))] * len(f_list)
            if len(args[1]) != len(f_list):
                raise UserError(f"layer {i} Detect: {len(args[1])} anchor levels but {len(f_list)} inputs in 'from'")
            for k in getattr(cls, "width_scaled_args", ()):  # Segment's npr
                if k < len(args):
                    _check_numbers(args[2:], i, name)
                    if isinstance(args[k], bool) or not isinstance(args[k], int) or args[k] < 1:
                        raise UserError(f"layer {i} {name}: argument {k} must be a positive integer, got {args[k]!r}")
                    args[k] = make_divisible(args[k] * gw, 8)
            args.append([ch[x] for x in f_list])
        elif rule == PLAIN:
            c2 = c1 if c1 is not None else ch[-1]
            if hasattr(cls, "yaml_c2"):
                c2 = cls.yaml_c2(c2, args)
        else:
            raise UserError(f"layer {i} {name}: unknown yaml_args rule {rule!r} on the class (see models/layers.py)")
        if not isinstance(c2, int) or not 0 < c2 <= MAX_CHANNELS:
            raise UserError(f"layer {i} {name}: {c2} output channels (after width_multiple); at most {MAX_CHANNELS}")
        area = _area_bound(cls, rule, args, [areas[j] for j in sources] or [1.0])
        areas.append(area)
        values = _head_values(cls, args, areas, sources) if rule == DETECT else None if area is None else c2 * area
        static_values = None if static_values is None or values is None else static_values + values
        weights_before = total
        meta_layer = _meta_layer(cls, args, n)
        total += _weight_count(meta_layer) if meta_layer is not None else 0
        _check_weight_count(total, limit, i, name)
        meta_layers.append((meta_layer, f, i, name))
        try:
            m_ = _build_layer(cls, args, n)
        except Exception as e:
            raise UserError(f"layer {i} {name}: cannot build with arguments {args}: {e}") from e
        m_.i, m_.f, m_.type = i, f, name
        # the output channels booked for later layers: the dry run checks them
        m_.booked_channels, m_.channel_rule = c2, rule
        m_.np = sum(x.numel() for x in m_.parameters())
        total = weights_before + _weight_count(m_)  # the real count (a layer the meta device cannot build: only now)
        _check_weight_count(total, limit, i, name)
        LOGGER.info(f"{i:>3}{str(f):>18}{n_:>3}{m_.np:10.0f}  {name:<40}{str(args):<30}")
        save.extend(x % i for x in ([f] if isinstance(f, int) else f) if x != -1)
        layers.append(m_)
        if i == 0:
            ch = []
        ch.append(c2)
    if static_values is None or static_values * ACTIVATION_PROBE**2 > probe.limit:
        for layer in meta_layers:  # only then: the meta device's first use costs ~1 s (it imports torch._dynamo)
            probe.add(*layer)
    unused = [j for j in range(len(rows) - 1) if j not in consumed]
    if unused:
        names = ", ".join(f"{j} ({rows[j][2]})" for j in unused)
        raise UserError(
            f"the output of layer(s) {names} is never used by a later layer; a layer was probably inserted or "
            f"removed without updating the 'from' indices after it"
        )
    seq = nn.Sequential(*layers)
    seq.feature_values_bound = static_values  # per input pixel, from the yaml; None: not boundable (Model keeps it)
    return seq, sorted(save)


def max_params() -> int:
    """The most weights a model may have: YOLOV5_MAX_PARAMS, else MAX_PARAMS."""
    value = os.environ.get("YOLOV5_MAX_PARAMS", "").strip()
    if not value:
        return MAX_PARAMS
    if not value.isdigit() or int(value) < 1:
        raise UserError(f"YOLOV5_MAX_PARAMS must be a positive whole number of parameters, got {value!r:.40}")
    return int(value)


def _build_layer(cls: type, args: list, n: int) -> nn.Module:
    return nn.Sequential(*(cls(*args) for _ in range(n))) if n > 1 else cls(*args)


def _weight_count(module: nn.Module) -> int:
    return sum(x.numel() for x in module.parameters()) + sum(x.numel() for x in module.buffers())


def _meta_layer(cls: type, args: list, n: int) -> nn.Module | None:
    """The layer built on the meta device, which allocates nothing, to count its weights and run it for shapes;
    None where the layer cannot be built there (its real build then reports the error, or is counted after it)."""
    try:
        with torch.device("meta"):
            return _build_layer(cls, args, n)
    except Exception:
        return None


def max_activations() -> int:
    """The most feature-map values one image may produce across the layers: YOLOV5_MAX_ACTIVATIONS, else
    MAX_ACTIVATIONS."""
    value = os.environ.get("YOLOV5_MAX_ACTIVATIONS", "").strip()
    if not value:
        return MAX_ACTIVATIONS
    if not value.isdigit() or int(value) < 1:
        raise UserError(f"YOLOV5_MAX_ACTIVATIONS must be a positive whole number of values, got {value!r:.40}")
    return int(value)


def _output_values(x: Any) -> int:
    return sum(t.numel() for t in (x if isinstance(x, (list, tuple)) else [x]) if isinstance(t, torch.Tensor))


class _FeatureMapProbe:
    """Runs the meta-device twin of each parsed layer on an ACTIVATION_PROBE-sized meta image as the layers come,
    adding up the output sizes, and refuses the layer that takes them over ``limit``. A layer that cannot run on the
    meta device ends the probe (the real dry run then reports any structural error)."""

    def __init__(self, ch: int, limit: int) -> None:
        self.limit, self.total, self.outputs, self.alive = limit, 0, [], True
        self.x = torch.empty(1, ch, ACTIVATION_PROBE, ACTIVATION_PROBE, device="meta")

    def add(self, layer: nn.Module | None, f: int | list[int], i: int, name: str) -> None:
        if not self.alive or layer is None:
            self.alive = False
            return
        layer.f = f
        try:
            with torch.no_grad():
                x = layer(layer_input(layer, self.x, self.outputs))
        except Exception:
            self.alive = False
            return
        self.total += _output_values(x)
        self.outputs.append(x)
        self.x = x
        if self.total > self.limit:
            raise UserError(f"model yaml: layer {i} {name} brings the feature maps of one {ACTIVATION_PROBE} px image "
                            f"to {self.total:,} values, over the {self.limit:,} limit ({_gb(self.total)} in fp32; "
                            f"yolov5x has 43M); set YOLOV5_MAX_ACTIVATIONS to build a larger model")


# C1_C2 modules whose 4th argument (after c1, c2, k) is a stride that divides the output's sides
STRIDED = frozenset({"Conv", "DWConv", "GhostConv", "GSConv", "GSConvns", "ACConv", "AKConv", "MixConv2d"})


def _positive_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x > 0


def _area_bound(cls: type, rule: str, args: list, in_areas: list[float | None]) -> float | None:
    """An upper bound of a layer's output area relative to the model's input, from its class and yaml arguments;
    None where the yaml alone cannot bound it (then parse_model runs the meta-device probe)."""
    if any(a is None for a in in_areas):
        return None
    area = max(in_areas)
    if cls is nn.Upsample:
        scale = args[1] if len(args) > 1 and args[0] is None else None
        return area * scale**2 if _positive_number(scale) else None
    if cls.__module__.startswith("torch.") or cls.__name__ in ("Expand",):  # may enlarge: only the probe can tell
        return None
    stride = args[3] if rule == C1_C2 and len(args) > 3 else 1
    if cls.__name__ == "DWConvTranspose2d":
        return area * stride**2 if _positive_number(stride) else None
    if cls.__name__ in STRIDED and _positive_number(stride):
        return area / stride**2
    if cls.__name__ == "SPDConv" and _positive_number(stride):  # space-to-depth by 2, then the conv's stride
        return area / (2 * stride) ** 2
    if cls.__name__ == "SpaceToDepth":
        return area / 4
    return area  # every other registered module keeps or shrinks its input's sides


def _head_values(cls: type, args: list, areas: list[float | None], sources: set[int]) -> float | None:
    """Values per input pixel of a Detect / Segment layer's outputs (with Segment's prototypes at twice P3's side)."""
    try:
        nc, anchors = int(args[0]), args[1]
        levels = sorted(sources)
        nm, npr = (int(args[2]), int(args[3])) if getattr(cls, "width_scaled_args", ()) else (0, 0)
        per_cell = len(anchors[0]) // 2 * (nc + 5 + nm)
        values = sum(per_cell * areas[j] for j in levels)
        return values + (npr + 4 * (2 * npr + nm)) * areas[levels[0]] if npr else values
    except (TypeError, ValueError, IndexError):
        return None


def _gb(values: float) -> str:
    return f"{values * 4 / 1e9:.1f} GB"


def check_activation_size(model: nn.Module, imgsz: int | Sequence[int]) -> None:
    """Refuse, before it runs, a model whose feature maps for one ``imgsz`` (h, w) image would exceed the
    YOLOV5_MAX_ACTIVATIONS limit (each Model measures its values per input pixel in its dry run; an ensemble adds
    its members). Models without that measurement pass."""
    h, w = (imgsz, imgsz) if isinstance(imgsz, int) else (list(imgsz) * 2)[:2]
    per_pixel = sum(getattr(m, "feature_values_per_pixel", 0.0) for m in model.modules() if isinstance(m, Model))
    values, limit = per_pixel * int(h) * int(w), max_activations()
    if values > limit:
        raise UserError(f"--imgsz {h} {w}: this model's feature maps would hold {values:,.0f} values per image "
                        f"({_gb(values)} in fp32), over the {limit:,} limit; use a smaller --imgsz, or set "
                        f"YOLOV5_MAX_ACTIVATIONS to run it anyway")


def _check_weight_count(total: int, limit: int, i: int, name: str) -> None:
    if total > limit:
        raise UserError(f"model yaml: layer {i} {name} brings the model to {total:,} parameters, over the "
                        f"{limit:,} limit (yolov5x6 has 140M); set YOLOV5_MAX_PARAMS to build a larger model")


def _check_anchors(anchors):
    """Validate the yaml 'anchors' (a count per level, or per level a list of w, h pixel pairs); return the count."""
    if isinstance(anchors, int) and not isinstance(anchors, bool) and 0 < anchors <= MAX_ANCHORS:
        return anchors
    ok = isinstance(anchors, list) and 0 < len(anchors) <= MAX_LAYERS and all(
        isinstance(level, list) and len(level) == len(anchors[0]) and 0 < len(level) <= 2 * MAX_ANCHORS
        and len(level) % 2 == 0 and all(_is_number(a) and 0 < a < math.inf for a in level) for level in anchors)
    if not ok:
        raise UserError(f"model yaml 'anchors' must be a count from 1 to {MAX_ANCHORS} or, per level, the same number "
                        f"of positive w, h pixel pairs (at most {MAX_ANCHORS}), e.g. [[10, 13, 16, 30, 33, 23], ...]")
    return len(anchors[0]) // 2


def _is_number(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _check_numbers(args, i, name):
    """Every number in a layer's arguments (also inside lists, e.g. SPP kernels) is within +-MAX_CHANNELS."""
    flat = [y for x in args for y in (x if isinstance(x, (list, tuple)) else [x])]
    big = [x for x in flat if _is_number(x) and not abs(x) <= MAX_CHANNELS]  # also NaN
    if big:
        raise UserError(f"layer {i} {name}: argument {big[0]!r} is out of range (at most {MAX_CHANNELS} in size)")


def _check_from(f, i, name):
    """Validate a layer's 'from' and return the absolute indices it reads (-1 at layer 0 is the input)."""
    items = [f] if isinstance(f, int) else f
    if not isinstance(items, (list, tuple)) or not items or not all(isinstance(x, int) for x in items):
        raise UserError(f"layer {i} {name}: 'from' must be an int or a list of ints, got {f!r}")
    out = set()
    for x in items:
        j = i + x if x < 0 else x
        if x == -1 and i == 0:
            continue
        if j >= i:
            raise UserError(f"layer {i} {name}: 'from' index {x} points to layer {j}, which is not before it")
        if j < 0:
            raise UserError(f"layer {i} {name}: 'from' index {x} is out of range")
        out.add(j)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build a model yaml, print its layers, parameters and GFLOPs.")
    parser.add_argument("--cfg", type=str, default="yolov5s.yaml", help="model.yaml")
    parser.add_argument("--batch-size", type=int, default=1, help="batch size of the test forward pass")
    parser.add_argument("--img", "--img-size", dest="img", type=int, default=640, help="inference size (pixels)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda device, i.e. 0")
    parser.add_argument("--line-profile", action="store_true", help="time each layer")
    parser.add_argument("--strict", action="store_true", help="stale layer-index comments are an error, not a warning")
    opt = parser.parse_args(argv)
    try:
        device = select_device(opt.device)
        if opt.strict:
            path = resolve_cfg(opt.cfg)[0]
            check_index_comments(path.read_text(errors="ignore"), path, strict=True)
        model = Model(opt.cfg).to(device)
        model.info()
        img = torch.rand(opt.batch_size, model.yaml["ch"], opt.img, opt.img, device=device)
        model.eval()
        with torch.inference_mode():
            pred = model(img)[0]
        LOGGER.info(f"forward pass OK: input {tuple(img.shape)} -> output {tuple(pred.shape)}")
        if opt.line_profile:
            profile_layers(model, img)
    except UserError as e:
        LOGGER.error(f"ERROR: {e}")
        return 1
    return 0


def profile_layers(model: Model, x: torch.Tensor, runs: int = 5) -> None:
    """Log the time of each layer (ms) for input ``x``."""
    y = []
    LOGGER.info(f"{'layer':>5} {'ms':>10}  module")
    with torch.inference_mode():
        for m in model.model:
            x = layer_input(m, x, y)
            t = time_sync()
            for _ in range(runs):
                out = m(x)
            LOGGER.info(f"{m.i:>5} {(time_sync() - t) / runs * 1e3:10.2f}  {m.type}")
            x = out
            y.append(x)


if __name__ == "__main__":
    end_process(main())
