"""segment/train.py on the training engine: a tiny run on generated shapes with polygon labels, interrupted in its
second epoch and resumed, writes official v7.0's segmentation results.csv columns, keeps --no-overlap and
--mask-ratio through --resume, and leaves a SegmentationModel checkpoint; bad segmentation flags are one-line
errors."""

import math
from pathlib import Path

import pytest
import torch

from data.synthetic import generate_shapes_seg
from engine import training as engine
from segment import train as segment_train
from utils.callbacks import Callbacks
from utils.checkpoints import load_checkpoint
from utils.evolve import append_evolve_csv, read_evolve_csv
from utils.general import UserError, yaml_save

OFFICIAL_SEG_COLUMNS = (
    "epoch", "train/box_loss", "train/seg_loss", "train/obj_loss", "train/cls_loss",
    "metrics/precision(B)", "metrics/recall(B)", "metrics/mAP_0.5(B)", "metrics/mAP_0.5:0.95(B)",
    "metrics/precision(M)", "metrics/recall(M)", "metrics/mAP_0.5(M)", "metrics/mAP_0.5:0.95(M)",
    "val/box_loss", "val/seg_loss", "val/obj_loss", "val/cls_loss", "x/lr0", "x/lr1", "x/lr2",
)


class Interrupted(Exception):
    pass


def test_task_hook_columns_and_defaults():
    assert segment_train.SEGMENT.results_columns == OFFICIAL_SEG_COLUMNS
    assert engine.DETECT.results_columns[1:4] == ("train/box_loss", "train/obj_loss", "train/cls_loss")
    opt = segment_train.parse_opt([])
    assert opt.mask_ratio == 4 and opt.no_overlap is False and opt.data is None and opt.project.endswith("train-seg")
    assert engine.apply_defaults(opt, segment_train.SEGMENT).startswith("built-in demo: yolov5n-seg.yaml")
    assert opt.data.endswith("shapes-seg.yaml") and opt.epochs == 30 and opt.imgsz == 256
    with pytest.raises(UserError, match="--quad"):
        segment_train.run(quad=True)


def test_evolve_csv_takes_the_segmentation_columns_and_fitness(tmp_path):
    results = [0.5, 0.4, 0.3, 0.2, 0.6, 0.5, 0.4, 0.1, 0.01, 0.02, 0.03, 0.04]
    task = segment_train.SEGMENT
    fit = append_evolve_csv(tmp_path / "evolve.csv", results, {"lr0": 0.01}, columns=task.val_columns,
                            fitness_fn=task.fitness)
    assert fit == pytest.approx(0.1 * 0.3 + 0.9 * 0.2 + 0.1 * 0.4 + 0.9 * 0.1)
    (row,) = read_evolve_csv(tmp_path / "evolve.csv")
    assert row["fitness"] == pytest.approx(fit) and row["metrics/mAP_0.5:0.95(M)"] == 0.1 and row["lr0"] == 0.01


