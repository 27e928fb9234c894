"""Every export format side by side, as official YOLOv5's ``benchmarks.py``: each format the weights export to here is
written, validated on a dataset (mAP50-95) and timed (inference milliseconds per image, from that validation), and
the results printed as official's table (Format, Size (MB), mAP50-95, Inference time (ms)).

``benchmark`` is what the root ``benchmarks.py`` runs (``python benchmarks.py --weights yolov5n.pt --img 320
--hard-fail 0.29``). The formats are this project's (PyTorch, TorchScript, ONNX, OpenVINO, TensorRT); official's
TensorFlow, CoreML and PaddlePaddle rows are not exported here and are left out. A format whose package or device is
missing is a row without numbers and a note; ``hard_fail`` turns a failed format into an error, and a number
(``--hard-fail 0.29``) is also the mAP50-95 every validated format must exceed.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import torch

from models.backends import DetectMultiBackend, default_dataset, fetch_weights, newest_trained_weights
from models.export.pipeline import export_weights
from utils.dataloaders import create_dataloader
from utils.dataset_yaml import check_dataset
from utils.evaluation import ValOutput, evaluate
from utils.general import LOGGER, ROOT, UserError, check_img_size, colorstr
from utils.torch_utils import select_device

# (table name, export --include name or None for the weights themselves, packages it needs, needs CUDA)
BENCHMARK_FORMATS = (
    ("PyTorch", None, (), False),
    ("TorchScript", "torchscript", (), False),
    ("ONNX", "onnx", ("onnx", "onnxruntime"), False),
    ("OpenVINO", "openvino", ("openvino",), False),
    ("TensorRT", "engine", ("tensorrt",), True),
)
DEFAULT_DATA = ROOT / "data" / "coco8.yaml"  # a local dataset: official's default, coco128, is a download
COLUMNS = ("Format", "Size (MB)", "mAP50-95", "Inference time (ms)")


class BenchmarkRow(NamedTuple):
    """One format's result; the numbers are None where the format was not exported or not validated."""

    format: str
    size_mb: float | None
    map50_95: float | None
    inference_ms: float | None
    note: str = ""


def size_mb(path: str | Path) -> float:
    """Size of a file, or of every file in a folder (an OpenVINO model), in MB."""
    path = Path(path)
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files) / 1e6


def validate(weights: str | Path, data: dict, imgsz: int, batch_size: int, device: torch.device,
             half: bool = False) -> ValOutput:
    """val.py's evaluation of ``weights`` (any format) on the val split of the checked dataset dict ``data`` at
    ``imgsz``, without plots or files: batch_size for .pt weights, 1 for exported ones (as val.py)."""
    model = DetectMultiBackend(weights, device=device, data=data.get("yaml_file"), fp16=half)
    imgsz = check_img_size(imgsz, s=model.stride)
    batch_size = batch_size if model.pt else 1
    if model.nc != int(data["nc"]):
        raise UserError(f"{weights} has {model.nc} classes but the dataset has {data['nc']}; pass --data")
    model.warmup(imgsz=(batch_size, 3, imgsz, imgsz))
    loader, _ = create_dataloader(data["val"], imgsz, batch_size, model.stride, pad=0.5, rect=model.pt, workers=0,
                                  prefix=colorstr("val: "))
    return evaluate(model, loader, int(data["nc"]), model.names, device, half=model.fp16, plots=False,
                    by_size=False)


def _unavailable(packages: Sequence[str], cuda: bool, device: torch.device) -> str:
    missing = [p for p in packages if importlib.util.find_spec(p) is None]
    if missing:
        return f"needs {', '.join(missing)}"
    if cuda and device.type != "cuda":
        return "needs a CUDA device"
    return ""


