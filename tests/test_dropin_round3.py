"""Drop-in and untrusted-input leftovers, round 3: feature maps bounded at the chosen image size, typed
out-of-range training flags, runtime errors of exported models in one line, release weights fetched by the
scripts, and the dataset recorded in a checkpoint naming the classes of detect.py and export.py."""

import http.server
import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
import yaml

import detect
import export
import train
import val
from models.autoshape import AutoShape
from models.backends import DetectMultiBackend, export_metadata
from models.experimental import model_from_checkpoint
from models.export import export_model, export_onnx, prepare_model
from models.export.benchmark import benchmark
from models.yolo import Model, SegmentationModel, check_activation_size
from utils import downloads
from utils.boxes import non_max_suppression
from utils.checkpoints import load_checkpoint, make_checkpoint, save_checkpoint
from utils.general import ROOT, UserError, yaml_load
from utils.script_check import check_onnx_file

FIXTURES = Path(__file__).parent / "fixtures"
OFFICIAL = FIXTURES / "yolov5n-v7.0.pt"

# a few hundred bytes and 30k parameters whose feature maps at 640 px would take 13 GB (8192 channels at stride 1)
WIDE_YAML = {"nc": 1, "anchors": 1, "backbone": [[-1, 1, "Conv", [8192, 1, 1]], [-1, 1, "Conv", [8, 3, 2]]],
             "head": [[[-1], 1, "Detect", ["nc", "anchors"]]]}
# 200 parameters, then an Upsample by 256 (a 640 px image becomes 163840 px wide)
UPSAMPLE_YAML = {"nc": 1, "anchors": 1,
                 "backbone": [[-1, 1, "Conv", [8, 3, 2]], [-1, 1, "nn.Upsample", [None, 256, "nearest"]]],
                 "head": [[-1, 1, "Conv", [8, 3, 2]], [[-1], 1, "Detect", ["nc", "anchors"]]]}


# --- a. feature maps bounded before anything runs ------------------------------------------------------------------

@pytest.mark.parametrize("cfg, layer", [(WIDE_YAML, "layer 0 Conv"), (UPSAMPLE_YAML, "layer 1 nn.Upsample")])
def test_model_yaml_with_gigabytes_of_feature_maps_is_refused_before_running(tmp_path, cfg, layer):
    path = tmp_path / "wide.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert path.stat().st_size < 500
    start = time.monotonic()
    with pytest.raises(UserError, match=rf"{layer} brings the feature maps of one 640 px image to [\d,]+ values, "
                                        r"over the 2,000,000,000 limit .*YOLOV5_MAX_ACTIVATIONS") as e:
        Model(path)
    assert "\n" not in str(e.value) and time.monotonic() - start < 30


def test_feature_map_limit_reaches_checkpoints_detect_val_and_hub(monkeypatch):
    ckpt = make_checkpoint(Model("yolov5n.yaml"), names={i: str(i) for i in range(80)})
    with pytest.raises(UserError, match="layer 0 Conv brings the feature maps"):
        model_from_checkpoint(dict(ckpt, yaml=WIDE_YAML))
    model = Model("yolov5n.yaml")
    assert model.feature_values_per_pixel == pytest.approx(25.23, abs=0.01)  # 10.3M values for one 640 px image
    check_activation_size(model, 640)
    with pytest.raises(UserError, match=r"--imgsz 9024 9024: .* over the 2,000,000,000 limit; use a smaller"):
        check_activation_size(model, 9024)
    backend = DetectMultiBackend(OFFICIAL)  # detect.py and val.py load through it
    hub = AutoShape(backend, verbose=False)
    monkeypatch.setenv("YOLOV5_MAX_ACTIVATIONS", "5000000")  # yolov5n at 640 px needs 10.3M
    with pytest.raises(UserError, match=r"layer \d+ \S+ brings the feature maps .* over the 5,000,000 limit"):
        Model("yolov5n.yaml")
    with pytest.raises(UserError, match=r"--imgsz 640 640: this model's feature maps would hold 10,33"):
        check_activation_size(model, (640, 640))
    check_activation_size(model, 320)  # a quarter of that passes
    with pytest.raises(UserError, match=r"--imgsz 640 640: .* over the 5,000,000 limit"):
        backend.warmup(imgsz=(1, 3, 640, 640))  # detect.py and val.py: refused before the first batch
    with pytest.raises(UserError, match=r"--imgsz 640 640: .* over the 5,000,000 limit"):
        hub(np.zeros((640, 640, 3), dtype=np.uint8), size=640)
    assert len(hub(np.zeros((64, 64, 3), dtype=np.uint8), size=64).pred) == 1
    monkeypatch.setenv("YOLOV5_MAX_ACTIVATIONS", "a lot")
    with pytest.raises(UserError, match="YOLOV5_MAX_ACTIVATIONS must be a positive whole number"):
        check_activation_size(model, 64)


