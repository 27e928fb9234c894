"""Focal modulation: equal to FocalNet's channels-last formulation, LayerNorm over channels on NCHW, global context,
the yaml replacing SPPF."""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from models.common import FocalModulation
from models.focal import LayerNorm2d
from models.yolo import Model

YOLOV5S_FOCAL_PARAMS = 7648064  # models/yolov5s_Focal.yaml, nc=80


def focal_reference(m, x):
    """FocalNet's formulation: linear layers on channels-last (B, H, W, C) tokens, depth-wise convs on NCHW."""
    c = x.shape[1]
    t = x.permute(0, 2, 3, 1)
    t = F.linear(t, m.proj_in.weight.flatten(1), m.proj_in.bias)
    q, ctx, gates = t.permute(0, 3, 1, 2).split((c, c, m.focal_level + 1), 1)
    ctx_all = 0
    for level in range(m.focal_level):
        conv = m.focal_layers[level][0]
        ctx = F.gelu(F.conv2d(ctx, conv.weight, padding=conv.kernel_size[0] // 2, groups=c))
        ctx_all = ctx_all + ctx * gates[:, level : level + 1]
    ctx_all = ctx_all + F.gelu(ctx.mean((2, 3), keepdim=True)) * gates[:, m.focal_level :]
    if m.normalize_modulator:
        ctx_all = ctx_all / (m.focal_level + 1)
    modulator = F.linear(ctx_all.permute(0, 2, 3, 1), m.h.weight.flatten(1), m.h.bias)
    out = q.permute(0, 2, 3, 1) * modulator
    if isinstance(m.ln, nn.LayerNorm):
        out = F.layer_norm(out, (c,), m.ln.weight, m.ln.bias, m.ln.eps)
    return F.linear(out, m.proj.weight.flatten(1), m.proj.bias).permute(0, 3, 1, 2)


@pytest.mark.parametrize("postln,normalize", [(False, False), (True, True)])
def test_equals_channels_last_reference(postln, normalize):
    torch.manual_seed(0)
    m = FocalModulation(16, use_postln_in_modulation=postln, normalize_modulator=normalize).eval()
    if postln:
        with torch.no_grad():
            m.ln.weight.uniform_(0.5, 1.5)
            m.ln.bias.uniform_(-0.5, 0.5)
    x = torch.randn(2, 16, 9, 12)
    torch.testing.assert_close(m(x), focal_reference(m, x), atol=1e-5, rtol=1e-5)


def test_layernorm2d_normalises_each_pixel_over_channels():
    x = torch.randn(2, 8, 5, 7) * 3 + torch.arange(7.0)  # per-pixel offsets that a wrong axis would keep
    y = LayerNorm2d(8)(x)
    torch.testing.assert_close(y.mean(1), torch.zeros(2, 5, 7), atol=1e-5, rtol=0)
    torch.testing.assert_close(y.var(1, unbiased=False), torch.ones(2, 5, 7), atol=1e-3, rtol=0)
    torch.testing.assert_close(y, nn.LayerNorm(8)(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2))


def test_kernel_sizes_grow_by_focal_factor():
    m = FocalModulation(8, focal_window=3, focal_level=3, focal_factor=2)
    assert [layer[0].kernel_size for layer in m.focal_layers] == [(3, 3), (5, 5), (7, 7)]
    assert m.proj_in.out_channels == 2 * 8 + 3 + 1
    with pytest.raises(ValueError, match="odd"):
        FocalModulation(8, focal_window=4)


def test_global_context_reaches_beyond_the_local_kernels():
    """Levels of 3x3 and 5x5 see 7x7 pixels; only the global gate links far pixels (exactly zero gradient without)."""
    torch.manual_seed(0)
    m = FocalModulation(8).eval()

    def far_gradient():
        x = torch.randn(1, 8, 16, 16, requires_grad=True)
        m(x)[..., 15, 15].sum().backward()
        return x.grad[..., 0, 0].abs().max()

    assert far_gradient() > 0
    with torch.no_grad():  # close the global gate: the last output channel of the input projection
        m.proj_in.weight[-1] = 0
        m.proj_in.bias[-1] = 0
    assert far_gradient() == 0


def test_yaml_replaces_sppf():
    model = Model("yolov5s_Focal.yaml")
    assert sum(p.numel() for p in model.parameters()) == YOLOV5S_FOCAL_PARAMS
    assert model.model[9].type == "FocalModulation" and model.model[9].proj.out_channels == 512
