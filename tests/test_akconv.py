"""AKConv (models/akconv.py): initial pattern, known outputs at zero offsets, equality with the plain gather
implementation of benchmarks/bench_akconv.py (values and gradients), the 0.1x offset gradient against finite
differences, the export path, the ONNX GridSample op and argument errors (shapes, gradients, fusion and ONNX
outputs: tests/test_contract.py)."""

import io
import warnings

import pytest
import torch

from benchmarks.bench_akconv import gather_forward
from models.akconv import AKConv, initial_pattern


def make(c1=3, c2=4, n=5, s=1, seed=0, offsets=True):
    """An AKConv with random BatchNorm statistics and, when ``offsets``, random fractional offsets (some of the
    sampling positions land outside the map)."""
    torch.manual_seed(seed)
    m = AKConv(c1, c2, n, s)
    bn = m.conv[1]
    with torch.no_grad():
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.5, 0.5)
        if offsets:
            m.p_conv.weight.normal_(0, 0.3)
            m.p_conv.bias.uniform_(-3, 3)
    return m


@pytest.mark.parametrize(
    "n, rows, cols",
    [
        (1, [0], [0]),
        (3, [0, 0, 1], [0, 1, 0]),  # round(sqrt(3)) = 2 per row, remainder row of 1
        (5, [0, 0, 1, 1, 2], [0, 1, 0, 1, 0]),
        (7, [0, 0, 0, 1, 1, 1, 2], [0, 1, 2, 0, 1, 2, 0]),
        (9, [0, 0, 0, 1, 1, 1, 2, 2, 2], [0, 1, 2, 0, 1, 2, 0, 1, 2]),
    ],
)
def test_initial_pattern(n, rows, cols):
    assert initial_pattern(n).tolist() == [rows, cols]


def test_zero_offsets_sample_the_pattern():
    """A fresh module has zero offsets: each output reads x at (i*s + row_n, j*s + col_n), clamped to the map."""
    m = make(c1=3, c2=4, n=5, s=2, offsets=False).eval()
    assert not m.p_conv.weight.any() and not m.p_conv.bias.any()
    x = torch.randn(1, 3, 7, 9)
    y = m(x)
    assert y.shape == (1, 4, 4, 5)
    h, w = torch.arange(4) * 2, torch.arange(5) * 2
    samples = []
    for r, c in initial_pattern(5).long().t().tolist():
        rows, cols = (h + r).clamp(max=6), (w + c).clamp(max=8)
        samples.append(x[:, :, rows][:, :, :, cols])  # (1, 3, 4, 5)
    samples = torch.stack(samples, 2)  # (1, c1, N, h, w)
    weight = m.conv[0].weight[..., 0]  # (c2, c1, N)
    expected = m.conv[2](m.conv[1](torch.einsum("bcnhw,ocn->bohw", samples, weight)))
    torch.testing.assert_close(y, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "n, s, shape, c2",
    [(5, 2, (1, 3, 7, 9), 4), (3, 1, (2, 3, 6, 5), 4), (9, 2, (2, 4, 8, 8), 4), (4, 1, (1, 2, 1, 4), 4),
     (2, 2, (1, 3, 5, 1), 4), (5, 2, (1, 8, 3, 3), 16)],  # the last has fewer samples than weights
)
def test_matches_gather_implementation(n, s, shape, c2):
    """Same outputs and gradients as the explicit corner-gather form; the offset conv's gradients are 0.1x."""
    m = make(c1=shape[1], c2=c2, n=n, s=s).train()
    x = torch.randn(shape)
    grads = []
    for forward in (lambda m_, x_: m_(x_), gather_forward):
        xi = x.clone().requires_grad_()
        m.zero_grad(set_to_none=True)
        y = forward(m, xi)
        y.backward(torch.arange(y.numel(), dtype=y.dtype).view_as(y).sin())
        grads.append([y.detach(), xi.grad, m.conv[0].weight.grad, m.conv[1].weight.grad, m.p_conv.weight.grad,
                      m.p_conv.bias.grad])
    ours, reference = grads
    for a, b in zip(ours[:4], reference[:4]):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    for a, b in zip(ours[4:], reference[4:]):
        torch.testing.assert_close(a, 0.1 * b, atol=1e-4, rtol=1e-4)
    assert reference[4].abs().sum() > 0


