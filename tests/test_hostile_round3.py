"""Untrusted input, round 3: values that pass type checks but would hang, allocate gigabytes or end in a
traceback (a huge --freeze, hostile resume state, an oversized model yaml, directory link loops, inflating
checkpoint members, allocating TorchScript, damaged evolve/ablation state) each become a one-line UserError or a
warning and a skip."""

import argparse
import copy
import json
import math
import shutil
import time
import zipfile

import pytest
import torch
import yaml

import train
import utils.sources
from benchmarks import ablate
from engine import training
from models.experimental import model_from_checkpoint
from models.yolo import Model
from utils.checkpoints import load_checkpoint, make_checkpoint, save_checkpoint
from utils.evolve import append_evolve_csv, next_hyp, read_evolve_csv, write_best_hyp
from utils.general import ROOT, UserError, yaml_load
from utils.resume import load_optimizer_state, load_resume_state, load_resumed_weights
from utils.script_check import load_torchscript
from utils.sources import list_source_files
from utils.torch_utils import ModelEMA
from utils.training import build_optimizer

CPU = torch.device("cpu")


def test_huge_freeze_count_is_bounded_by_the_layer_count():
    opt = argparse.Namespace(resume=False, cfg="yolov5n.yaml", amp="auto", freeze=[10**9], sync_bn=False)
    start = time.monotonic()
    with pytest.raises(UserError, match=r"--freeze 1000000000 freezes all 25 layers"):
        training.build_model(opt, None, 80, {i: str(i) for i in range(80)}, CPU)
    assert time.monotonic() - start < 60  # unbounded, it builds 10^9 names (minutes, ~60 GB)


def test_freeze_indices_past_the_last_layer_are_ignored():
    opt = argparse.Namespace(resume=False, cfg="yolov5n.yaml", amp="auto", freeze=[0, 1, 10**9], sync_bn=False)
    model, _ = training.build_model(opt, None, 80, {i: str(i) for i in range(80)}, CPU)
    frozen = {k.split(".")[1] for k, v in model.named_parameters() if not v.requires_grad}
    assert frozen == {"0", "1"}


@pytest.fixture(scope="module")
def resumable():
    """A real resumable last.pt's dict (yolov5n, SGD with momentum buffers, EMA, loop state) and another model
    with its optimizer (yolov5s: the same parameter count per group, other shapes)."""
    def trained(cfg):
        model = Model(cfg, nc=80)
        optimizer = build_optimizer(model, "SGD", 0.01, 0.9, 5e-4)
        for p in model.parameters():
            p.grad = torch.zeros_like(p)
        optimizer.step()
        return model, optimizer

    model, optimizer = trained("yolov5n.yaml")
    opt = vars(train.parse_opt([])) | dict(data=str(ROOT / "data/coco8.yaml"), cfg="yolov5n.yaml", imgsz=64,
                                           epochs=3, batch_size=2, workers=0)
    ckpt = make_checkpoint(model, names={i: str(i) for i in range(80)}, ema=ModelEMA(model), optimizer=optimizer,
                           epoch=0, best_fitness=0.1, opt=opt, hyp=yaml_load(ROOT / "data/hyps/hyp.scratch-low.yaml"),
                           half=False, train_state={"last_opt_step": 3, "best_epoch": 0, "maps": [0.0] * 80})
    return ckpt, trained("yolov5s.yaml")


def planted(tmp_path, ckpt, edit):
    """``ckpt`` edited by ``edit`` (a function of a deep copy), saved as tmp_path/exp/weights/last.pt."""
    ckpt = copy.deepcopy(ckpt)
    edit(ckpt)
    path = tmp_path / "exp" / "weights" / "last.pt"
    path.parent.mkdir(parents=True)
    save_checkpoint(ckpt, path)
    return path


@pytest.mark.parametrize("edit, message", [
    (lambda c: c["opt"].update(seed=2**70), r"option seed=1180591620717411303424 is out of range 0\.\.2147483647"),
    (lambda c: c.update(epoch=2**40), r"its epoch 1099511627776 is outside 0\.\.3"),
    (lambda c: c["opt"].update(epochs=2**40), r"option epochs=1099511627776 is out of range 1\.\.1000000"),
    (lambda c: c["opt"].update(imgsz=60000), r"option imgsz=60000 is out of range 1\.\.8192"),
    (lambda c: c.update(best_fitness="high"), r"its best_fitness 'high' is not a finite number"),
    (lambda c: c.update(best_fitness=float("nan")), r"its best_fitness nan is not a finite number"),
    (lambda c: c["train_state"].update(maps="abc"), r"maps 'abc' is not a list of 80 finite numbers"),
    (lambda c: c["train_state"].update(maps=[0.5] * 3), r"maps \[0\.5, 0\.5, 0\.5\] is not a list of 80 finite"),
    (lambda c: c["train_state"].update(best_epoch="x"), r"train_state best_epoch 'x' is not a count"),
    (lambda c: c.update(updates=-5), r"EMA 'updates' -5 is not a count"),
])
def test_resumed_state_out_of_range_is_a_user_error(tmp_path, resumable, edit, message):
    path = planted(tmp_path, resumable[0], edit)
    with pytest.raises(UserError, match=message) as e:
        load_resume_state(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)


