"""Interoperability with official YOLOv5 v7.0: torch.hub defaults and entry points, exported metadata in official's
format, AutoShape results, the --data default from a checkpoint, and the official-format checkpoint export."""

import ast
import copy
import json
import logging
import os
import pickletools
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
import yaml
from conftest import FIXTURES, ROOT, LogLines

import export
import hubconf
import val
from models.backends import DetectMultiBackend, checkpoint_dataset, metadata_strings, read_metadata
from models.experimental import attempt_load
from models.export.official import official_checkpoint
from models.yolo import Model
from utils.checkpoints import load_checkpoint, make_checkpoint, save_checkpoint
from utils.general import UserError

FIXTURE = FIXTURES / "yolov5n-v7.0.pt"
onnx = pytest.importorskip("onnx")


def test_hub_p6_entry_points_build_the_hub_yamls():
    model = hubconf.yolov5n6(pretrained=False, autoshape=False, _verbose=False)
    assert sum(p.numel() for p in model.parameters()) == 3246940  # SPEC: yolov5n6.yaml, 80 classes
    assert int(model.stride.max()) == 64


def test_hub_pretrained_is_the_default_and_missing_weights_name_the_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match=r"'yolov5x6\.pt' \(YOLOV5_OFFLINE is set.*releases/download/v7\.0/yolov5x6"):
        hubconf.yolov5x6(_verbose=False)
    assert not (tmp_path / "yolov5x6.pt").exists()


def test_hub_custom_path_without_suffix_means_pt(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "yolov5n.pt").write_bytes(FIXTURE.read_bytes())
    model = hubconf.custom(path="yolov5n", autoshape=False, _verbose=False)
    assert isinstance(model, DetectMultiBackend) and model.names == DetectMultiBackend(FIXTURE).names
    with pytest.raises(UserError, match=r"'other\.pt'"):
        hubconf.custom(path="other", _verbose=False)