# --- b. out-of-range training flags ---------------------------------------------------------------------------------

@pytest.mark.parametrize("flags, message", [
    (["--seed", str(2**40)], r"--seed 1099511627776: out of range \(0 to 2,147,483,647\)"),
    (["--seed", "-1"], r"--seed -1: out of range"),
    (["--epochs", str(2**40)], r"--epochs 1099511627776: out of range \(1 to 1,000,000\)"),
    (["--imgsz", "60000"], r"--imgsz 60000: out of range \(1 to 8,192\)"),
    (["--batch-size", str(2**30)], r"--batch-size 1073741824: out of range"),
    (["--label-smoothing", "2"], r"--label-smoothing 2.0: out of range \(0.0 to 1.0\)"),
])
def test_out_of_range_training_flags_are_one_line_errors(tmp_path, flags, message):
    opt = train.parse_opt([*flags, "--project", str(tmp_path)])
    with pytest.raises(UserError, match=message) as e:
        train.main(opt)
    assert "\n" not in str(e.value)
    assert list(tmp_path.iterdir()) == []  # refused before the run folder is made


# --- c. runtime errors of exported models ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def exported_tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny")
    shutil.copy(OFFICIAL, folder / "w.pt")
    include = ["torchscript", "onnx"] + (["openvino"] if __import__("importlib").util.find_spec("openvino") else [])
    files = export.run(weights=folder / "w.pt", imgsz=(64, 64), include=include)
    return {Path(f).suffix or "openvino": Path(f) for f in files}


@pytest.mark.slow
@pytest.mark.parametrize("key, runtime", [(".torchscript", "TorchScript"), (".onnx", "ONNX Runtime"),
                                          ("openvino", "OpenVINO")])
def test_runtime_errors_of_exported_models_name_the_file_and_runtime(exported_tiny, key, runtime):
    if key not in exported_tiny:
        pytest.skip("openvino is not installed")
    backend = DetectMultiBackend(exported_tiny[key])
    assert backend(torch.zeros(1, 3, 64, 64)).shape == (1, 252, 85)
    with pytest.raises(UserError, match=rf"^{runtime} could not run \S*{exported_tiny[key].name}\S* on a "
                                        r"\(1, 4, 64, 64\) input: \S") as e:
        backend(torch.zeros(1, 4, 64, 64))  # four channels: the right size, the wrong input
    assert "\n" not in str(e.value)


# --- g. release weights fetched by the scripts ----------------------------------------------------------------------

class _Release(http.server.BaseHTTPRequestHandler):
    files: dict = {}

    def do_GET(self):
        body = self.files.get(self.path.rsplit("/", 1)[-1])
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def release(monkeypatch):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Release)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setattr(downloads, "RELEASE_URL", f"http://127.0.0.1:{server.server_address[1]}/v7.0")
    monkeypatch.delenv("YOLOV5_OFFLINE", raising=False)
    _Release.files = {"yolov5n.pt": OFFICIAL.read_bytes()}
    yield _Release
    server.shutdown()
    server.server_close()


