"""train.py --resume with a crafted last.pt: only training state and whitelisted options are taken; a planted
checkpoint cannot switch on a download, bring an inline dataset or a URL, or write outside its run folder."""

import urllib.request
from pathlib import Path

import pytest
import torch

import train
import utils.resume
from utils.checkpoints import FORMAT, VERSION
from utils.general import UserError
from utils.resume import resume_hyp, resume_options

HYP = {"lr0": 0.01, "lrf": 0.01, "momentum": 0.937, "weight_decay": 5e-4, "warmup_epochs": 3.0,
       "warmup_momentum": 0.8, "warmup_bias_lr": 0.1, "box": 0.05, "cls": 0.5, "cls_pw": 1.0, "obj": 1.0,
       "obj_pw": 1.0, "anchor_t": 4.0}


def plant(runs, opt, hyp=HYP):
    """A crafted, resumable-looking last.pt under ``runs``/train/exp/weights."""
    last = runs / "train" / "exp" / "weights" / "last.pt"
    last.parent.mkdir(parents=True)
    torch.save({"format": FORMAT, "version": VERSION, "epoch": 0, "model": {}, "ema": None, "optimizer": {},
                "opt": opt, "hyp": hyp, "yaml": {}, "names": {0: "a"}}, last)
    return last


@pytest.fixture
def attack(tmp_path, monkeypatch):
    """A victim file, a payload that would replace it, bare --resume looking under tmp/runs, and a network
    function that records any call instead of fetching."""
    victim = tmp_path / "victim.py"
    victim.write_text("print('original')\n")
    payload = tmp_path / "payload" / "victim.py"
    payload.parent.mkdir()
    payload.write_text("print('pwned')\n")
    fetched = []
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: fetched.append(a) or 1 / 0)
    monkeypatch.setattr(utils.resume, "RUNS_DIR", tmp_path / "runs")
    return {"tmp": tmp_path, "victim": victim, "url": payload.as_uri(), "fetched": fetched}


def files_under(folder):
    return {p for p in Path(folder).rglob("*") if p.is_file()}


def test_inline_dataset_dict_with_download_is_refused(attack):
    tmp = attack["tmp"]
    opt = {"epochs": 2, "imgsz": 64, "batch_size": 2, "download": True,
           "data": {"path": str(tmp), "train": "x", "val": "x", "nc": 1,
                    "download": {"url": attack["url"], "dir": str(tmp)}}}
    plant(tmp / "runs", opt)
    before = files_under(tmp)
    with pytest.raises(UserError, match="not a local dataset yaml path"):
        train.run(resume=True, workers=0)  # bare --resume finds the planted file
    assert attack["fetched"] == [] and attack["victim"].read_text() == "print('original')\n"
    assert files_under(tmp) == before


@pytest.mark.parametrize("data", ["https://example.com/coco.yaml", "file:///etc/passwd", "smb:\\\\host\\x.yaml"])
def test_dataset_url_is_refused(attack, data):
    plant(attack["tmp"] / "runs", {"epochs": 2, "data": data})
    with pytest.raises(UserError, match="not a local dataset yaml path"):
        train.run(resume=True, workers=0)
    assert attack["fetched"] == []


def test_stored_download_flag_is_never_taken(attack, warnings_log):
    """The dataset yaml path is taken, but download=True from the file is not: the missing dataset stops the run
    with the usual message, nothing is fetched, and new files appear only inside the run folder."""
    tmp = attack["tmp"]
    data = tmp / "evil.yaml"
    data.write_text(f"path: {tmp / 'nowhere'}\ntrain: images\nval: images\nnames: [a]\n"
                    f"download:\n  url: {attack['url']}\n  dir: {tmp}\n")
    last = plant(tmp / "runs", {"epochs": 2, "imgsz": 64, "batch_size": 2, "data": str(data), "download": True,
                                "project": "/", "name": "etc", "evolve": "rm -rf", "hyp": str(data)},
                 hyp=dict(HYP, evil="x"))
    before = files_under(tmp)
    with warnings_log() as log, pytest.raises(UserError, match="dataset not found.*--download"):
        train.run(resume=True, workers=0)
    assert attack["fetched"] == [] and attack["victim"].read_text() == "print('original')\n"
    run_dir = last.parents[1]
    assert all(run_dir in p.parents for p in files_under(tmp) - before)
    warning = "\n".join(log.lines)
    assert "download (pass --download" in warning and "evolve" in warning and "evil" in warning


def test_option_whitelist(warnings_log):
    saved = {"epochs": 5, "batch_size": True, "imgsz": "640", "freeze": [0, 1], "label_smoothing": float("nan"),
             "rect": 1, "cos_lr": True, "optimizer": "Adam", "cache": "/etc", "cfg": "yolov5n.yaml",
             "hyp": "https://x/hyp.yaml", "workers": 99, "device": "cuda", "download": False, "bucket": "x",
             "data": "coco8.yaml"}
    with warnings_log() as log:
        taken = resume_options(saved, "last.pt")
    assert taken == {"epochs": 5, "freeze": [0, 1], "cos_lr": True, "optimizer": "Adam", "cfg": "yolov5n.yaml",
                     "data": "coco8.yaml"}
    warning = log.lines[0]
    for key in ("batch_size", "imgsz", "label_smoothing", "rect", "cache", "hyp", "bucket"):
        assert key in warning
    for key in ("workers", "device", "download"):  # set by this command line, silently
        assert f"{key}=" not in warning and "download (" not in warning
    assert resume_hyp({"lr0": 0.01, "mosaic": True, "x": "1e-3"}, "last.pt") == {"lr0": 0.01}
    with pytest.raises(UserError, match="not a mapping"):
        resume_options(["epochs", 3], "last.pt")
    with pytest.raises(UserError, match="names no dataset yaml"):
        resume_options({"epochs": 3}, "last.pt")


def test_bare_resume_skips_linked_checkpoints(tmp_path, monkeypatch):
    """A symlinked last.pt under runs/ would move the run folder to wherever it points: it is not picked."""
    real = plant(tmp_path / "elsewhere", {"epochs": 2, "data": "coco8.yaml"})
    link = tmp_path / "runs" / "exp" / "weights" / "last.pt"
    link.parent.mkdir(parents=True)
    link.symlink_to(real)
    monkeypatch.setattr(utils.resume, "RUNS_DIR", tmp_path / "runs")
    with pytest.raises(UserError, match="no last.pt found"):
        utils.resume.latest_checkpoint()
