"""The official YOLOv5 module families (ghost, transformer, CSP variants, MixConv, Contract/Expand,
DWConvTranspose2d): official state-dict layouts and known answers. Shapes, gradients, fusing and ONNX export of
every registered module are covered by the contract test."""

import pytest
import torch
import torch.nn as nn

from models.common import (
    C3SPP,
    C3TR,
    SPP,
    BottleneckCSP,
    C3Ghost,
    C3x,
    Contract,
    CrossConv,
    DWConvTranspose2d,
    Expand,
    GhostBottleneck,
    GhostConv,
    MixConv2d,
    TransformerBlock,
)
from models.mixconv import mixconv_split
from models.yolo import main, parse_model, resolve_cfg
from utils.general import ROOT

BN = ["bias", "num_batches_tracked", "running_mean", "running_var", "weight"]


def conv_keys(prefix):
    """Keys of a project/official Conv (conv + BatchNorm) under ``prefix``."""
    return [f"{prefix}.conv.weight"] + [f"{prefix}.bn.{k}" for k in BN]


def test_ghostconv_is_primary_then_cheap_ghost_half():
    torch.manual_seed(0)
    m = GhostConv(6, 8, 3, 2).eval()
    x = torch.randn(2, 6, 9, 10)
    y = m(x)
    assert y.shape == (2, 8, 5, 5)
    primary = m.cv1(x)
    assert torch.equal(y[:, :4], primary) and torch.equal(y[:, 4:], m.cv2(primary))
    assert m.cv2.conv.groups == 4 and m.cv2.conv.kernel_size == (5, 5)
    assert sorted(m.state_dict()) == sorted(conv_keys("cv1") + conv_keys("cv2"))
    with pytest.raises(ValueError, match="even"):
        GhostConv(6, 7)


def test_ghost_bottleneck_layout():
    s1 = GhostBottleneck(8, 8)
    assert isinstance(s1.shortcut, nn.Identity) and isinstance(s1.conv[1], nn.Identity)
    s2 = GhostBottleneck(8, 16, 3, 2)
    keys = set(s2.state_dict())
    assert {"conv.1.conv.weight", "shortcut.0.conv.weight", "shortcut.1.conv.weight", "conv.2.cv2.bn.weight"} <= keys
    assert s2.shortcut[0].conv.groups == 8  # depth-wise stride-2 shortcut
    assert s2(torch.randn(1, 8, 7, 9)).shape == (1, 16, 4, 5)
    projected = GhostBottleneck(8, 16)  # stride 1 with new channels: GhostNet's projection shortcut
    assert isinstance(projected.shortcut, nn.Sequential) and projected.shortcut[0].conv.stride == (1, 1)
    assert projected(torch.randn(1, 8, 5, 6)).shape == (1, 16, 5, 6)
    c3 = C3Ghost(16, 32, n=2)
    assert [type(b) for b in c3.m] == [GhostBottleneck, GhostBottleneck]


def test_bottleneck_csp_official_keys():
    m = BottleneckCSP(8, 16, n=1)
    expected = (conv_keys("cv1") + ["cv2.weight", "cv3.weight"] + conv_keys("cv4") + [f"bn.{k}" for k in BN]
                + conv_keys("m.0.cv1") + conv_keys("m.0.cv2"))
    assert sorted(m.state_dict()) == sorted(expected)
    assert m.cv2.bias is None and m.bn.num_features == 16  # bare convs on both branch ends, one shared BatchNorm


def test_crossconv_factored_kernels_and_c3x():
    m = CrossConv(8, 8, 3, 2, shortcut=True)
    assert m.cv1.conv.kernel_size == (1, 3) and m.cv1.conv.stride == (1, 2)
    assert m.cv2.conv.kernel_size == (3, 1) and m.cv2.conv.stride == (2, 1)
    assert m(torch.randn(1, 8, 9, 11)).shape == (1, 8, 5, 6)
    c3x = C3x(8, 16, n=2)
    assert all(isinstance(b, CrossConv) and b.add for b in c3x.m)


def test_c3spp_wraps_an_spp():
    m = C3SPP(16, 32, (3, 5))
    assert isinstance(m.m, SPP) and [p.kernel_size for p in m.m.m] == [3, 5]
    assert m(torch.randn(1, 16, 8, 8)).shape == (1, 32, 8, 8)


