"""Training benchmark: yolov5n from scratch on the built-in synthetic shapes data (fixed seed, 256 px, batch 16),
once per --amp setting in the same invocation, so that the precisions are compared on the same machine state.

Prints, per setting, the seconds per epoch (training part and validation part), the training speed in images/s,
the share of the training time spent waiting for the data loader, and the final mAP50 / mAP50-95 of best.pt;
then the ratio of the median training epoch of each setting to the first one. Reference (official YOLOv5 v7.0 on
a 2-core machine of this kind, SPEC section 3): about 34 images/s (11 s per training epoch of 384 images); after
30 epochs mAP50 0.46, mAP50-95 0.27.

Usage:
    python benchmarks/bench_train.py --epochs 30 [--amp off auto] [--workers 2] [--batch-size 16] [--imgsz 256]
"""

import argparse
import logging
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import train  # noqa: E402
from utils.amp import AMP_CHOICES  # noqa: E402
from utils.general import LOGGER  # noqa: E402

EPOCH_LINE = re.compile(r"epoch (\d+): train ([\d.]+)s \(([\d.]+) img/s\), val ([\d.]+)s")
AMP_LINE = re.compile(r"AMP: (.*)")


class EpochTimes(logging.Handler):
    """Collects the per-epoch timing lines and the AMP decision train.py logs."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.epochs = []
        self.amp = ""

    def emit(self, record):
        message = record.getMessage()
        match = EPOCH_LINE.search(message)
        if match:
            self.epochs.append(tuple(float(x) for x in match.groups()))
        match = AMP_LINE.search(message.replace("\x1b[34m\x1b[1m", "").replace("\x1b[0m", ""))
        if match:
            self.amp = match.group(1)


class LoaderWait:
    """Wraps the training data loader's iterator and adds up the time spent waiting for batches."""

    def __init__(self):
        self.seconds = 0.0

    def wrap(self, loader_cls):
        meter = self
        original_iter = loader_cls.__iter__

        def timed_iter(loader):
            iterator = original_iter(loader)
            while True:
                t = time.perf_counter()
                try:
                    batch = next(iterator)
                except StopIteration:
                    return
                finally:
                    if loader.dataset.augment:  # training loader only
                        meter.seconds += time.perf_counter() - t
                yield batch

        loader_cls.__iter__ = timed_iter
        return original_iter


def train_once(amp, args):
    """One full training run with ``--amp amp``; returns (amp description, epoch rows, results, total s, wait s)."""
    from utils import dataloaders

    times, wait = EpochTimes(), LoaderWait()
    loader_cls = dataloaders.InfiniteDataLoader
    original_iter = wait.wrap(loader_cls)
    LOGGER.addHandler(times)
    t0 = time.time()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            opt = train.run(
                cfg="yolov5n.yaml", weights="", data=str(ROOT / "data/shapes.yaml"), imgsz=args.imgsz,
                epochs=args.epochs, batch_size=args.batch_size, workers=args.workers, device=args.device,
                seed=args.seed, project=tmp, name="bench", noplots=True, amp=amp,
            )
    finally:
        LOGGER.removeHandler(times)
        loader_cls.__iter__ = original_iter
    return times.amp, times.epochs, opt.results, time.time() - t0, wait.seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--imgsz", type=int, default=256)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--device", default="")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--amp", nargs="+", choices=AMP_CHOICES, default=["off", "auto"],
                        help="train once per setting, in this order; ratios are against the first")
    args = parser.parse_args()

    runs = {amp: train_once(amp, args) for amp in args.amp}

    print(f"\nbench_train: yolov5n from scratch, data/shapes.yaml, {args.imgsz} px, batch {args.batch_size}, "
          f"{args.epochs} epochs, workers {args.workers}, seed {args.seed}")
    medians = {}
    for amp, (described, epochs, results, total, wait) in runs.items():
        print(f"\n--amp {amp}: {described}")
        print(f"{'epoch':>5} {'train s':>8} {'img/s':>7} {'val s':>6}")
        for e, t_train, speed, t_val in epochs:
            print(f"{int(e):>5} {t_train:>8.1f} {speed:>7.1f} {t_val:>6.1f}")
        later = epochs[1:] or epochs  # epoch 0 includes warm-up costs (caches, first allocations)
        medians[amp] = statistics.median(x[1] for x in later)
        train_total = sum(x[1] for x in epochs)
        p, r, map50, map5095 = results[:4]
        print(f"--amp {amp}: median train {medians[amp]:.1f} s/epoch "
              f"({statistics.median(x[2] for x in later):.1f} img/s) over epochs 1-{len(epochs) - 1}, "
              f"val {statistics.median(x[3] for x in later):.1f} s/epoch; waiting for the data loader "
              f"{wait:.0f} s of {train_total:.0f} s training ({wait / max(train_total, 1e-9):.0%})")
        print(f"--amp {amp}: total {total:.0f} s; final (best.pt): P {p:.3f} R {r:.3f} mAP50 {map50:.3f} "
              f"mAP50-95 {map5095:.3f}")
    first = args.amp[0]
    for amp in args.amp[1:]:
        print(f"median train epoch --amp {amp} / --amp {first}: {medians[amp] / medians[first]:.2f}x; "
              f"mAP50-95 difference {runs[amp][2][3] - runs[first][2][3]:+.3f}")
    print("reference (official v7.0, 2 cores): 34 img/s, 11 s/epoch; 30 epochs: mAP50 0.46, mAP50-95 0.27")


if __name__ == "__main__":
    main()
