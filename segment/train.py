"""Train a YOLOv5 v7.0 instance-segmentation model on a dataset of polygon labels.

Usage:
    python segment/train.py              # the built-in demo: yolov5n-seg on generated shapes, 256 px, 30 epochs
    python segment/train.py --data coco8-seg.yaml --weights yolov5s-seg.pt --img 640
    python segment/train.py --cfg models/yolov5s_ScConv.yaml --data coco8-seg.yaml   # any variant, as its -seg form
    python segment/train.py --resume                 # continue the newest interrupted run
    python segment/train.py --data coco8-seg.yaml --evolve 300

All of train.py's flags, plus ``--mask-ratio`` (masks at image size / ratio, default 4) and ``--no-overlap`` (one
mask per instance instead of one index map per image). Outputs go to runs/train-seg/exp{N}/ as for detection;
results.csv carries box (B) and mask (M) metrics and train/seg_loss, as official.

This script is the SEGMENT task (utils/segment_data.py, utils/segment_loss.py, utils/segment_evaluation.py) run on
the training engine train.py runs (engine/training.py): the phases, callbacks, resume, --evolve, checkpoints,
EMA and AMP are the same code.
"""

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from engine import training  # noqa: E402
from models.yolo import SegmentationModel  # noqa: E402
from utils.callbacks import Callbacks  # noqa: E402
from utils.general import UserError, exit_code  # noqa: E402
from utils.segment_data import create_segment_dataloader  # noqa: E402
from utils.segment_evaluation import SEG_VAL_COLUMNS, evaluate_segmentation, segment_fitness  # noqa: E402
from utils.segment_loss import ComputeSegmentLoss  # noqa: E402

DEFAULT_CFG = "yolov5n-seg.yaml"  # model trained when neither --cfg nor --weights is given
DEMO_DATA = str(ROOT / "data/shapes-seg.yaml")  # `python segment/train.py` without --data
OPTION_DEFAULTS = {"mask_ratio": 4, "no_overlap": False}  # the flags this script adds to train.py's


def make_loader(opt: argparse.Namespace, path: object, imgsz: int, batch_size: int, gs: int,
                **options: object) -> tuple:
    """Loader and dataset of one split with masks (utils/segment_data.py)."""
    return create_segment_dataloader(path, imgsz, batch_size, gs, mask_ratio=opt.mask_ratio,
                                     overlap=not opt.no_overlap, single_cls=opt.single_cls, **options)


def make_loss(model: nn.Module, hyp: dict, opt: argparse.Namespace) -> ComputeSegmentLoss:
    return ComputeSegmentLoss(model, hyp, overlap=not opt.no_overlap)


def compute_loss(loss_fn: ComputeSegmentLoss, pred: tuple, batch: tuple,
                 device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The loss of a training forward (levels, prototypes) on a batch (imgs, targets, paths, shapes, masks), fp32."""
    levels, proto = pred
    return loss_fn(([p.float() for p in levels], proto.float()), batch[1].to(device), batch[4].to(device))


def evaluate(state: training.TrainState, model: nn.Module, plots: bool = False, verbose: bool = False,
             by_size: bool = False) -> object:
    """Box and mask metrics with utils.segment_evaluation.evaluate_segmentation (as segment/val.py)."""
    return evaluate_segmentation(
        model, state.val_loader, state.nc, state.names, state.device, single_cls=state.opt.single_cls,
        half=state.amp.fp16, compute_loss=state.compute_loss, verbose=verbose, save_dir=state.save_dir, plots=plots,
        overlap=not state.opt.no_overlap, by_size=by_size,
    )


def fitness(results: np.ndarray) -> np.ndarray:
    """0.1 mAP50 + 0.9 mAP50-95 of boxes plus the same of masks (official v7.0)."""
    return segment_fitness(results)


SEGMENT = training.TrainTask(
    name="segment", model_class=SegmentationModel, default_cfg=DEFAULT_CFG, demo_data=DEMO_DATA,
    loss_names=("box_loss", "seg_loss", "obj_loss", "cls_loss"), val_columns=tuple(SEG_VAL_COLUMNS.values()),
    make_loader=make_loader, make_loss=make_loss, compute_loss=compute_loss, evaluate=evaluate, fitness=fitness,
    option_defaults=OPTION_DEFAULTS, scripts=("segment/val.py", "segment/predict.py"),
)


def parse_opt(argv: list[str] | None = None, known: bool = False) -> argparse.Namespace:
    parser = training.make_parser("Train a YOLOv5 instance-segmentation model.")
    parser.set_defaults(project=str(ROOT / "runs/train-seg"))
    parser.add_argument("--mask-ratio", type=int, default=OPTION_DEFAULTS["mask_ratio"],
                        help="mask resolution: image size / mask-ratio (the prototypes' 4 by default)")
    parser.add_argument("--no-overlap", action="store_true",
                        help="one mask per instance instead of one index map per image (overlap_mask)")
    return parser.parse_known_args(argv)[0] if known else parser.parse_args(argv)


def main(opt: argparse.Namespace, callbacks: Callbacks | None = None) -> argparse.Namespace:
    if opt.quad:
        raise UserError("--quad is not supported for segmentation training")
    if not isinstance(opt.mask_ratio, int) or opt.mask_ratio < 1:
        raise UserError(f"--mask-ratio must be a positive integer, got {opt.mask_ratio!r}")
    return training.main(opt, callbacks, task=SEGMENT)


def run(callbacks: Callbacks | None = None, **kwargs: object) -> argparse.Namespace:
    """Train from Python with the CLI flags as keyword arguments, e.g. ``run(data='coco8-seg.yaml', imgsz=320,
    epochs=3)``. Returns the options namespace with ``save_dir`` and the final ``results`` (SegValResults)."""
    return main(training.options_from_kwargs(parse_opt([], known=True), kwargs, "segment/train.run"), callbacks)


if __name__ == "__main__":
    sys.exit(exit_code(lambda: main(parse_opt())))