def test_transformer_block_official_keys_and_position_equivariance():
    torch.manual_seed(0)
    m = TransformerBlock(8, 16, num_heads=4, num_layers=2).eval()
    layer = ["q.weight", "k.weight", "v.weight", "ma.in_proj_weight", "ma.in_proj_bias", "ma.out_proj.weight",
             "ma.out_proj.bias", "fc1.weight", "fc2.weight"]
    expected = conv_keys("conv") + ["linear.weight", "linear.bias"] + [f"tr.{i}.{k}" for i in range(2) for k in layer]
    assert sorted(m.state_dict()) == sorted(expected)
    # the position embedding is a function of each token itself, so shuffling the pixels shuffles the output alike
    x = torch.randn(2, 8, 3, 5)
    perm = torch.randperm(15)
    y = m(x).flatten(2)
    y_perm = m(x.flatten(2)[..., perm].view_as(x)).flatten(2)
    torch.testing.assert_close(y_perm, y[..., perm], atol=1e-5, rtol=1e-5)
    assert isinstance(C3TR(16, 32, n=3).m, TransformerBlock) and len(C3TR(16, 32, n=3).m.tr) == 3


def test_contract_channel_order_and_expand_inverse():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    y = Contract()(x)[0]
    # official order: row offset major, column offset minor
    for channel, (r, c) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):
        assert torch.equal(y[channel], x[0, 0, r::2, c::2])
    x = torch.randn(2, 3, 6, 9)
    for gain in (1, 3):
        assert torch.equal(Expand(gain)(Contract(gain)(x)), x)
    assert Contract.yaml_c2(3, [3]) == 27 and Expand.yaml_c2(36, [3]) == 4 and Contract.yaml_c2(5, []) == 20


def test_mixconv_channel_split_known_answers():
    assert mixconv_split(11, (1, 3, 5)) == [4, 3, 4]  # official equal_ch rule (floor of a linspace)
    assert mixconv_split(8, (1, 3)) == [4, 4]
    assert mixconv_split(64, (3, 5, 7), equal_ch=False) == [41, 15, 8]  # about equal weights: 41*9, 15*25, 8*49
    m = MixConv2d(8, 11, (1, 3, 5), 2)
    assert [c.kernel_size[0] for c in m.m] == [1, 3, 5] and [c.out_channels for c in m.m] == [4, 3, 4]
    assert m(torch.randn(1, 8, 9, 9)).shape == (1, 11, 5, 5)


def test_dwconv_transpose_upsamples_depthwise():
    m = DWConvTranspose2d(8, 8, 4, 2, 1)
    assert m.groups == 8 and m.bias is not None
    assert m(torch.randn(1, 8, 5, 7)).shape == (1, 8, 10, 14)


def test_hub_yamls_resolve_by_name_and_scale_letter():
    assert resolve_cfg("yolov5n6.yaml") == (ROOT / "models" / "hub" / "yolov5n6.yaml", None)
    assert resolve_cfg("yolov5n-ghost.yaml") == (ROOT / "models" / "hub" / "yolov5s-ghost.yaml", "n")


def test_yolo_py_cfg_prints_a_hub_yaml():
    assert main(["--cfg", "models/hub/yolov3-tiny.yaml", "--img", "64"]) == 0


def test_channel_rules_of_torch_and_reshaping_layers_in_a_yaml():
    """nn.ConvTranspose2d takes (c1, c2, ...) like Conv; nn.ZeroPad2d keeps channels; Contract, SpaceToDepth and
    Expand change them by gain**2 (the dry run would name a layer whose booked channels were wrong)."""
    rows = [
        [-1, 1, "Contract", [2]],  # 3 -> 12
        [-1, 1, "nn.ConvTranspose2d", [32, 2, 2]],  # 12 -> 16 at width 0.5
        [-1, 1, "nn.ZeroPad2d", [[0, 1, 0, 1]]],  # 16
        [-1, 1, "SpaceToDepth", []],  # 64
        [-1, 1, "Expand", [4]],  # 64 / 16 = 4
        [-1, 1, "DWConvTranspose2d", [16, 2, 2]],  # 4 -> 8
    ]
    layers, _ = parse_model({"nc": 1, "width_multiple": 0.5, "backbone": rows, "head": []}, ch=[3])
    assert [m.booked_channels for m in layers] == [12, 16, 16, 64, 4, 8]
    y = torch.randn(1, 3, 16, 24)
    for m in layers:
        y = m(y)
        assert y.shape[1] == m.booked_channels
    assert y.shape == (1, 8, 72, 104)  # 16x24: /2, x2, +1 pad -> 17x25, /2 rounding up -> 9x13, x4, x2
