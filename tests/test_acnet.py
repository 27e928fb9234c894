"""ACNet block: branch alignment (impulse response), shapes, gradients, fused form equal to the block, Model.fuse()."""

import pytest
import torch
import torch.nn as nn

from models.common import ACConv, Conv
from models.yolo import Model

YOLOV5S_ACCONV_PARAMS = 8776765  # models/yolov5s_ACConv.yaml, nc=80


def randomise_batchnorms(module, seed=0):
    """Non-trivial BatchNorm affine parameters and running statistics, so that folding is really exercised."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for bn in module.modules():
            if isinstance(bn, nn.BatchNorm2d):
                n = bn.num_features
                bn.weight.copy_(torch.rand(n, generator=g) + 0.5)
                bn.bias.copy_(torch.rand(n, generator=g) - 0.5)
                bn.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
                bn.running_var.copy_(torch.rand(n, generator=g) + 0.5)
    return module


def test_asymmetric_branches_align_with_the_kernel_centre():
    """Impulse response: the 1x3 branch alone draws a horizontal line through the impulse, the 3x1 a vertical one."""
    m = ACConv(1, 1, 3, act=False).eval()
    with torch.no_grad():
        m.conv.weight.zero_()
        m.conv_kx1.weight.zero_()
        m.conv_1xk.weight.copy_(torch.tensor([1.0, 2.0, 3.0]).view(1, 1, 1, 3))
    x = torch.zeros(1, 1, 5, 5)
    x[0, 0, 2, 2] = 1.0
    scale = 1 / (1 + m.bn_1xk.eps) ** 0.5  # eval BatchNorm with default statistics (mean 0, var 1)
    expected = torch.zeros(5, 5)
    expected[2, 1:4] = torch.tensor([3.0, 2.0, 1.0]) * scale  # cross-correlation reverses the kernel
    torch.testing.assert_close(m(x)[0, 0], expected)

    with torch.no_grad():
        m.conv_1xk.weight.zero_()
        m.conv_kx1.weight.copy_(torch.tensor([1.0, 2.0, 3.0]).view(1, 1, 3, 1))
    expected = expected.T.contiguous()
    torch.testing.assert_close(m(x)[0, 0], expected)


@pytest.mark.parametrize("hw", [(16, 16), (15, 22), (1, 7)])
@pytest.mark.parametrize("k,s", [(3, 1), (3, 2), (5, 2)])
def test_shape_equals_conv(hw, k, s):
    x = torch.randn(1, 4, *hw)
    assert ACConv(4, 6, k, s).eval()(x).shape == Conv(4, 6, k, s).eval()(x).shape


@pytest.mark.parametrize(
    "kwargs",
    [dict(k=3, s=1), dict(k=3, s=2), dict(k=5, s=1, g=2), dict(k=3, s=1, d=2), dict(k=3, s=2, p=2)],
)
def test_fused_equals_block_in_eval(kwargs):
    torch.manual_seed(0)
    m = randomise_batchnorms(ACConv(4, 8, **kwargs)).eval()
    x = torch.randn(2, 4, 13, 10)
    y = m(x)
    m.fuse()
    assert m.conv_1xk is None and m.bn is None and m.conv.bias is not None
    assert not any(isinstance(b, nn.BatchNorm2d) for b in m.modules())
    torch.testing.assert_close(m(x), y, atol=1e-5, rtol=1e-5)
    m.fuse()  # a second fuse is a no-op
    torch.testing.assert_close(m(x), y, atol=1e-5, rtol=1e-5)


def test_even_kernel_and_too_small_padding_are_rejected():
    with pytest.raises(ValueError, match="odd kernel"):
        ACConv(4, 4, 2)
    with pytest.raises(ValueError, match="padding"):
        ACConv(4, 4, 3, p=0)


def test_model_fuse_fuses_every_acconv_and_keeps_outputs():
    model = randomise_batchnorms(Model("yolov5n_ACConv.yaml")).eval()
    assert sum(isinstance(m, ACConv) for m in model.modules()) == 6
    x = torch.rand(1, 3, 96, 128)
    y = model(x)[0]
    model.fuse()
    assert all(m.conv_1xk is None for m in model.modules() if isinstance(m, ACConv))
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    torch.testing.assert_close(model(x)[0], y, atol=1e-4, rtol=1e-5)


def test_yaml_param_count():
    assert sum(p.numel() for p in Model("yolov5s_ACConv.yaml").parameters()) == YOLOV5S_ACCONV_PARAMS
