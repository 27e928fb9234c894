"""Deployment formats: OpenVINO (fp32, bf16, INT8), ONNX INT8, TensorRT, files exported elsewhere, --backend caching,
and that nothing opens a network connection (OpenVINO telemetry declined).

The random-weight v7.0 fixture at 64-160 px keeps these fast; INT8 calibrates on the bundled coco8 images.
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

import detect
import export
import val
from models.backends import DetectMultiBackend, onnx_session, read_metadata
from models.experimental import attempt_load
from models.export import backend_weights, file_hash
from models.export.openvino import openvino_precision
from utils.general import ROOT, UserError
from utils.optional import import_openvino, require

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

FIXTURE = ROOT / "tests" / "fixtures" / "yolov5n-v7.0.pt"
COCO8 = ROOT / "data" / "coco8.yaml"
IMGSZ = (128, 128)  # square, so val.py (square --imgsz) can run the same exported files
pytestmark = pytest.mark.usefixtures("one_torch_thread")
needs_openvino = pytest.mark.skipif(not __import__("importlib").util.find_spec("openvino"), reason="openvino missing")


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    w = tmp_path_factory.mktemp("formats") / "fixture.pt"
    w.write_bytes(FIXTURE.read_bytes())
    return w


@pytest.fixture(scope="module")
def reference(weights):
    """(input, PyTorch output) on a real image letterboxed to IMGSZ."""
    from utils.sources import LoadImages

    im = next(iter(LoadImages(str(ROOT / "data" / "images" / "bus.jpg"), img_size=list(IMGSZ), auto=False)))[1]
    x = torch.from_numpy(im)[None].float() / 255
    with torch.no_grad():
        return x, attempt_load(weights)(x)[0]


@pytest.fixture(scope="module")
def openvino_fp32(weights):
    pytest.importorskip("openvino")
    return Path(export.run(weights=weights, imgsz=IMGSZ, include=("openvino",))[0])


@pytest.fixture(scope="module")
def plain_onnx(weights):
    return Path(export.run(weights=weights, imgsz=IMGSZ, include=("onnx",))[0])


@pytest.fixture
def onnx_copy(plain_onnx, tmp_path):
    """A copy of plain_onnx in the test's folder, for exports that write beside their input."""
    src = tmp_path / "m.onnx"
    src.write_bytes(plain_onnx.read_bytes())
    return src


@needs_openvino
def test_openvino_folder_metadata_and_outputs(openvino_fp32, reference):
    assert openvino_fp32.name == "fixture_openvino_model"
    assert {p.name for p in openvino_fp32.iterdir()} == {"fixture.xml", "fixture.bin", "metadata.yaml"}
    backend = DetectMultiBackend(openvino_fp32)
    assert backend.openvino and backend.stride == 32 and backend.imgsz == IMGSZ and backend.nc == 80
    assert backend.names == attempt_load(FIXTURE).names
    x, expected = reference
    torch.testing.assert_close(backend(x), expected, atol=1e-3, rtol=0)  # fp32 execution even on bf16 CPUs


@needs_openvino
def test_openvino_half_follows_this_cpu_and_stays_close(weights, reference, tmp_path):
    # bf16 where the CPU computes in bf16; on an AVX2 or plain AVX-512 CPU plain fp32 (the choice per CPU kind is
    # tested with stated capabilities in tests/test_cpu_kinds.py; here the real CPU and OpenVINO decide)
    bf16 = openvino_precision(half=True) == "bf16"
    w = tmp_path / "half.pt"
    w.write_bytes(weights.read_bytes())
    folder = Path(export.run(weights=w, imgsz=IMGSZ, include=("openvino",), half=True)[0])
    meta = read_metadata(__import__("yaml").safe_load((folder / "metadata.yaml").read_text()))
    assert meta["precision"] == ("bf16" if bf16 else "fp32")
    x, expected = reference
    got = DetectMultiBackend(folder)(x)
    if not bf16:
        torch.testing.assert_close(got, expected, atol=1e-3, rtol=0)
        return
    # boxes (pixels) within a few bf16 steps; objectness and class scores (0-1) to about 1%
    assert (got[..., :4] - expected[..., :4]).abs().max() < 4.0
    assert (got[..., 4:] - expected[..., 4:]).abs().max() < 0.02
    assert (got[..., :4] - expected[..., :4]).abs().max() > 0  # really a reduced-precision path


