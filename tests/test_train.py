"""train.py: optimizer groups, schedule and warmup values, an end-to-end run, resume after a kill, transfer."""

import copy
import csv
import importlib.util
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.nn as nn

import train
from engine import training
from utils.callbacks import Callbacks
from utils.checkpoints import load_checkpoint
from utils.evaluation import ValOutput, ValResults
from utils.general import UserError, yaml_load
from utils.results_csv import RESULTS_COLUMNS
from utils.torch_utils import ModelEMA
from utils.training import (
    EarlyStopping,
    build_optimizer,
    lr_lambda,
    random_rescale,
    resample_images,
    set_epoch_lr,
    warmup,
)

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "yolov5n-v7.0.pt"
HYP = dict(lr0=0.01, lrf=0.01, momentum=0.937, warmup_momentum=0.8, warmup_bias_lr=0.1)
# coco8 (4 train images) at 64 px, batch 2: two batches per epoch, so three train_batch plots over two epochs
TINY = dict(data=str(ROOT / "data/coco8.yaml"), cfg="yolov5n.yaml", imgsz=64, epochs=2, batch_size=2, workers=0)
ARTEFACTS = ("weights/last.pt", "weights/best.pt", "results.csv", "results.png", "opt.yaml", "hyp.yaml",
             "labels.jpg", "train_batch0.jpg", "train_batch1.jpg", "train_batch2.jpg")


def results_rows(save_dir):
    with open(Path(save_dir) / "results.csv") as f:
        rows = list(csv.reader(f))
    return [c.strip() for c in rows[0]], [[float(x) for x in r] for r in rows[1:]]


def test_optimizer_groups():
    """Biases (group 0) and BatchNorm weights (group 2) get no weight decay; conv weights (group 1) do."""
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Conv2d(4, 2, 1, bias=False))
    opt = build_optimizer(model, "SGD", lr=0.01, momentum=0.9, decay=5e-4)
    ids = [{id(p) for p in g["params"]} for g in opt.param_groups]
    assert ids[0] == {id(model[0].bias), id(model[1].bias)}
    assert ids[1] == {id(model[0].weight), id(model[2].weight)}
    assert ids[2] == {id(model[1].weight)}
    assert [g["weight_decay"] for g in opt.param_groups] == [0.0, 5e-4, 0.0]
    assert opt.param_groups[0]["nesterov"] and opt.param_groups[0]["momentum"] == 0.9
    adam = build_optimizer(model, "AdamW", lr=0.001, momentum=0.937, decay=5e-4)
    assert isinstance(adam, torch.optim.AdamW) and adam.param_groups[0]["betas"] == (0.937, 0.999)
    with pytest.raises(UserError):
        build_optimizer(model, "RMSprop")


