"""The module contract, checked for every module in the registry (the classes models/common.py re-exports with a
``yaml_args``): a new module is tested by being registered.

Each module is built the way a yaml builds it (parse_model on a one-row yaml, with the extra arguments of the first
shipped yaml row that uses it, else its defaults) at tiny channel counts (16 -> 32, or 16 -> 16 where the module
requires equal channels), then: batch 1 and 2 at square, odd and
rectangular sizes give the channels parse_model booked and the same shape in train and eval mode; every parameter
gets a gradient; fuse() keeps the eval output; the ONNX export run by onnxruntime gives the same output.
"""

import io
import math

import pytest
import torch

from models import common
from models.export import required_opset
from models.layers import C1_C2, C1_C2_N, CONCAT, KEEP, PLAIN
from models.yolo import Detect, parse_model, registered_modules
from utils.general import ROOT, UserError, yaml_load

C1, C2 = 16, 32  # tiny, but divisible by every group count the modules use
SIZES = [(1, 8, 8), (2, 7, 5), (1, 5, 9)]  # (batch, height, width): square, odd, rectangular
# the tracing exporter's deprecation notice and its notes on Python-level branches (constant here)
pytestmark = pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning",
                                        "ignore:.*legacy TorchScript-based ONNX export:DeprecationWarning")
REGISTRY = {k: v for k, v in registered_modules().items() if not issubclass(v, Detect)}  # heads: own tests


def _yaml_examples():
    """Module name -> the arguments of the first row naming it in a shipped yaml (models/**/*.yaml)."""
    examples = {}
    for path in sorted((ROOT / "models").rglob("*.yaml")):
        d = yaml_load(path)
        rows = (d.get("backbone") or []) + (d.get("head") or []) if isinstance(d, dict) else []
        for row in rows:
            if isinstance(row, list) and len(row) == 4 and isinstance(row[2], str):
                examples.setdefault(row[2], list(row[3] or []))
    return examples


EXAMPLES = _yaml_examples()


def build(name):
    """(layer built by parse_model from a one-row yaml, function making an input of a given size).

    C1 -> C2 channels, or C1 -> C1 for a module that rejects a change of channels (e.g. a residual block)."""
    cls = REGISTRY[name]
    args = EXAMPLES.get(name, [])
    rule = cls.yaml_args
    frm = [-1, -1] if rule == CONCAT else -1
    if rule == KEEP:
        args = [C1, *args[1:]] if args and isinstance(args[0], int) else args
    for c2 in (C2, C1) if rule in (C1_C2, C1_C2_N) else (None,):
        row_args = args if c2 is None else [c2, *args[1:]]
        try:
            model, _ = parse_model({"nc": 1, "backbone": [[frm, 1, name, row_args]], "head": []}, ch=[C1])
            break
        except UserError:
            if c2 != C2:
                raise
    layer = model[0]

    def make_input(bs, h, w):
        mult = getattr(cls, "spatial_multiple", 1)
        h, w = mult * math.ceil(h / mult), mult * math.ceil(w / mult)
        x = torch.randn(bs, C1, h, w)
        return [x, torch.randn_like(x)] if rule == CONCAT else x

    return layer, make_input


def _randomize_batchnorm(module):
    """Non-trivial BatchNorm statistics, so that folding them into convolutions is really exercised."""
    g = torch.Generator().manual_seed(0)
    for m in module.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            if m.affine:
                m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)


def test_registry_holds_the_project_modules_with_valid_contracts():
    expected = {"Conv", "C3", "SPPF", "Concat", "SPDConv", "ScConv", "C3_ScConv", "AKConv", "GSConv", "VoVGSCSP",
                "ACConv", "FocalModulation"}
    assert expected <= set(REGISTRY)
    for name, cls in REGISTRY.items():
        assert cls.yaml_args in (C1_C2, C1_C2_N, KEEP, CONCAT, PLAIN), name
        assert isinstance(getattr(cls, "onnx_opset", 11), int), name
    assert REGISTRY["AKConv"].onnx_opset == 16