@pytest.mark.slow
@needs_openvino
def test_int8_openvino_and_onnx(weights, reference):
    pytest.importorskip("nncf")
    files = [Path(f) for f in export.run(weights=weights, imgsz=IMGSZ, include=("onnx", "openvino"), int8=True,
                                         data=COCO8, calib=4)]
    assert [f.name for f in files] == ["fixture.onnx", "fixture_int8.onnx", "fixture_int8_openvino_model"]
    x, expected = reference
    for f in files[1:]:
        backend = DetectMultiBackend(f)
        assert backend.names == attempt_load(FIXTURE).names
        got = backend(x)
        # INT8 moves boxes by a few pixels at most (the decoding stays float) and keeps the ranking of scores
        box_err = (got[..., :4] - expected[..., :4]).abs()
        assert box_err.median() < 1.0 and box_err.max() < 16, f.name
        top = expected[0, :, 4].topk(20).indices
        assert len(set(top.tolist()) & set(got[0, :, 4].topk(40).indices.tolist())) >= 10, f.name
    graph = onnx.load(str(files[1]))
    precision = {p.key: p.value for p in graph.metadata_props}["precision"]
    assert json.loads(precision) == "int8"
    # SiLU is quantized between the convolutions (its Sigmoid and Mul read int8 through DequantizeLinear), while
    # the Detect layer's decoding (model.24, the fixture's last layer) reads floats
    producer = {o: n.op_type for n in graph.graph.node for o in n.output}
    reads_int8 = {n.name: all(producer.get(i) in ("DequantizeLinear", None) for i in n.input if i)
                  for n in graph.graph.node if n.op_type in ("Sigmoid", "Mul", "Concat")}
    body = [ok for name, ok in reads_int8.items() if not name.startswith("/model.24/")]
    head = [ok for name, ok in reads_int8.items() if name.startswith("/model.24/") and "Sigmoid" in name]
    assert len(body) > 50 and all(body) and head and not any(head)


def test_int8_needs_data_and_a_quantizable_format(weights):
    with pytest.raises(UserError, match="--data"):
        export.run(weights=weights, imgsz=IMGSZ, include=("onnx",), int8=True)
    with pytest.raises(UserError, match="onnx, openvino, tflite"):
        export.run(weights=weights, imgsz=IMGSZ, include=("torchscript",), int8=True, data=COCO8)


@needs_openvino
def test_val_through_openvino_equals_onnx(openvino_fp32, plain_onnx, tmp_path):
    kw = dict(data=COCO8, imgsz=IMGSZ[0], conf_thres=0.0001, device="cpu", workers=0, plots=False, project=tmp_path)
    (ov_results, _, _), (onnx_results, _, _) = val.run(weights=openvino_fp32, **kw), val.run(weights=plain_onnx, **kw)
    np.testing.assert_allclose(ov_results[:4], onnx_results[:4], atol=1e-3)


def _with_metadata(src, dst, props):
    model = onnx.load(str(src))
    del model.metadata_props[:]
    for k, v in props.items():
        model.metadata_props.add(key=k, value=v)
    onnx.save(model, str(dst))
    return dst


def test_official_onnx_metadata_is_read_as_literals(plain_onnx, tmp_path):
    names = {i: f"thing{i}" for i in range(80)}
    f = _with_metadata(plain_onnx, tmp_path / "official.onnx", {"stride": "32", "names": str(names)})
    backend = DetectMultiBackend(f)
    assert backend.names == names and backend.stride == 32 and backend.imgsz == IMGSZ  # size from the graph


def test_onnx_metadata_never_runs_code(plain_onnx, tmp_path):
    marker = tmp_path / "pwned"
    payload = f"__import__('pathlib').Path({str(marker)!r}).touch()"
    f = _with_metadata(plain_onnx, tmp_path / "evil.onnx", {"stride": "32", "names": payload})
    backend = DetectMultiBackend(f)
    assert not marker.exists()
    assert backend.names == {i: f"class{i}" for i in range(80)}


def test_onnx_without_metadata_takes_names_from_data_or_numbers(plain_onnx, tmp_path):
    f = _with_metadata(plain_onnx, tmp_path / "bare.onnx", {})
    bare = DetectMultiBackend(f)
    assert bare.names == {i: f"class{i}" for i in range(80)} and bare.imgsz == IMGSZ and bare.stride == 32
    assert DetectMultiBackend(f, data=str(ROOT / "data" / "coco.yaml")).names[0] == "person"