def test_fused_sgd_and_foreach_ema_match_the_per_tensor_updates():
    """build_optimizer's fused CPU SGD gives the per-tensor results (Nesterov momentum, decay in group 1, five steps)
    to the last bit on AVX-512 builds and within rounding on AVX2 ones, whose vectorised kernel rounds a multiply-add
    once (1-ulp differences; a wrong decay or momentum term moves weights by >= 1e-5 here); ModelEMA's multi-tensor
    update gives its per-tensor results bit for bit (BatchNorm buffers averaged too)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.Conv2d(8, 4, 1))
    fused, loop = copy.deepcopy(model), copy.deepcopy(model)
    opt_fused = build_optimizer(fused, "SGD", lr=0.1, momentum=0.937, decay=5e-4)
    assert opt_fused.param_groups[0]["fused"]
    opt_loop = build_optimizer(loop, "SGD", lr=0.1, momentum=0.937, decay=5e-4)
    for g in opt_loop.param_groups:
        g["fused"], g["foreach"] = None, False
    ema, reference = ModelEMA(fused), copy.deepcopy(fused).eval()
    for step in range(5):
        x = torch.randn(2, 3, 8, 8)
        for m, o in ((fused, opt_fused), (loop, opt_loop)):
            o.zero_grad()
            m(x).square().mean().backward()
            o.step()
        ema.update(fused)
        d = ema.decay(step + 1)
        with torch.no_grad():
            live = fused.state_dict()
            for k, v in reference.state_dict().items():
                if v.dtype.is_floating_point:
                    v.mul_(d).add_(live[k], alpha=1 - d)
    for a, b in zip(fused.state_dict().values(), loop.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    for a, b in zip(ema.ema.state_dict().values(), reference.state_dict().values()):
        assert torch.equal(a, b)
    assert not torch.equal(ema.ema[0].weight, model[0].weight)  # the updates did move the weights


def test_lr_schedules():
    lin = lr_lambda(30, 0.01)
    assert lin(0) == 1.0 and lin(30) == pytest.approx(0.01) and lin(15) == pytest.approx(0.505)
    cos = lr_lambda(30, 0.01, cos_lr=True)
    assert cos(0) == 1.0 and cos(30) == pytest.approx(0.01) and cos(15) == pytest.approx(0.505)
    assert cos(5) == pytest.approx(1 - 0.99 * (1 - math.cos(math.pi / 6)) / 2)  # 0.93368
    assert cos(5) > lin(5)  # the cosine stays high longer


def test_warmup_values():
    """nw = 100 warmup iterations, batch 16 (accumulation grows from 1 to 64 / 16 = 4), 30 linear epochs."""
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    opt = build_optimizer(model, "SGD", lr=HYP["lr0"], momentum=HYP["momentum"], decay=5e-4)
    lf = lr_lambda(30, HYP["lrf"])

    acc = warmup(opt, ni=0, nw=100, epoch=0, lf=lf, hyp=HYP, batch_size=16)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.1, 0.0, 0.0])
    assert [g["momentum"] for g in opt.param_groups] == pytest.approx([0.8] * 3)
    assert acc == 1

    acc = warmup(opt, ni=50, nw=100, epoch=0, lf=lf, hyp=HYP, batch_size=16)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.055, 0.005, 0.005])  # halfway to lr0 * lf(0)
    assert opt.param_groups[1]["momentum"] == pytest.approx(0.8685)
    assert acc == 2  # 2.5 rounds to even

    acc = warmup(opt, ni=100, nw=100, epoch=1, lf=lf, hyp=HYP, batch_size=16)
    target = 0.01 * (1 - 1 / 30 * 0.99)  # lr0 * lf(1) = 0.00967
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([target] * 3)
    assert opt.param_groups[2]["momentum"] == pytest.approx(0.937)
    assert acc == 4

    set_epoch_lr(opt, lf, 16)  # after warmup: the schedule alone, one epoch behind (official's)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.00505] * 3)


def test_learning_rates_per_epoch_are_officials():
    """The rate each epoch ends at, as official v7.0's results.csv logs it (x/lr0, x/lr1) for lr0 0.01, lrf 0.01,
    10 epochs of 24 batches (warmup 100 iterations): after warmup its LambdaLR runs one epoch behind."""
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    opt = build_optimizer(model, "SGD", lr=HYP["lr0"], momentum=HYP["momentum"], decay=5e-4)
    lf = lr_lambda(10, HYP["lrf"])
    nb, nw, logged = 24, 100, []
    for epoch in range(10):
        set_epoch_lr(opt, lf, epoch)
        for i in range(nb):
            if i + nb * epoch <= nw:
                warmup(opt, i + nb * epoch, nw, epoch, lf, HYP, batch_size=16)
        logged += [opt.param_groups[0]["lr"], opt.param_groups[1]["lr"]]
    official = [0.0793, 0.0023, 0.057235, 0.004235, 0.034694, 0.005694, 0.011678, 0.006679, 0.00604, 0.00604,
                0.00604, 0.00604, 0.00505, 0.00505, 0.00406, 0.00406, 0.00307, 0.00307, 0.00208, 0.00208]
    assert logged == pytest.approx(official, abs=1e-6)


def test_early_stopping():
    stopper = EarlyStopping(patience=2)
    assert [stopper(e, f) for e, f in enumerate([0.1, 0.2, 0.15, 0.19])] == [False, False, False, True]
    assert stopper.best_epoch == 1
    never = EarlyStopping(patience=0)
    assert not any(never(e, 0.0 if e else 1.0) for e in range(50))


def test_transfer_into_other_models(info_log):
    """yolov5n with 3 classes: all 349 entries but the anchors (the yaml's win) and the 6 Detect conv tensors
    (shapes depend on nc) = 342. A variant yaml with an inserted row gets every entry but the anchors, each one
    under the key of its shifted layer (structure matching, utils/transfer.py)."""
    ckpt = load_checkpoint(FIXTURE)
    with info_log() as log:
        model = training.create_model("yolov5n.yaml", ckpt, nc=3)
    assert "Transferred 342/349 items from pretrained weights" in log.lines
    official = {k: v.float() for k, v in train_state_dict(ckpt).items()}
    assert torch.equal(model.state_dict()["model.0.conv.weight"], official["model.0.conv.weight"])
    assert not torch.equal(model.state_dict()["model.24.m.0.bias"][:3], official["model.24.m.0.bias"][:3])

    variant = "yolov5n_ScConv.yaml"
    if not any((ROOT / "models").glob("yolov5?_ScConv.yaml")):
        pytest.skip("no ScConv variant yaml in models/")
    with info_log() as log:
        model = training.create_model(variant, ckpt, nc=80)
    own = model.state_dict()
    expected = len(official) - 1  # all but the anchors
    assert any(line.startswith(f"Transferred {expected}/{len(own)} tensors: ") for line in log.lines)
    assert torch.equal(own["model.25.m.0.weight"], official["model.24.m.0.weight"])  # Detect, one row later
    assert torch.equal(own["model.10.cv1.conv.weight"], official["model.9.cv1.conv.weight"])  # SPPF


def train_state_dict(ckpt):
    from utils.checkpoints import checkpoint_model_parts

    return checkpoint_model_parts(ckpt)[2]


def test_missing_weights_is_a_clear_error(tmp_path):
    with pytest.raises(UserError, match="weights file not found"):
        train.run(**TINY, weights=str(tmp_path / "yolov5s.pt"), project=str(tmp_path), name="missing")


@pytest.mark.parametrize("flags, message", [
    (dict(batch_size=0), "--batch-size must be at least 1 .* got 0"),
    (dict(batch_size=-2), r"--batch-size must be at least 1 \(or -1 for AutoBatch\), got -2"),
    (dict(imgsz=0), r"--imgsz 0: out of range \(1 to 8,192\)"),
])
def test_out_of_range_flags_are_user_errors(tmp_path, flags, message):
    with pytest.raises(UserError, match=message):
        train.run(**(TINY | flags), weights="", project=str(tmp_path), name="bad")


def test_freezing_every_layer_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="--freeze 25 freezes all 25 layers"):
        train.run(**TINY, freeze=[25], weights="", project=str(tmp_path), name="frozen")


def test_non_numeric_hyperparameter_is_a_user_error(tmp_path):
    hyp = yaml_load(ROOT / "data/hyps/hyp.scratch-low.yaml") | {"lr0": "abc", "mosaic": None}
    with pytest.raises(UserError, match=r"\['lr0', 'mosaic'\] in --hyp .* must be numbers"):
        train.run(**TINY, hyp=hyp, weights="", project=str(tmp_path), name="bad")


KILL_SCRIPT = """
import os, signal, sys
sys.path.insert(0, {root!r})
import train
from utils.callbacks import Callbacks

def power_cut(ni, epoch):
    if ni == {kill_at}:
        os.kill(os.getpid(), signal.SIGKILL)

callbacks = Callbacks()
callbacks.register_action("on_train_batch_start", "power cut", power_cut)
train.run(callbacks=callbacks, **{kwargs!r})
"""


def test_end_to_end_run_killed_and_resumed(tmp_path, info_log):
    """Two epochs on coco8 from the official fixture, killed (SIGKILL) at the first batch of epoch 2, then
    --resume: the run finishes its 2 epochs in the same folder with every artefact and stripped weights."""
    kwargs = dict(TINY, weights=str(FIXTURE), project=str(tmp_path), name="exp")
    script = KILL_SCRIPT.format(root=str(ROOT), kill_at=2, kwargs=kwargs)  # 2 batches per epoch: epoch 1
    env = dict(os.environ, OMP_NUM_THREADS="2")
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == -9, proc.stderr[-3000:]
    assert "Transferred 348/349 items from pretrained weights" in proc.stderr  # 80 classes like the fixture
    save_dir = tmp_path / "exp"
    last = save_dir / "weights" / "last.pt"
    ckpt = load_checkpoint(last)
    assert ckpt["epoch"] == 0 and ckpt["optimizer"] is not None and ckpt["updates"] > 0
    assert ckpt["names"][0] == "person" and ckpt["hyp"]["lr0"] == 0.01
    # as if killed after logging epoch 1 but before its last.pt was renamed into place, mid-write of last.pt
    with open(save_dir / "results.csv", "a") as f:
        f.write(f"{1:>20}," + ",".join(f"{0.5:>20.5g}" for _ in RESULTS_COLUMNS[1:]) + "\n")
    stale = save_dir / "weights" / f".last.pt.{2 ** 22 + 1}.tmp"  # above any Linux pid_max
    stale.write_bytes(b"PK truncated")

    with info_log() as log:
        opt = train.run(resume=str(last))
    assert any("Resuming training from" in line and "at epoch 1 of 2" in line for line in log.lines)
    assert any("Results saved to" in line for line in log.lines)
    assert Path(opt.save_dir) == save_dir and opt.epochs == 2
    missing = [a for a in ARTEFACTS if not (save_dir / a).is_file()]
    assert not missing, f"missing artefacts: {missing}"

    header, rows = results_rows(save_dir)
    assert header == list(RESULTS_COLUMNS)
    assert [r[0] for r in rows] == [0, 1]  # epoch 0 from the killed run, epoch 1 from the resumed one
    assert rows[1][1] != 0.5 and not stale.exists()  # the orphan row was dropped and rewritten
    assert all(math.isfinite(x) for r in rows for x in r)
    for name in ("last.pt", "best.pt"):
        ckpt = torch.load(save_dir / "weights" / name, map_location="cpu", weights_only=True)
        assert ckpt["optimizer"] is None and ckpt["epoch"] == -1  # finished and stripped
        assert ckpt["model"]["model.0.conv.weight"].dtype == torch.float16
    with pytest.raises(UserError, match="cannot be resumed"):
        train.run(resume=str(last))


class Interrupted(Exception):
    pass


def test_resumed_run_matches_uninterrupted_run(tmp_path, info_log):
    """3 epochs on coco8 (64 px, batch 2, from scratch) in one go vs the same run interrupted at the first batch
    of epoch 1 and resumed (with 2 loader workers instead of 0): the resumed epochs' training losses and the final
    fp32 model and EMA weights (last.pt before the strip) are the same."""
    final, interrupt_at = {}, [None]

    def keep_final(last, epoch, final_epoch, best_fitness, fitness):
        if final_epoch:  # last.pt as written, before the strip at the end
            final[Path(last).parents[1].name] = load_checkpoint(last)

    def interrupt(ni, epoch):
        if ni == interrupt_at[0]:
            raise Interrupted

    callbacks = Callbacks()
    callbacks.register_action("on_model_save", "keep final", keep_final)
    callbacks.register_action("on_train_batch_start", "interrupt", interrupt)
    kwargs = dict(TINY, epochs=3, noval=True, noplots=True, noautoanchor=True, project=str(tmp_path))
    train.run(**kwargs, name="full", callbacks=callbacks)
    interrupt_at[0] = 2  # 2 batches per epoch: the first batch of epoch 1
    with pytest.raises(Interrupted):
        train.run(**kwargs, name="cut", callbacks=callbacks)
    last = tmp_path / "cut" / "weights" / "last.pt"
    assert load_checkpoint(last)["epoch"] == 0 and "cut" not in final
    interrupt_at[0] = None
    with info_log() as log:
        train.run(resume=str(last), workers=2, callbacks=callbacks)
    assert any("at epoch 1 of 3" in line for line in log.lines)

    full, resumed = final["full"], final["cut"]
    assert full["epoch"] == resumed["epoch"] == 2 and full["updates"] == resumed["updates"]
    for part in ("model", "ema"):
        assert full[part]["model.0.conv.weight"].dtype == torch.float32
        for k, v in full[part].items():
            torch.testing.assert_close(resumed[part][k], v, rtol=0, atol=1e-5, msg=f"{part} {k}")
    header, full_rows = results_rows(tmp_path / "full")
    _, cut_rows = results_rows(tmp_path / "cut")
    assert [r[0] for r in cut_rows] == [0, 1, 2]
    losses = [header.index(c) for c in ("train/box_loss", "train/obj_loss", "train/cls_loss")]
    for full_row, cut_row in zip(full_rows[1:], cut_rows[1:]):
        assert [cut_row[c] for c in losses] == pytest.approx([full_row[c] for c in losses], rel=0, abs=1e-5)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    import utils.loss

    original = utils.loss.ComputeLoss.__call__
    calls = [0]

    def call(self, p, targets):
        loss, items = original(self, p, targets)
        if p[0].requires_grad:
            calls[0] += 1
            if calls[0] == 3:  # epoch 2 diverges
                return loss * float("nan"), items
        return loss, items

    monkeypatch.setattr(utils.loss.ComputeLoss, "__call__", call)
    with pytest.raises(UserError, match="NaN/inf at epoch 1, batch 0"):
        train.run(**TINY, project=str(tmp_path), name="exp", noplots=True, noval=True, noautoanchor=True)
    ckpt = load_checkpoint(tmp_path / "exp" / "weights" / "last.pt")
    assert ckpt["epoch"] == 0 and ckpt["optimizer"] is not None  # resumable


def test_weights_broken_by_the_last_step_of_an_epoch_never_reach_disk(tmp_path, monkeypatch):
    """The last optimizer step of epoch 2 makes every weight NaN while each loss of the epoch was finite (batch 4:
    one batch and one step per epoch): training
    stops with a UserError naming the newest finite checkpoint (last.pt of epoch 1), nothing of epoch 2 is
    written, and best.pt stays the epoch-0 file (epoch 1 only tied its fitness of 0)."""
    import utils.loss

    original_loss, original_clip = utils.loss.ComputeLoss.__call__, torch.nn.utils.clip_grad_norm_
    calls = [0]

    def call(self, p, targets):
        calls[0] += p[0].requires_grad
        return original_loss(self, p, targets)

    def clip(parameters, max_norm, **kwargs):
        parameters = list(parameters)
        if calls[0] == 3:  # the only batch of epoch 2
            for p in parameters:
                p.grad.fill_(float("nan"))
        return original_clip(parameters, max_norm, **kwargs)

    monkeypatch.setattr(utils.loss.ComputeLoss, "__call__", call)
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", clip)
    with pytest.raises(UserError, match=r"NaN/inf at the end of epoch 2 .*'model/model.0.conv.weight'.*; the newest "
                                        r"finite checkpoint is .*last.pt \(epoch 1\)"):
        train.run(**(TINY | dict(epochs=3, batch_size=4)), project=str(tmp_path), name="exp", noplots=True, noval=True,
                  noautoanchor=True)
    weights = tmp_path / "exp" / "weights"
    last, best = load_checkpoint(weights / "last.pt"), load_checkpoint(weights / "best.pt")
    assert last["epoch"] == 1 and last["optimizer"] is not None and best["epoch"] == 0
    assert all(torch.isfinite(v).all() for part in ("model", "ema") for v in last[part].values())
    assert sorted(p.name for p in weights.iterdir()) == ["best.pt", "last.pt"]
    assert [r[0] for r in results_rows(tmp_path / "exp")[1]] == [0, 1]


def test_bad_run_flags_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="--workers must be 0 .* got -1"):
        train.run(**(TINY | dict(workers=-1)), project=str(tmp_path), name="bad")
    (tmp_path / "file").write_text("")
    with pytest.raises(UserError, match="cannot create the folder .*file"):
        train.run(**TINY, project=str(tmp_path / "file" / "runs"))


def test_multi_scale_never_draws_a_size_below_two_strides():
    """At --imgsz 64 the draw reaches 32 px, where the stride-32 map is 1x1 and BatchNorm of a 1-image batch
    fails; sizes stay >= 64."""
    imgs = torch.zeros(1, 3, 64, 64)
    sizes = {random_rescale(imgs, 64, 32).shape[-1] for _ in range(200)}
    assert sizes == {64, 96}


def test_image_weights_with_no_labels_sample_uniformly_and_warn_once(monkeypatch, warnings_log):
    class Dataset:
        n, labels, indices = 3, [torch.zeros(0, 5).numpy()] * 3, [0, 1, 2]

    monkeypatch.setattr("utils.general._WARNED", set())
    with warnings_log() as log:
        for _epoch in range(3):
            resample_images(Dataset, nc=2, class_weights=[0.5, 0.5])
    assert Dataset.indices == [0, 1, 2]
    assert len(log.lines) == 1 and "no labels" in log.lines[0]


def test_autobatch_choice_lives_in_the_state_and_checkpoint_not_in_the_options(tmp_path, monkeypatch):
    """--batch-size -1: the options (opt.yaml, the returned namespace) keep -1 as given; the training runs with
    AutoBatch's choice, and last.pt records that choice, which is what --resume takes."""
    monkeypatch.setattr(training, "autobatch", lambda model, imgsz, device, amp: 2)  # a CPU stand-in for the GPU probe
    opt = train.parse_opt([], known=True)
    for key, value in (TINY | dict(epochs=1, batch_size=-1, noplots=True, noautoanchor=True)).items():
        setattr(opt, key, value)
    opt.save_dir = str(tmp_path / "auto")
    batches = []
    callbacks = Callbacks()
    callbacks.register_action("on_train_batch_end", callback=lambda ni, model, imgs, *_: batches.append(len(imgs)))
    training.train(yaml_load(opt.hyp), opt, torch.device("cpu"), callbacks)
    assert batches == [2, 2]  # coco8's 4 training images in batches of AutoBatch's 2
    assert opt.batch_size == -1 and yaml_load(tmp_path / "auto/opt.yaml")["batch_size"] == -1
    assert load_checkpoint(tmp_path / "auto/weights/last.pt")["opt"]["batch_size"] == 2


@pytest.mark.parametrize("amp, channels_last", [("auto", True), ("off", False)])
def test_training_images_reach_the_model_as_scaled_floats_in_the_policys_layout(tmp_path, amp, channels_last):
    """The loader's uint8 batch becomes float32 / 255, channels-last exactly when the AMP policy says so (on the CPU,
    --amp auto: fp32 or bf16 with channels-last; --amp off: contiguous fp32)."""
    opt = train.parse_opt([], known=True)
    for key, value in (TINY | dict(epochs=1, amp=amp, noval=True, noplots=True, noautoanchor=True)).items():
        setattr(opt, key, value)
    opt.save_dir = str(tmp_path / amp)
    seen = []
    callbacks = Callbacks()
    callbacks.register_action("on_train_batch_end", callback=lambda ni, model, imgs, *_: seen.append(imgs))
    training.train(yaml_load(opt.hyp), opt, torch.device("cpu"), callbacks)
    assert len(seen) == 2
    for imgs in seen:
        assert imgs.dtype == torch.float32 and imgs.shape == (2, 3, 64, 64)
        assert imgs.is_contiguous(memory_format=torch.channels_last) == channels_last
        assert imgs.is_contiguous() != channels_last  # a 64x64 image is never both
        levels = imgs * 255
        assert levels.min() >= 0 and levels.max() <= 255 and torch.allclose(levels, levels.round(), atol=1e-4)
        assert levels.max() > 100  # not left as 0-255 nor divided twice


@pytest.mark.parametrize("cache, train_cache, val_cache",
                         [("val", None, "val"), ("ram", "ram", "ram"), (None, "auto", None), ("off", None, None)])
def test_cache_choice_per_split(tmp_path, monkeypatch, cache, train_cache, val_cache):
    """--cache val caches only the val split; unset on the CPU, the training split is cached when small ('auto');
    --cache off caches neither."""
    create, caches = training.create_dataloader, []

    def record(*args, **kwargs):
        caches.append(kwargs["cache"])
        if len(caches) == 2:  # train and val loaders made: enough
            raise Interrupted
        return create(*args, **kwargs)

    monkeypatch.setattr(training, "create_dataloader", record)
    with pytest.raises(Interrupted):
        train.run(**TINY, cache=cache, project=str(tmp_path), name="exp", noplots=True, noautoanchor=True)
    assert caches == [train_cache, val_cache]


def test_non_finite_validation_losses_stop_training_before_anything_is_saved(tmp_path, monkeypatch):
    def diverged_val(*args, **kwargs):
        results = ValResults(0.0, 0.0, 0.0, 0.0, float("inf"), 0.1, float("nan"))
        return ValOutput(results, [0.0] * 80, (0.0, 0.0, 0.0))

    monkeypatch.setattr(training, "evaluate", diverged_val)
    with pytest.raises(UserError, match=r"end of epoch 0 in 2 .*'val/box_loss', 'val/cls_loss'.*no checkpoint was "
                                        r"written yet"):
        train.run(**(TINY | dict(epochs=1, batch_size=4)), project=str(tmp_path), name="exp", noplots=True,
                  noautoanchor=True)
    assert not (tmp_path / "exp" / "weights").exists() or not list((tmp_path / "exp" / "weights").iterdir())
    assert not (tmp_path / "exp" / "results.csv").exists()


def test_callbacks_see_every_event_in_order_and_can_stop_training(tmp_path):
    """3 epochs planned, 2 batches each, bf16 autocast forced on (emulated where the CPU has no bf16); a callback
    stops training after epoch 1. Events come in order with the expected counts, the run ends like an early stop
    (checkpoint of epoch 1, best.pt validated), and the default loggers wrote results.csv and TensorBoard."""
    events = []
    callbacks = Callbacks()
    for hook in callbacks.get_registered_actions():
        callbacks.register_action(hook, "record", lambda *args, hook=hook, **kwargs: events.append(hook))

    def stop_after_epoch_1(values, epoch, best_fitness, fitness):
        assert values[0] == epoch and len(values) == len(RESULTS_COLUMNS)
        if epoch == 1:
            callbacks.stop_training = True

    callbacks.register_action("on_fit_epoch_end", "stopper", stop_after_epoch_1)
    opt = train.run(**(TINY | dict(epochs=3)), amp="on", project=str(tmp_path), name="exp", noplots=True,
                    callbacks=callbacks)
    per_epoch = ["on_train_epoch_start", *["on_train_batch_start", "on_train_batch_end"] * 2, "on_train_epoch_end",
                 "on_val_start", "on_val_end", "on_fit_epoch_end", "on_model_save"]
    assert events == ["on_pretrain_routine_start", "on_pretrain_routine_end", "on_train_start", *per_epoch * 2,
                      "on_val_start", "on_val_end", "on_train_end"]
    assert isinstance(opt.results, ValResults) and opt.results.box_loss > 0
    assert [r[0] for r in results_rows(opt.save_dir)[1]] == [0, 1]
    assert len(list(Path(opt.save_dir).glob("events.out.tfevents.*"))) == (importlib.util.find_spec("tensorboard")
                                                                            is not None)
    assert [e["name"] for e in callbacks.get_registered_actions("on_fit_epoch_end")] == ["record", "stopper"]


def test_defaults_are_the_demo_without_data_and_official_with_it(tmp_path, info_log):
    demo = train.parse_opt([])
    assert "built-in demo" in training.apply_defaults(demo)
    assert (Path(demo.data).name, demo.imgsz, demo.epochs, demo.cfg) == ("shapes.yaml", 256, 30, "yolov5n.yaml")
    official = train.parse_opt(["--data", "coco8.yaml", "--epochs", "5"])
    training.apply_defaults(official)
    assert (official.imgsz, official.epochs, Path(official.hyp).name) == (640, 5, "hyp.scratch-low.yaml")
    with info_log() as log, pytest.raises(UserError):
        train.run(data=str(tmp_path / "missing.yaml"), project=str(tmp_path), name="bad")
    assert log.lines[0].startswith("train: ") and "640 px, 100 epochs" in log.lines[0]
    assert "precision: " in log.lines[0]


def test_evolve_two_generations_then_resume_to_three(tmp_path):
    """--evolve 2 on coco8 (1 epoch at 64 px each): evolve.csv with 2 rows (generation 0 trains the given hyps),
    hyp_evolve.yaml and evolve.png; --evolve 3 in the same folder trains only the missing third generation."""
    from utils.evolve import read_evolve_csv
    from utils.hyp import HYP_SCHEMA

    kwargs = dict(TINY, epochs=1, project=str(tmp_path), name="evo")
    opt = train.run(**kwargs, evolve=2)
    save_dir = tmp_path / "evo"
    assert Path(opt.save_dir) == save_dir
    rows = read_evolve_csv(save_dir / "evolve.csv")
    base = yaml_load(ROOT / "data/hyps/hyp.scratch-low.yaml")
    assert len(rows) == 2 and rows[0]["lr0"] == base["lr0"] and rows[0]["fitness"] >= 0
    assert any(rows[1][k] != base[k] for k in base)  # the second generation is a mutant
    assert all(HYP_SCHEMA[k].evolve_low <= rows[1][k] <= HYP_SCHEMA[k].evolve_high for k in base if k in HYP_SCHEMA)
    best = yaml_load(save_dir / "hyp_evolve.yaml")
    assert set(best) == set(base) and (save_dir / "evolve.png").stat().st_size > 1000
    train.run(**kwargs, evolve=3)
    assert len(read_evolve_csv(save_dir / "evolve.csv")) == 3


def test_exist_ok_rerun_starts_fresh_results_and_best(tmp_path):
    """An --exist-ok rerun into a folder of an older run: its results.csv has only the new rows and best.pt is the
    new run's, although the new fitness (0 after one tiny epoch) does not beat anything."""
    old = tmp_path / "exp"
    (old / "weights").mkdir(parents=True)
    (old / "results.csv").write_text("epoch,x\n0,1\n1,1\n2,1\n")
    (old / "weights" / "best.pt").write_bytes(b"the old run's best")
    train.run(**(TINY | dict(epochs=1, batch_size=4)), project=str(tmp_path), name="exp", exist_ok=True,
              noplots=True, noautoanchor=True)
    assert [r[0] for r in results_rows(old)[1]] == [0]
    assert load_checkpoint(old / "weights" / "best.pt")["opt"]["exist_ok"] is True
