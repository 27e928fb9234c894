"""Interoperability with official YOLOv5 v7.0: torch.hub defaults and entry points, exported metadata in official's
format, AutoShape results, the --data default from a checkpoint, and the official-format checkpoint export."""

import ast
import json
import logging
import shutil
import subprocess
import sys
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
from utils.checkpoints import make_checkpoint, save_checkpoint
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
