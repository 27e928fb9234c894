"""CUDA-only paths: fp16 AMP with GradScaler and its check, AutoBatch, --half validation, SyncBatchNorm under DDP
(NCCL). Skipped without CUDA (they run on a GPU machine: `python -m pytest tests/test_cuda.py -q`)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import train
from models.yolo import Model
from utils.amp import check_amp, select_amp
from utils.autobatch import autobatch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
ROOT = Path(__file__).resolve().parents[1]
TINY = dict(data=str(ROOT / "data/coco8.yaml"), cfg="yolov5n.yaml", imgsz=64, epochs=2, batch_size=2, workers=0,
            device="0", noautoanchor=True)


def test_fp16_amp_check_passes_on_a_healthy_gpu():
    model = Model("yolov5n.yaml", nc=2).cuda()
    policy = check_amp(model, select_amp("auto", "cuda"))
    assert policy.fp16 and policy.grad_scaler().is_enabled()


def test_training_with_fp16_amp_and_grad_scaler(tmp_path):
    opt = train.run(**TINY, amp="auto", project=str(tmp_path), name="amp")
    assert all(torch.isfinite(torch.tensor(opt.results[4:])))
    ckpt = torch.load(Path(opt.save_dir) / "weights/best.pt", map_location="cpu", weights_only=True)
    assert ckpt["model"]["model.0.conv.weight"].dtype == torch.float16  # stripped release file


def test_autobatch_picks_a_batch_that_fits(tmp_path):
    model = Model("yolov5n.yaml", nc=2).cuda()
    batch = autobatch(model, 128, torch.device("cuda:0"), select_amp("auto", "cuda"))
    assert 16 <= batch <= 1024  # yolov5n at 128 px needs far less than any GPU's 60%
    opt = train.run(**(TINY | dict(batch_size=-1, epochs=1)), project=str(tmp_path), name="autobatch")
    ckpt = torch.load(Path(opt.save_dir) / "weights/last.pt", map_location="cpu", weights_only=True)
    assert opt.batch_size == -1 and ckpt["opt"]["batch_size"] >= 4  # options as given; the checkpoint: the size used


def test_half_precision_validation(tmp_path):
    import val

    opt = train.run(**(TINY | dict(epochs=1)), amp="off", project=str(tmp_path), name="fp32")
    weights = Path(opt.save_dir) / "weights/best.pt"
    full = val.run(data=TINY["data"], weights=str(weights), imgsz=64, device="0", half=False, project=str(tmp_path))
    half = val.run(data=TINY["data"], weights=str(weights), imgsz=64, device="0", half=True, project=str(tmp_path))
    assert half.results.map50_95 == pytest.approx(full.results.map50_95, abs=0.02)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA devices")
def test_sync_bn_under_ddp_with_nccl(tmp_path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "train.py", "--data",
           "coco8.yaml", "--cfg", "yolov5n.yaml", "--imgsz", "64", "--batch-size", "4", "--epochs", "1", "--workers",
           "0", "--sync-bn", "--noplots", "--project", str(tmp_path), "--name", "ddp"]
    p = subprocess.run(cmd, cwd=ROOT, env=dict(os.environ), capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "Using SyncBatchNorm()" in p.stdout + p.stderr
