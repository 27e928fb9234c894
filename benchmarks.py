"""Benchmark every export format of a model: size, mAP50-95 and inference time, with official YOLOv5's command line.

Usage:
    python benchmarks.py --weights yolov5n.pt --img 320 --data coco128.yaml --hard-fail 0.29
    python benchmarks.py --weights runs/train/exp/weights/best.pt --img 640 [--batch-size 1] [--device cpu]
    python benchmarks.py --weights best.pt --test       # export only
    python benchmarks.py --weights best.pt --pt-only    # PyTorch only

The work is models/export/benchmark.py (``benchmark``); ``run(**flags)`` calls it with these flags. Without
--data the dataset recorded in the weights is used, else data/coco8.yaml. This file and the benchmarks/ package of
measurement scripts share a name: ``import benchmarks`` gives the package (a folder with __init__.py wins over a
module), whose ``run`` is this script's.
"""

import argparse
import sys

from models.export.benchmark import BenchmarkRow, benchmark
from utils.general import exit_code, print_args


def run(weights: str | None = None, imgsz: int = 640, batch_size: int = 1, data: str | None = None, device: str = "",
        half: bool = False, test: bool = False, pt_only: bool = False,
        hard_fail: bool | float | str = False) -> list[BenchmarkRow]:
    """benchmarks.run(weights=..., imgsz=...): the command line's flags as keyword arguments; returns the rows."""
    return benchmark(weights=weights, imgsz=imgsz, batch_size=batch_size, data=data, device=device, half=half,
                     test=test, pt_only=pt_only, hard_fail=hard_fail)


def parse_opt(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Export, validate and time every format of a YOLOv5 model")
    parser.add_argument("--weights", type=str, default=None,
                        help="weights .pt path (default: newest runs/train/*/weights/best.pt)")
    parser.add_argument("--imgsz", "--img", "--img-size", type=int, default=640, help="inference size (pixels)")
    parser.add_argument("--batch-size", type=int, default=1, help="batch size")
    parser.add_argument("--data", type=str, default=None,
                        help="dataset.yaml path (default: the one the weights were trained on, else coco8.yaml)")
    parser.add_argument("--device", default="", help="cuda device, i.e. 0 or 0,1,2,3 or cpu")
    parser.add_argument("--half", action="store_true", help="use FP16 half-precision inference (CUDA)")
    parser.add_argument("--test", action="store_true", help="test exports only")
    parser.add_argument("--pt-only", action="store_true", help="test PyTorch only")
    parser.add_argument("--hard-fail", nargs="?", const=True, default=False,
                        help="fail on a format error; with a number, also below that mAP50-95 floor")
    opt = parser.parse_args(argv)
    print_args(vars(opt), "benchmarks")
    return opt


def main(argv: list[str] | None = None) -> int:
    return exit_code(lambda: run(**vars(parse_opt(argv))))


if __name__ == "__main__":
    sys.exit(main())
