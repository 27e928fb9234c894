"""benchmarks/ablate.py: two configurations trained for one epoch on coco8, the table, CSV and plot, the reuse of
finished rows, and the resume / retrain decisions for interrupted runs."""

import csv
import json

import pytest
import torch

from benchmarks import ablate
from utils.general import ROOT, UserError

CFGS = ["yolov5n.yaml", "yolov5n_SPDConv.yaml"]


def n_params(cfg, nc):
    from models.yolo import Model

    return sum(p.numel() for p in Model(cfg, nc=nc).parameters())


@pytest.fixture(scope="module")
def ablation(tmp_path_factory):
    """One real invocation: 2 configurations, 1 epoch at 64 px on coco8 (4 train, 4 val images)."""
    tmp = tmp_path_factory.mktemp("ablate")
    kwargs = dict(data="coco8.yaml", cfgs=CFGS, epochs=1, imgsz=64, batch_size=4, workers=0, noautoanchor=True,
                  project=str(tmp / "runs"), out=str(tmp / "out"), latency_img=64, latency_runs=1)
    rows = ablate.run(**kwargs)
    return tmp, kwargs, rows


def test_table_csv_and_plot(ablation):
    tmp, _, rows = ablation
    out = tmp / "out"
    with open(out / "ablation.csv") as f:
        table = list(csv.DictReader(f))
    assert [r["model"] for r in table] == ["yolov5n", "yolov5n_SPDConv"]
    assert int(table[0]["params"]) == 1872157  # the official YOLOv5n v7.0 count (80 classes)
    assert 4.4 < float(table[0]["gflops_640"]) < 4.6  # official: 4.5 GFLOPs at 640
    assert int(table[1]["params"]) == n_params(CFGS[1], nc=80)
    for r in table:
        assert 0 <= float(r["map50_95"]) <= float(r["map50"]) <= 1
        assert float(r["latency_ms"]) > 0 and float(r["train_s"]) > 0 and r["epochs"] == "1"
    md = (out / "ablation.md").read_text()
    assert "| yolov5n | 1.872 | 4.47 |" in md and "| yolov5n_SPDConv |" in md
    png = (out / "ablation.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    for name in ("yolov5n", "yolov5n_SPDConv"):  # each trained into project/<name>/
        ckpt = torch.load(tmp / "runs" / name / "weights" / "best.pt", map_location="cpu", weights_only=True)
        assert ckpt["opt"]["imgsz"] == 64 and ckpt["opt"]["epochs"] == 1 and ckpt["opt"]["seed"] == 0


def test_second_invocation_reuses_finished_rows(ablation, monkeypatch):
    tmp, kwargs, rows = ablation
    import train
    import val

    def fail(**kwargs):
        raise AssertionError("a finished row was trained or validated again")

    monkeypatch.setattr(train, "run", fail)
    monkeypatch.setattr(val, "run", fail)
    monkeypatch.setattr(ablate, "measure_model", fail)
    assert ablate.run(**kwargs) == rows
    state = json.loads((tmp / "out" / ablate.STATE_FILE).read_text())["rows"]
    assert sorted(state) == ["yolov5n", "yolov5n_SPDConv"]


def _fake_run(run_dir, settings, epoch, optimizer=True, best=True):
    """A run folder as train.py leaves it: settings file, last.pt (with or without optimizer state), best.pt."""
    weights = run_dir / "weights"
    weights.mkdir(parents=True)
    (run_dir / ablate.RUN_SETTINGS_FILE).write_text(json.dumps(settings))
    ckpt = {"model": {}, "epoch": epoch, "optimizer": {"state": {}, "param_groups": []} if optimizer else None}
    torch.save(ckpt, weights / "last.pt")
    if best:
        torch.save(ckpt, weights / "best.pt")


SETTINGS = {"data": "coco8.yaml", "hyp": "", "epochs": 3, "imgsz": 64, "batch_size": 4, "seed": 0, "weights": "",
            "noautoanchor": True}


def test_training_plan(tmp_path):
    assert ablate.training_plan(tmp_path / "none", SETTINGS) == ("fresh", None)
    _fake_run(tmp_path / "a", SETTINGS, epoch=1)  # killed after epoch 1 of 0..2
    assert ablate.training_plan(tmp_path / "a", SETTINGS) == ("resume", tmp_path / "a/weights/last.pt")
    _fake_run(tmp_path / "b", SETTINGS, epoch=-1, optimizer=False)  # finished and stripped
    assert ablate.training_plan(tmp_path / "b", SETTINGS) == ("done", tmp_path / "b/weights/best.pt")
    _fake_run(tmp_path / "c", SETTINGS, epoch=2, best=False)  # last epoch saved, killed before stripping
    assert ablate.training_plan(tmp_path / "c", SETTINGS) == ("done", tmp_path / "c/weights/last.pt")
    assert ablate.training_plan(tmp_path / "a", {**SETTINGS, "epochs": 5}) == ("fresh", None)  # other settings
    (tmp_path / "a/weights/last.pt").write_bytes(b"truncated")
    assert ablate.training_plan(tmp_path / "a", SETTINGS) == ("fresh", None)


def test_interrupted_training_resumes_from_last(tmp_path, monkeypatch):
    import train

    _fake_run(tmp_path / "yolov5n", SETTINGS, epoch=0)
    calls = []

    class Opt:
        results = (0.5, 0.4, 0.3, 0.2, 0, 0, 0)

    monkeypatch.setattr(train, "run", lambda **kw: calls.append(kw) or Opt)
    map50, map50_95, _ = ablate.train_config("yolov5n.yaml", tmp_path / "yolov5n", SETTINGS, 0, "cpu", False)
    assert calls == [{"resume": str(tmp_path / "yolov5n/weights/last.pt"), "workers": 0, "device": "cpu"}]
    assert (map50, map50_95) == (0.3, 0.2)
    calls.clear()
    ablate.train_config("yolov5n.yaml", tmp_path / "yolov5n", {**SETTINGS, "epochs": 4}, 0, "cpu", False)
    assert calls[0]["epochs"] == 4 and calls[0]["cfg"] == "yolov5n.yaml" and "resume" not in calls[0]
    assert not (tmp_path / "yolov5n/weights").exists()  # the run of other settings was cleared first


def test_cfgs_expansion():
    stock_and_variants = ablate.expand_cfgs(["all"])
    variants = sorted(p.stem.split("_", 1)[1] for p in (ROOT / "models").glob("yolov5s_*.yaml"))
    assert stock_and_variants == ["yolov5n.yaml"] + [f"yolov5n_{v}.yaml" for v in variants]
    assert ablate.expand_cfgs(["models/yolov5[nm].yaml", "models/yolov5m.yaml"]) == ["models/yolov5m.yaml",
                                                                                     "models/yolov5n.yaml"]
    with pytest.raises(UserError, match="share the run name"):
        ablate.expand_cfgs(["models/yolov5n.yaml", "yolov5n.yaml"])
    with pytest.raises(UserError, match="matches no file"):
        ablate.expand_cfgs(["models/nothing_*.yaml"])


def test_readme_block_is_replaced_and_nothing_else(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"# T\nintro\n{ablate.README_START}\nold table\n{ablate.README_END}\ntail\n")
    ablate.replace_readme_block(readme, "| a |\n| --- |\n")
    assert readme.read_text() == f"# T\nintro\n{ablate.README_START}\n| a |\n| --- |\n{ablate.README_END}\ntail\n"
    readme.write_text("# no markers\n")
    with pytest.raises(UserError, match="ablation-table:start"):
        ablate.replace_readme_block(readme, "x")


def test_bad_cfg_stops_before_any_training(tmp_path, monkeypatch):
    import train

    monkeypatch.setattr(train, "run", lambda **kw: pytest.fail("trained before checking every yaml"))
    with pytest.raises(UserError, match="not found"):
        ablate.run(data="coco8.yaml", cfgs=["yolov5n.yaml", "yolov5n_NoSuchModule.yaml"], project=str(tmp_path))


def test_a_failed_training_is_reported_and_not_kept(tmp_path, monkeypatch):
    import train

    def train_run(**kw):
        if kw["cfg"] == "yolov5s.yaml":
            raise UserError("training stopped: the loss became NaN/inf")
        Opt.results = (0.5, 0.4, 0.3, 0.2, 0, 0, 0)
        return Opt

    class Opt:
        pass

    monkeypatch.setattr(train, "run", train_run)
    monkeypatch.setattr(ablate, "measure_model", lambda cfg, img, runs: (1_000_000, 2.0, 10.0))
    rows = ablate.run(data="coco8.yaml", cfgs=["yolov5n.yaml", "yolov5s.yaml"], project=str(tmp_path))
    assert [(r["model"], r["map50"], r["map50_95"]) for r in rows] == [("yolov5n", 0.3, 0.2), ("yolov5s", None, None)]
    assert "| yolov5s | 1.000 | 2.00 | 10.0 | n/a | n/a | n/a |" in (tmp_path / "ablation.md").read_text()
    assert sorted(json.loads((tmp_path / ablate.STATE_FILE).read_text())["rows"]) == ["yolov5n"]  # retried next time