@pytest.mark.slow
def test_scripts_fetch_a_missing_release_name_before_checking_the_path(release, tmp_path):
    target = tmp_path / "yolov5n.pt"
    backend = DetectMultiBackend(str(target))  # val.py, detect.py and hub load through it
    assert target.read_bytes() == OFFICIAL.read_bytes() and backend.nc == 80
    target.unlink()
    files = export.run(weights=str(target), imgsz=(64, 64), include=["torchscript"])
    assert target.is_file() and Path(files[0]).is_file()
    target.unlink()
    save_dir = detect.run(weights=[str(target)], source=ROOT / "data/images", imgsz=(64, 64), nosave=True,
                          project=tmp_path / "runs", name="d")
    assert target.is_file() and save_dir.is_dir()
    target.unlink()
    val.run(weights=str(target), data=ROOT / "data/coco8.yaml", imgsz=64, project=tmp_path / "runs", name="v",
            plots=False)
    assert target.is_file()
    release.files = {}
    with pytest.raises(UserError, match=r"--weights \S*best.pt: file not found"):
        DetectMultiBackend(str(tmp_path / "best.pt"))  # not a release name: never fetched


# --- h. the dataset recorded in the checkpoint names the classes ----------------------------------------------------

@pytest.fixture(scope="module")
def placeholder_checkpoint(tmp_path_factory):
    """A checkpoint with placeholder class names ('0', '1', ...) whose options record coco8.yaml."""
    folder = tmp_path_factory.mktemp("recorded")
    ckpt = load_checkpoint(OFFICIAL)
    model = model_from_checkpoint(ckpt)
    path = folder / "w.pt"
    save_checkpoint(make_checkpoint(model, names={i: str(i) for i in range(80)},
                                    opt={"data": str(ROOT / "data/coco8.yaml")}), path)
    return path


@pytest.mark.slow
def test_detect_and_export_take_the_recorded_dataset_without_data(placeholder_checkpoint, tmp_path):
    coco = yaml_load(ROOT / "data/coco8.yaml")["names"]
    files = export.run(weights=placeholder_checkpoint, imgsz=(64, 64), include=["torchscript"])
    extra = {"config.txt": ""}
    torch.jit.load(files[0], _extra_files=extra)
    assert json.loads(extra["config.txt"])["names"]["0"] == coco[0] == "person"
    save_dir = detect.run(weights=placeholder_checkpoint, source=ROOT / "data/images/bus.jpg", imgsz=(64, 64),
                          conf_thres=0.0, max_det=3, save_crop=True, nosave=True, project=tmp_path, name="d")
    crops = {p.name for p in (save_dir / "crops").iterdir()}
    assert crops and crops <= set(coco.values())  # folders named by coco8's classes, not '0', '17', ...


# --- d. NMS inside the exported graph ------------------------------------------------------------------------------

class _PixelHead(nn.Module):
    """Decoded predictions (B, H*W, 5 + nc) straight from the pixels through a 1x1 convolution: every cell its own
    box and confidences, continuous in the input, so no two confidences tie (NMS keeps whichever of equal ones
    comes first, in each runtime its own way) while many boxes overlap."""

    def __init__(self, nc=3):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 5 + nc, 1)
        self.names, self.stride = {i: f"c{i}" for i in range(nc)}, torch.tensor([8.0])

    def forward(self, im):
        y = self.conv(im * 4 - 2).sigmoid().flatten(2).transpose(1, 2)
        h, w = im.shape[2:]
        scale = torch.tensor([w, h, 48.0, 48.0], dtype=y.dtype)
        return torch.cat((y[..., :4] * scale, y[..., 4:]), 2)


def _rows(det):
    det = det.double()
    for col in (1, 0, 4):  # an order that does not depend on how equal confidences were ordered
        det = det[det[:, col].argsort(stable=True)]
    return det


@pytest.mark.slow
@pytest.mark.parametrize("agnostic", [False, True])
def test_nms_inside_onnx_and_openvino_equals_the_projects_nms(tmp_path, agnostic):
    model = _PixelHead()
    im = torch.rand(2, 3, 32, 48)
    settings = dict(conf_thres=0.3, iou_thres=0.5, topk_per_class=1000, topk_all=6, agnostic=agnostic)
    include = ["onnx"] + (["openvino"] if __import__("importlib").util.find_spec("openvino") else [])
    files, diffs = export_model(model, im, tmp_path / "m.pt", include=include, nms=settings)
    assert all(d is not None and d < 1e-3 for d in diffs.values())  # the export's own check against PyTorch
    with torch.no_grad():
        expected = non_max_suppression(model(im), 0.3, 0.5, agnostic=agnostic, max_det=1000)
    assert max(len(x) for x in expected) > 6  # the per-image cap matters
    expected = [x[:6] for x in expected]
    for file in files:
        backend = DetectMultiBackend(file)
        assert backend.nms_in_graph["topk_all"] == 6 and backend.nms_in_graph["agnostic"] is agnostic
        got = backend(im)
        assert [len(x) for x in got] == [len(x) for x in expected]
        for a, b in zip(got, expected):
            torch.testing.assert_close(_rows(a), _rows(b), atol=1e-3, rtol=0)