def test_sound_resumed_state_is_taken(tmp_path, resumable):
    path, options, hyp = load_resume_state(planted(tmp_path, resumable[0], lambda c: None))
    assert options["seed"] == 0 and options["imgsz"] == 64 and options["epochs"] == 3 and hyp["lr0"] == 0.01


def test_weights_of_another_shape_name_the_first_keys(resumable):
    ckpt, _ = resumable
    model = Model(ckpt["yaml"], nc=80)
    bad = dict(ckpt["model"]) | {"model.0.conv.weight": torch.zeros(3, 3, 3, 3)}
    with pytest.raises(UserError, match=r"last\.pt: its 'model' weights do not fit .* \(1 differences: "
                                        r"model\.0\.conv\.weight \(3, 3, 3, 3\) != \(16, 3, 6, 6\)\)"):
        load_resumed_weights(model, bad, "last.pt")
    load_resumed_weights(model, ckpt["model"], "last.pt")  # the sound weights load
    assert torch.equal(model.state_dict()["model.0.conv.weight"], ckpt["model"]["model.0.conv.weight"])


def test_optimizer_state_of_another_model_is_refused(resumable):
    ckpt, (_, other_optimizer) = resumable
    model = Model(ckpt["yaml"], nc=80)
    optimizer = build_optimizer(model, "SGD", 0.01, 0.9, 5e-4)
    with pytest.raises(UserError, match=r"last\.pt: its optimizer state: momentum_buffer of parameter 0 has shape "
                                        r"\(32,\), this model's is \(16,\) \(the state of another model\)"):
        load_optimizer_state(optimizer, other_optimizer.state_dict(), "last.pt")
    hostile_lr = copy.deepcopy(ckpt["optimizer"])
    hostile_lr["param_groups"][0]["lr"] = "fast"
    with pytest.raises(UserError, match=r"group 0 lr 'fast' is not a finite number"):
        load_optimizer_state(optimizer, hostile_lr, "last.pt")
    load_optimizer_state(optimizer, ckpt["optimizer"], "last.pt")  # its own state loads
    assert len(optimizer.state) == len(ckpt["optimizer"]["state"])


def test_another_models_yaml_is_refused_by_train_resume(tmp_path, resumable):
    ckpt, (other, _) = resumable
    path = planted(tmp_path, ckpt, lambda c: c.update(yaml=other.yaml))
    with pytest.raises(UserError, match=r"its 'model' weights do not fit the model its yaml builds \(288 "
                                        r"differences: model\.0\.conv\.weight \(16, 3, 6, 6\) != \(32, 3, 6, 6\)"):
        train.run(resume=str(path), workers=0)


HUGE_YAML = {"nc": 80, "anchors": 3, "backbone": [[-1, 1, "Conv", [8192, 3]] for _ in range(6)],
             "head": [[-1, 1, "Conv", [8192, 3]] for _ in range(5)] + [[[-1], 1, "Detect", ["nc", "anchors"]]]}
TOO_LARGE = r"layer 1 Conv brings the model to 604,\d{3},\d{3} parameters, over the 500,000,000 limit .*MAX_PARAMS"


def test_model_yaml_of_billions_of_parameters_is_refused_before_building(tmp_path):
    cfg = tmp_path / "huge.yaml"
    cfg.write_text(yaml.safe_dump(HUGE_YAML))
    assert cfg.stat().st_size < 1000  # a few hundred bytes that would allocate 29 GB
    start = time.monotonic()
    with pytest.raises(UserError, match=TOO_LARGE):
        Model(cfg)
    assert time.monotonic() - start < 60


