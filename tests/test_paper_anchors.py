"""Published numbers the project reproduces (README "Published numbers" table): official YOLOv5 v7.0 n/s/m/l/x
parameters and GFLOPs at 640, the SPD-Conv authors' YOLOv5s-SPD and AKConv-5 in YOLOv5n.

Two FLOP counts appear. Ours (``utils.torch_utils.count_flops``, what the structure check and the variants table
print): 2 x the multiply-adds of the convolutions and matrix products, by torch's FLOP counter; BatchNorm is not
counted, so fused and unfused models give the same number. The published figures were made with the profiler
of their time (thop), whose rule also counts one operation per output element of a convolution with a bias and
2 per BatchNorm element: ``published_convention_gflops`` below. Applied to the fused model (every convolution
then has a bias, no BatchNorm is left) it gives the YOLOv5 table; applied to the model as trained it gives the
SPD-Conv authors' summary line (33.9 GFLOPs, with 16.5 for their yolov5s, as quoted in LabSAINT/SPD-Conv
issue #2).
"""

import math
from functools import cache

import pytest
import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode, conv_flop_count, mm_flop

from models.yolo import Model
from utils.torch_utils import count_flops

aten = torch.ops.aten
PROBE = 64  # counted at 64x64 (2x the largest stride) and scaled by the pixel count: exact for these networks

# yaml: (parameters as SPEC gives them, published M parameters, published GFLOPs at 640, our count_flops rounded)
OFFICIAL_V70 = {
    "yolov5n.yaml": (1_872_157, 1.9, 4.5, 4.5),
    "yolov5s.yaml": (7_235_389, 7.2, 16.5, 16.4),
    "yolov5m.yaml": (21_190_557, 21.2, 49.0, 48.9),
    "yolov5l.yaml": (46_563_709, 46.5, 109.1, 109.0),
    "yolov5x.yaml": (86_749_405, 86.7, 205.7, 205.4),
}


def _conv_with_bias(x_shape, w_shape, bias, stride, padding, dilation, transposed, *args, out_shape=None, **kwargs):
    return conv_flop_count(x_shape, w_shape, out_shape, transposed=transposed) + (
        2 * math.prod(out_shape) if bias is not None else 0)


def _addmm_with_bias(bias_shape, a_shape, b_shape, out_shape=None, **kwargs):
    return mm_flop(a_shape, b_shape) + 2 * math.prod(out_shape)


def published_convention_gflops(model: nn.Module, imgsz: int = 640) -> float:
    """GFLOPs at ``imgsz`` as the published tables count them: 2 x (multiply-adds + one add per output element of
    a biased convolution or matrix product + 2 operations per BatchNorm element)."""
    bn_elements = []
    hooks = [m.register_forward_hook(lambda m, x, y: bn_elements.append(y.numel()))
             for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    model.eval()
    try:
        mapping = {aten.convolution: _conv_with_bias, aten.addmm: _addmm_with_bias}
        with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=mapping) as counter:
            model(torch.zeros(1, 3, PROBE, PROBE))
    finally:
        for h in hooks:
            h.remove()
    return (counter.get_total_flops() + 2 * 2 * sum(bn_elements)) / 1e9 * (imgsz / PROBE) ** 2


@cache
def counts(cfg):
    """Parameters and GFLOPs of a yaml (nc=80) as trained and fused, in our and the published convention."""
    torch.manual_seed(0)
    model = Model(cfg)
    out = {"params": sum(p.numel() for p in model.parameters()), "ours": count_flops(model),
           "published_unfused": published_convention_gflops(model)}
    model.fuse(verbose=False)
    out.update(params_fused=sum(p.numel() for p in model.parameters()), ours_fused=count_flops(model),
               published_fused=published_convention_gflops(model))
    return out


@pytest.mark.parametrize("cfg", [
    "yolov5n.yaml", "yolov5s.yaml", "yolov5m.yaml",
    pytest.param("yolov5l.yaml", marks=pytest.mark.slow), pytest.param("yolov5x.yaml", marks=pytest.mark.slow),
])
def test_official_v70_parameters_and_gflops(cfg):
    params, published_m, published_gflops, ours = OFFICIAL_V70[cfg]
    c = counts(cfg)
    assert c["params"] == params
    # the published parameters are those of the fused model too: yolov5l as trained has 46.56 M, published 46.5
    assert round(c["params_fused"] / 1e6, 1) == published_m
    # the published GFLOPs are those of the fused model, bias adds included
    assert round(c["published_fused"], 1) == published_gflops
    # ours counts multiply-adds only: 0.03 (n) to 0.22 (x) lower, the bias adds; fusing changes nothing
    assert round(c["ours"], 1) == ours
    assert c["ours_fused"] == pytest.approx(c["ours"], rel=1e-9)
    assert 0 < c["published_fused"] - c["ours"] < 0.25


def test_spdconv_authors_yolov5s():
    c, base = counts("yolov5s_SPDConvAuthors.yaml"), counts("yolov5s.yaml")
    assert c["params"] == 8_771_389  # the authors' YOLOv5s-SPD, exactly
    assert round(c["ours"], 1) == round(c["ours_fused"], 1) == 33.7
    assert round(c["published_fused"], 1) == 33.8
    # their 33.9 is the summary of the model as trained, BatchNorm counted; their yolov5s reads 16.5 the same way
    assert round(c["published_unfused"], 1) == 33.9
    assert round(base["published_unfused"], 1) == 16.5


def test_akconv5_in_yolov5n():
    c, base = counts("yolov5n_AKConv.yaml"), counts("yolov5n.yaml")
    assert c["params"] == 1_655_097
    assert round(c["params_fused"] / 1e6, 2) == 1.65  # the paper's 1.65 M (as trained: 1.655 M)
    assert round(c["ours"], 1) == round(c["published_fused"], 1) == 4.1
    assert round(c["published_unfused"], 1) == 4.2  # so not the as-trained summary with BatchNorm, unlike SPD-Conv's
    assert round(base["params"] / 1e6, 2) == 1.87 and round(base["published_fused"], 1) == 4.5  # their baseline