def parse_hard_fail(hard_fail: bool | float | str | None) -> tuple[bool, float | None]:
    """(fail on any format error, mAP50-95 floor or None) from --hard-fail: absent, bare, or a number."""
    if hard_fail in (None, False, "", "False", "false", "0"):
        return False, None
    if hard_fail is True or hard_fail in ("True", "true"):
        return True, None
    try:
        return True, float(hard_fail)
    except (TypeError, ValueError):
        raise UserError(f"--hard-fail {hard_fail!r:.40}: give no value or an mAP50-95 floor such as 0.29") from None


def benchmark(weights: str | Path | None = None, imgsz: int = 640, batch_size: int = 1, data: str | Path | None = None,
              device: str = "", half: bool = False, test: bool = False, pt_only: bool = False,
              hard_fail: bool | float | str = False) -> list[BenchmarkRow]:
    """Export ``weights`` (.pt) to every format available here, validate each on ``data`` (default: the dataset the
    weights were trained on, else coco8) and print official's table. ``test``: export only; ``pt_only``: PyTorch
    only; ``hard_fail``: a failed format raises, and a number is the mAP50-95 floor. Returns the rows."""
    strict, floor = parse_hard_fail(hard_fail)
    weights = Path(fetch_weights(weights) or newest_trained_weights())
    if weights.suffix.lower() != ".pt" or not weights.is_file():
        raise UserError(f"--weights {weights}: benchmarks start from a .pt checkpoint")
    device = select_device(device, batch_size=batch_size)
    half = half and device.type == "cuda"
    data_dict = None if test else check_dataset(data or default_dataset(weights, fallback=DEFAULT_DATA))
    imgsz = int(imgsz)
    start, rows = time.time(), []
    for name, include, packages, cuda in BENCHMARK_FORMATS:
        if pt_only and include is not None:
            continue
        why = _unavailable(packages, cuda, device)
        if why:
            LOGGER.info(f"{name}: skipped, {why}")
            rows.append(BenchmarkRow(name, None, None, None, why))
            continue
        try:
            file = weights if include is None else Path(export_weights(
                weights=weights, imgsz=(imgsz, imgsz), device=str(device.index if device.type == "cuda" else "cpu"),
                include=(include,), half=half and include in ("torchscript", "onnx", "engine"))[0])
            if test:
                rows.append(BenchmarkRow(name, size_mb(file), None, None))
                continue
            output = validate(file, data_dict, imgsz, batch_size, device, half=half)
            rows.append(BenchmarkRow(name, size_mb(file), float(output.results.map50_95), float(output.times[1])))
        except Exception as e:  # a format's failure is its row's note unless --hard-fail
            reason = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
            if strict:
                raise UserError(f"Benchmark --hard-fail for {name}: {reason}") from e
            LOGGER.warning(f"WARNING: Benchmark failure for {name}: {reason}")
            rows.append(BenchmarkRow(name, None, None, None, reason))
    LOGGER.info(f"\nBenchmarks complete ({time.time() - start:.2f}s)\n{benchmark_table(rows)}")
    if floor is not None:
        low = [f"{r.format} {r.map50_95:.4f}" for r in rows if r.map50_95 is not None and not r.map50_95 > floor]
        if low:
            raise UserError(f"HARD FAIL: mAP50-95 < floor {floor}: {', '.join(low)}")
    return rows


def benchmark_table(rows: Sequence[BenchmarkRow]) -> str:
    """Official's table: index, Format, Size (MB), mAP50-95, Inference time (ms); '-' where there is no number."""
    def cell(value, fmt):
        return "-" if value is None else format(value, fmt)

    widths = (12, 10, 9, 20)
    lines = ["   " + "".join(f"{c:>{w}}" for c, w in zip(COLUMNS, widths))]
    for i, r in enumerate(rows):
        values = (r.format, cell(r.size_mb, ".1f"), cell(r.map50_95, ".4f"), cell(r.inference_ms, ".2f"))
        note = f"  ({r.note})" if r.note else ""
        lines.append(f"{i:<3}" + "".join(f"{v:>{w}}" for v, w in zip(values, widths)) + note)
    return "\n".join(lines)