@pytest.mark.slow
def test_detect_val_and_hub_skip_their_nms_for_a_file_with_nms_inside(tmp_path):
    folder = tmp_path / "w"
    folder.mkdir()
    shutil.copy(OFFICIAL, folder / "w.pt")
    onnx_file = export.run(weights=folder / "w.pt", imgsz=(64, 64), include=["onnx"], nms=True, conf_thres=0.001,
                           topk_all=7)[0]
    onnx_graph = __import__("onnx").load(onnx_file)
    assert [o.name for o in onnx_graph.graph.output] == ["output0", "num_dets"]
    assert "NonMaxSuppression" in {n.op_type for n in onnx_graph.graph.node}
    # behaviour on a model that finds boxes everywhere: at most topk_all (7) per image, whatever the callers ask
    onnx_file = export_model(_PixelHead(nc=80), torch.rand(1, 3, 64, 64), tmp_path / "p.pt", include=["onnx"],
                             nms=dict(conf_thres=0.001, iou_thres=0.45, topk_per_class=100, topk_all=7,
                                      agnostic=False))[0][0]
    backend = DetectMultiBackend(onnx_file)
    dets = backend(torch.rand(1, 3, 64, 64))
    assert isinstance(dets, list) and dets[0].shape == (7, 6)
    hub = AutoShape(backend, verbose=False)
    hub.conf = 0.0
    assert len(hub(np.random.randint(0, 255, (64, 64, 3), dtype=np.uint8), size=64).pred[0]) == 7
    output = val.run(weights=onnx_file, data=ROOT / "data/coco8.yaml", imgsz=64, project=tmp_path, name="v",
                     plots=False)
    assert output.results.map50_95 >= 0
    save_dir = detect.run(weights=onnx_file, source=ROOT / "data/images/bus.jpg", imgsz=(64, 64), conf_thres=0.0,
                          save_txt=True, save_conf=True, nosave=True, project=tmp_path, name="d")
    assert len((save_dir / "labels" / "bus.txt").read_text().splitlines()) == 7


def test_onnx_checks_bound_value_dependent_sizes_and_still_refuse_unbounded_ones(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    def graph(nodes, out):
        g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 64, 64])],
                              [helper.make_tensor_value_info(out, TensorProto.FLOAT, None)])
        path = tmp_path / f"{out}.onnx"
        onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)
        return path

    # NonZero (value-dependent count, bounded by its input) feeding a Gather: accepted
    half = helper.make_node("Constant", [], ["half"], value=helper.make_tensor("h", TensorProto.FLOAT, [], [0.5]))
    bounded = graph([half, helper.make_node("Greater", ["images", "half"], ["mask"]),
                     helper.make_node("NonZero", ["mask"], ["idx"]),
                     helper.make_node("Cast", ["idx"], ["out"], to=TensorProto.FLOAT)], "out")
    check_onnx_file(bounded)
    # the same count then sizing a ConstantOfShape of count x 10^6: refused
    unbounded = graph([half, helper.make_node("Greater", ["images", "half"], ["mask"]),
                       helper.make_node("NonZero", ["mask"], ["idx"]),
                       helper.make_node("Shape", ["idx"], ["n"]),
                       helper.make_node("ConstantOfShape", ["n"], ["big"]),
                       helper.make_node("Cast", ["big"], ["out2"], to=TensorProto.FLOAT)], "out2")
    with pytest.raises(UserError, match="ConstantOfShape .* whose size cannot be worked out before running"):
        check_onnx_file(unbounded)


# --- e. --simplify with onnxslim ------------------------------------------------------------------------------------

