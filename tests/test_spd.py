"""SPD-Conv: space-to-depth channel order, odd sizes (zero-padded, nothing dropped), gradients, fusing, yaml, and
the export form (pixel_unshuffle, which NCNN runs) against the training form."""

import pytest
import torch
import torch.nn as nn

from models.common import Conv, Focus, SpaceToDepth, SPDConv
from models.yolo import Model

YOLOV5S_SPDCONV_PARAMS = 14147389  # models/yolov5s_SPDConv.yaml, nc=80
YOLOV5S_SPDCONV_AUTHORS_PARAMS = 8771389  # models/yolov5s_SPDConvAuthors.yaml, nc=80 (SPEC)


def identity_spd(c1):
    """SPDConv whose convolution copies its 4 * c1 input channels: the output is the space-to-depth itself."""
    m = SPDConv(c1, 4 * c1, k=1, act=False)
    m.bn = nn.Identity()
    with torch.no_grad():
        m.conv.weight.copy_(torch.eye(4 * c1).view(4 * c1, 4 * c1, 1, 1))
    return m


def test_space_to_depth_channel_order_known_answer():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    expected = torch.tensor(
        [
            [[0, 2], [8, 10]],  # x[..., ::2, ::2]
            [[4, 6], [12, 14]],  # x[..., 1::2, ::2]
            [[1, 3], [9, 11]],  # x[..., ::2, 1::2]
            [[5, 7], [13, 15]],  # x[..., 1::2, 1::2]
        ],
        dtype=torch.float32,
    )
    assert torch.equal(identity_spd(1)(x)[0], expected)


def test_odd_size_is_zero_padded_bottom_right_known_answer():
    x = torch.arange(1.0, 10.0).view(1, 1, 3, 3)  # [[1,2,3],[4,5,6],[7,8,9]]
    expected = torch.tensor(
        [
            [[1, 3], [7, 9]],
            [[4, 6], [0, 0]],
            [[2, 0], [8, 0]],
            [[5, 0], [0, 0]],
        ],
        dtype=torch.float32,
    )
    y = identity_spd(1)(x)[0]
    assert torch.equal(y, expected)
    assert y.sum() == x.sum()  # every pixel kept


@pytest.mark.parametrize("hw", [(32, 32), (31, 45), (17, 8), (1, 1), (2, 3)])
def test_output_size_equals_the_stride2_conv_it_replaces(hw):
    x = torch.randn(1, 4, *hw)
    y = SPDConv(4, 6, 3).eval()(x)  # eval: train-mode BatchNorm needs more than one value per channel
    assert y.shape == Conv(4, 6, 3, 2).eval()(x).shape
    assert y.shape == (1, 6, (hw[0] + 1) // 2, (hw[1] + 1) // 2)


def test_every_input_pixel_gets_a_gradient_on_odd_size():
    m = SPDConv(3, 8, 3).train()
    x = torch.randn(2, 3, 7, 9, requires_grad=True)
    m(x).square().sum().backward()
    assert (x.grad != 0).all()  # the last (odd) row and column take part


def test_yaml_param_count_and_strides():
    model = Model("yolov5s_SPDConv.yaml")
    assert sum(p.numel() for p in model.parameters()) == YOLOV5S_SPDCONV_PARAMS
    assert model.stride.tolist() == [8.0, 16.0, 32.0]
    assert sum(isinstance(m, SPDConv) for m in model.modules()) == 6  # 4 backbone + 2 head stride-2 Convs


def test_space_to_depth_layer_equals_the_identity_spdconv_on_odd_size():
    x = torch.randn(2, 3, 7, 10)
    y = SpaceToDepth()(x)
    assert y.shape == (2, 12, 4, 5)
    assert torch.equal(y, identity_spd(3)(x))  # same order and the same bottom/right zero padding


def test_authors_layout_yaml_param_count_and_wiring():
    """Authors' layout: stride-1 Conv, then SpaceToDepth, and the next layer takes 4x channels."""
    model = Model("yolov5s_SPDConvAuthors.yaml")
    assert sum(p.numel() for p in model.parameters()) == YOLOV5S_SPDCONV_AUTHORS_PARAMS
    assert model.stride.tolist() == [8.0, 16.0, 32.0]
    layers = list(model.model)
    s2d = [i for i, m in enumerate(layers) if isinstance(m, SpaceToDepth)]
    assert s2d == [2, 5, 8, 11, 23, 27]
    for i in s2d:
        conv = layers[i - 1]
        assert isinstance(conv, Conv) and conv.conv.stride == (1, 1)
    for i in s2d[:4]:  # in the backbone the next C3 reads the 4x channels directly (in the head a Concat does)
        assert layers[i + 1].cv1.conv.in_channels == 4 * layers[i - 1].conv.out_channels


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
@pytest.mark.parametrize("module, hw", [("SPDConv", (7, 10)), ("SpaceToDepth", (7, 10)), ("Focus", (8, 10))])
def test_export_form_is_pixel_unshuffle_with_the_training_forms_numbers(module, hw):
    """Traced (as every exporter traces), space-to-depth is F.pixel_unshuffle instead of stepped slices (NCNN has
    none): SPDConv and Focus reorder their conv weight's input channels to its order, SpaceToDepth regroups its
    channels; the outputs are the training form's (odd sizes zero-padded first)."""
    torch.manual_seed(0)
    m = {"SPDConv": SPDConv(3, 8, 3), "SpaceToDepth": SpaceToDepth(), "Focus": Focus(3, 8, 3)}[module].eval()
    for bn in m.modules():
        if isinstance(bn, nn.BatchNorm2d):
            bn.running_mean.uniform_(-1, 1)
            bn.running_var.uniform_(0.5, 2)
    x = torch.randn(2, 3, *hw)
    with torch.no_grad():
        expected = m(x)
        traced = torch.jit.trace(m, x)
        got = traced(x)
    graph = str(traced.inlined_graph)
    assert "aten::pixel_unshuffle" in graph and "aten::slice" not in graph
    if module == "SpaceToDepth":  # a pure regrouping: the same numbers bit for bit
        assert torch.equal(got, expected)
    else:  # the conv sums the same products in another order
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
