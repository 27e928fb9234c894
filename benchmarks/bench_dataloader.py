"""Data loader throughput versus what a yolov5n training step consumes.

Prints the loader's images/s on the built-in shapes data with mosaic + the hyp.scratch-low augmentations at 320
and 640 px with 0 and 2 workers, then the images/s of a yolov5n training step at 320 (forward, ComputeLoss,
backward, SGD step) and the ratio. Target: the loader alone at least 3x faster than the training step.

Usage:
    python benchmarks/bench_dataloader.py [--batch-size 16] [--batches 12] [--steps 4]
"""

import argparse
import logging
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from models.yolo import Model  # noqa: E402
from utils.dataloaders import create_dataloader  # noqa: E402
from utils.dataset_yaml import check_dataset  # noqa: E402
from utils.general import LOGGER, yaml_load  # noqa: E402
from utils.loss import ComputeLoss  # noqa: E402

HYP = ROOT / "data" / "hyps" / "hyp.scratch-low.yaml"


def loader_speed(path, imgsz, batch_size, workers, batches):
    """Images/s of an augmented (mosaic) training loader, after one warm-up batch."""
    loader, _ = create_dataloader(path, imgsz, batch_size, 32, hyp=yaml_load(HYP), augment=True, workers=workers,
                                  shuffle=True)
    it = iter(loader)
    next(it)  # workers start and fill their queues
    t0 = time.perf_counter()
    n = sum(len(next(it)[0]) for _ in range(batches))
    return n / (time.perf_counter() - t0), loader.num_workers


def train_step_speed(path, imgsz, batch_size, steps, nc):
    """Images/s of yolov5n training steps on one fixed augmented batch, after one warm-up step."""
    level = LOGGER.level
    LOGGER.setLevel(logging.WARNING)  # no layer table in the benchmark output
    model = Model(ROOT / "models" / "yolov5n.yaml", nc=nc).train()
    LOGGER.setLevel(level)
    compute_loss = ComputeLoss(model, yaml_load(HYP))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.937, nesterov=True)
    loader, _ = create_dataloader(path, imgsz, batch_size, 32, hyp=yaml_load(HYP), augment=True, workers=0)
    imgs, targets, _, _ = next(iter(loader))
    imgs = imgs.float() / 255

    def step():
        loss, _ = compute_loss(model(imgs), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * len(imgs) / (time.perf_counter() - t0)


def run(batch_size=16, batches=12, steps=4):
    data = check_dataset("shapes.yaml")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; data: {data['train']} (256 px images)")
    speeds = {}
    for imgsz in (320, 640):
        for workers in (0, 2):
            speed, used = loader_speed(data["train"], imgsz, batch_size, workers, batches)
            speeds[imgsz, workers] = speed
            print(f"loader  imgsz={imgsz:<4d} workers={used}  {speed:8.1f} images/s")
    train_speed = train_step_speed(data["train"], 320, batch_size, steps, data["nc"])
    print(f"yolov5n train step imgsz=320 batch={batch_size}  {train_speed:8.1f} images/s (ComputeLoss, SGD)")
    for workers in (0, 2):
        print(f"ratio loader(320, {workers} workers) / train step = {speeds[320, workers] / train_speed:.1f}x "
              f"(target >= 3x)")
    return speeds, train_speed


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--batches", type=int, default=12, help="timed loader batches per setting")
    parser.add_argument("--steps", type=int, default=4, help="timed training steps")
    run(**vars(parser.parse_args()))