def test_a_new_module_is_registered_by_its_re_export(monkeypatch):
    """Class with a contract + re-export in models/common.py: parse_model builds it, errors list it, export's
    opset follows it. A class without ``yaml_args`` stays unknown."""

    class Doubler(torch.nn.Module):
        yaml_args = PLAIN
        onnx_opset = 18

        @staticmethod
        def yaml_c2(c1, args):
            return 2 * c1

        def forward(self, x):
            return torch.cat((x, x), 1)

    class NoContract(torch.nn.Module):
        pass

    monkeypatch.setattr(common, "Doubler", Doubler, raising=False)
    monkeypatch.setattr(common, "NoContract", NoContract, raising=False)
    rows = [[-1, 1, "Doubler", []], [-1, 1, "Conv", [8, 1]]]
    model, _ = parse_model({"nc": 1, "backbone": rows, "head": []}, ch=[3])
    assert model[0].booked_channels == 6 and model[1].conv.in_channels == 6
    assert required_opset(model) == 18
    with pytest.raises(UserError, match=r"unknown module 'NoContract'. Known modules: .*Doubler"):
        parse_model({"nc": 1, "backbone": [[-1, 1, "NoContract", []]], "head": []}, ch=[3])


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_shapes_batch_sizes_and_modes(name):
    torch.manual_seed(0)
    layer, make_input = build(name)
    for bs, h, w in SIZES:
        x = make_input(bs, h, w)
        with torch.no_grad():
            y_train = layer.train()(x)
            y_eval = layer.eval()(x)
        assert y_train.shape == y_eval.shape, (bs, h, w)
        assert y_eval.shape[:2] == (bs, layer.booked_channels), (bs, h, w)
        assert torch.isfinite(y_eval).all()


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_parameter_and_input_gets_a_gradient(name):
    torch.manual_seed(0)
    layer, make_input = build(name)
    x = make_input(2, 7, 5)
    inputs = x if isinstance(x, list) else [x]
    for t in inputs:
        t.requires_grad_(True)
    layer.train()(x).pow(2).mean().backward()
    tensors = {**dict(layer.named_parameters()), **{f"input {i}": t for i, t in enumerate(inputs)}}
    no_grad = [k for k, t in tensors.items() if t.grad is None or not t.grad.abs().sum() > 0]
    assert not no_grad, f"{name}: no gradient reaches {no_grad}"


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_fuse_keeps_the_eval_output(name):
    layer, make_input = build(name)
    if not any(callable(getattr(m, "fuse", None)) for m in layer.modules()):
        pytest.skip(f"{name} has nothing to fuse")
    _randomize_batchnorm(layer)
    x = make_input(2, 7, 5)
    with torch.no_grad():
        y = layer.eval()(x)
        for m in list(layer.modules()):  # as Model.fuse: every block that can fold itself
            if callable(getattr(m, "fuse", None)):
                m.fuse()
        torch.testing.assert_close(layer(x), y, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_onnx_export_gives_the_same_output(name):
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    layer, make_input = build(name)
    _randomize_batchnorm(layer)
    layer.eval()
    x = make_input(2, 7, 5)
    inputs = x if isinstance(x, list) else [x]
    names = [f"x{i}" for i in range(len(inputs))]
    opset = max(17, getattr(type(layer), "onnx_opset", 11))
    buffer = io.BytesIO()
    with torch.no_grad():
        expected = layer(x)
        torch.onnx.export(layer, (x,), buffer, opset_version=opset, dynamo=False,
                          input_names=names)
    session = ort.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])
    out = session.run(None, {n: t.numpy() for n, t in zip(names, inputs)})[0]
    torch.testing.assert_close(torch.from_numpy(out), expected, atol=1e-4, rtol=1e-4)
