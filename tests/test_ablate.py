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


SEEDS = [0, 1]


@pytest.fixture(scope="module")
def ablation(tmp_path_factory):
    """One real invocation: 2 configurations x 2 seeds, 1 epoch at 64 px on coco8 (4 train, 4 val images)."""
    tmp = tmp_path_factory.mktemp("ablate")
    kwargs = dict(data="coco8.yaml", cfgs=CFGS, seeds=SEEDS, epochs=1, imgsz=64, batch_size=4, workers=0,
                  noautoanchor=True, project=str(tmp / "runs"), out=str(tmp / "out"), latency_img=64, latency_runs=1)
    rows = ablate.run(**kwargs)
    return tmp, kwargs, rows


def read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_table_csv_and_plot(ablation):
    tmp, _, rows = ablation
    out = tmp / "out"
    per_seed = read_csv(out / "ablation_seeds.csv")
    assert [(r["model"], r["seed"]) for r in per_seed] == [("yolov5n", "0"), ("yolov5n", "1"),
                                                          ("yolov5n_SPDConv", "0"), ("yolov5n_SPDConv", "1")]
    for r in per_seed:
        assert 0 <= float(r["map50_95"]) <= float(r["map50"]) <= 1
        assert float(r["latency_ms"]) > 0 and float(r["train_s"]) > 0 and r["epochs"] == "1"
    table = read_csv(out / "ablation.csv")
    assert list(table[0]) == list(ablate.COLUMNS)
    assert [r["model"] for r in table] == ["yolov5n", "yolov5n_SPDConv"]
    assert int(table[0]["params"]) == 1872157  # the official YOLOv5n v7.0 count (80 classes)
    assert 4.4 < float(table[0]["gflops_640"]) < 4.6  # official: 4.5 GFLOPs at 640
    assert int(table[1]["params"]) == n_params(CFGS[1], nc=80)
    for model, r in zip(("yolov5n", "yolov5n_SPDConv"), table):  # mean and sample sd of the two seeds
        maps = [float(s["map50_95"]) for s in per_seed if s["model"] == model]
        assert r["seeds"] == "2"
        assert float(r["map50_95_mean"]) == pytest.approx(sum(maps) / 2)
        assert float(r["map50_95_std"]) == pytest.approx(abs(maps[0] - maps[1]) / 2**0.5)
        assert float(r["map50_mean"]) >= float(r["map50_95_mean"]) and float(r["map50_std"]) >= 0
    base, variant = table
    assert base["verdict"] == ablate.BASELINE and base["diff_map50_95"] == ""
    diffs = [float(v["map50_95"]) - float(b["map50_95"]) for b, v in zip(per_seed[:2], per_seed[2:])]
    half = 12.706 * abs(diffs[0] - diffs[1]) / 2**0.5 / 2**0.5  # t(0.975, 1 dof) * sd / sqrt(n)
    assert float(variant["diff_map50_95"]) == pytest.approx(sum(diffs) / 2)
    assert float(variant["diff_low"]) == pytest.approx(sum(diffs) / 2 - half)
    assert float(variant["diff_high"]) == pytest.approx(sum(diffs) / 2 + half)
    assert variant["verdict"] in (ablate.BETTER, ablate.WORSE, ablate.UNRESOLVED)
    md = (out / "ablation.md").read_text()
    assert "| yolov5n | 2 | 1.872 | 4.47 |" in md and "| yolov5n_SPDConv | 2 |" in md
    assert "Δ mAP50-95 vs yolov5n [95% CI]" in md and "paired Student-t interval" in md and "seeds 0, 1" in md
    # coco8's val images hold objects under 32x32 pixels, so every seed has an AP_small (each final weights validated)
    smalls = [float(r["ap_small"]) for r in per_seed]
    assert all(0 <= v <= 1 for v in smalls)
    assert float(base["ap_small_mean"]) == pytest.approx(sum(smalls[:2]) / 2)
    assert float(variant["diff_ap_small"]) == pytest.approx((smalls[2] + smalls[3] - smalls[0] - smalls[1]) / 2)
    assert "| AP_small | Δ AP_small [95% CI] |" in md
    png = (out / "ablation.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    for name in ("yolov5n", "yolov5n_SPDConv"):  # each trained into project/<name>/seed<k>/
        for seed in SEEDS:
            ckpt = torch.load(tmp / "runs" / name / f"seed{seed}" / "weights" / "best.pt", map_location="cpu",
                              weights_only=True)
            assert ckpt["opt"]["imgsz"] == 64 and ckpt["opt"]["epochs"] == 1 and ckpt["opt"]["seed"] == seed


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
    assert sorted(state) == ["yolov5n/seed0", "yolov5n/seed1", "yolov5n_SPDConv/seed0", "yolov5n_SPDConv/seed1"]


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
    map50, map50_95, *_ = ablate.train_config("yolov5n.yaml", tmp_path / "yolov5n", SETTINGS, 0, "cpu", False)
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
    assert [(r["model"], r["seeds"], r["map50_mean"], r["map50_95_mean"]) for r in rows] == [
        ("yolov5n", 1, 0.3, 0.2), ("yolov5s", 0, None, None)]
    md = (tmp_path / "ablation.md").read_text()
    assert "| yolov5s | 0 | 1.000 | 2.00 | 10.0 | n/a | n/a | n/a | n/a | n/a | n/a |" in md
    assert "With 1 seed no interval can be computed" in md
    assert sorted(json.loads((tmp_path / ablate.STATE_FILE).read_text())["rows"]) == ["yolov5n/seed0"]  # retried


# ---------------------------------------------------------------------------------------------------------------
# The paired comparison on hand-made numbers
# ---------------------------------------------------------------------------------------------------------------
BASE = {0: 0.30, 1: 0.32, 2: 0.31}


def test_clear_gain_is_better():
    # differences 0.05, 0.04, 0.06: mean 0.05, sd 0.01; half width t(0.975, 2 dof) * 0.01 / sqrt(3) = 0.024843
    c = ablate.paired_comparison({0: 0.35, 1: 0.36, 2: 0.37}, BASE)
    assert c["n"] == 3 and c["diff"] == pytest.approx(0.05)
    assert (c["low"], c["high"]) == (pytest.approx(0.025157, abs=1e-6), pytest.approx(0.074843, abs=1e-6))
    assert c["verdict"] == ablate.BETTER
    assert c["seeds_to_resolve"] == 3  # n=2: 12.706 * 0.01 / sqrt(2) = 0.0898 > 0.05; n=3: 0.0248 < 0.05


def test_clear_loss_is_worse():
    c = ablate.paired_comparison({0: 0.25, 1: 0.28, 2: 0.25}, BASE)  # differences -0.05, -0.04, -0.06
    assert c["diff"] == pytest.approx(-0.05)
    assert (c["low"], c["high"]) == (pytest.approx(-0.074843, abs=1e-6), pytest.approx(-0.025157, abs=1e-6))
    assert c["verdict"] == ablate.WORSE and c["seeds_to_resolve"] == 3


def test_noise_is_not_distinguishable_and_says_how_many_seeds_would_be():
    # differences +0.03, -0.02, +0.02: mean 0.01, sd sqrt((0.02^2 + 0.03^2 + 0.01^2) / 2) = 0.026458
    c = ablate.paired_comparison({0: 0.33, 1: 0.30, 2: 0.33}, BASE)
    sd = (0.0014 / 2) ** 0.5
    assert c["diff"] == pytest.approx(0.01)
    half = 4.303 * sd / 3**0.5  # t(0.975, 2 dof) * sd / sqrt(n)
    assert c["low"] == pytest.approx(0.01 - half) and c["high"] == pytest.approx(0.01 + half)
    assert c["low"] < 0 < c["high"] and c["verdict"] == ablate.UNRESOLVED
    # smallest n with t(n-1) * sd / sqrt(n) < 0.01: n=30 gives 2.045 * 0.026458 / 5.477 = 0.009879 (n=29: 0.010065)
    assert c["seeds_to_resolve"] == 30
    assert ablate.seeds_to_resolve(0.0, sd) is None  # no difference is ever resolved


def test_comparison_pairs_seeds_and_handles_one_seed():
    c = ablate.paired_comparison({0: 0.35, 5: 0.9}, BASE)  # seed 5 has no baseline partner: one pair left
    assert c["n"] == 1 and c["diff"] == pytest.approx(0.05) and c["low"] is None and c["verdict"] == ablate.ONE_SEED
    assert ablate.paired_comparison({0: None}, BASE)["verdict"] is None  # a failed run pairs with nothing


def test_t_quantiles():
    assert ablate.t_quantile_975(1) == 12.706 and ablate.t_quantile_975(30) == 2.042
    assert ablate.t_quantile_975(60) == pytest.approx(2.000, abs=5e-4)  # expansion beyond the table
    assert ablate.t_quantile_975(10**6) == pytest.approx(1.960, abs=5e-4)
    assert ablate.mean_std([0.1, 0.3]) == (pytest.approx(0.2), pytest.approx(0.141421, abs=1e-6))
    assert ablate.mean_std([0.1]) == (0.1, None) and ablate.mean_std([]) == (None, None)


# ---------------------------------------------------------------------------------------------------------------
# An interrupted multi-seed run continues
# ---------------------------------------------------------------------------------------------------------------
class _Results:
    """What train.run returns: an options namespace with the final results (P, R, mAP50, mAP50-95, ...)."""

    def __init__(self, map50_95):
        self.results = (0.5, 0.4, map50_95 + 0.1, map50_95, 0, 0, 0)


def test_interrupted_multi_seed_run_continues(tmp_path, monkeypatch):
    import train

    # the variant gains 0.05, 0.04, 0.06 over the baseline's 0.30, 0.32, 0.31 on seeds 0, 1, 2
    maps = {("yolov5n.yaml", s): m for s, m in BASE.items()}
    maps |= {("yolov5s.yaml", 0): 0.35, ("yolov5s.yaml", 1): 0.36, ("yolov5s.yaml", 2): 0.37}

    calls = []

    def killed_at_yolov5s_seed1(**kw):
        if (kw["cfg"], kw["seed"]) == ("yolov5s.yaml", 1):
            raise KeyboardInterrupt  # the invocation is killed during this training
        calls.append((kw["cfg"], kw["seed"]))
        return _Results(maps[kw["cfg"], kw["seed"]])

    monkeypatch.setattr(train, "run", killed_at_yolov5s_seed1)
    monkeypatch.setattr(ablate, "measure_model", lambda cfg, img, runs: calls.append(("measure", cfg)) or (1, 2.0, 3.0))
    kwargs = dict(data="coco8.yaml", cfgs=["yolov5n.yaml", "yolov5s.yaml"], seeds=[0, 1, 2], project=str(tmp_path))
    with pytest.raises(KeyboardInterrupt):
        ablate.run(**kwargs)
    assert calls == [("yolov5n.yaml", 0), ("measure", "yolov5n.yaml"), ("yolov5n.yaml", 1), ("yolov5n.yaml", 2),
                     ("yolov5s.yaml", 0), ("measure", "yolov5s.yaml")]

    # --no-train meanwhile: the finished trainings' rows are reused, the unfinished ones show no mAP and are not kept
    monkeypatch.setattr(train, "run", lambda **kw: pytest.fail("--no-train trained"))
    partial = ablate.run(**kwargs, no_train=True)
    assert [(r["model"], r["seeds"], r["verdict"]) for r in partial] == [("yolov5n", 3, ablate.BASELINE),
                                                                       ("yolov5s", 1, ablate.ONE_SEED)]
    assert partial[1]["diff_map50_95"] == pytest.approx(0.05) and len(calls) == 6  # nothing trained or measured
    assert "Only 4 of the 6 runs have an mAP so far" in (tmp_path / "ablation.md").read_text()
    assert sorted(json.loads((tmp_path / ablate.STATE_FILE).read_text())["rows"]) == [
        "yolov5n/seed0", "yolov5n/seed1", "yolov5n/seed2", "yolov5s/seed0"]

    calls.clear()
    def resumed(**kw):
        calls.append((kw["cfg"], kw["seed"]))
        return _Results(maps[kw["cfg"], kw["seed"]])

    monkeypatch.setattr(train, "run", resumed)
    rows = ablate.run(**kwargs)
    assert calls == [("yolov5s.yaml", 1), ("yolov5s.yaml", 2)]  # only the unfinished seeds; no new measurement
    base, variant = rows
    assert (base["seeds"], base["map50_95_mean"], base["verdict"]) == (3, pytest.approx(0.31), ablate.BASELINE)
    assert variant["seeds"] == 3 and variant["diff_map50_95"] == pytest.approx(0.05)
    assert (variant["diff_low"], variant["verdict"]) == (pytest.approx(0.025157, abs=1e-6), ablate.BETTER)
    table = (tmp_path / "ablation.md").read_text()
    assert ("| yolov5s | 3 | 0.000 | 2.00 | 3.0 | 0.460 ± 0.010 | 0.360 ± 0.010 | +0.050 [+0.025, +0.075] | better "
            "| 3 |") in table


def test_budget_presets_and_baseline(tmp_path, monkeypatch):
    import train

    seen = []
    monkeypatch.setattr(train, "run", lambda **kw: seen.append((kw["epochs"], kw["imgsz"])) or _Results(0.3))
    monkeypatch.setattr(ablate, "measure_model", lambda cfg, img, runs: (1, 2.0, 3.0))
    rows = ablate.run(data="coco8.yaml", cfgs=["yolov5n.yaml", "yolov5s.yaml"], budget="long", imgsz=96,
                      baseline="yolov5s", project=str(tmp_path))
    assert seen == [(ablate.BUDGETS["long"][0], 96)] * 2  # --imgsz overrides the preset's
    assert [r["verdict"] for r in rows] == [ablate.ONE_SEED, ablate.BASELINE]
    assert ablate.parse_opt([]).budget == ablate.DEFAULT_BUDGET
    with pytest.raises(UserError, match="--baseline"):
        ablate.run(data="coco8.yaml", cfgs=["yolov5n.yaml"], baseline="yolov5x", project=str(tmp_path))
    with pytest.raises(UserError, match="--seeds"):
        ablate.run(data="coco8.yaml", cfgs=["yolov5n.yaml"], seeds=[1, 1], project=str(tmp_path))


def test_ap_small_columns_are_paired_like_map():
    """AP_small: mean, spread and the paired difference with its interval, from the per-seed rows; a row without
    it (a split without small objects, or a row of an older state) is left out of the pairs."""
    def row(model, seed, ap_small):
        return {"model": model, "cfg": f"{model}.yaml", "seed": seed, "params": 1, "gflops_640": 1.0,
                "latency_ms": 1.0, "map50": 0.5, "map50_95": 0.3, "epochs": 1, "train_s": 1.0, "ap_small": ap_small}

    base, variant = [0.10, 0.12, 0.11, 0.2], [0.13, 0.16, 0.14, None]
    rows = [row("a", s, v) for s, v in enumerate(base)] + [row("b", s, v) for s, v in enumerate(variant)]
    del rows[3]["ap_small"]  # an older state's row
    a, b = ablate.summarize(rows, "a")
    assert a["ap_small_mean"] == pytest.approx(0.11) and a["diff_ap_small"] is None
    comp = ablate.paired_comparison({0: 0.13, 1: 0.16, 2: 0.14}, {0: 0.10, 1: 0.12, 2: 0.11})
    assert b["diff_ap_small"] == pytest.approx(0.1 / 3) and comp["diff"] == pytest.approx(0.1 / 3)
    assert (b["diff_ap_small_low"], b["diff_ap_small_high"]) == (comp["low"], comp["high"])
    assert 0 < b["diff_ap_small_low"] < b["diff_ap_small_high"]
    line = ablate.markdown_table([a, b], 64, "a").splitlines()[-1]
    assert line.endswith(f"| 0.143 ± 0.015 | +0.033 [{comp['low']:+.3f}, {comp['high']:+.3f}] |")


def test_segmentation_cfg_names_follow_the_seg_rule():
    assert ablate.segmentation_cfg("yolov5n.yaml") == "yolov5n-seg.yaml"
    assert ablate.segmentation_cfg("models/yolov5s_ScConv.yaml") == "yolov5s-seg_ScConv.yaml"
    assert ablate.segmentation_cfg("yolov5n-seg_GSConv.yaml") == "yolov5n-seg_GSConv.yaml"


@pytest.mark.slow
def test_segment_task_trains_the_seg_forms_and_reports_mask_metrics(tmp_path):
    """--task segment: each configuration in its -seg form trained by segment/train.py; the rows carry the -seg
    names, official yolov5n-seg's parameter count and finite mask mAPs."""
    from data.synthetic import generate_shapes_seg
    from utils.general import yaml_save

    root = generate_shapes_seg(tmp_path / "shapes-seg", n_train=8, n_val=2, size=64)
    data = tmp_path / "data.yaml"
    yaml_save(data, {"path": str(root), "train": "images/train", "val": "images/val",
                     "names": {0: "circle", 1: "square", 2: "triangle"}})
    rows = ablate.run(data=str(data), task="segment", cfgs=["yolov5n.yaml", "yolov5n_ScConv.yaml"], budget="smoke",
                      seeds=[0], project=str(tmp_path / "ablate"), batch_size=4, latency_img=64, latency_runs=1)
    assert [r["model"] for r in rows] == ["yolov5n-seg", "yolov5n-seg_ScConv"]
    assert rows[0]["params"] == 1_991_549  # official yolov5n-seg
    assert all(0 <= r["map50_95_mean"] <= 1 for r in rows)
    with pytest.raises(UserError, match="--task must be detect or segment"):
        ablate.run(data=str(data), task="classify", cfgs=["yolov5n.yaml"], project=str(tmp_path / "x"))
