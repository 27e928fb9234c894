"""Interoperability with official YOLOv5 v7.0: torch.hub defaults and entry points, exported metadata in official's
format, AutoShape results, the --data default from a checkpoint, and the official-format checkpoint export."""

import subprocess
import sys

import pytest
from conftest import FIXTURES, ROOT

import hubconf
from models.backends import DetectMultiBackend
from utils.general import UserError

FIXTURE = FIXTURES / "yolov5n-v7.0.pt"


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
