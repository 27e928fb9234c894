"""Hostile and careless inputs: nothing a model or dataset says places a file outside the run folder, and small
crafted files fail fast with a clear error (hang cases run under a timeout)."""

from pathlib import Path

import pytest

import detect
from models.experimental import attempt_load
from utils.checkpoints import make_checkpoint, save_checkpoint
from utils.general import ROOT, safe_filename

FIXTURE = ROOT / "tests" / "fixtures" / "yolov5n-v7.0.pt"
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
