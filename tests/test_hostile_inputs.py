"""Hostile and careless inputs: nothing a model or dataset says places a file outside the run folder, and small
crafted files fail fast with a clear error (hang cases run under a timeout)."""

import os
import pickle
import shutil
import struct
import subprocess
import sys
import threading
import types
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

import detect
import utils.checkpoints
from models.experimental import attempt_load
from utils.checkpoints import load_checkpoint, make_checkpoint, save_checkpoint
from utils.dataloaders import LoadImagesAndLabels, list_image_files
from utils.dataset_yaml import check_dataset
from utils.general import ROOT, UserError, safe_filename, yaml_load
from utils.labels import verify_image_label

FIXTURE = ROOT / "tests" / "fixtures" / "yolov5n-v7.0.pt"
COCO8 = ROOT / "data" / "coco8"


HOSTILE_NAMES = ["../../x", "/etc/x", "..", "a/b", "", ".", "..\\..\\y", "c:z"]


@pytest.mark.parametrize("name, safe", [("../../x", ".._.._x"), ("/etc/x", "_etc_x"), ("..", "_"), ("a/b", "a_b"),
                                        ("", "_"), (".", "_"), ("a\\b", "a_b"), ("person", "person"),
                                        ("traffic light", "traffic light")])
def test_safe_filename(name, safe):
    assert safe_filename(name) == safe
    assert (Path("/run") / safe_filename(name)).parent == Path("/run")


def files_under(folder):
    return {p for p in Path(folder).rglob("*") if p.is_file()}


def test_class_names_cannot_place_crops_outside_the_run(tmp_path):
    """A checkpoint whose 80 class names are all path tricks: crops, labels and images stay in the run folder."""
    model = attempt_load(FIXTURE, fuse=False)
    names = {i: HOSTILE_NAMES[i % len(HOSTILE_NAMES)] for i in range(80)}
    weights = save_checkpoint(make_checkpoint(model, names=names), tmp_path / "w" / "hostile.pt")
    before = files_under(tmp_path)
    save_dir = detect.run(weights=weights, source=ROOT / "data" / "images", imgsz=(160, 160), conf_thres=1e-5,
                          max_det=20, device="cpu", project=tmp_path / "runs" / "detect", name="exp", save_txt=True,
                          save_crop=True)
    new = files_under(tmp_path) - before
    crops = [p for p in new if "crops" in p.parts]
    assert len(crops) == 40 and all(p.parent.parent == save_dir / "crops" for p in crops)
    assert all(save_dir in p.parents for p in new)
    assert {p.parent.name for p in crops} <= {safe_filename(n, default=str(c)) for c, n in names.items()}


