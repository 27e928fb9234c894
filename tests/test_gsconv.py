"""GSConv family (models/gsconv.py): the channel shuffle against a hand-built tensor and without merging the batch
dimension, GSConvns honouring k and s, the GS bottleneck's residual form, VoVGSCSP(C) honouring n (also through a
yaml) (shapes, gradients, ONNX: tests/test_contract.py)."""

import pytest
import torch
import torch.nn as nn

from models.gsconv import GSBottleneck, GSBottleneckC, GSConv, GSConvns, VoVGSCSP, VoVGSCSPC, channel_shuffle
from models.yolo import load_model_yaml, parse_model


def test_channel_shuffle_interleaves_halves():
    # value = 100 * batch + 10 * channel + pixel, so every element says where it came from
    b, c, h, w = 2, 6, 2, 3
    x = (100 * torch.arange(b).view(b, 1, 1, 1) + 10 * torch.arange(c).view(1, c, 1, 1)
         + torch.arange(h * w).view(1, 1, h, w)).float()
    y = channel_shuffle(x)
    expected_channels = [0, 3, 1, 4, 2, 5]
    expected = torch.stack([x[:, k] for k in expected_channels], 1)
    assert torch.equal(y, expected)
    assert y[1, 1, 1, 2].item() == 100 + 30 + 5


def test_shuffle_never_merges_the_batch_dimension():
    """Every view/reshape in the traced GSConv graph keeps the batch as its own leading dimension."""
    b = 3
    m = GSConv(4, 8).eval()
    graph = torch.jit.trace(m, torch.randn(b, 4, 5, 6)).inlined_graph
    shapes = [node.output().type().sizes() for node in graph.nodes()
              if node.kind() in ("aten::view", "aten::reshape", "aten::transpose")]
    assert shapes and all(s[0] == b for s in shapes), shapes
    assert [b, 4, 2, 5, 6] in shapes  # the (B, C/2, 2, H, W) interleave


def test_gsconv_halves():
    """Even output channels are the dense conv, odd ones the depth-wise conv of it; k and s apply."""
    m = GSConv(8, 16, 3, 2).eval()
    x = torch.randn(1, 8, 7, 9)
    y = m(x)
    assert y.shape == (1, 16, 4, 5)
    dense = m.cv1(x)
    torch.testing.assert_close(y[:, 0::2], dense)
    torch.testing.assert_close(y[:, 1::2], m.cv2(dense))
    assert m.cv2.conv.groups == 8 and m.cv2.conv.kernel_size == (5, 5)


def test_gsconvns_honours_k_s_and_activates():
    m = GSConvns(8, 16, 3, 2).eval()
    assert m.cv1.conv.kernel_size == (3, 3) and m.cv1.conv.stride == (2, 2)
    assert isinstance(m.act, nn.ReLU)
    x = torch.randn(2, 8, 9, 7)
    y = m(x)
    assert y.shape == (2, 16, 5, 4)
    assert (y >= 0).all() and (y > 0).any()
    x1 = m.cv1(x)
    expected = torch.relu(nn.functional.conv2d(torch.cat((x1, m.cv2(x1)), 1), m.shuf.weight))
    torch.testing.assert_close(y, expected)


@pytest.mark.parametrize("cls", [GSConv, GSConvns])
def test_odd_output_channels_rejected(cls):
    with pytest.raises(ValueError, match="even"):
        cls(8, 15)


@pytest.mark.parametrize("cls", [GSBottleneck, GSBottleneckC])
def test_bottleneck_is_residual(cls):
    """With the main path's last BatchNorm zeroed and an identity shortcut, the block returns its input."""
    c = 8
    m = cls(c, c).eval()
    last = m.conv_lighting[1]
    assert isinstance(last.cv1.act, nn.Identity) and isinstance(m.shortcut.act, nn.Identity)
    with torch.no_grad():
        for bn in (last.cv1.bn, last.cv2.bn):
            bn.weight.zero_()
            bn.bias.zero_()
        shortcut = m.shortcut
        shortcut.conv.weight.copy_(
            torch.eye(c).view(c, c, 1, 1) if shortcut.conv.groups == 1 else torch.ones(c, 1, 1, 1)
        )
        shortcut.bn.running_mean.zero_()
        shortcut.bn.running_var.fill_(1 - shortcut.bn.eps)
        shortcut.bn.weight.fill_(1)
        shortcut.bn.bias.zero_()
    x = torch.randn(2, c, 5, 7)
    torch.testing.assert_close(m(x), x, atol=1e-5, rtol=1e-5)


def test_cheap_bottleneck_has_depthwise_shortcut():
    assert GSBottleneckC(16, 16).shortcut.conv.groups == 16
    assert GSBottleneck(16, 16).shortcut.conv.groups == 1


@pytest.mark.parametrize("cls", [VoVGSCSP, VoVGSCSPC])
@pytest.mark.parametrize("n", [1, 3])
def test_vovgscsp_honours_n(cls, n):
    m = cls(16, 32, n)
    assert len(m.gsb) == n
    inner = GSBottleneckC if cls is VoVGSCSPC else GSBottleneck
    assert all(type(b) is inner for b in m.gsb)
    assert m(torch.randn(1, 16, 6, 5)).shape == (1, 32, 6, 5)


def test_yaml_repeats_reach_vovgscspc():
    """Scale m (depth 0.67) turns the yaml's 3 repeats into 2 bottlenecks inside each VoVGSCSPC."""
    model, _ = parse_model(load_model_yaml("yolov5m_SlimNeckC.yaml"), ch=[3])
    blocks = [m for m in model if isinstance(m, VoVGSCSPC)]
    assert len(blocks) == 4 and all(len(b.gsb) == 2 for b in blocks)


def test_exported_from_common():
    from models import common

    for cls in (GSConv, GSConvns, GSBottleneck, GSBottleneckC, VoVGSCSP, VoVGSCSPC):
        assert getattr(common, cls.__name__) is cls


def test_shuffle_is_the_inverse_of_the_authors_even_odd_order():
    """The authors' shuffle lists the even channels of [dense, depth-wise], then the odd ones (GSConv docstring)."""
    x = torch.arange(8.0).view(1, 8, 1, 1)  # [d0 d1 d2 d3 w0 w1 w2 w3]
    authors = torch.cat((x[:, 0::2], x[:, 1::2]), 1)
    assert authors.flatten().tolist() == [0, 2, 4, 6, 1, 3, 5, 7]
    assert channel_shuffle(x).flatten().tolist() == [0, 4, 1, 5, 2, 6, 3, 7]
    assert torch.equal(channel_shuffle(authors), x)
