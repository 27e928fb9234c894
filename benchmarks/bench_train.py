"""Training benchmark: yolov5n from scratch on the built-in synthetic shapes data (fixed seed, 256 px, batch 16).

Prints the seconds per epoch (training part and validation part), the training speed in images/s and the final
mAP50 / mAP50-95 of best.pt. Reference (official YOLOv5 v7.0 on a 2-core machine of this kind, SPEC section 3):
about 34 images/s (11 s per training epoch of 384 images); after 30 epochs mAP50 0.46, mAP50-95 0.27.

Usage:
    python benchmarks/bench_train.py --epochs 30 [--workers 2] [--batch-size 16] [--imgsz 256]
"""

import argparse
import logging
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import train  # noqa: E402
from utils.general import LOGGER  # noqa: E402

EPOCH_LINE = re.compile(r"epoch (\d+): train ([\d.]+)s \(([\d.]+) img/s\), val ([\d.]+)s")


class EpochTimes(logging.Handler):
    """Collects the per-epoch timing lines train.py logs."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.epochs = []

    def emit(self, record):
        match = EPOCH_LINE.search(record.getMessage())
        if match:
            self.epochs.append(tuple(float(x) for x in match.groups()))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--imgsz", type=int, default=256)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--device", default="")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    times = EpochTimes()
    LOGGER.addHandler(times)
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        opt = train.run(
            cfg="yolov5n.yaml", weights="", data=str(ROOT / "data/shapes.yaml"), imgsz=args.imgsz,
            epochs=args.epochs, batch_size=args.batch_size, workers=args.workers, device=args.device,
            seed=args.seed, project=tmp, name="bench", noplots=True,
        )
    total = time.time() - t0
    LOGGER.removeHandler(times)

    p, r, map50, map5095 = opt.results[:4]
    print(f"\nbench_train: yolov5n from scratch, data/shapes.yaml, {args.imgsz} px, batch {args.batch_size}, "
          f"{args.epochs} epochs, workers {args.workers}, seed {args.seed}")
    print(f"{'epoch':>5} {'train s':>8} {'img/s':>7} {'val s':>6}")
    for e, t_train, speed, t_val in times.epochs:
        print(f"{int(e):>5} {t_train:>8.1f} {speed:>7.1f} {t_val:>6.1f}")
    if times.epochs:
        n = len(times.epochs)
        later = times.epochs[1:] or times.epochs  # epoch 0 includes warm-up costs (caches, first allocations)
        mean_train = sum(x[1] for x in later) / len(later)
        mean_speed = sum(x[2] for x in later) / len(later)
        mean_val = sum(x[3] for x in later) / len(later)
        print(f"mean over epochs 1-{n - 1}: train {mean_train:.1f} s/epoch ({mean_speed:.1f} img/s), "
              f"val {mean_val:.1f} s/epoch")
    print(f"total {total:.0f} s; final (best.pt): P {p:.3f} R {r:.3f} mAP50 {map50:.3f} mAP50-95 {map5095:.3f}")
    print("reference (official v7.0, 2 cores): 34 img/s, 11 s/epoch; 30 epochs: mAP50 0.46, mAP50-95 0.27")


if __name__ == "__main__":
    main()
