"""Checkpoints: official pickles through the restricted loader, the project's format, transfer, ensembles."""

import errno
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from models.experimental import Ensemble, attempt_load, model_from_checkpoint
from models.yolo import Model
from utils.checkpoints import (
    load_checkpoint,
    make_checkpoint,
    nonfinite_weights,
    save_checkpoint,
    strip_optimizer,
    transfer_weights,
)
from utils.general import UserError
from utils.torch_utils import ModelEMA


@pytest.mark.parametrize("fuse", [False, True])
def test_official_checkpoint_reproduces_reference_outputs(official_ckpt, official_io, fuse):
    model = attempt_load(official_ckpt, fuse=fuse)
    assert not model.training and next(model.parameters()).dtype == torch.float32
    with torch.no_grad():
        pred = model(official_io["input"])[0]
    assert pred.shape == official_io["pred_eval"].shape
    assert (pred - official_io["pred_eval"]).abs().max() < 1e-3


def test_official_checkpoint_raw_train_maps(official_ckpt, official_io):
    model = attempt_load(official_ckpt, fuse=False).train()
    with torch.no_grad():
        raw = model(official_io["input"])
    for ours, ref in zip(raw, official_io["raw_train"]):
        assert ours.shape == ref.shape and (ours - ref).abs().max() < 1e-3


def test_official_metadata(official_ckpt):
    model = attempt_load(official_ckpt)
    assert model.nc == 80 and len(model.names) == 80 and model.stride.tolist() == [8.0, 16.0, 32.0]


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(UserError, match="weights file not found.*python train.py"):
        attempt_load(tmp_path / "nope.pt")


def test_not_a_checkpoint(tmp_path):
    f = tmp_path / "image.pt"
    f.write_bytes(b"\xff\xd8 this is not a zip archive")
    with pytest.raises(UserError, match="not a PyTorch checkpoint"):
        load_checkpoint(f)
    t = tmp_path / "tensor.pt"
    torch.save(torch.zeros(3), t)
    with pytest.raises(UserError, match="not a YOLOv5 checkpoint"):
        load_checkpoint(t)


class Payload:
    """A class the restricted loader must refuse to construct."""

    def __reduce__(self):
        return (print, ("this must never run",))


def test_unknown_global_is_refused(tmp_path, capsys):
    f = tmp_path / "evil.pt"
    torch.save({"model": Payload()}, f)
    with pytest.raises(UserError, match="does not admit"):
        load_checkpoint(f)
    assert "this must never run" not in capsys.readouterr().out


def test_truncated_file(tmp_path, official_ckpt):
    f = tmp_path / "cut.pt"
    data = official_ckpt.read_bytes()
    f.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError):
        load_checkpoint(f)


def test_project_checkpoint_roundtrip_weights_only(tmp_path):
    model = Model("yolov5n.yaml", nc=3)
    model.names = {0: "a", 1: "b", 2: "c"}
    f = save_checkpoint(make_checkpoint(model, epoch=4, opt={"path": tmp_path, "epochs": 5}), tmp_path / "w.pt")
    raw = torch.load(f, weights_only=True)  # plain data only
    assert raw["epoch"] == 4 and raw["opt"]["path"] == str(tmp_path) and raw["names"][2] == "c"
    loaded = model_from_checkpoint(load_checkpoint(f)).eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert (loaded(x)[0] - model.eval().half().float()(x)[0]).abs().max() < 1e-3
    assert loaded.names == model.names


def test_weights_of_another_shape_than_the_yaml_are_a_user_error(tmp_path):
    ckpt = make_checkpoint(Model("yolov5n.yaml", nc=3))
    ckpt["yaml"]["nc"] = 2  # Detect outputs 3 * (5 + 2) = 21 channels, the weights have 3 * (5 + 3) = 24
    with pytest.raises(UserError, match=r"0 missing keys.*0 unexpected.*6 of another shape.*'model.24.m.0.weight'"):
        model_from_checkpoint(ckpt)


def test_atomic_save_leaves_no_temp_file(tmp_path):
    save_checkpoint({"model": {}, "x": 1}, tmp_path / "a.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.pt"]


def test_strip_optimizer(tmp_path):
    """Training checkpoints (half=False) keep the exact fp32 weights; stripping keeps the EMA weights in fp16."""
    model = Model("yolov5n.yaml", nc=2)
    ema = ModelEMA(model)
    with torch.no_grad():
        ema.ema.model[0].conv.weight.add_(1 / 3)  # EMA weights differ from the model's, with fp32-only digits
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    state = {"last_opt_step": 7, "maps": [0.25, 0.5]}
    f = save_checkpoint(make_checkpoint(model, ema=ema, optimizer=opt, epoch=3, half=False, train_state=state),
                        tmp_path / "last.pt")
    raw = torch.load(f, weights_only=True)
    assert raw["train_state"] == state
    for name, m in (("model", model), ("ema", ema.ema)):
        assert all(torch.equal(raw[name][k], v) for k, v in m.state_dict().items())
    stripped = strip_optimizer(f)
    assert stripped["optimizer"] is None and stripped["epoch"] == -1 and stripped["train_state"] is None
    raw = torch.load(f, weights_only=True)
    assert raw["optimizer"] is None and raw["ema"] is None
    ema_weight = ema.ema.state_dict()["model.0.conv.weight"]
    assert raw["model"]["model.0.conv.weight"].dtype == torch.float16
    assert torch.equal(raw["model"]["model.0.conv.weight"], ema_weight.half())


