"""TorchScript and ONNX files are checked before anything in them runs: hostile ops, __setstate__, custom ONNX
domains and external tensor data are refused, and every model yaml of the project, exported, passes."""

import copy
import warnings

import pytest
import torch
import torch.nn as nn
import yaml

from models.backends import DetectMultiBackend
from models.export import prepare_model
from models.yolo import Model
from utils.general import ROOT, UserError
from utils.script_check import check_onnx_file, check_script_module, load_torchscript

# test_export.py loads every yolov5s_* variant export through load_torchscript; here the stock model and one
# official zoo yaml per module family it adds (when present), so the suite stays fast
ZOO_SAMPLES = ("hub/yolov5s-ghost.yaml", "hub/yolov5s-transformer.yaml", "hub/yolov5s-LeakyReLU.yaml",
               "hub/yolov5-p7.yaml", "hub/yolov3-spp.yaml")
MODEL_YAMLS = ["yolov5n.yaml"] + [y for y in ZOO_SAMPLES if (ROOT / "models" / y).is_file()]


class WritesAFile(nn.Module):
    def __init__(self, file: str):
        super().__init__()
        self.file = file
        self.conv = nn.Conv2d(3, 8, 1)

    def forward(self, x):
        mapped = torch.from_file(self.file, shared=True, size=64, dtype=torch.uint8)
        return self.conv(x) + mapped.sum()


class Prints(nn.Module):
    def forward(self, x):
        print("hello from the model")
        return x * 2


class Reseeds(nn.Module):
    def forward(self, x):
        torch.manual_seed(0)
        return x.sigmoid()


class SetsStateOnLoad(nn.Module):
    def __init__(self, file: str):
        super().__init__()
        self.file = file

    def forward(self, x):
        return x + 1

    @torch.jit.export
    def __getstate__(self):
        return (self.file, self.training)

    @torch.jit.export
    def __setstate__(self, state: tuple[str, bool]):
        self.file, self.training = state
        torch.from_file(self.file, shared=True, size=64, dtype=torch.uint8)


def test_from_file_is_refused_and_writes_nothing(tmp_path):
    target = tmp_path / "planted.bin"
    weights = tmp_path / "evil.torchscript"
    torch.jit.script(WritesAFile(str(target))).save(str(weights))
    with pytest.raises(UserError, match=r"aten::from_file \(in model.forward\)"):
        DetectMultiBackend(str(weights)).warmup(imgsz=(1, 3, 64, 64))
    assert not target.exists()


@pytest.mark.parametrize("module, op", [(Prints(), "prim::Print"), (Reseeds(), "manual_seed")])
def test_print_and_reseeding_are_refused(tmp_path, module, op):
    weights = tmp_path / "m.torchscript"
    torch.jit.script(module).save(str(weights))
    with pytest.raises(UserError, match=op):
        load_torchscript(str(weights))


def test_setstate_is_refused_before_the_loader_runs_it(tmp_path):
    target = tmp_path / "planted.bin"
    weights = tmp_path / "evil.torchscript"
    torch.jit.script(SetsStateOnLoad(str(target))).save(str(weights))
    target.unlink(missing_ok=True)  # scripting does not run __setstate__, but be sure the file is absent
    with pytest.raises(UserError, match="__setstate__"):
        load_torchscript(str(weights))
    assert not target.exists()


def double_output(module: nn.Module, inputs: tuple[torch.Tensor], output: torch.Tensor):
    return output * 2


def test_forward_hooks_are_refused():
    module = torch.jit.script(nn.Sequential(nn.Conv2d(3, 3, 1)))
    assert check_script_module(module, "plain") is None
    hooked = nn.Conv2d(3, 3, 1)
    hooked.register_forward_hook(double_output)
    with pytest.raises(UserError, match="forward hooks"):
        check_script_module(torch.jit.script(hooked), "hooked")


@pytest.mark.parametrize("yaml_name", MODEL_YAMLS)
def test_every_project_export_passes(tmp_path, yaml_name):
    """Each model yaml, built small (depth 0.33, width 0.25), traced the way export.py does, saved and checked."""
    cfg = yaml.safe_load((ROOT / "models" / yaml_name).read_text())
    cfg.update(depth_multiple=0.33, width_multiple=0.25, nc=3)
    model = prepare_model(Model(cfg))
    im = torch.rand(1, 3, 128, 128)  # P7 models have stride 128
    file = tmp_path / "m.torchscript"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.trace(copy.deepcopy(model), im, strict=False, check_trace=False).save(str(file))
    loaded = load_torchscript(str(file))
    with torch.no_grad():
        assert torch.allclose(loaded(im), model(im), atol=1e-4)


def onnx_file(path, nodes, initializers=(), domains=(("", 17),)):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 3])],
                              initializer=list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in domains])
    onnx.save(model, str(path))
    return path


def test_onnx_custom_domain_and_external_data_are_refused(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    custom = onnx_file(tmp_path / "custom.onnx", [helper.make_node("Evil", ["images"], ["out"], domain="x.evil")],
                       domains=(("", 17), ("x.evil", 1)))
    with pytest.raises(UserError, match="operator x.evil::Evil"):
        DetectMultiBackend(str(custom))
    secret = tmp_path / "secret.bin"
    secret.write_bytes(bytes(12))
    weight = helper.make_tensor("w", TensorProto.FLOAT, [1, 3], [0.0, 0.0, 0.0])
    weight.ClearField("float_data")
    weight.data_location = TensorProto.EXTERNAL
    weight.external_data.add(key="location", value="secret.bin")
    external = onnx_file(tmp_path / "external.onnx", [helper.make_node("Add", ["images", "w"], ["out"])], [weight])
    with pytest.raises(UserError, match="tensor 'w' stored in an external file"):
        DetectMultiBackend(str(external))
    plain = onnx_file(tmp_path / "plain.onnx", [helper.make_node("Sigmoid", ["images"], ["out"])])
    assert check_onnx_file(plain) is None
    assert onnx.load(str(plain)).graph.node[0].op_type == "Sigmoid"