@needs_openvino
def test_openvino_without_metadata(openvino_fp32, tmp_path):
    bare = tmp_path / "bare_openvino_model"
    bare.mkdir()
    for p in openvino_fp32.glob("fixture.*"):
        (bare / p.name).write_bytes(p.read_bytes())
    backend = DetectMultiBackend(bare)
    assert backend.imgsz == IMGSZ and backend.names[79] == "class79"
    with pytest.raises(UserError, match="no OpenVINO model"):
        DetectMultiBackend(tmp_path)


def test_onnx_session_is_tuned(plain_onnx):
    options = onnx_session(plain_onnx, threads=3).get_session_options()
    assert options.intra_op_num_threads == 3 and options.inter_op_num_threads == 1
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert onnx_session(plain_onnx).get_session_options().intra_op_num_threads == torch.get_num_threads()


def test_backend_flag_converts_once_and_matches_pytorch(weights, reference, tmp_path):
    cache = tmp_path / "runs" / "backend-cache"  # the cache of runs with --project tmp_path/runs
    converted = backend_weights(weights, "onnx", IMGSZ, project=tmp_path / "runs")
    assert converted.parent.parent == cache and converted.suffix == ".onnx"
    assert converted.parent.name == f"fixture-{file_hash(weights)[:16]}-128x128"
    mtime = converted.stat().st_mtime_ns
    assert backend_weights(weights, "onnx", IMGSZ, project=tmp_path / "runs") == converted
    assert converted.stat().st_mtime_ns == mtime  # reused, not converted again
    x, expected = reference
    torch.testing.assert_close(DetectMultiBackend(converted)(x), expected, atol=1e-3, rtol=0)
    out = detect.run(weights=weights, backend="onnx", source=ROOT / "data" / "images" / "bus.jpg", imgsz=IMGSZ,
                     device="cpu", nosave=True, project=tmp_path / "runs")
    assert out.is_dir() and len(list(cache.iterdir())) == 1 and converted.stat().st_mtime_ns == mtime


def test_backend_flag_rejects_unknown_backends_and_ensembles(weights):
    with pytest.raises(UserError, match="choose pytorch, onnx or openvino"):
        backend_weights(weights, "tflite", 128)
    with pytest.raises(UserError, match="ensemble"):
        backend_weights([weights, weights], "onnx", 128)


def test_missing_optional_packages_are_named(monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)
    with pytest.raises(UserError, match="needs the openvino package"):
        import_openvino()
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(UserError, match="needs the tensorrt package"):
        require("tensorrt", "TensorRT export")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the errors raised without CUDA")
def test_engine_without_cuda_is_a_clear_error(weights, tmp_path):
    with pytest.raises(UserError, match="CUDA"):
        export.run(weights=weights, imgsz=IMGSZ, include=("engine",), device="cpu")
    fake = tmp_path / "fake.engine"
    header = json.dumps({"format": "yolov5-plugins"}).encode()  # this project's mark: past the trust check
    fake.write_bytes(len(header).to_bytes(4, byteorder="little") + header + b"\0" * 8)
    with pytest.raises(UserError, match="tensorrt package|CUDA devices only"):
        DetectMultiBackend(fake)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="TensorRT engines need CUDA (none here)")
def test_engine_export_and_outputs(weights, reference):
    pytest.importorskip("tensorrt")
    engine = Path(export.run(weights=weights, imgsz=IMGSZ, include=("engine",), device="0")[0])
    backend = DetectMultiBackend(engine, device=torch.device("cuda:0"))
    assert backend.engine and backend.imgsz == IMGSZ and backend.names == attempt_load(FIXTURE).names
    x, expected = reference
    torch.testing.assert_close(backend(x.cuda()).cpu(), expected, atol=1e-2, rtol=1e-3)


NO_NETWORK_SCRIPT = """
import socket, sys
log = sys.argv[1]

def refuse(*args, **kwargs):  # written to a file: OpenVINO telemetry sends from a forked child process
    with open(log, "a") as f:
        f.write(repr(args[:2])[:100] + "\\n")
    raise OSError("no network in this test")

socket.socket.connect = lambda self, *a, **k: refuse(*a)
socket.socket.connect_ex = lambda self, *a, **k: refuse(*a)
socket.create_connection = refuse
socket.getaddrinfo = refuse
sys.path.insert(0, sys.argv[2])
import export, detect
files = export.run(weights=sys.argv[3], imgsz=(64, 64), include=("openvino",), int8=True,
                   data=sys.argv[4], calib=2)
for f in files:
    detect.run(weights=f, source=sys.argv[5], imgsz=(64, 64), device="cpu", project=sys.argv[6])
import time
time.sleep(1)  # give any background sender time to try
print("done")
"""


