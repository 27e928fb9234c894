"""Training benchmark: yolov5n (or --cfg) from scratch on the built-in synthetic shapes data (256 px, batch 16), once
per --amp setting and seed in the same invocation, so that the precisions are compared on the same machine state; with
``--official DIR`` also official YOLOv5 v7.0's train.py on the same data, epochs, batch, workers and seeds.

Prints, per setting (timed with training callbacks), the seconds per epoch (training part and validation part), the
training speed in images/s, the share of the training time spent waiting for the data loader, and the final mAP50 /
mAP50-95 of best.pt; then the ratio of the median training epoch, and of the median whole epoch (training and
validation), of each setting to the reference (official when given, else the first --amp setting) and, per seed, the
mAP50-95 difference. With several seeds it adds the mean difference and its 95% paired-t interval (same seed = same
data order and augmentation within one code base), as benchmarks/ablate.py does for model variants. Epoch 0 is left
out of the medians (warm-up: caches, first allocations, the loader's first workers). Runs alternate between the
settings, in reversed order every other seed, so that a noisy shared CPU hits all alike. Reference (official YOLOv5
v7.0 on a 2-core machine of this kind, SPEC section 3): about 34 images/s (11 s per training epoch of 384 images);
after 30 epochs mAP50 0.46, mAP50-95 0.27.

``--official`` is a folder holding official v7.0 (PyPI yolov5 7.0.13 unpacked into it without its dependencies),
run in a child process as ``yolov5.train.main`` with timing callbacks; ``--official-path`` adds folders to its
PYTHONPATH (stand-ins for packages it imports at start-up that are not installed here, e.g. torchvision, roboflow,
pkg_resources). Official's validation calls ``torchvision.ops.nms`` under a time limit per batch: a stand-in must be
exact and vectorised (a Python loop over boxes hits the limit early in training and lowers official's mAP).
An AVX2-only CPU is emulated for both sides by the environment of this process (ONEDNN_MAX_CPU_ISA=AVX2
ATEN_CPU_CAPABILITY=avx2), which the child inherits; the ISA torch reports is printed.

Usage:
    python benchmarks/bench_train.py --epochs 30 [--amp off auto] [--seeds 0 1 2] [--workers 2] [--threads 0]
    ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 python benchmarks/bench_train.py --amp auto --seeds 0 1 2 \
        --epochs 30 --official /tmp/offenv --official-path /tmp/tvstub /tmp/offextra
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import train  # noqa: E402
from benchmarks.ablate import paired_comparison  # noqa: E402
from engine.training import DETECT  # noqa: E402
from utils.amp import AMP_CHOICES, select_amp  # noqa: E402
from utils.callbacks import Callbacks  # noqa: E402
from utils.dataset_yaml import check_dataset  # noqa: E402
from utils.general import yaml_save  # noqa: E402

OFFICIAL = "official"  # the setting name of official YOLOv5's runs


@dataclass
class RunResult:
    """One training run: per epoch (epoch, train s, img/s, val s, val mAP50-95 of the EMA), the loader wait (None
    where not measured), the final (best.pt) P, R, mAP50, mAP50-95 and the whole run's seconds."""

    epochs: list = field(default_factory=list)
    loader_wait: float | None = None
    final: tuple = (0.0, 0.0, 0.0, 0.0)
    total: float = 0.0

    @property
    def map50_95(self) -> float:
        return self.final[3]

    def later_epochs(self) -> list:
        """The epochs after the first (warm-up), or all when there is only one."""
        return self.epochs[1:] or self.epochs

    @property
    def late_map50_95(self) -> float:
        """Mean validation mAP50-95 over the last third of the epochs: on a small validation set far less noisy
        than best.pt's single score, which is also the maximum of many noisy ones."""
        late = self.epochs[-max(1, len(self.epochs) // 3):]
        return statistics.fmean(e[4] for e in late)


class EpochTimer:
    """Per-epoch training and validation seconds, images, validation mAP50-95, and the time spent waiting for the
    data loader (from the end of one batch, or the start of the epoch, to the start of the next batch), from
    training events."""

    MAP_INDEX = DETECT.results_columns.index("metrics/mAP_0.5:0.95")  # in on_fit_epoch_end's values (a csv row)

    def __init__(self):
        self.epochs = []  # (epoch, train s, img/s, val s, val mAP50-95)
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
        self.epochs.append((epoch, self.t_train, self.images / self.t_train, t_val, values[self.MAP_INDEX]))


def train_once(amp: str, seed: int, args: argparse.Namespace) -> RunResult:
    """One full training run of this project with ``--amp amp``."""
    timer = EpochTimer()
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        opt = train.run(
            cfg=args.cfg, weights="", data=str(ROOT / "data/shapes.yaml"), imgsz=args.imgsz,
            epochs=args.epochs, batch_size=args.batch_size, workers=args.workers, device=args.device,
            seed=seed, project=tmp, name="bench", noplots=True, amp=amp, callbacks=timer.callbacks,
        )
    r = opt.results
    return RunResult(timer.epochs, timer.loader_wait, (r.precision, r.recall, r.map50, r.map50_95), time.time() - t0)


# Runs in official's child process: its train.main with callbacks that print one JSON line per epoch and one for
# the final validation of best.pt (official's on_train_end results: P, R, mAP50, mAP50-95, val losses).
OFFICIAL_HARNESS = r"""
import json, sys, time
import numpy
if not hasattr(numpy, "trapz"):  # official v7.0's AP integration uses the name numpy 2 removed
    numpy.trapz = numpy.trapezoid
from yolov5 import train as official
from yolov5.utils.callbacks import Callbacks

flags = json.loads(sys.argv[1])
sys.argv = sys.argv[:1]  # official's parse_opt reads sys.argv
marks = {}
def emit(kind, **values):
    print("BENCH " + json.dumps({"kind": kind, **values}), flush=True)
def epoch_start(*args, **kwargs):
    marks.update(start=time.perf_counter(), images=0)
def batch_end(model, ni, imgs, *args, **kwargs):
    marks["images"] += imgs.shape[0]
def epoch_end(*args, epoch=None, **kwargs):
    marks.update(train=time.perf_counter() - marks["start"], epoch=epoch)
def fit_epoch_end(log_vals, *args, **kwargs):  # log_vals: 3 losses, P, R, mAP50, mAP50-95, ...
    emit("epoch", epoch=marks["epoch"], train_s=marks["train"], images=marks["images"],
         val_s=time.perf_counter() - marks["start"] - marks["train"], map50_95=float(log_vals[6]))
def train_end(last, best, epoch, results):
    emit("final", results=[float(x) for x in results])
callbacks = Callbacks()
for hook, fn in (("on_train_epoch_start", epoch_start), ("on_train_batch_end", batch_end),
                 ("on_train_epoch_end", epoch_end), ("on_fit_epoch_end", fit_epoch_end), ("on_train_end", train_end)):
    callbacks.register_action(hook, "bench", fn)
opt = official.parse_opt(True)
for k, v in flags.items():
    setattr(opt, k, v)
official.main(opt, callbacks)
"""


def official_data_yaml(folder: Path) -> Path:
    """The shapes dataset (generated when missing) as a yaml official's check_dataset reads: absolute paths, no
    generator key."""
    data = check_dataset(ROOT / "data/shapes.yaml")
    out = folder / "shapes_official.yaml"
    yaml_save(out, {"path": data["path"], "train": data["train"], "val": data["val"], "names": data["names"]})
    return out


def parse_official_output(lines: list[str]) -> tuple[list, tuple]:
    """(epochs as (epoch, train s, img/s, val s, val mAP50-95), final (P, R, mAP50, mAP50-95)) from the harness's
    BENCH lines."""
    epochs, final = [], None
    for line in lines:
        if not line.startswith("BENCH "):
            continue
        record = json.loads(line[len("BENCH "):])
        if record["kind"] == "epoch":
            epochs.append((record["epoch"], record["train_s"], record["images"] / max(record["train_s"], 1e-9),
                           record["val_s"], record["map50_95"]))
        elif record["kind"] == "final":
            final = tuple(record["results"][:4])
    return epochs, final


def official_env(args: argparse.Namespace, config_dir: str) -> dict:
    """The environment of official's child process: its folders on PYTHONPATH, its config folder, the threads."""
    # official reloads the checkpoints it has just written with torch.load's old full unpickling, which torch >= 2.6
    # allows only when asked (its own files of this run, so trusted)
    env = {**os.environ, "YOLOV5_CONFIG_DIR": config_dir, "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1",
           "PYTHONPATH": os.pathsep.join([args.official, *args.official_path])}
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    return env


def check_official_imports(args: argparse.Namespace) -> None:
    """Stop before any training when official's train.py does not import with the given folders (a missing
    stand-in would otherwise end the benchmark after the project's first run)."""
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run([sys.executable, "-c", "import yolov5.train"], cwd=tmp, env=official_env(args, tmp),
                              capture_output=True, text=True)
    if proc.returncode:
        reason = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
        raise SystemExit(f"official YOLOv5 does not import from {args.official} with --official-path "
                         f"{' '.join(args.official_path) or '(none)'}: {reason}")


def official_train_once(seed: int, args: argparse.Namespace, data_yaml: Path) -> RunResult:
    """One full training run of official YOLOv5 (args.official) in a child process, with the same flags."""
    with tempfile.TemporaryDirectory() as tmp:
        # official's check_dataset fetches a font for its plots when its config folder lacks one; the runs make no
        # plots (--noplots) and have no network, so an empty placeholder stands in
        (Path(tmp) / "Arial.ttf").touch()
        env = official_env(args, tmp)
        flags = dict(weights="", cfg=args.cfg, data=str(data_yaml), imgsz=args.imgsz, epochs=args.epochs,
                     batch_size=args.batch_size, workers=args.workers, device=args.device or "cpu", seed=seed,
                     project=tmp, name="bench", noplots=True, exist_ok=True)
        t0 = time.time()
        proc = subprocess.run([sys.executable, "-c", OFFICIAL_HARNESS, json.dumps(flags)], cwd=tmp, env=env,
                              capture_output=True, text=True)
        total = time.time() - t0
    epochs, final = parse_official_output(proc.stdout.splitlines())
    if proc.returncode or final is None:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-15:])
        raise SystemExit(f"official training failed (exit {proc.returncode}):\n{tail}")
    return RunResult(epochs, None, final, total)


