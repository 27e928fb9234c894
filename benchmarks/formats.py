"""Deployment formats side by side: export, file size, mAP50-95 on --data and CPU latency, per available format.

    python benchmarks/formats.py --weights runs/train/exp/weights/best.pt --data data/shapes.yaml --imgsz 640 \
        --threads 2
    python benchmarks/formats.py --weights n.pt s.pt --data data/shapes.yaml --val-imgsz 256 --write-readme

Formats: PyTorch (fused; fused + channels-last), TorchScript, ONNX Runtime (the project's session, plus a bare
``InferenceSession`` with default options for comparison), ONNX INT8 (static QDQ), OpenVINO FP32, bf16 (export
--half) and INT8 (NNCF). Formats whose packages are missing are skipped with a note.

Latency: batch 1 at --imgsz with --threads CPU threads; each format runs in --blocks blocks of consecutive calls
(--warmup untimed, then its share of --runs timed), the formats taking turns block by block with the order
rotating, so only the timed runtime's thread pool is busy (runtimes whose idle threads spin disturb a neighbour
timed right after them) while slow drifts in machine load still hit all formats alike; the median of the --runs
timed calls is reported, and the ratio to the faster PyTorch row. mAP50-95: val.py on the val
split of --data at --val-imgsz (default --imgsz), batch 1, conf 0.001, IoU 0.6. Exports go to --project; INT8
models for mAP are calibrated with --calib train images, those only timed (another size) with 16.
Output: a Markdown table and CSV per run (--out), and with --write-readme the table between the formats-table
markers of README.md.
"""

import argparse
import csv
import importlib.util
import logging
import math
import shutil
import statistics
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

import val
from benchmarks.variants_table import replace_readme_block
from models.backends import DetectMultiBackend
from models.export import DEFAULT_CALIB, export_weights
from utils.general import LOGGER, ROOT, UserError, exit_code

START, END = "<!-- formats-table:start -->", "<!-- formats-table:end -->"
ROW_ORDER = ("PyTorch", "PyTorch channels-last", "TorchScript", "ONNX Runtime, bare session", "ONNX Runtime",
             "ONNX Runtime INT8", "OpenVINO FP32", "OpenVINO bf16", "OpenVINO INT8")
LATENCY_CALIB = 16  # calibration images for INT8 models that are only timed: speed does not depend on them


def available(module):
    return importlib.util.find_spec(module) is not None


def size_mb(path):
    path = Path(path)
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files) / 1e6


def export_formats(weights, folder, imgsz, data, calib):
    """Export ``weights`` into ``folder`` in every available format at ``imgsz``: {format name: path}."""
    folder.mkdir(parents=True, exist_ok=True)
    stem = Path(weights).stem
    pt = folder / f"{stem}.pt"
    shutil.copyfile(weights, pt)
    paths = {"PyTorch": pt, "PyTorch channels-last": pt}
    have_ort, have_ov, have_nncf = available("onnxruntime"), available("openvino"), available("nncf")
    include = ["torchscript"] + ["onnx"] * available("onnx") + ["openvino"] * have_ov
    for f in export_weights(weights=pt, imgsz=imgsz, include=include):
        f = Path(f)
        name = {".torchscript": "TorchScript", ".onnx": "ONNX Runtime"}.get(f.suffix, "OpenVINO FP32")
        paths[name] = f
    if have_ort and "ONNX Runtime" in paths:
        paths["ONNX Runtime, bare session"] = paths["ONNX Runtime"]
    if have_ov:
        half = folder / f"{stem}_bf16.pt"
        shutil.copyfile(weights, half)
        paths["OpenVINO bf16"] = Path(export_weights(weights=half, imgsz=imgsz, include=("openvino",), half=True)[0])
    int8 = (["onnx"] if have_ort and available("onnx") else []) + (["openvino"] if have_ov and have_nncf else [])
    if int8:
        for f in export_weights(weights=pt, imgsz=imgsz, include=int8, int8=True, data=data, calib=calib):
            f = Path(f)
            if f.name.endswith("_int8.onnx"):
                paths["ONNX Runtime INT8"] = f
            elif f.name.endswith("_int8_openvino_model"):
                paths["OpenVINO INT8"] = f
    return {name: paths[name] for name in ROW_ORDER if name in paths}


def runner(name, path):
    """Callable (1, 3, H, W) float tensor -> predictions for one format row."""
    if name == "ONNX Runtime, bare session":  # what the project ran before: InferenceSession with default options
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return lambda x: session.run(None, {"images": x.numpy()})[0]
    backend = DetectMultiBackend(path)
    if name == "PyTorch channels-last":
        model = backend.model.to(memory_format=torch.channels_last)
        return lambda x: model(x.contiguous(memory_format=torch.channels_last))
    return backend


def latencies(paths, imgsz, runs, warmup, blocks=2):
    """{name: median ms} of batch-1 forward passes: per format ``blocks`` blocks of ``warmup`` untimed and
    ceil(runs / blocks) timed consecutive calls, the formats taking turns block by block (order rotating)."""
    runners = {name: runner(name, p) for name, p in paths.items()}
    x = torch.rand(1, 3, *imgsz)
    times = {name: [] for name in runners}
    names = list(runners)
    timed = math.ceil(runs / blocks)
    with torch.inference_mode():
        for b in range(blocks):
            for name in names[b % len(names):] + names[:b % len(names)]:
                for i in range(warmup + timed):
                    t = time.perf_counter()
                    runners[name](x)
                    if i >= warmup:
                        times[name].append((time.perf_counter() - t) * 1e3)
    return {name: statistics.median(v) for name, v in times.items()}