def test_offset_gradient_is_a_tenth_of_the_derivative():
    """Finite differences in float64: d loss / d p_conv.bias is 0.1x the true derivative, other parameters 1x."""
    m = make(c1=2, c2=3, n=5, s=2).double().eval()
    x = torch.randn(1, 2, 6, 7, dtype=torch.float64)
    g = torch.randn(1, 3, 3, 4, dtype=torch.float64)

    def loss():
        return (m(x) * g).sum()

    loss().backward()
    eps = 1e-6
    for param, index, scale in ((m.p_conv.bias, 3, 0.1), (m.p_conv.weight, (7, 1, 1, 2), 0.1),
                                (m.conv[0].weight, (1, 0, 2, 0), 1.0)):
        with torch.no_grad():
            param[index] += eps
            up = loss()
            param[index] -= 2 * eps
            down = loss()
            param[index] += eps
        numeric = (up - down) / (2 * eps)
        assert abs(numeric) > 1e-3
        torch.testing.assert_close(param.grad[index], scale * numeric, atol=1e-6, rtol=1e-4)


def test_input_gradient_gradcheck():
    """The custom row-gradient (transposed embedding_bag) agrees with finite differences in float64."""
    m = make(c1=2, c2=3, n=3, s=1).double().eval()
    x = torch.randn(2, 2, 4, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(m, (x,), eps=1e-6, atol=1e-5, fast_mode=True)


def test_offset_conv_learns_from_zero_init():
    """At zero offsets the positions are integers; the offset conv still gets a (non-zero) gradient and moves."""
    m = make(c1=3, c2=4, n=5, s=2, offsets=False).train()
    optimizer = torch.optim.SGD(m.parameters(), lr=0.1)
    m(torch.randn(2, 3, 9, 8)).square().mean().backward()
    assert m.p_conv.weight.grad.abs().sum() > 0
    optimizer.step()
    assert m.p_conv.weight.abs().sum() > 0


def test_no_grad_and_export_paths_agree():
    m = make(c1=3, c2=4, n=5, s=2).eval()
    x = torch.randn(1, 3, 11, 6)
    y = m(x)
    with torch.inference_mode():
        torch.testing.assert_close(m(x), y)
        torch.testing.assert_close(m.forward_export(x), y, atol=1e-4, rtol=1e-4)


def test_onnx_graph_samples_with_the_standard_gridsample():
    """The ONNX output itself is compared in tests/test_contract.py; here: the sampling is one standard op."""
    onnx = pytest.importorskip("onnx")
    m = make(c1=3, c2=4, n=5, s=2).eval()
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(m, (torch.randn(1, 3, 11, 6),), buffer, opset_version=AKConv.onnx_opset, dynamo=False)
    assert "GridSample" in {node.op_type for node in onnx.load_from_string(buffer.getvalue()).graph.node}


@pytest.mark.parametrize("kwargs", [dict(num_param=0), dict(num_param=2.5), dict(num_param=5, stride=0)])
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError, match="AKConv"):
        AKConv(3, 4, **kwargs)


def test_state_dict_keys_match_the_authors_layout():
    from models.common import AKConv as Exported

    assert Exported is AKConv
    keys = set(AKConv(3, 4, 5).state_dict())
    assert {"p_conv.weight", "p_conv.bias", "conv.0.weight", "conv.1.running_mean"} <= keys
    assert not any("pattern" in k for k in keys)


def test_channels_last_model_gives_the_same_output():
    """The fastest CPU path converts weights and inputs to channels-last memory; results must not change."""
    torch.manual_seed(0)
    m = AKConv(8, 16, 5, stride=2).eval()
    x = torch.rand(1, 8, 13, 11)
    with torch.no_grad():
        ref = m(x)
        out = m.to(memory_format=torch.channels_last)(x.contiguous(memory_format=torch.channels_last))
    assert torch.allclose(out, ref, atol=1e-5)