def test_transfer_from_official_into_other_class_count(official_ckpt):
    sd = attempt_load(official_ckpt, fuse=False).state_dict()
    model = Model("yolov5n.yaml", nc=3)
    n, total = transfer_weights(model, sd)
    assert (n, total) == (343, 349)  # all but the three Detect convs' weights and biases
    assert torch.equal(model.state_dict()["model.0.conv.weight"], sd["model.0.conv.weight"])


def test_ensemble(official_ckpt):
    ens = attempt_load([official_ckpt, official_ckpt])
    assert isinstance(ens, Ensemble) and ens.nc == 80
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        pred = ens(x)[0]
        single = ens[0](x)[0]
    assert pred.shape[1] == 2 * single.shape[1]



def test_newer_format_version_loads_with_a_warning(tmp_path, monkeypatch):
    import utils.checkpoints as checkpoints

    warnings = []
    monkeypatch.setattr(checkpoints.LOGGER, "warning", warnings.append)
    ckpt = make_checkpoint(Model("yolov5n.yaml", nc=2))
    ckpt["version"] = checkpoints.VERSION + 1
    model = model_from_checkpoint(load_checkpoint(save_checkpoint(ckpt, tmp_path / "future.pt")))
    assert model.nc == 2
    assert len(warnings) == 1 and "newer than this code's" in warnings[0]


def test_non_finite_weights_are_never_written(tmp_path):
    model = Model("yolov5n.yaml", nc=2)
    f = save_checkpoint(make_checkpoint(model, epoch=0, half=False), tmp_path / "last.pt")
    before = f.read_bytes()
    with torch.no_grad():
        model.model[0].conv.weight[0, 0, 0, 0] = float("inf")
    ckpt = make_checkpoint(model, epoch=1, half=False)
    assert nonfinite_weights(ckpt) == ["model/model.0.conv.weight"]
    with pytest.raises(UserError, match=r"refusing to write .*last.pt: 1 weight tensors hold NaN/inf"):
        save_checkpoint(ckpt, f)
    assert f.read_bytes() == before


def test_full_disk_is_a_user_error_and_keeps_the_previous_file(tmp_path, monkeypatch):
    f = save_checkpoint({"model": {"w": torch.ones(3)}, "epoch": 1}, tmp_path / "last.pt")
    before = f.read_bytes()

    def disk_full(obj, file):
        file.write(b"PK\x03\x04partial")  # part of the archive reached the disk before the error
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(UserError, match=r"could not write .*last.pt \(.*No space left on device\); "
                                        r"the previous last.pt is intact"):
        save_checkpoint({"model": {"w": torch.zeros(3)}, "epoch": 2}, f)
    assert f.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]
    with pytest.raises(UserError, match="no best.pt was written"):
        save_checkpoint({"model": {"w": torch.zeros(3)}}, tmp_path / "best.pt")


def test_checkpoint_is_fsynced_before_the_rename(tmp_path, monkeypatch):
    events = []
    fsync, replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: events.append(("fsync", stat.S_ISDIR(os.fstat(fd).st_mode)))
                        or fsync(fd))
    monkeypatch.setattr(os, "replace", lambda a, b: events.append(("replace", Path(b).name)) or replace(a, b))
    save_checkpoint({"model": {}}, tmp_path / "last.pt")
    assert events == [("fsync", False), ("replace", "last.pt"), ("fsync", True)]  # file, rename, folder


def test_stale_temporary_files_of_dead_writers_are_removed(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / f".last.pt.{dead.pid}.tmp").write_bytes(b"truncated")
        (tmp_path / f".last.pt.{alive.pid}.tmp").write_bytes(b"being written")
        save_checkpoint({"model": {}}, tmp_path / "best.pt")
        assert sorted(p.name for p in tmp_path.iterdir()) == [f".last.pt.{alive.pid}.tmp", "best.pt"]
    finally:
        alive.kill()
        alive.wait()


def test_strip_keeps_fp32_when_weights_exceed_the_fp16_range(tmp_path):
    model = Model("yolov5n.yaml", nc=2)
    with torch.no_grad():
        model.model[0].conv.weight[0, 0, 0, 0] = 1e6  # finite in fp32, inf in fp16
    f = save_checkpoint(make_checkpoint(model, epoch=3, half=False), tmp_path / "last.pt")
    strip_optimizer(f)
    weight = torch.load(f, weights_only=True)["model"]["model.0.conv.weight"]
    assert weight.dtype == torch.float32 and weight[0, 0, 0, 0] == 1e6