@pytest.mark.slow
def test_tiny_run_interrupted_and_resumed(tmp_path):
    root = generate_shapes_seg(tmp_path / "shapes-seg", n_train=4, n_val=2, size=64)
    data = tmp_path / "data.yaml"
    yaml_save(data, {"path": str(root), "train": "images/train", "val": "images/val",
                     "names": {0: "circle", 1: "square", 2: "triangle"}})
    callbacks = Callbacks()

    def interrupt(ni, epoch):
        if epoch == 1:
            raise Interrupted

    callbacks.register_action("on_train_batch_start", "interrupt", interrupt)
    kwargs = dict(data=str(data), imgsz=64, epochs=2, batch_size=2, workers=0, noplots=True, no_overlap=True,
                  mask_ratio=2, project=str(tmp_path), name="exp", amp="off")
    with pytest.raises(Interrupted):
        segment_train.run(callbacks=callbacks, **kwargs)
    last = tmp_path / "exp" / "weights" / "last.pt"
    ckpt = load_checkpoint(last)
    assert ckpt["epoch"] == 0 and ckpt["opt"]["no_overlap"] is True and ckpt["opt"]["mask_ratio"] == 2

    opt = segment_train.run(resume=str(last), workers=0)
    assert opt.no_overlap is True and opt.mask_ratio == 2 and opt.epochs == 2
    lines = (tmp_path / "exp" / "results.csv").read_text().splitlines()
    assert tuple(c.strip() for c in lines[0].split(",")) == OFFICIAL_SEG_COLUMNS
    rows = [[float(x) for x in line.split(",")] for line in lines[1:]]
    assert [r[0] for r in rows] == [0, 1]
    assert all(math.isfinite(x) for r in rows for x in r)
    assert all(r[2] > 0 and r[14] > 0 for r in rows)  # train and val seg_loss
    assert len(opt.results) == 12  # box P, R, mAP50, mAP50-95, mask the same, 4 val losses
    ckpt = torch.load(Path(opt.save_dir) / "weights" / "best.pt", map_location="cpu", weights_only=True)
    assert ckpt["epoch"] == -1 and any(k.endswith(".proto.cv3.conv.weight") for k in ckpt["model"])


DDP_PROBE = """
import os, sys
sys.path.insert(0, {root!r})
from segment import train as segment_train
from utils.callbacks import Callbacks

rank = os.environ["RANK"]


def record(ni, model, imgs, targets, paths, mloss):  # the training images this rank drew
    with open(os.path.join({out!r}, f"rank{{rank}}.txt"), "a") as f:
        f.writelines(f"{{p}}\\n" for p in paths)


callbacks = Callbacks()
callbacks.register_action("on_train_batch_end", "record", record)
segment_train.main(segment_train.parse_opt(), callbacks)
"""


@pytest.mark.slow
def test_ddp_two_cpu_processes_share_the_images_and_write_the_segmentation_results(tmp_path):
    """segment/train.py under torchrun (2 CPU processes, gloo): the ranks draw disjoint halves of the training
    images each epoch (the engine's sharded sampler), and rank 0 writes the -seg results and checkpoint."""
    import os
    import socket
    import subprocess
    import sys

    root = generate_shapes_seg(tmp_path / "shapes-seg", n_train=8, n_val=2, size=64)
    data = tmp_path / "data.yaml"
    yaml_save(data, {"path": str(root), "train": "images/train", "val": "images/val",
                     "names": {0: "circle", 1: "square", 2: "triangle"}})
    probe = tmp_path / "probe.py"
    probe.write_text(DDP_PROBE.format(root=str(Path(__file__).resolve().parents[1]), out=str(tmp_path)))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port),
           str(probe), "--data", str(data), "--cfg", "yolov5n-seg.yaml", "--imgsz", "64", "--epochs", "1",
           "--batch-size", "4", "--workers", "0", "--device", "cpu", "--noplots", "--amp", "off",
           "--project", str(tmp_path / "runs"), "--name", "exp"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, (p.stdout + p.stderr)[-3000:]
    seen = [(tmp_path / f"rank{r}.txt").read_text().split() for r in (0, 1)]
    assert len(seen[0]) == len(seen[1]) == 4 and not set(seen[0]) & set(seen[1])  # 8 images, halves, disjoint
    lines = (tmp_path / "runs" / "exp" / "results.csv").read_text().splitlines()
    assert tuple(c.strip() for c in lines[0].split(",")) == OFFICIAL_SEG_COLUMNS
    assert all(math.isfinite(float(x)) for x in lines[1].split(","))
    ckpt = load_checkpoint(tmp_path / "runs" / "exp" / "weights" / "last.pt")
    assert ckpt["yaml"]["head"][-1][2] == "Segment" and "model.24.proto.cv1.conv.weight" in ckpt["model"]