def test_parameter_limit_can_be_raised_or_lowered(monkeypatch):
    monkeypatch.setenv("YOLOV5_MAX_PARAMS", "1000000")  # yolov5n (80 classes) has 1.87M
    with pytest.raises(UserError, match=r"layer 9 SPPF brings the model to 1,0\d\d,\d{3} parameters, over the 1,0"):
        Model("yolov5n.yaml")
    monkeypatch.setenv("YOLOV5_MAX_PARAMS", "2000000")
    assert sum(p.numel() for p in Model("yolov5n.yaml").parameters()) == 1_872_157
    monkeypatch.setenv("YOLOV5_MAX_PARAMS", "lots")
    with pytest.raises(UserError, match=r"YOLOV5_MAX_PARAMS must be a positive whole number .*'lots'"):
        Model("yolov5n.yaml")


def test_huge_model_yaml_inside_a_checkpoint_is_refused(resumable):
    ckpt = dict(resumable[0], yaml=HUGE_YAML)
    with pytest.raises(UserError, match=TOO_LARGE):
        model_from_checkpoint(ckpt)


def test_source_glob_does_not_follow_directory_link_loops(tmp_path):
    images = tmp_path / "d"
    (images / "sub").mkdir(parents=True)
    for name in ("a.jpg", "sub/b.jpg", ".hidden.jpg"):
        shutil.copy(ROOT / "data/images/bus.jpg", images / name)
    for i in range(4):  # unfollowed, each link doubles the paths per level: 2^40 paths within 10 levels
        (images / "sub" / f"loop{i}").symlink_to(images, target_is_directory=True)
    start = time.monotonic()
    files = list_source_files(str(images / "**" / "*.jpg"))
    assert time.monotonic() - start < 30
    assert files == [str(images / "a.jpg"), str(images / "sub" / "b.jpg")]
    assert list_source_files(str(images / "*.jpg")) == [str(images / "a.jpg")]  # hidden names skipped, as before


def test_source_glob_matching_too_many_paths_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(utils.sources, "MAX_SOURCE_MATCHES", 2)
    for i in range(3):
        shutil.copy(ROOT / "data/images/bus.jpg", tmp_path / f"{i}.jpg")
    with pytest.raises(UserError, match=r"the pattern matches over 2 paths; narrow it"):
        list_source_files(str(tmp_path / "*.jpg"))


def test_checkpoint_member_that_inflates_a_thousandfold_is_refused(tmp_path):
    stored = tmp_path / "stored.pt"
    torch.save({"model": {"w": torch.zeros(2**23)}, "ema": None}, stored)  # 32 MB of zeros, written uncompressed
    bomb = tmp_path / "bomb.pt"
    with zipfile.ZipFile(stored) as src, zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as dst:
        for member in src.infolist():
            dst.writestr(member.filename, src.read(member))
    assert bomb.stat().st_size < 2**20 < 2**25 < sum(m.file_size for m in zipfile.ZipFile(bomb).infolist())
    with pytest.raises(UserError, match=r"bomb\.pt' holds a member \(.*data/0\) that inflates [\d,]+ bytes to "
                                        r"33,554,432, over 10x"):
        load_checkpoint(bomb)
    assert load_checkpoint(stored)["model"]["w"].shape == (2**23,)  # torch's own (stored) archive loads


class AllocatesGigabytes(torch.nn.Module):
    def forward(self, x):
        return x + torch.arange(10**9).sum()


class ComputedArange(torch.nn.Module):
    def forward(self, x):
        return x + torch.arange(x.shape[-1] * 10**7).sum()


class ExpandsHugely(torch.nn.Module):
    def forward(self, x):
        return x.expand(4096, 1, 3, x.shape[-2], x.shape[-1]).sum(0)


class ShapedByInput(torch.nn.Module):  # what Detect does: grids sized by the input's sides
    def forward(self, x):
        grid = torch.arange(x.shape[-1]) + torch.arange(2, 10)
        return x + grid.expand(1, 3, x.shape[-2], x.shape[-1])


@pytest.mark.parametrize("module, problem", [
    (AllocatesGigabytes, "an arange of up to 1000000000 numbers"),
    (ComputedArange, "an arange whose bounds are computed, not read from a shape"),
    (ExpandsHugely, "an expand by 12288 over its input"),
])
def test_torchscript_allocating_gigabytes_is_refused(tmp_path, module, problem):
    file = tmp_path / "m.torchscript"
    # scripted, not traced, where tracing would itself allocate the 8 GB
    built = torch.jit.script(module()) if module is AllocatesGigabytes else \
        torch.jit.trace(module(), torch.rand(1, 3, 8, 8), check_trace=False)
    built.save(str(file))
    with pytest.raises(UserError, match=f"m.torchscript is refused: it makes {problem} .*could allocate gigabytes"):
        load_torchscript(str(file))