def test_simplified_onnx_gives_the_same_outputs(tmp_path, warnings_log, monkeypatch):
    pytest.importorskip("onnxslim")
    model = prepare_model(Model("yolov5n.yaml"))
    im = torch.rand(1, 3, 64, 64)
    metadata = export_metadata(model, (64, 64))
    plain = export_onnx(model, im, tmp_path / "plain.onnx", metadata)
    slim = export_onnx(model, im, tmp_path / "slim.onnx", metadata, simplify=True)
    onnx = __import__("onnx")
    assert len(onnx.load(slim).graph.node) < len(onnx.load(plain).graph.node)
    x = torch.rand(1, 3, 64, 64)
    torch.testing.assert_close(DetectMultiBackend(slim)(x), DetectMultiBackend(plain)(x), atol=1e-4, rtol=0)
    monkeypatch.setitem(__import__("sys").modules, "onnxslim", None)
    monkeypatch.setitem(__import__("sys").modules, "onnxsim", None)
    with warnings_log() as log:
        export_onnx(model, im, tmp_path / "again.onnx", metadata, simplify=True)
    assert any("needs the onnxslim package" in line for line in log.lines)


# --- f. benchmarks.py -------------------------------------------------------------------------------------------------

def test_benchmarks_script_and_package_share_the_name_without_confusion():
    import benchmarks
    import benchmarks.ablate  # the measurement scripts' package still imports

    assert Path(benchmarks.__file__).parent.name == "benchmarks" and benchmarks.run is benchmark
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks.py"), "--help"], capture_output=True, text=True,
                         cwd="/", timeout=120)
    assert out.returncode == 0 and "--hard-fail" in out.stdout and "--pt-only" in out.stdout


@pytest.mark.slow
def test_benchmarks_table_and_hard_fail_floor(tmp_path, info_log):
    weights = tmp_path / "yolov5n.pt"
    shutil.copy(OFFICIAL, weights)
    with info_log() as log:
        rows = benchmark(weights=weights, imgsz=64, data=ROOT / "data/coco8.yaml", pt_only=True, hard_fail=-1)
    assert [r.format for r in rows] == ["PyTorch"] and rows[0].size_mb == pytest.approx(3.9, abs=0.1)
    assert rows[0].map50_95 is not None and rows[0].inference_ms > 0
    table = next(line for line in log.lines if "Benchmarks complete" in line)
    assert "Format" in table and "Size (MB)" in table and "mAP50-95" in table and "Inference time (ms)" in table
    rows = benchmark(weights=weights, imgsz=64, test=True)  # exports only: every available format, no numbers
    assert rows[1].format == "TorchScript" and rows[1].size_mb > 1 and rows[1].map50_95 is None
    out = subprocess.run([sys.executable, "benchmarks.py", "--weights", str(weights), "--img", "64", "--pt-only",
                          "--data", "data/coco8.yaml", "--hard-fail", "0.29"], capture_output=True, text=True,
                         cwd=ROOT, timeout=300)
    assert out.returncode != 0
    assert out.stderr.strip().splitlines()[-1].startswith("ERROR: HARD FAIL: mAP50-95 < floor 0.29: PyTorch")


@pytest.mark.slow
def test_the_yaml_bound_covers_every_shipped_model_without_the_meta_probe():
    """parse_model bounds the feature maps from the yaml alone (strides, upsampling, heads) and runs the
    meta-device probe, whose first use imports torch._dynamo (~1 s of start-up), only where that bound is too high
    or unknown: for every shipped yaml the bound holds (>= the measured values) and no probe runs."""
    yamls = sorted(ROOT.glob("models/yolov5*.yaml")) + sorted(ROOT.glob("models/segment/*.yaml"))
    assert len(yamls) >= 18
    for cfg in yamls:
        model = (SegmentationModel if "-seg" in cfg.name else Model)(cfg)
        bound = model.feature_values_bound
        slack = 2.0 if "-seg" in cfg.name else 1.01  # Proto's inner maps are in the bound, not in its output
        assert bound is not None and model.feature_values_per_pixel <= bound <= slack * model.feature_values_per_pixel
    probe = ("import sys, logging; from utils.general import LOGGER; LOGGER.setLevel(logging.ERROR); "
             "from models.yolo import Model; [Model(c) for c in sys.argv[1:]]; print('torch._dynamo' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", probe, *map(str, yamls[:14])], cwd=ROOT, capture_output=True,
                         text=True, timeout=300)
    assert out.stdout.strip().splitlines()[-1] == "False", out.stderr[-1000:]
