"""export.py, models/export/ and models/backends.py: exported ONNX / TorchScript models compute what the PyTorch
model computes."""

import copy
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn as nn

import export
from models.backends import DetectMultiBackend
from models.experimental import attempt_load
from models.export import EXPORTERS, Exported, export_model, export_onnx, export_torchscript, required_opset
from models.yolo import Model
from utils.general import ROOT, UserError
from utils.script_check import check_onnx_file, load_torchscript

pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

FIXTURE = ROOT / "tests" / "fixtures" / "yolov5n-v7.0.pt"
VARIANT_YAMLS = sorted(p.name for p in (ROOT / "models").glob("yolov5s_*.yaml"))
ATOL = 1e-3
pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny inputs (conftest.py)


def onnx_outputs(file, im):
    session = ort.InferenceSession(str(file), providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(None, {"images": im.numpy()})[0])


def reference_outputs(model, im):
    with torch.no_grad():
        return model(im)[0]


def randomise_batchnorm(model, seed=0):
    """Non-trivial BatchNorm statistics, so that fusing them into the convolutions is exercised by the export."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.copy_(torch.randn(c, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(c, generator=g) * 0.5 + 0.75)
            m.weight.data.copy_(torch.rand(c, generator=g) * 0.5 + 0.75)
            m.bias.data.copy_(torch.randn(c, generator=g) * 0.1)
    return model


@pytest.fixture(scope="module")
def exported_fixture(tmp_path_factory):
    """The official-format fixture exported by ``export.run`` at 160x160 (TorchScript and static ONNX)."""
    folder = tmp_path_factory.mktemp("export")
    weights = folder / "yolov5n.pt"
    shutil.copy(FIXTURE, weights)
    files = export.run(weights=weights, imgsz=(160, 160), include=("torchscript", "onnx"))
    return weights, [Path(f) for f in files]


def test_run_writes_both_formats_next_to_weights(exported_fixture):
    weights, files = exported_fixture
    assert [f.name for f in files] == ["yolov5n.torchscript", "yolov5n.onnx"]
    assert all(f.parent == weights.parent and f.stat().st_size > 1e6 for f in files)


def test_exported_fixture_matches_pytorch_on_new_input(exported_fixture):
    weights, (ts_file, onnx_file) = exported_fixture
    model = attempt_load(weights, fuse=False)  # unfused: the exports must equal the original computation
    im = torch.rand(1, 3, 160, 160, generator=torch.Generator().manual_seed(1))
    expected = reference_outputs(model, im)
    assert expected.shape == (1, 3 * (20 * 20 + 10 * 10 + 5 * 5), 85)
    assert (onnx_outputs(onnx_file, im) - expected).abs().max() < ATOL
    with torch.no_grad():
        got = torch.jit.load(str(ts_file))(im)
    assert (got - expected).abs().max() < ATOL


def test_backends_read_metadata_and_agree(exported_fixture):
    weights, (ts_file, onnx_file) = exported_fixture
    pt = DetectMultiBackend(weights)
    im = torch.rand(2, 3, 160, 160, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = pt(im)
    for file in (ts_file, onnx_file):
        backend = DetectMultiBackend(file)
        assert (backend.pt, backend.jit, backend.onnx) == (False, file.suffix == ".torchscript", file.suffix == ".onnx")
        assert backend.stride == pt.stride == 32
        assert backend.names == pt.names and len(backend.names) == 80
        assert backend.imgsz == (160, 160)
        if backend.jit:  # the static ONNX graph is batch 1; TorchScript traces generalise over the batch
            assert (backend(im) - expected).abs().max() < ATOL
        assert (backend(im[:1]) - expected[:1]).abs().max() < ATOL


def test_static_onnx_rejects_other_sizes_clearly(exported_fixture):
    _, (_, onnx_file) = exported_fixture
    with pytest.raises(UserError, match="--imgsz 160 or export with --dynamic"):
        DetectMultiBackend(onnx_file)(torch.zeros(1, 3, 192, 160))


def test_dynamic_onnx_takes_other_batch_and_shape(tmp_path):
    model = randomise_batchnorm(Model("yolov5n.yaml", nc=3)).eval()
    reference = copy.deepcopy(model)
    im = torch.rand(1, 3, 64, 64)
    files, diffs = export_model(model, im, tmp_path / "dyn", include=("onnx",), dynamic=True)
    assert diffs[files[0]] < ATOL
    other = torch.rand(2, 3, 96, 128, generator=torch.Generator().manual_seed(3))
    got = onnx_outputs(files[0], other)
    assert got.shape == (2, 3 * (12 * 16 + 6 * 8 + 3 * 4), 8)
    assert (got - reference_outputs(reference, other)).abs().max() < ATOL
    backend = DetectMultiBackend(files[0])
    assert backend.imgsz is None and backend.names == {0: "0", 1: "1", 2: "2"}


def test_a_format_added_to_the_table_is_exported_in_table_order_and_checked(tmp_path, monkeypatch):
    calls = []

    def fake_exports(model, im, file, metadata, options):
        calls.append((metadata["imgsz"], metadata["precision"], options.dynamic))
        return [Exported(export_torchscript(model, im, file.with_name(f"{file.stem}_fake"), metadata), "fp32")]

    monkeypatch.setitem(EXPORTERS, "fake", fake_exports)
    model = randomise_batchnorm(Model("yolov5n.yaml", nc=2)).eval()
    files, diffs = export_model(model, torch.rand(1, 3, 64, 96), tmp_path / "m", include=("fake", "torchscript"))
    assert [f.name for f in files] == ["m.torchscript", "m_fake.torchscript"]
    assert calls == [([64, 96], "fp32", False)]
    assert set(diffs) == set(files) and all(d < ATOL for d in diffs.values())


@pytest.mark.parametrize("yaml_name", VARIANT_YAMLS)
def test_variant_exports_match_pytorch(tmp_path, yaml_name):
    """Every module-zoo yaml, built at n scale, exports to ONNX and TorchScript with matching outputs."""
    torch.manual_seed(0)
    model = randomise_batchnorm(Model(yaml_name.replace("yolov5s", "yolov5n"), nc=4)).eval()
    reference = copy.deepcopy(model)
    im = torch.rand(1, 3, 64, 96)
    files, _ = export_model(model, im, tmp_path / "variant", include=("onnx", "torchscript"), check=False)
    onnx_file, ts_file = sorted(files, key=lambda f: f.suffix)
    other = torch.rand(1, 3, 64, 96, generator=torch.Generator().manual_seed(4))
    expected = reference_outputs(reference, other)
    check_onnx_file(onnx_file)  # standard operators, embedded weights
    assert (onnx_outputs(onnx_file, other) - expected).abs().max() < ATOL
    with torch.no_grad():
        assert (load_torchscript(str(ts_file))(other) - expected).abs().max() < ATOL  # passes the op check


def test_opset_follows_the_modules_used():
    assert required_opset(Model("yolov5n.yaml")) == 11
    akconv_yamls = [y for y in VARIANT_YAMLS if "AKConv" in (ROOT / "models" / y).read_text()]
    if not akconv_yamls:
        pytest.skip("no AKConv yaml in models/")
    model = Model(akconv_yamls[0].replace("yolov5s", "yolov5n"))
    assert required_opset(model) == 16
    with pytest.raises(UserError, match="--opset 16"):
        export_onnx(model, torch.zeros(1, 3, 64, 64), Path("unused.onnx"), {}, opset=13)


@pytest.mark.parametrize("name, message", [
    ("junk.onnx", "is not a readable ONNX model"),
    ("junk.torchscript", "is not a readable TorchScript file"),
])
def test_corrupt_exported_weights_are_user_errors(tmp_path, name, message):
    weights = tmp_path / name
    weights.write_bytes(b"not a model")
    with pytest.raises(UserError, match=message):
        DetectMultiBackend(str(weights), device=torch.device("cpu"))


def test_bad_requests_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="not found"):
        export.run(weights=tmp_path / "missing.pt")
    weights = tmp_path / "w.pt"
    shutil.copy(FIXTURE, weights)
    with pytest.raises(UserError, match="CUDA"):
        export.run(weights=weights, half=True, device="cpu")
    with pytest.raises(UserError, match="unknown format"):
        export.run(weights=weights, imgsz=(64, 64), include=("mxnet",))
    assert export.main(["--weights", str(tmp_path / "missing.pt")]) == 1