def test_torchscript_sized_by_its_input_loads(tmp_path):
    file = tmp_path / "m.torchscript"
    torch.jit.trace(ShapedByInput(), torch.rand(1, 3, 8, 8), check_trace=False).save(str(file))
    im = torch.rand(1, 3, 4, 8)
    assert torch.equal(load_torchscript(str(file))(im), ShapedByInput()(im))


def test_damaged_evolve_csv_rows_are_skipped_and_good_rows_kept(tmp_path, warnings_log):
    csv_file = tmp_path / "evolve.csv"
    append_evolve_csv(csv_file, [0.5, 0.5, 0.5, 0.4, 0, 0, 0], {"lr0": 0.01, "momentum": 0.9})
    append_evolve_csv(csv_file, [0.6, 0.6, 0.6, 0.5, 0, 0, 0], {"lr0": 0.02, "momentum": 0.8})
    with open(csv_file, "a") as f:
        f.write("0.3, 0.5\n")  # short row
        f.write("0.3,,0.5,0.5,0.4,0,0,0,0.01,0.9\n")  # empty field
        f.write("high,0.5,0.5,0.5,0.4,0,0,0,0.01,0.9\n")  # text
        f.write("nan,0.5,0.5,0.5,0.4,0,0,0,0.01,0.9\n")  # NaN fitness
        f.write("0.3,0.5,0.5,0.5,0.4,0,0,0,0.01,0.9,7\n")  # extra field
    with warnings_log() as log:
        rows = read_evolve_csv(csv_file)
        best = write_best_hyp(csv_file, ["lr0", "momentum"], tmp_path / "hyp_evolve.yaml")
        child = next_hyp({"lr0": 0.01, "momentum": 0.9}, csv_file, 0)
    assert [r["lr0"] for r in rows] == [0.01, 0.02] and best == {"lr0": 0.02, "momentum": 0.8}
    assert set(child) == {"lr0", "momentum"} and all(math.isfinite(v) for v in child.values())
    warning = f"WARNING: {csv_file}: skipped 5 damaged row(s) (a missing, empty, text or non-finite field), e.g. line 4"
    assert log.lines[0] == warning


GOOD_ROW = {"model": "yolov5n", "cfg": "yolov5n.yaml", "seed": 0, "params": 1.9e6, "gflops_640": 4.5,
            "latency_ms": 20.0, "map50": 0.5, "map50_95": 0.3, "epochs": 3, "train_s": 60.0}


@pytest.mark.parametrize("rows", [["yolov5n/seed0"], "rows", 7])
def test_ablation_state_with_rows_of_another_type_is_rebuilt(tmp_path, warnings_log, rows):
    path = tmp_path / ablate.STATE_FILE
    path.write_text(json.dumps({"version": ablate.STATE_VERSION, "rows": rows}))
    with warnings_log() as log:
        assert ablate.load_state(path) == {}
    assert log.lines == [f"WARNING: {path} is unreadable; measuring every configuration again"]


def test_damaged_ablation_rows_are_dropped_and_good_ones_kept(tmp_path, warnings_log):
    path = tmp_path / ablate.STATE_FILE
    good = {"key": {"cfg": "yolov5n.yaml"}, "row": GOOD_ROW}
    rows = {"yolov5n/seed0": good, "a/seed0": "text", "b/seed0": {"key": {}, "row": GOOD_ROW | {"params": "many"}},
            "c/seed0": {"key": {}, "row": GOOD_ROW | {"map50_95": float("nan")}}, "d/seed0": {"row": GOOD_ROW}}
    path.write_text(json.dumps({"version": ablate.STATE_VERSION, "rows": rows}))
    with warnings_log() as log:
        assert ablate.load_state(path) == {"yolov5n/seed0": good}
    assert log.lines == [f"WARNING: {path}: 4 damaged row(s), e.g. 'a/seed0'; measuring them again"]


def test_empty_run_settings_file_means_training_again(tmp_path, warnings_log):
    run_dir = tmp_path / "yolov5n" / "seed0"
    (run_dir / "weights").mkdir(parents=True)
    torch.save({"model": {}, "epoch": 0, "optimizer": {}}, run_dir / "weights" / "last.pt")
    (run_dir / ablate.RUN_SETTINGS_FILE).write_text("")
    with warnings_log() as log:
        assert ablate.training_plan(run_dir, {"epochs": 3}) == ("fresh", None)
    assert log.lines == [f"WARNING: {run_dir / ablate.RUN_SETTINGS_FILE} is unreadable; training seed0 again"]