def map5095(path, data, imgsz, project):
    """mAP50-95 of one model file (.pt or any exported format) on the val split of ``data``, val's files under
    ``project``. Task "speed": square unpadded batches for every format, as exported fixed-size files take them (a
    .pt would otherwise get val's rectangular batches, 256 px images padded to 288)."""
    results, _, _ = val.run(data=data, weights=path, imgsz=imgsz, batch_size=1, conf_thres=0.001, iou_thres=0.6,
                            task="speed", device="cpu", workers=0, plots=False, project=project, name="val")
    return results[3]


def measure(weights, data, imgsz, val_imgsz, threads, runs, warmup, calib, project, blocks=2):
    """Rows {format, file, size_mb, map, ms, ratio} for one weights file."""
    stem = Path(weights).stem
    folder = Path(project) / stem
    paths = export_formats(weights, folder / f"{imgsz[0]}x{imgsz[1]}", imgsz, data,
                           calib if val_imgsz == imgsz else LATENCY_CALIB)
    val_paths = paths if val_imgsz == imgsz else export_formats(weights, folder / f"{val_imgsz[0]}x{val_imgsz[1]}",
                                                                  val_imgsz, data, calib)
    ms = latencies(paths, imgsz, runs, warmup, blocks)
    print(f"{stem} latency (ms): " + ", ".join(f"{k} {v:.1f}" for k, v in ms.items()), flush=True)  # before the vals
    maps = {}
    for name, path in val_paths.items():
        if name in ("PyTorch channels-last", "ONNX Runtime, bare session"):
            continue  # the same model file as the row above it: the same detections
        maps[name] = map5095(path, data, val_imgsz[0], folder / "val")
    maps["PyTorch channels-last"] = maps["PyTorch"]
    if "ONNX Runtime, bare session" in val_paths:
        maps["ONNX Runtime, bare session"] = maps["ONNX Runtime"]
    base = min(ms["PyTorch"], ms["PyTorch channels-last"])
    return [{"model": stem, "format": name, "file": Path(paths[name]).name, "size_mb": size_mb(paths[name]),
             "map5095": maps[name], "map_delta": maps[name] - maps["PyTorch"], "ms": ms[name], "ratio": ms[name] / base}
            for name in paths]


def markdown(rows, imgsz, val_imgsz, threads, runs):
    lines = [
        f"| model | format | file | size (MB) | mAP50-95 ({val_imgsz[0]}) | vs PyTorch "
        f"| CPU ms ({imgsz[0]}, batch 1, {threads} threads, median of {runs}) | latency vs PyTorch |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(f"| {r['model']} | {r['format']} | `{r['file']}` | {r['size_mb']:.1f} | {r['map5095']:.4f} "
                     f"| {r['map_delta']:+.4f} | {r['ms']:.1f} | {r['ratio']:.2f}x |")
    return "\n".join(lines)


def run(weights=(), data=str(ROOT / "data" / "shapes.yaml"), imgsz=640, val_imgsz=None, threads=2, runs=20, warmup=3,
        blocks=2, calib=DEFAULT_CALIB, project=ROOT / "runs" / "benchmarks" / "formats",
        out=ROOT / "benchmarks" / "results" / "formats", write_readme=False, readme=ROOT / "README.md"):
    if not weights:
        raise UserError("--weights: give one or more trained .pt files")
    LOGGER.setLevel(logging.WARNING)  # export and val logs are not part of the output
    torch.set_num_threads(threads)  # DetectMultiBackend gives ONNX Runtime and OpenVINO the same thread count
    imgsz, val_imgsz = (imgsz, imgsz), (val_imgsz or imgsz,) * 2
    for module in ("onnxruntime", "openvino", "nncf"):
        if not available(module):
            print(f"note: {module} is not installed: its formats are skipped")
    rows = []
    for w in weights:
        rows += measure(w, data, imgsz, val_imgsz, threads, runs, warmup, calib, project, blocks)
        print(f"measured {w}", flush=True)
    table = markdown(rows, imgsz, val_imgsz, threads, runs)
    print(table)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text(table + "\n")
    with open(out.with_suffix(".csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows({k: (f"{v:.5g}" if isinstance(v, float) else v) for k, v in r.items()} for r in rows)
    print(f"written {out.with_suffix('.md')} and {out.with_suffix('.csv')}")
    if write_readme:
        replace_readme_block(table, Path(readme), START, END)
        print(f"table written to {readme}")
    return rows


def parse_opt(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", nargs="+", default=[], help="trained .pt files, one table block each")
    p.add_argument("--data", default=str(ROOT / "data" / "shapes.yaml"), help="dataset yaml: val split for mAP, "
                   "train split for INT8 calibration")
    p.add_argument("--imgsz", type=int, default=640, help="latency image size (square)")
    p.add_argument("--val-imgsz", type=int, default=None, help="mAP image size (default --imgsz)")
    p.add_argument("--threads", type=int, default=2, help="CPU threads for every runtime")
    p.add_argument("--runs", type=int, default=20, help="timed calls per format (median reported)")
    p.add_argument("--warmup", type=int, default=3, help="untimed calls at the start of each block")
    p.add_argument("--blocks", type=int, default=2, help="blocks per format; the formats take turns block by block")
    p.add_argument("--calib", type=int, default=DEFAULT_CALIB, help="INT8 calibration images")
    p.add_argument("--project", type=Path, default=ROOT / "runs" / "benchmarks" / "formats", help="exports go here")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "formats",
                   help="writes OUT.md and OUT.csv")
    p.add_argument("--write-readme", action="store_true", help="replace the formats table between the README markers")
    p.add_argument("--readme", type=Path, default=ROOT / "README.md")
    return p.parse_args(argv)


if __name__ == "__main__":
    sys.exit(exit_code(lambda: run(**vars(parse_opt()))))