def run_order(settings: list[str], seed_index: int) -> list[str]:
    """The settings in the given order for even seed indices, reversed for odd ones (A B, B A, ...)."""
    return list(settings) if seed_index % 2 == 0 else list(reversed(settings))


def median_train_epoch(results: list[RunResult]) -> float:
    """Median training seconds per epoch over all runs' epochs after the first."""
    return statistics.median(e[1] for r in results for e in r.later_epochs())


def median_whole_epoch(results: list[RunResult]) -> float:
    """Median seconds per whole epoch (training and the epoch's validation, as YOLOv5 runs by default) over all
    runs' epochs after the first."""
    return statistics.median(e[1] + e[3] for r in results for e in r.later_epochs())


def fastest_train_epoch(results: list[RunResult]) -> float:
    """Fastest training epoch over all runs' epochs after the first: on a CPU shared with other jobs, the epoch
    least slowed by them, so its ratio is the steadier one when the load comes in bursts."""
    return min(e[1] for r in results for e in r.later_epochs())


def print_runs(setting: str, runs: dict, seeds: list[int], label: str) -> None:
    print(f"\n{setting}: {label}")
    for seed in seeds:
        r = runs[setting, seed]
        print(f"seed {seed}:\n{'epoch':>5} {'train s':>8} {'img/s':>7} {'val s':>6} {'mAP50-95':>8}")
        for e, t_train, speed, t_val, m in r.epochs:
            print(f"{int(e):>5} {t_train:>8.1f} {speed:>7.1f} {t_val:>6.1f} {m:>8.4f}")
        later = r.later_epochs()
        train_total = sum(x[1] for x in r.epochs)
        wait = "" if r.loader_wait is None else (
            f"waiting for the data loader {r.loader_wait:.0f} s of {train_total:.0f} s training "
            f"({r.loader_wait / max(train_total, 1e-9):.0%}); ")
        p, rec, m50, m = r.final
        print(f"{setting} seed {seed}: median train {statistics.median(x[1] for x in later):.1f} s/epoch "
              f"({statistics.median(x[2] for x in later):.1f} img/s) over epochs 1-{len(r.epochs) - 1} "
              f"(epoch 0: {r.epochs[0][1]:.1f} s), val {statistics.median(x[3] for x in later):.1f} s/epoch; {wait}"
              f"total {r.total:.0f} s; final (best.pt): P {p:.3f} R {rec:.3f} mAP50 {m50:.3f} mAP50-95 {m:.3f}; "
              f"mean val mAP50-95 of the last third of the epochs {r.late_map50_95:.3f}")