def test_hubconf_demo_offline_says_what_to_do(tmp_path):
    run = subprocess.run([sys.executable, str(ROOT / "hubconf.py"), "--model", "yolov5n"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 1
    assert "yolov5n.pt" in run.stderr and "python hubconf.py --model path/to/best.pt" in run.stderr


def test_hubconf_demo_runs_on_data_images(tmp_path):
    run = subprocess.run([sys.executable, str(ROOT / "hubconf.py"), "--model", str(FIXTURE)], cwd=tmp_path,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    assert "image 1/2: 1080x810" in run.stderr and "image 2/2: 720x1280" in run.stderr and "Speed:" in run.stderr


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The fixture exported at 64x96 to TorchScript, ONNX and OpenVINO."""
    folder = tmp_path_factory.mktemp("interop_export")
    weights = folder / "m.pt"
    shutil.copy(FIXTURE, weights)
    files = export.run(weights=weights, imgsz=(64, 96), include=("torchscript", "onnx", "openvino"))
    return dict(zip(("torchscript", "onnx", "openvino"), (Path(f) for f in files)))


def official_names(fmt, file):
    """(stride, names) read the way official YOLOv5 v7.0's DetectMultiBackend reads each format."""
    if fmt == "onnx":
        meta = {p.key: p.value for p in onnx.load(str(file)).metadata_props}
        return int(meta["stride"]), ast.literal_eval(meta["names"])  # official uses eval on this string
    if fmt == "torchscript":
        extra = {"config.txt": ""}
        torch.jit.load(str(file), _extra_files=extra)
        int_keys = lambda d: {int(k) if k.isdigit() else k: v for k, v in d.items()}  # noqa: E731 (official's hook)
        d = json.loads(extra["config.txt"], object_hook=int_keys)
        assert d["shape"] == [1, 3, 64, 96]
        return int(d["stride"]), d["names"]
    meta = yaml.safe_load((file / "metadata.yaml").read_text())
    return int(meta["stride"]), meta["names"]


@pytest.mark.parametrize("fmt", ["onnx", "torchscript", "openvino"])
def test_exported_metadata_reads_with_officials_rules(exported, fmt):
    stride, names = official_names(fmt, exported[fmt])
    reference = DetectMultiBackend(FIXTURE)
    assert stride == 32 and names[0] == reference.names[0] and names == reference.names
    backend = DetectMultiBackend(exported[fmt])  # and this project reads them back
    assert backend.stride == 32 and backend.names == reference.names and backend.imgsz == (64, 96)


def test_onnx_names_are_a_python_literal_with_int_keys():
    strings = metadata_strings({"stride": 32, "names": {0: "person", 1: "traffic light", 2: "it's"}})
    assert strings["stride"] == "32"
    assert strings["names"] == "{0: 'person', 1: 'traffic light', 2: \"it's\"}"


def test_old_json_metadata_still_reads():
    old = {"stride": "32", "names": '{"0": "person", "1": "bicycle"}', "imgsz": "[640, 640]", "precision": '"fp32"'}
    assert read_metadata(old) == {"stride": 32, "names": {0: "person", 1: "bicycle"}, "imgsz": [640, 640],
                                  "precision": "fp32"}
    official = {"stride": "32", "names": "{0: 'person', 1: 'bicycle'}"}
    assert read_metadata(official) == {"stride": 32, "names": {0: "person", 1: "bicycle"}}


def test_autoshape_keeps_fractions_and_str_is_what_print_logs():
    model = hubconf.custom(path=FIXTURE, _verbose=False)
    model.conf, model.max_det = 1e-5, 3  # the random-weight fixture scores around 2e-4
    results = model(ROOT / "data" / "images" / "zidane.jpg", size=160)
    boxes = results.xyxy[0][:, :4]
    assert len(boxes) == 3 and (boxes != boxes.round()).any()
    with LogLines(logging.INFO) as log:
        results.print()
    assert log.lines == [str(results)] and str(results).startswith("image 1/1: 720x1280 1 class1, 2 class74s\nSpeed: ")
    assert repr(results) == f"YOLOv5 Detections\n{results}"


@pytest.fixture(scope="module")
def trained_on_own_dataset(tmp_path_factory):
    """A project checkpoint (the fixture's weights) whose saved options name a dataset yaml of its own, as train.py
    writes them: coco8 under another name, so that it cannot be mistaken for the coco8 fallback."""
    folder = tmp_path_factory.mktemp("recorded_data")
    data = folder / "mine.yaml"
    data.write_text((ROOT / "data" / "coco8.yaml").read_text().replace("path: coco8", f"path: {ROOT / 'data/coco8'}"))
    model = attempt_load(FIXTURE, fuse=False)
    weights = folder / "best.pt"
    save_checkpoint(make_checkpoint(model, opt={"data": str(data), "imgsz": 64}), weights)
    return weights, data


def test_val_without_data_uses_the_dataset_recorded_in_the_checkpoint(trained_on_own_dataset, tmp_path):
    weights, data = trained_on_own_dataset
    with LogLines(logging.INFO) as log:
        val.run(weights=str(weights), imgsz=64, batch_size=4, device="cpu", project=tmp_path, plots=False)
    assert f"no --data given: using {data}, the dataset {weights} was trained on" in log.lines
    with LogLines(logging.INFO) as log:  # official checkpoints record no dataset: coco8, and the log says so
        val.run(weights=str(FIXTURE), imgsz=64, batch_size=4, device="cpu", project=tmp_path, plots=False)
    assert any(line.startswith("no --data given and none recorded in the weights: using ") and "coco8.yaml" in line
               for line in log.lines)


def test_checkpoint_dataset(trained_on_own_dataset, tmp_path):
    weights, data = trained_on_own_dataset
    assert checkpoint_dataset(weights) == data and checkpoint_dataset([weights, FIXTURE]) == data
    assert checkpoint_dataset(FIXTURE) is None and checkpoint_dataset(tmp_path / "x.onnx") is None
    moved = tmp_path / "moved.pt"
    save_checkpoint(make_checkpoint(attempt_load(FIXTURE, fuse=False), opt={"data": str(tmp_path / "gone.yaml")}),
                    moved)
    with LogLines() as log:
        assert checkpoint_dataset(moved) is None
    gone = tmp_path / "gone.yaml"
    assert log.lines == [f"WARNING: {moved} was trained on {gone}, which is not found here; pass --data"]


def _records(record, out=None):
    """{official class path: sorted __dict__ keys} of a checkpoint's module records (restricted loader)."""
    out = {} if out is None else out
    out.setdefault(type(record).qualname, sorted(record.__dict__))
    for child in record.__dict__["_modules"].values():
        _records(child, out)
    return out


@pytest.fixture(scope="module")
def project_checkpoint(tmp_path_factory):
    """A project checkpoint of a 3-class yolov5n with non-trivial BatchNorm statistics, and the fp32 model."""
    torch.manual_seed(0)
    model = Model(ROOT / "models" / "yolov5n.yaml", nc=3).eval()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.75, 1.25)
    model.names = {0: "cat", 1: "dog", 2: "it's"}
    weights = tmp_path_factory.mktemp("official") / "best.pt"
    save_checkpoint(make_checkpoint(model, opt={"data": "coco8.yaml"}), weights)
    return weights, model


@pytest.fixture(scope="module")
def official_file(project_checkpoint):
    weights, _ = project_checkpoint
    files = export.run(weights=weights, imgsz=(64, 64), include=("official",))
    assert files == [str(weights.with_name("best_official.pt"))]
    return Path(files[0])


def test_official_export_has_officials_pickle_layout(official_file):
    ckpt = load_checkpoint(official_file)
    assert ckpt["epoch"] == -1 and ckpt["ema"] is None and ckpt["optimizer"] is None and ckpt["updates"] is None
    assert ckpt["opt"] == {"data": "coco8.yaml"} and {"best_fitness", "git", "date"} <= set(ckpt)
    ours, official = _records(ckpt["model"]), _records(load_checkpoint(FIXTURE)["model"])
    assert ours == official  # the same classes, each with official's attribute names
    model = ckpt["model"]
    assert model.names == {0: "cat", 1: "dog", 2: "it's"} and model.stride.tolist() == [8.0, 16.0, 32.0]
    detect = model._modules["model"]._modules["24"]
    assert detect.f == [17, 20, 23] and detect.i == 24 and detect.type == "models.yolo.Detect" and detect.nc == 3
    assert detect.stride.dtype == torch.float16 and len(detect.grid) == 3 and "stride" not in detect._buffers
    conv = model._modules["model"]._modules["0"]._modules["conv"]
    assert conv._parameters["weight"].dtype == torch.float16
    with zipfile.ZipFile(official_file) as z:
        pkl = next(n for n in z.namelist() if n.endswith("data.pkl"))
        names = {arg for op, arg, _ in pickletools.genops(z.read(pkl)) if op.name == "GLOBAL"}
    assert "models.yolo DetectionModel" in names and not any(n.startswith("models.layers") for n in names)


def test_official_export_round_trip_equals_the_model(project_checkpoint, official_file):
    _, model = project_checkpoint
    back = attempt_load(official_file, fuse=False)
    assert back.names == model.names
    fp16 = copy.deepcopy(model)
    fp16.load_state_dict({k: v.half().float() if v.is_floating_point() else v for k, v in model.state_dict().items()})
    im = torch.rand(1, 3, 96, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(back(im)[0], fp16(im)[0], atol=1e-3, rtol=1e-4)  # exactly the fp16 weights
        assert (back(im)[0] - model(im)[0]).abs().max() < 1.0  # and within fp16 rounding of the fp32 model


def test_official_export_unpickles_with_official_class_names(official_file, tmp_path):
    """Official YOLOv5 unpickles the file with its own classes: stand-ins under the official module paths (empty
    nn.Module subclasses) must be all it needs, and the objects get the attributes official code reads."""
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "__init__.py").write_text("")
    (tmp_path / "models" / "yolo.py").write_text("import torch.nn as nn\n" + "".join(
        f"class {c}(nn.Module):\n    pass\n" for c in ("DetectionModel", "Detect")))
    (tmp_path / "models" / "common.py").write_text("import torch.nn as nn\n" + "".join(
        f"class {c}(nn.Module):\n    pass\n" for c in ("Conv", "C3", "SPPF", "Bottleneck", "Concat")))
    # the stand-ins and the torch.nn classes the pickle names are all the loader admits besides tensors
    code = (
        "import importlib, pickletools, zipfile, torch\n"
        f"z = zipfile.ZipFile({str(official_file)!r})\n"
        "pkl = z.read(next(n for n in z.namelist() if n.endswith('data.pkl')))\n"
        "names = {a for op, a, _ in pickletools.genops(pkl) if op.name == 'GLOBAL'}\n"
        "names = {n for n in names if n.startswith(('models.', 'torch.nn.'))}\n"
        "admitted = [getattr(importlib.import_module(m), c) for m, c in (n.split() for n in sorted(names))]\n"
        "with torch.serialization.safe_globals(admitted):\n"
        f"    ckpt = torch.load({str(official_file)!r}, weights_only=True)\n"
        "m = ckpt['model'].float()\n"
        "assert type(m).__module__ == 'models.yolo' and type(m).__name__ == 'DetectionModel'\n"
        "print(m.names[0], int(m.stride.max()), m.save, m.model[-1].f, m.model[12].d, m.model[2].m[0].add)\n"
    )
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=600,
                         env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["cat", "32", "[4,", "6,", "10,", "14,", "17,", "20,", "23]", "[17,", "20,", "23]",
                                  "1", "True"]


def test_official_export_refuses_plug_in_modules(tmp_path):
    model = Model(ROOT / "models" / "yolov5s_ScConv.yaml", nc=2)
    weights = tmp_path / "sc.pt"
    save_checkpoint(make_checkpoint(model), weights)
    with pytest.raises(UserError, match=r"^official YOLOv5 cannot run ScConv: --include official needs"):
        export.run(weights=weights, imgsz=(64, 64), include=("official",))
    assert not (tmp_path / "sc_official.pt").exists()


def test_official_export_refuses_weights_beyond_fp16():
    model = Model(ROOT / "models" / "yolov5n.yaml", nc=2)
    with torch.no_grad():
        model.model[0].conv.weight[0, 0, 0, 0] = 1e6  # fp16 tops out at 65504
    with pytest.raises(UserError, match=r"exceed its range \(e\.g\. \['model\.0\.conv\.weight'\]\)"):
        official_checkpoint(model)