def within(seconds, fn, *args, **kwargs):
    """Run ``fn`` in a daemon thread; fail the test if it has not returned within ``seconds`` (a hang)."""
    outcome = {}

    def target():
        try:
            outcome["value"] = fn(*args, **kwargs)
        except BaseException as e:  # re-raised in the test's thread
            outcome["error"] = e

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        pytest.fail(f"{getattr(fn, '__name__', fn)} did not finish within {seconds} s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


@pytest.fixture
def record(monkeypatch):
    """record(**attrs): a module record pickled as models.yolo.DetectionModel, the way a crafted 'official'
    checkpoint carries modules."""
    import models.yolo

    official = type("DetectionModel", (), {"__module__": "models.yolo"})
    monkeypatch.setattr(models.yolo, "DetectionModel", official, raising=False)

    def make(**attrs):
        obj = official()
        obj.__dict__.update({"_parameters": {}, "_buffers": {}, "_modules": {}, **attrs})
        return obj

    return make


def official_pickle(record, path):
    torch.save({"model": record, "epoch": -1}, path)
    return path


def test_official_pickle_whose_modules_refer_to_each_other(tmp_path, record):
    root = record(yaml={"nc": 1, "backbone": [], "head": []})
    child = record()
    root._modules.update(a=child, b=child)
    child._modules.update(parent=root)
    weights = official_pickle(root, tmp_path / "cycle.pt")
    assert weights.stat().st_size < 2000
    with pytest.raises(UserError, match="refers back to itself"):
        within(30, attempt_load, weights)


def test_official_pickle_with_shared_children_is_not_walked_exponentially(tmp_path, record):
    """60 levels, each with two references to the next: 2**60 paths if walked as a tree."""
    node = record()
    for _ in range(60):
        node = record(_modules={"0": node, "1": node})
    node.yaml = {"nc": 1, "backbone": [], "head": []}
    with pytest.raises(UserError, match="over 100000 modules to walk"):
        within(30, attempt_load, official_pickle(node, tmp_path / "dag.pt"))


def test_zip_bomb_and_huge_pickle_are_refused_before_unpacking(tmp_path, monkeypatch):
    bomb = tmp_path / "bomb.pt"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z, z.open("archive/data.pkl", "w") as f:
        for _ in range(100):  # 100 MB of zeros deflate to about 100 KB
            f.write(bytes(2**20))
    assert bomb.stat().st_size < 2**20
    with pytest.raises(UserError, match="100 MB pickle"):
        within(30, load_checkpoint, bomb)
    monkeypatch.setattr(utils.checkpoints, "MAX_UNPACKED_BYTES", 2**20)  # 16 GB is too much to write in a test
    big = tmp_path / "big.pt"
    torch.save({"model": {"w": torch.zeros(2**19)}}, big)
    with pytest.raises(UserError, match="would unpack to"):
        load_checkpoint(big)


@pytest.mark.parametrize("state, error", [
    ((3, "<", None, ("a", "b"), None, -1, -1, 0), "inconsistent fields"),
    ((3, "|", None, None, {"a": 1}, -1, -1, 0), "inconsistent fields"),
    (("x",), "version"),
])
def test_hostile_numpy_dtype_state(tmp_path, state, error):
    class Pickler(pickle.Pickler):
        def reducer_override(self, obj):
            if isinstance(obj, np.dtype):
                return np.dtype, ("f8", False, True), state
            return NotImplemented

    pickle_module = types.SimpleNamespace(Pickler=Pickler, __name__="pickle")
    weights = tmp_path / "np.pt"
    torch.save({"model": {}, "best_fitness": np.float64(0.5)}, weights, pickle_module=pickle_module)
    with pytest.raises(UserError, match=f"could not be read: ValueError: .*{error}"):
        load_checkpoint(weights)


@pytest.fixture(scope="module")
def project_ckpt():
    return make_checkpoint(attempt_load(FIXTURE, fuse=False))


@pytest.mark.parametrize("change, message", [
    (dict(names=[{"x": 1}]), None),
    (dict(names={"zero": "a"}), "'names' keys must be class ids"),
    (dict(names=17), "'names' must be a list or a mapping"),
    (dict(yaml="yolov5n.yaml"), "'yaml' .* is not a mapping"),
    (dict(version="2"), "malformed checkpoint 'version'"),
    (dict(version=[1]), "malformed checkpoint 'version'"),
])
def test_malformed_project_checkpoint_entries(tmp_path, project_ckpt, change, message):
    weights = save_checkpoint({**project_ckpt, **change}, tmp_path / "m.pt")
    if message is None:  # a name that is not a string is shown as one; the other classes get placeholder names
        assert attempt_load(weights).names == {0: "{'x': 1}", **{i: f"class{i}" for i in range(1, 80)}}
        return
    with pytest.raises(UserError, match=message):
        attempt_load(weights)


def test_names_shorter_than_nc_and_nan_anchors(tmp_path, project_ckpt):
    short = save_checkpoint({**project_ckpt, "names": ["person", "bicycle"]}, tmp_path / "short.pt")
    save_dir = detect.run(weights=short, source=ROOT / "data" / "images" / "bus.jpg", imgsz=(64, 64), device="cpu",
                          conf_thres=1e-5, max_det=5, save_txt=True, project=tmp_path / "runs", name="exp")
    assert len((save_dir / "labels" / "bus.txt").read_text().splitlines()) == 5
    model = {k: v.clone() for k, v in project_ckpt["model"].items()}
    model["model.24.anchors"][0, 0, 0] = float("nan")
    nan = tmp_path / "nan.pt"  # written by hand: save_checkpoint itself refuses non-finite weights
    torch.save({**project_ckpt, "model": model, "ema": None}, nan)
    with pytest.raises(UserError, match="anchors 'model.24.anchors' are not finite positive"):
        attempt_load(nan)


def billion_laughs(levels=9):
    lines = ["a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, levels):
        prev, name = chr(96 + i), chr(97 + i)
        lines.append(f"{name}: &{name} [{', '.join([f'*{prev}'] * 9)}]")
    return "\n".join(lines) + f"\npath: .\ntrain: .\nval: .\nnames: *{chr(96 + levels)}\n"


def test_yaml_aliases_cannot_expand_a_small_file(tmp_path):
    data = tmp_path / "laughs.yaml"
    data.write_text(billion_laughs())
    assert data.stat().st_size < 505  # 9**9 = 387 million 'lol's once expanded
    with pytest.raises(UserError, match="aliases .* expand to .* over the limit"):
        within(30, check_dataset, data)
    recursive = tmp_path / "recursive.yaml"
    recursive.write_text("a: &a [1, *a]\n")
    with pytest.raises(UserError, match="recursive"):
        yaml_load(recursive)
    ok = tmp_path / "ok.yaml"
    ok.write_text("base: &b {lr0: 1e-3, lrf: 1E2}\nhyp:\n  <<: *b\n  momentum: 0.9\nname: 1e3x\n")
    assert yaml_load(ok) == {"base": {"lr0": 0.001, "lrf": 100.0},
                             "hyp": {"lr0": 0.001, "lrf": 100.0, "momentum": 0.9}, "name": "1e3x"}


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_fifo_named_like_an_image_is_skipped_never_opened(tmp_path):
    images = tmp_path / "ds" / "images" / "train"
    images.mkdir(parents=True)
    shutil.copy(COCO8 / "images" / "train" / "000000000009.jpg", images)
    os.mkfifo(images / "x.jpg")
    files = within(30, list_image_files, str(images))
    assert files == [str(images / "000000000009.jpg")]
    dataset = within(60, LoadImagesAndLabels, str(images), img_size=64)
    assert len(dataset) == 1


def test_label_file_with_a_bom_and_a_single_image_split(tmp_path):
    images, labels = tmp_path / "images", tmp_path / "labels"
    images.mkdir()
    labels.mkdir()
    image = images / "a.jpg"
    shutil.copy(COCO8 / "images" / "train" / "000000000009.jpg", image)
    (labels / "a.txt").write_bytes("\ufeff0 0.5 0.5 0.2 0.2\n".encode("utf-8"))
    assert list_image_files(str(image)) == [str(image)]
    _, lb, *_, corrupt, message = verify_image_label((str(image), str(labels / "a.txt"), ""))
    assert corrupt == 0, message
    np.testing.assert_allclose(lb, [[0, 0.5, 0.5, 0.2, 0.2]])
    (tmp_path / "a.csv").write_text("a.jpg\n")
    with pytest.raises(UserError, match="neither a folder, a .txt list of images nor an image"):
        list_image_files(str(tmp_path / "a.csv"))


def png_header(w, h):
    """A small PNG file whose header declares w x h pixels (its pixel data are not all there)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(bytes(1000))) + chunk(b"IEND", b""))


def test_huge_png_is_skipped_by_its_header(tmp_path, monkeypatch, warnings_log):
    source = tmp_path / "src"
    source.mkdir()
    (source / "huge.png").write_bytes(png_header(20000, 20000))
    (source / "big.png").write_bytes(png_header(12000, 12000))
    shutil.copy(ROOT / "data" / "images" / "bus.jpg", source)
    run = dict(weights=FIXTURE, source=source, imgsz=(64, 64), device="cpu", project=tmp_path / "runs")
    with warnings_log() as log:
        within(120, detect.run, **run)
    skipped = "\n".join(log.lines)
    assert "huge.png: Image size (400000000 pixels)" in skipped and "refused before decoding" in skipped
    assert "big.png: 12000x12000 = 144,000,000 pixels, over the limit of 100,000,000" in skipped
    assert "YOLOV5_MAX_PIXELS" in skipped and "bus.jpg" not in skipped
    monkeypatch.setenv("YOLOV5_MAX_PIXELS", "2e8")  # allowed now: cv2 reads the header, finds no pixel data
    with warnings_log() as log:
        within(120, detect.run, **run)
    assert any("big.png: not a readable image" in line for line in log.lines)


def test_export_batch_size_zero_is_an_error_not_a_crash(tmp_path):
    weights = tmp_path / "w.pt"
    shutil.copy(FIXTURE, weights)
    proc = subprocess.run([sys.executable, str(ROOT / "export.py"), "--weights", str(weights), "--batch-size", "0",
                           "--imgsz", "64"], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "--batch-size 0: must be a whole number from 1 to 1024" in proc.stderr
    assert list(tmp_path.iterdir()) == [weights]