@pytest.mark.slow
@needs_openvino
def test_no_socket_is_opened_during_export_and_inference(weights, tmp_path):
    """In a fresh process (NNCF silences itself under pytest) with a home folder that has no consent file, which
    openvino-telemetry alone would take as consent: export (OpenVINO conversion, NNCF INT8) and detect connect
    nowhere. (Without ``openvino_telemetry_off`` this export makes 18 connection attempts to google-analytics.)"""
    pytest.importorskip("nncf")
    script, log = tmp_path / "no_network.py", tmp_path / "connections.log"
    script.write_text(textwrap.dedent(NO_NETWORK_SCRIPT))
    w = tmp_path / "net.pt"
    w.write_bytes(weights.read_bytes())
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "TF_BUILD", "JENKINS_URL", "NNCF_CI")}
    env["HOME"] = str(tmp_path / "home")
    (tmp_path / "home").mkdir()
    out = subprocess.run([sys.executable, str(script), str(log), str(ROOT), str(w), str(COCO8),
                          str(ROOT / "data" / "images" / "bus.jpg"), str(tmp_path / "runs")],
                         env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0 and "done" in out.stdout, out.stderr[-2000:]
    assert not log.exists(), log.read_text()


def test_latency_timing_runs_each_format_in_blocks(monkeypatch):
    """benchmarks/formats.py: each format runs warmup + ceil(runs / blocks) consecutive calls per block, the formats
    taking turns block by block with the order rotating; only the timed calls count."""
    from benchmarks import formats

    calls = []
    monkeypatch.setattr(formats, "runner", lambda name, path: lambda x: calls.append(name))
    ms = formats.latencies({"a": "a.onnx", "b": "b.xml", "c": "c.pt"}, (32, 32), runs=4, warmup=1, blocks=2)
    assert calls == ["a"] * 3 + ["b"] * 3 + ["c"] * 3 + ["b"] * 3 + ["c"] * 3 + ["a"] * 3
    assert set(ms) == {"a", "b", "c"} and all(v >= 0 for v in ms.values())


def test_onnx_int8_calibrates_on_32_images_within_the_pixel_bound(onnx_copy, monkeypatch):
    """32 images used to end in 'No data is collected' (ORT 1.32 drops each full chunk of 32); more images than the
    pixel bound allows are cut to the bound, and the quantized file runs."""
    from models.export import onnx as onnx_export

    size = IMGSZ[0]
    rng = np.random.default_rng(0)
    calib = [rng.random((1, 3, size, size), dtype=np.float32) for _ in range(40)]
    monkeypatch.setattr(onnx_export, "ONNX_CALIB_PIXELS", 32 * size * size)
    seen = []
    monkeypatch.setattr(onnx_export.LOGGER, "info", seen.append)
    out = onnx_export.export_onnx_int8(onnx_copy, calib)
    assert any("calibrating on 32 of the 40 images" in line for line in seen)
    y = onnx_session(out).run(None, {onnx_session(out).get_inputs()[0].name: calib[0]})[0]
    assert np.isfinite(y).all() and y.shape[-1] == 85


def test_onnx_int8_has_7_bit_weights_and_mean_per_image_activation_ranges(onnx_copy):
    """Weights in [-64, 64] (2 x 255 x 64 fits int16: CPUs without VNNI, whose vpmaddubsw sums pairs into int16,
    cannot saturate); activation ranges are the mean of each calibration image's min and max: an all-black and an
    all-white image give the input the range [0, 0.5] (scale 0.5 / 255), not the extremes [0, 1]."""
    from onnx import numpy_helper

    from models.export import onnx as onnx_export

    size = IMGSZ[0]
    calib = [np.full((1, 3, size, size), v, dtype=np.float32) for v in (0.0, 1.0)]
    graph = onnx.load(str(onnx_export.export_onnx_int8(onnx_copy, calib))).graph
    inits = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    weights = [inits[n.input[0]] for n in graph.node
               if n.op_type == "DequantizeLinear" and n.input[0] in inits and inits[n.input[0]].dtype == np.int8]
    assert len(weights) >= 60  # every convolution of yolov5n
    assert min(w.min() for w in weights) >= -64 and max(w.max() for w in weights) <= 64
    assert max(np.abs(w).max() for w in weights) == 64  # the 7-bit range is used, not a narrower one
    quantize_input = next(n for n in graph.node if n.op_type == "QuantizeLinear" and n.input[0] == graph.input[0].name)
    assert float(inits[quantize_input.input[1]]) == pytest.approx(0.5 / 255, rel=1e-3)
