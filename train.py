"""Train a YOLOv5 detection model on a dataset.

Usage:
    python train.py                                  # the built-in demo: yolov5n on generated shapes, 256 px, 30 epochs
    python train.py --data data/coco8.yaml --weights yolov5s.pt        # official defaults: 640 px, 100 epochs
    python train.py --cfg models/yolov5s_ScConv.yaml --data data/coco8.yaml --weights yolov5s.pt --epochs 100
    python train.py --resume                         # continue the newest interrupted run (runs/**/last.pt)
    python train.py --resume runs/train/exp3/weights/last.pt
    python train.py --data data/coco8.yaml --evolve 300                # hyperparameter evolution (runs/evolve/exp)

Outputs go to runs/train/exp{N}/: weights/last.pt and best.pt, results.csv and .png, opt.yaml, hyp.yaml,
labels.jpg, train_batch{0,1,2}.jpg, the final validation plots and a TensorBoard event file.

This script is the command line: flags in, ``engine.training.main`` (the phases, shared with segment/train.py)
out. From Python: ``train.run(data=..., epochs=...)``.
"""

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from engine.training import main, make_parser, options_from_kwargs, train  # noqa: E402  (train: official's name for the training run)
from utils.callbacks import Callbacks  # noqa: E402
from utils.general import exit_code  # noqa: E402

__all__ = ["main", "parse_opt", "run", "train"]


def parse_opt(argv: list[str] | None = None, known: bool = False) -> argparse.Namespace:
    parser = make_parser()
    return parser.parse_known_args(argv)[0] if known else parser.parse_args(argv)


def run(callbacks: Callbacks | None = None, **kwargs: object) -> argparse.Namespace:
    """Train from Python with the CLI flags as keyword arguments, e.g. ``run(data='coco8.yaml', imgsz=320,
    epochs=3)``, and optionally a utils.callbacks.Callbacks. Returns the options namespace with ``save_dir`` and
    the final ``results`` (utils.evaluation.ValResults)."""
    return main(options_from_kwargs(parse_opt([], known=True), kwargs, "train.run"), callbacks)


if __name__ == "__main__":
    sys.exit(exit_code(lambda: main(parse_opt())))