def compare(runs: dict, settings: list[str], seeds: list[int], reference: str) -> None:
    """Ratio of each setting's median training epoch (and whole epoch, with validation) to the reference's, and the
    paired mAP50-95 differences."""
    medians = {s: median_train_epoch([runs[s, seed] for seed in seeds]) for s in settings}
    final = {s: {seed: runs[s, seed].map50_95 for seed in seeds} for s in settings}
    print()
    for s in settings:
        if s == reference:
            continue
        per_seed_ratio = ", ".join(
            f"seed {seed} {median_train_epoch([runs[s, seed]]) / median_train_epoch([runs[reference, seed]]):.2f}x"
            for seed in seeds)
        per_seed = ", ".join(f"seed {seed} {final[s][seed] - final[reference][seed]:+.3f}" for seed in seeds)
        fastest = {k: fastest_train_epoch([runs[k, seed] for seed in seeds]) for k in (s, reference)}
        print(f"median train epoch {s} / {reference}: {medians[s] / medians[reference]:.2f}x "
              f"({medians[s]:.2f} / {medians[reference]:.2f} s; per seed {per_seed_ratio}); fastest epoch "
              f"{fastest[s] / fastest[reference]:.2f}x ({fastest[s]:.2f} / {fastest[reference]:.2f} s); "
              f"mAP50-95 difference: {per_seed}")
        whole = {k: median_whole_epoch([runs[k, seed] for seed in seeds]) for k in (s, reference)}
        print(f"  median whole epoch (training + validation) {s} / {reference}: {whole[s] / whole[reference]:.2f}x "
              f"({whole[s]:.2f} / {whole[reference]:.2f} s)")
        late = {k: {seed: runs[k, seed].late_map50_95 for seed in seeds} for k in (s, reference)}
        print("  mean val mAP50-95 of the last third of the epochs, difference: "
              + ", ".join(f"seed {seed} {late[s][seed] - late[reference][seed]:+.3f}" for seed in seeds))
        for label, values in (("best.pt mAP50-95", final), ("last-third mean mAP50-95", late)):
            cmp = paired_comparison(values[s], values[reference])
            if cmp["low"] is not None:
                print(f"  {label}: mean difference over {cmp['n']} paired seeds {cmp['diff']:+.4f}, 95% paired-t "
                      f"interval [{cmp['low']:+.4f}, {cmp['high']:+.4f}]")


