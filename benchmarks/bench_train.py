"""Training benchmark: yolov5n from scratch on the built-in synthetic shapes data (256 px, batch 16), once per --amp
setting and seed in the same invocation, so that the precisions are compared on the same machine state.

Prints, per setting (timed with training callbacks), the seconds per epoch (training part and validation part),
the training speed in images/s, the share of the training time spent waiting for the data loader, and the final
mAP50 / mAP50-95 of best.pt; then the ratio of the median training epoch of each setting to the first one and, per
seed, the mAP50-95 difference. With several seeds it adds the mean difference and its 95% paired-t interval (same
seed = same data order and augmentation), as benchmarks/ablate.py does for model variants. Reference (official
YOLOv5 v7.0 on a 2-core machine of this kind, SPEC section 3): about 34 images/s (11 s per training epoch of 384
images); after 30 epochs mAP50 0.46, mAP50-95 0.27.

Usage:
    python benchmarks/bench_train.py --epochs 30 [--amp off auto] [--seeds 0 1 2] [--workers 2] [--threads 0]
"""

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ablate import paired_comparison  # noqa: E402

import train  # noqa: E402
from utils.amp import AMP_CHOICES, select_amp  # noqa: E402
from utils.callbacks import Callbacks  # noqa: E402


class EpochTimer:
    """Per-epoch training and validation seconds, images, and the time spent waiting for the data loader (from
    the end of one batch, or the start of the epoch, to the start of the next batch), from training events."""

    def __init__(self):
        self.epochs = []  # (epoch, train s, img/s, val s)
        self.loader_wait = 0.0
        self.callbacks = Callbacks()
        for hook, method in (("on_train_epoch_start", self.epoch_start), ("on_train_batch_start", self.batch_start),
                             ("on_train_batch_end", self.batch_end), ("on_train_epoch_end", self.epoch_end),
                             ("on_fit_epoch_end", self.fit_epoch_end)):
            self.callbacks.register_action(hook, "timer", method)

    def epoch_start(self, epoch):
        self.t_start = self.t_ready = time.perf_counter()
        self.images = 0

    def batch_start(self, ni, epoch):
        self.loader_wait += time.perf_counter() - self.t_ready

    def batch_end(self, ni, model, imgs, targets, paths, mloss):
        self.images += imgs.shape[0]
        self.t_ready = time.perf_counter()

    def epoch_end(self, epoch):
        self.t_train = time.perf_counter() - self.t_start

    def fit_epoch_end(self, values, epoch, best_fitness, fitness):
        t_val = time.perf_counter() - self.t_start - self.t_train
        self.epochs.append((epoch, self.t_train, self.images / self.t_train, t_val))


def train_once(amp, seed, args):
    """One full training run with ``--amp amp``; returns (timer, final results, total seconds)."""
    timer = EpochTimer()
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        opt = train.run(
            cfg="yolov5n.yaml", weights="", data=str(ROOT / "data/shapes.yaml"), imgsz=args.imgsz,
            epochs=args.epochs, batch_size=args.batch_size, workers=args.workers, device=args.device,
            seed=seed, project=tmp, name="bench", noplots=True, amp=amp, callbacks=timer.callbacks,
        )
    return timer, opt.results, time.time() - t0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--imgsz", type=int, default=256)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--device", default="")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="train once per seed and setting")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    parser.add_argument("--amp", nargs="+", choices=AMP_CHOICES, default=["off", "auto"],
                        help="train once per setting, in this order; ratios are against the first")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    runs = {(amp, seed): train_once(amp, seed, args) for seed in args.seeds for amp in args.amp}

    print(f"\nbench_train: yolov5n from scratch, data/shapes.yaml, {args.imgsz} px, batch {args.batch_size}, "
          f"{args.epochs} epochs, workers {args.workers}, {torch.get_num_threads()} threads, seeds "
          f"{' '.join(map(str, args.seeds))}")
    device_type = "cuda" if args.device != "cpu" and torch.cuda.is_available() else "cpu"
    medians, final = {}, {}
    for amp in args.amp:
        print(f"\n--amp {amp}: {select_amp(amp, device_type).describe()}")
        later_all = []
        for seed in args.seeds:
            timer, results, total = runs[amp, seed]
            print(f"seed {seed}:\n{'epoch':>5} {'train s':>8} {'img/s':>7} {'val s':>6}")
            for e, t_train, speed, t_val in timer.epochs:
                print(f"{int(e):>5} {t_train:>8.1f} {speed:>7.1f} {t_val:>6.1f}")
            later = timer.epochs[1:] or timer.epochs  # epoch 0 includes warm-up costs (caches, first allocations)
            later_all += later
            train_total = sum(x[1] for x in timer.epochs)
            print(f"--amp {amp} seed {seed}: median train {statistics.median(x[1] for x in later):.1f} s/epoch "
                  f"({statistics.median(x[2] for x in later):.1f} img/s) over epochs 1-{len(timer.epochs) - 1}, "
                  f"val {statistics.median(x[3] for x in later):.1f} s/epoch; waiting for the data loader "
                  f"{timer.loader_wait:.0f} s of {train_total:.0f} s training "
                  f"({timer.loader_wait / max(train_total, 1e-9):.0%}); total {total:.0f} s; final (best.pt): "
                  f"P {results.precision:.3f} R {results.recall:.3f} mAP50 {results.map50:.3f} "
                  f"mAP50-95 {results.map50_95:.3f}")
        medians[amp] = statistics.median(x[1] for x in later_all)
        final[amp] = {seed: runs[amp, seed][1].map50_95 for seed in args.seeds}
    first = args.amp[0]
    print()
    for amp in args.amp[1:]:
        per_seed = ", ".join(f"seed {s} {final[amp][s] - final[first][s]:+.3f}" for s in args.seeds)
        print(f"median train epoch --amp {amp} / --amp {first}: {medians[amp] / medians[first]:.2f}x "
              f"({medians[amp]:.2f} / {medians[first]:.2f} s); mAP50-95 difference: {per_seed}")
        cmp = paired_comparison(final[amp], final[first])
        if cmp["low"] is not None:
            print(f"  mean mAP50-95 difference over {cmp['n']} paired seeds {cmp['diff']:+.4f}, 95% paired-t "
                  f"interval [{cmp['low']:+.4f}, {cmp['high']:+.4f}]")
    print("reference (official v7.0, 2 cores): 34 img/s, 11 s/epoch; 30 epochs: mAP50 0.46, mAP50-95 0.27")


if __name__ == "__main__":
    main()
