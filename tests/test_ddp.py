"""Distributed (DDP) training on CPU with gloo: two real torchrun processes, and every model under DDP.

The torchrun test launches train.py's main() through a small probe script whose callbacks record the image paths
of each rank's training batches and simulate an interruption at the start of the second epoch; a second launch
resumes from that last.pt.
"""

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

ROOT = Path(__file__).resolve().parents[1]
COCO8_TRAIN = sorted(p.name for p in (ROOT / "data/coco8/images/train").iterdir())

PROBE = textwrap.dedent(
    """
    import os, sys
    sys.path.insert(0, {root!r})
    import train
    from utils.callbacks import Callbacks

    dump_dir, stop_at = os.environ["DDP_PROBE_DIR"], int(os.environ.get("DDP_PROBE_STOP_AT", -1))
    rank, current_epoch = os.environ["RANK"], [None]


    def epoch_start(epoch):
        if epoch == stop_at:  # as if killed at the start of this epoch, after the previous epoch's checkpoint
            sys.exit(0)
        current_epoch[0] = epoch


    def record(ni, model, imgs, targets, paths, mloss):  # one line per image of a training batch: epoch and path
        with open(os.path.join(dump_dir, f"rank{{rank}}.txt"), "a") as f:
            f.writelines(f"{{current_epoch[0]}} {{path}}\\n" for path in paths)


    callbacks = Callbacks()
    callbacks.register_action("on_train_epoch_start", "interrupt", epoch_start)
    callbacks.register_action("on_train_batch_end", "record", record)
    train.main(train.parse_opt(), callbacks)
    """
)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(tmp, args, stop_at=-1):
    """Run the probe under ``torch.distributed.run`` with 2 CPU processes; returns (returncode, output)."""
    probe = tmp / "probe.py"
    probe.write_text(PROBE.format(root=str(ROOT)))
    env = {**os.environ, "DDP_PROBE_DIR": str(tmp), "DDP_PROBE_STOP_AT": str(stop_at), "OMP_NUM_THREADS": "1",
           "CUDA_VISIBLE_DEVICES": ""}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
           str(free_port()), str(probe), *args]
    p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    return p.returncode, p.stdout + p.stderr


def seen_images(tmp, rank):
    """{epoch: [image file names]} of the training batches one rank drew (validation batches are left out)."""
    seen = {}
    for line in (tmp / f"rank{rank}.txt").read_text().splitlines():
        epoch, path = line.split(" ", 1)
        if f"{os.sep}train{os.sep}" in path:
            seen.setdefault(int(epoch), []).append(Path(path).name)
    return seen


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    """A 2-epoch run on coco8 with 2 ranks, interrupted at the start of epoch 1, then resumed."""
    tmp = tmp_path_factory.mktemp("ddp")
    args = ["--data", "coco8.yaml", "--cfg", "yolov5n.yaml", "--imgsz", "64", "--batch-size", "4", "--epochs", "2",
            "--workers", "0", "--device", "cpu", "--noautoanchor", "--noplots", "--sync-bn",
            "--project", str(tmp / "runs"), "--name", "exp"]
    rc, out = torchrun(tmp, args, stop_at=1)
    assert rc == 0, out[-3000:]
    last = tmp / "runs/exp/weights/last.pt"
    interrupted = torch.load(last, map_location="cpu", weights_only=True)  # read before the resume rewrites it
    rc2, out2 = torchrun(tmp, ["--resume", str(last), "--workers", "0", "--device", "cpu"])
    assert rc2 == 0, out2[-3000:]
    return {"dir": tmp, "out": out, "interrupted": interrupted, "out_resume": out2}


def test_ranks_draw_disjoint_halves_of_the_data(ddp_run):
    rank0, rank1 = seen_images(ddp_run["dir"], 0), seen_images(ddp_run["dir"], 1)
    assert sorted(rank0) == sorted(rank1) == [0, 1]  # epoch 0 in the first launch, epoch 1 after the resume
    for epoch in (0, 1):
        # batch 4 over 2 ranks: each rank takes 2 of the 4 images, none twice, together all of them
        assert len(rank0[epoch]) == len(rank1[epoch]) == 2
        assert not set(rank0[epoch]) & set(rank1[epoch])
        assert sorted(rank0[epoch] + rank1[epoch]) == COCO8_TRAIN


def test_only_rank0_logs_and_sync_bn_falls_back_on_cpu(ddp_run):
    out = ddp_run["out"]
    assert out.count("Starting training for 2 epochs") == 1, out[-3000:]
    assert out.count("--sync-bn needs CUDA") == 1  # rank 0's warning; training went on with BatchNorm2d


def test_interrupted_checkpoint_holds_the_training_state(ddp_run):
    ckpt = ddp_run["interrupted"]
    assert ckpt["epoch"] == 0 and ckpt["optimizer"] is not None and ckpt["ema"] is not None
    assert ckpt["opt"]["batch_size"] == 4  # the total batch; each rank loaded 2
    assert not any("module." in k for k in ckpt["model"])  # the bare model's names, not the DDP wrapper's


def test_resume_finishes_the_run_and_the_checkpoint_loads(ddp_run):
    from models.experimental import attempt_load

    run_dir = ddp_run["dir"] / "runs/exp"
    assert "Resuming training from" in ddp_run["out_resume"]
    epochs = [int(float(line.split(",")[0])) for line in (run_dir / "results.csv").read_text().splitlines()[1:]]
    assert epochs == [0, 1]  # one row per epoch: the resumed run appended epoch 1
    assert not list(ddp_run["dir"].glob("runs/exp?*"))  # rank 1 created no second run folder
    for name in ("last.pt", "best.pt"):
        f = run_dir / "weights" / name
        ckpt = torch.load(f, map_location="cpu", weights_only=True)
        assert ckpt["optimizer"] is None  # finished runs are stripped
        model = attempt_load(f, fuse=False)
        assert model.nc == 80
        with torch.no_grad():
            pred = model(torch.zeros(1, 3, 64, 64))[0]
        assert pred.shape == (1, 3 * (8 * 8 + 4 * 4 + 2 * 2), 85)


@pytest.fixture(scope="module")
def gloo_group():
    """A one-process gloo group: DDP's reducer still reports parameters that got no gradient."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()))
    dist.init_process_group("gloo", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def _variant_cfgs():
    from benchmarks.ablate import variant_cfgs

    return variant_cfgs()


@pytest.mark.parametrize("cfg", _variant_cfgs())
def test_every_model_trains_under_ddp(gloo_group, cfg):
    """Two DDP steps without find_unused_parameters: every parameter must take part in the loss."""
    from models.yolo import Model
    from utils.general import yaml_load
    from utils.loss import ComputeLoss

    torch.manual_seed(0)
    model = Model(cfg, nc=3)
    compute_loss = ComputeLoss(model, yaml_load(ROOT / "data/hyps/hyp.scratch-low.yaml"))
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    targets = torch.tensor([[0, 1, 0.5, 0.5, 0.3, 0.3], [1, 2, 0.4, 0.4, 0.2, 0.5]])
    loss, _ = compute_loss(ddp(torch.rand(2, 3, 32, 32)), targets)
    loss.backward()
    unused = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not unused, f"{cfg}: parameters without gradient break DDP: {unused[:5]}"
    loss, _ = compute_loss(ddp(torch.rand(2, 3, 32, 32)), targets)  # raises if the previous step left any out
    loss.backward()