def setting_name(amp: str) -> str:
    return f"--amp {amp}"


def run(args: argparse.Namespace) -> dict:
    """All runs, alternating between the settings; returns {(setting, seed): RunResult}."""
    if args.threads:
        torch.set_num_threads(args.threads)
    settings = [setting_name(a) for a in args.amp] + ([OFFICIAL] if args.official else [])
    if args.official:
        check_official_imports(args)
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        data_yaml = official_data_yaml(Path(tmp)) if args.official else None
        for i, seed in enumerate(args.seeds):
            for s in run_order(settings, i):
                r = runs[s, seed] = (official_train_once(seed, args, data_yaml) if s == OFFICIAL
                                     else train_once(s.split()[-1], seed, args))
                print(f"bench_train: {s} seed {seed} done: epochs {[round(e[1], 1) for e in r.epochs]} s, "
                      f"mAP50-95 {r.map50_95:.4f}", flush=True)  # a partial record should the run be cut short

    print(f"\nbench_train: {Path(args.cfg).stem} from scratch, data/shapes.yaml, {args.imgsz} px, batch "
          f"{args.batch_size}, {args.epochs} epochs, workers {args.workers}, {torch.get_num_threads()} threads, seeds "
          f"{' '.join(map(str, args.seeds))}; torch CPU capability {torch.backends.cpu.get_cpu_capability()}"
          f" (ONEDNN_MAX_CPU_ISA={os.environ.get('ONEDNN_MAX_CPU_ISA', 'unset')})")
    device_type = "cuda" if args.device != "cpu" and torch.cuda.is_available() else "cpu"
    for s in settings:
        label = f"official YOLOv5 ({args.official})" if s == OFFICIAL else select_amp(s.split()[-1],
                                                                                       device_type).describe()
        print_runs(s, runs, args.seeds, label)
    compare(runs, settings, args.seeds, OFFICIAL if args.official else settings[0])
    if args.cfg == "yolov5n.yaml" and device_type == "cpu":
        print("reference (official v7.0, 2 cores): 34 img/s, 11 s/epoch; 30 epochs: mAP50 0.46, mAP50-95 0.27")
    return runs


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cfg", default="yolov5n.yaml", help="model yaml trained from scratch")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--imgsz", type=int, default=256)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--device", default="")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="train once per seed and setting")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    parser.add_argument("--amp", nargs="+", choices=AMP_CHOICES, default=["off", "auto"],
                        help="train once per setting, in this order; ratios are against the first (or official)")
    parser.add_argument("--official", default=None,
                        help="folder holding the pip yolov5 (v7.0) package: also train official's train.py")
    parser.add_argument("--official-path", nargs="*", default=[],
                        help="extra PYTHONPATH folders for official (stand-ins for packages it imports)")
    return parser.parse_args(argv)


if __name__ == "__main__":
    run(parse_args())
