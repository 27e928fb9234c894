"""Edge formats: NCNN (PNNX), TFLite (litert-torch / LiteRT), MNN and CoreML exports against PyTorch, their runtimes
behind DetectMultiBackend, and the one-line refusals (a missing package named, a module a runtime cannot run, a
hostile model folder). Each test skips, naming the package, where its optional package is not installed."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

import export
from models.backends import DetectMultiBackend, weights_format
from models.common import ScConv, SpaceToDepth, SPDConv
from models.edge_runtimes import NCNN_PARAM, NcnnRuntime, ncnn_layers, tflite_metadata
from models.experimental import attempt_load
from models.export import export_model, prepare_model
from models.export.deploy import unsupported_layer_error
from models.export.ncnn import export_ncnn
from models.export.tflite import LITERT_PYTHON_ENV, litert_python, with_metadata
from models.yolo import Model
from utils.general import ROOT, UserError

FIXTURE = ROOT / "tests" / "fixtures" / "yolov5n-v7.0.pt"
IMGSZ = 64
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def needs(*modules: str):
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    return pytest.mark.skipif(bool(missing), reason=f"package {', '.join(missing)} not installed "
                                                    f"(requirements-edge.txt)")


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    w = tmp_path_factory.mktemp("edge") / "fixture.pt"
    w.write_bytes(FIXTURE.read_bytes())
    return w


@pytest.fixture(scope="module")
def reference(weights):
    torch.manual_seed(0)
    x = torch.rand(2, 3, IMGSZ, IMGSZ)  # batch 2: the NCNN runtime runs a batch image by image
    with torch.no_grad():
        return x, attempt_load(weights)(x)[0]


def exported_output(path, x):
    backend = DetectMultiBackend(path)
    with torch.no_grad():
        return backend, backend(x)


@needs("pnnx", "ncnn")
@pytest.mark.parametrize("half", [False, True], ids=["fp32", "fp16-storage"])
def test_ncnn_export_matches_pytorch(weights, reference, half):
    folder = Path(export.run(weights=weights, imgsz=IMGSZ, include=("ncnn",), half=half)[0])
    assert folder.name == "fixture_ncnn_model" and weights_format(folder) == "ncnn"
    assert {p.name for p in folder.iterdir()} == {"model.ncnn.param", "model.ncnn.bin", "metadata.yaml"}
    x, expected = reference
    backend, got = exported_output(folder, x)
    assert got.shape == expected.shape
    # fp32: float rounding only (pixels); fp16 weight storage: within a pixel on outputs up to ~64 px
    assert (got - expected).abs().max() < (0.5 if half else 1e-3)
    assert backend.imgsz == (IMGSZ, IMGSZ) and backend.stride == 32 and len(backend.names) == 80
    # 1.87M weights: 4 bytes each in fp32, 2 in fp16 storage
    size = (folder / "model.ncnn.bin").stat().st_size
    assert 3.6e6 < size < 4.2e6 if half else 7.3e6 < size < 7.8e6


@needs("pnnx", "ncnn")
def test_ncnn_folder_runs_in_detect_and_hub(weights, tmp_path):
    import detect
    import hubconf

    folder = Path(export.run(weights=weights, imgsz=IMGSZ, include=("ncnn",))[0])
    image = ROOT / "data" / "images" / "bus.jpg"
    save_dir = detect.run(weights=folder, source=image, imgsz=IMGSZ, project=tmp_path, save_txt=True, conf_thres=0.0)
    assert (save_dir / "bus.jpg").is_file() and (save_dir / "labels" / "bus.txt").is_file()
    model = hubconf.custom(path=str(folder), _verbose=False)
    model.conf = 0.0
    results = model(str(image), size=IMGSZ)
    assert len(results.xyxy[0]) > 0 and results.xyxy[0].shape[1] == 6


@needs("ncnn")
def test_ncnn_folder_with_custom_layer_is_refused(tmp_path):
    folder = tmp_path / "bad_ncnn_model"
    folder.mkdir()
    (folder / NCNN_PARAM).write_text("7767517\n2 2\nInput in0 0 1 in0\nMyPluginLayer evil 1 1 in0 out0\n")
    (folder / "model.ncnn.bin").write_bytes(b"\0" * 16)
    with pytest.raises(UserError, match="MyPluginLayer.*custom layers are not run"):
        DetectMultiBackend(folder)
    (folder / NCNN_PARAM).write_text("not a layer list\n")
    with pytest.raises(UserError, match="not an NCNN text layer list"):
        DetectMultiBackend(folder)


def seeded_variant(cfg):
    """A variant at scale n with seeded weights and non-trivial BatchNorm statistics (fused weights differ)."""
    torch.manual_seed(0)
    model = Model(cfg, nc=3)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return model


@needs("pnnx", "ncnn")
def test_ncnn_runs_spd_and_scconv_blocks_on_odd_sizes(tmp_path):
    """SPD-Conv (stepped slices) and ScConv (torch.gt, unbind) were refused by NCNN; their export forms convert to
    NCNN layers (PixelUnshuffle as Reorg, the gate as Clip + ceil) and give PyTorch's numbers, on an odd size that
    SPDConv zero-pads."""
    torch.manual_seed(0)
    model = nn.Sequential(SPDConv(3, 8, 3), SpaceToDepth(), ScConv(32))
    with torch.no_grad():
        model[2].sru.gn.weight.uniform_(0.2, 3.0)  # r on both sides of the gate's threshold
    model = prepare_model(model)
    x = torch.randn(1, 3, 13, 11)
    with torch.no_grad():
        expected = model(x)
    folder = export_ncnn(model, x, tmp_path / "blocks.pt", {})
    layers = {t for t, _ in ncnn_layers((folder / NCNN_PARAM).read_text())}
    assert {"Reorg", "Padding", "GroupNorm", "UnaryOp", "Clip"} <= layers and "Crop" not in layers
    got = torch.from_numpy(NcnnRuntime(folder)(x.numpy()))
    assert got.shape == expected.shape == (1, 32, 4, 3)
    assert (got - expected).abs().max() < 1e-4 * expected.abs().max()


@needs("pnnx", "ncnn")
@pytest.mark.slow
@pytest.mark.parametrize("cfg", ["yolov5n_SPDConv.yaml", "yolov5n_ScConv.yaml"])
def test_ncnn_export_of_spd_and_scconv_variants_matches_pytorch(cfg, tmp_path):
    x = torch.rand(1, 3, IMGSZ, IMGSZ)
    model = seeded_variant(cfg)
    [folder], _ = export_model(model, x, tmp_path / "variant.pt", include=("ncnn",), check=False)  # fuses in place
    with torch.no_grad():
        expected = model(x)
    _, got = exported_output(folder, x)
    assert got.shape == expected.shape and (got - expected).abs().max() < 1e-3  # float rounding, on pixel boxes


@needs("MNN")
def test_mnn_export_matches_pytorch(weights, reference):
    folder = Path(export.run(weights=weights, imgsz=IMGSZ, include=("mnn",))[0])
    assert weights_format(folder) == "mnn"
    x, expected = reference
    _, got = exported_output(folder, x)
    assert got.shape == expected.shape and (got - expected).abs().max() < 1e-3
    assert "aliyun" not in sys.modules and "MNN.tools.utils.log" not in sys.modules  # the vendor logger never loads


@needs("coremltools")
@pytest.mark.slow
def test_coreml_export_spec(weights):
    from models.export.coreml import coreml_spec_summary

    package = Path(export.run(weights=weights, imgsz=IMGSZ, include=("coreml",))[0])
    spec = coreml_spec_summary(package)
    assert list(spec["inputs"].values()) == [[1, 3, IMGSZ, IMGSZ]]
    assert spec["outputs"] == {"output0": [1, 3 * (8 * 8 + 4 * 4 + 2 * 2), 85]}
    assert '"stride": 32' not in spec["metadata"] and spec["metadata"]["stride"] == "32"
    with pytest.raises(UserError, match="only on macOS"):
        DetectMultiBackend(package)


def tflite_converter_installed() -> bool:
    try:
        litert_python()
    except UserError:
        return False
    return importlib.util.find_spec("ai_edge_litert") is not None


@pytest.mark.slow
@pytest.mark.skipif(not tflite_converter_installed(), reason="package litert-torch (requirements-tflite.txt) or "
                                                             "ai-edge-litert not installed")
def test_tflite_export_matches_pytorch(weights, reference):
    file = Path(export.run(weights=weights, imgsz=IMGSZ, include=("tflite",))[0])
    assert file.name == "fixture_float32.tflite" and weights_format(file) == "tflite"
    x, expected = reference
    backend, got = exported_output(file, x)
    assert got.shape == expected.shape and (got - expected).abs().max() < 1e-3
    assert backend.imgsz == (IMGSZ, IMGSZ) and len(backend.names) == 80


def test_tflite_metadata_round_trip():
    body = b"TFL3" + bytes(range(256)) * 4
    data = with_metadata(body, {"stride": 32, "names": {0: "a"}, "imgsz": [64, 64]})
    assert data.startswith(body)
    assert tflite_metadata(data) == {"stride": 32, "names": {"0": "a"}, "imgsz": [64, 64]}
    assert tflite_metadata(body) == {} and tflite_metadata(body + b"PK\x03\x04garbage") == {}


def test_tflite_without_converter_says_what_is_missing(weights, monkeypatch):
    monkeypatch.delenv(LITERT_PYTHON_ENV, raising=False)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "litert_torch" else object())
    monkeypatch.setattr("models.export.tflite.LITERT_VENV", Path("/nonexistent-venv"))
    with pytest.raises(UserError, match="needs the litert-torch converter.*requirements-tflite.txt") as e:
        export.run(weights=weights, imgsz=IMGSZ, include=("tflite",))
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("fmt, missing", [("saved_model", "tensorflow"), ("pb", "tensorflow"),
                                          ("tfjs", "tensorflowjs"), ("edgetpu", "edgetpu_compiler"),
                                          ("paddle", "paddlepaddle")])
def test_unavailable_formats_name_what_they_lack(weights, fmt, missing):
    with pytest.raises(UserError, match=f"--include {fmt} is not available here: it needs .*{missing}"):
        export.run(weights=weights, imgsz=IMGSZ, include=(fmt,))


def test_refusal_names_module_operator_and_runtime():
    model = Model("yolov5n_AKConv.yaml", nc=3)
    message = str(unsupported_layer_error(model, "tflite", "GridSample"))
    assert "AKConv" in message and "GridSample" in message and "tflite" in message and "\n" not in message
    assert "a layer needs" in str(unsupported_layer_error(Model("yolov5n.yaml", nc=3), "ncnn", "Foo"))


def test_half_and_int8_rules_name_the_edge_formats(weights):
    with pytest.raises(UserError, match="--int8 applies to --include onnx, openvino, tflite"):
        export.run(weights=weights, imgsz=IMGSZ, include=("ncnn",), int8=True)
    with pytest.raises(UserError, match="on CPU --half applies to --include coreml, mnn, ncnn, openvino, tflite"):
        export.run(weights=weights, imgsz=IMGSZ, include=("onnx",), half=True)


def test_detect_x_times_x_equals_pow():
    """Detect decodes wh as (2s) * (2s) instead of (2s) ** 2 (TFLite has no 5-D pow): the same numbers."""
    s = torch.rand(1000) * 2
    assert torch.equal(s * s, s**2) and np.isfinite(s.numpy()).all()
