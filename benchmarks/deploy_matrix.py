"""Deployability matrix: every registered model variant x every installed deployment format.

    python benchmarks/deploy_matrix.py                                  # all variants at scale n, all formats, 640
    python benchmarks/deploy_matrix.py --cfg yolov5n.yaml yolov5n_GSConv.yaml --formats ncnn "TFLite fp32"
    python benchmarks/deploy_matrix.py --write-readme                   # the table between README's markers

For each variant (stock yolov5n and every models/yolov5s_*.yaml built at scale n, seeded random weights, fused as
export fuses them) and each format it records: does it export (a refusal keeps the exporter's one line, which names
the module, the operator and the runtime), the max abs difference of the raw decoded outputs to PyTorch on one
fixed input relative to the largest output (fp32 formats pass at <= 1e-3), and the median latency (batch 1,
--threads threads, --runs timed calls after --warmup). With --weights-dir holding trained ``<cfg stem>.pt``
files, those weights are used instead and val.py's mAP50-95 on --data is compared with PyTorch's (pass: fp32 and
fp16 within 0.005, INT8 within 0.02). INT8 formats are calibrated on --calib images of --data's train split.
Formats whose packages are missing are listed as such. Output: benchmarks/results/deploy_matrix.{csv,md}.
"""

import argparse
import csv
import importlib.util
import logging
import math
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
import torch.nn as nn

from benchmarks.formats import map5095
from benchmarks.variants_table import replace_readme_block
from models.backends import DetectMultiBackend, export_metadata
from models.experimental import attempt_load
from models.export import calibration_images, prepare_model
from models.export.core import ExportOptions
from models.export.formats import EXPORTERS
from models.export.mnn import export_mnn
from models.export.ncnn import export_ncnn
from models.export.onnx import export_onnx, export_onnx_int8
from models.export.openvino import export_openvino
from models.export.tflite import export_tflite, litert_python
from models.yolo import Model
from utils.general import LOGGER, ROOT, UserError, exit_code

START, END = "<!-- deploy-matrix:start -->", "<!-- deploy-matrix:end -->"
RESULTS = ROOT / "benchmarks" / "results"
FP32_REL_TOL = 1e-3  # max abs output difference / max abs output, for fp32 formats
MAP_TOL = {"fp32": 0.005, "fp16": 0.005, "int8": 0.02}


@dataclass(frozen=True)
class Format:
    """One matrix column: how to export it, what it needs, and its precision."""

    label: str
    precision: str  # fp32, fp16 or int8
    needs: tuple[str, ...]  # importable modules (the package named in the cell when missing)
    export: Callable[[nn.Module, torch.Tensor, Path, dict, list | None], Path]
    available: Callable[[], bool] | None = None


def _onnx_int8(model, im, file, meta, calib):
    return export_onnx_int8(export_onnx(model, im, file, meta), calib)


def _tflite_ready() -> bool:
    try:
        litert_python()
        return importlib.util.find_spec("ai_edge_litert") is not None
    except UserError:
        return False


FORMATS = (
    Format("TorchScript", "fp32", (), lambda m, im, f, meta, c: EXPORTERS["torchscript"](
        m, im, f, meta, ExportOptions())[0].path),
    Format("ONNX", "fp32", ("onnx", "onnxruntime"), lambda m, im, f, meta, c: export_onnx(m, im, f, meta)),
    Format("ONNX INT8", "int8", ("onnx", "onnxruntime"), _onnx_int8),
    Format("OpenVINO FP32", "fp32", ("openvino",), lambda m, im, f, meta, c: export_openvino(m, im, f, meta)),
    Format("OpenVINO INT8", "int8", ("openvino", "nncf"),
           lambda m, im, f, meta, c: export_openvino(m, im, f, meta, calib=c)),
    Format("TFLite fp32", "fp32", ("ai_edge_litert",), lambda m, im, f, meta, c: export_tflite(m, im, f, meta, "fp32"),
           _tflite_ready),
    Format("TFLite fp16", "fp16", ("ai_edge_litert",), lambda m, im, f, meta, c: export_tflite(m, im, f, meta, "fp16"),
           _tflite_ready),
    Format("TFLite INT8", "int8", ("ai_edge_litert",),
           lambda m, im, f, meta, c: export_tflite(m, im, f, meta, "int8", c), _tflite_ready),
    Format("NCNN fp32", "fp32", ("pnnx", "ncnn"), lambda m, im, f, meta, c: export_ncnn(m, im, f, meta)),
    Format("NCNN fp16", "fp16", ("pnnx", "ncnn"),
           lambda m, im, f, meta, c: export_ncnn(m, im, f.with_name(f"{f.stem}_fp16"), meta, half=True)),
    Format("MNN", "fp32", ("MNN",), lambda m, im, f, meta, c: export_mnn(m, im, f, meta)),
)
FORMAT_NAMES = tuple(f.label for f in FORMATS)


def installed(fmt: Format) -> bool:
    """Whether every package ``fmt`` needs is importable (and its converter found)."""
    ok = all(importlib.util.find_spec(m) is not None for m in fmt.needs)
    return ok and (fmt.available is None or fmt.available())


def default_cfgs() -> list[str]:
    """Stock yolov5n and every registered variant at scale n."""
    variants = sorted(p.name.replace("yolov5s_", "yolov5n_") for p in (ROOT / "models").glob("yolov5s_*.yaml"))
    return ["yolov5n.yaml", *variants]


def build(cfg: str, weights_dir: Path | None) -> tuple[nn.Module, Path | None]:
    """The fused model of ``cfg`` (trained weights from ``weights_dir/<stem>.pt`` when there) and that file."""
    trained = weights_dir / f"{Path(cfg).stem}.pt" if weights_dir else None
    if trained is not None and trained.is_file():
        return prepare_model(attempt_load(trained, fuse=True)), trained
    torch.manual_seed(0)
    model = Model(cfg, nc=3)
    for m in model.modules():  # non-trivial BatchNorm statistics, so fused weights differ from the raw ones
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    model.names = {0: "circle", 1: "square", 2: "triangle"}
    return prepare_model(model), None


def latency_ms(backend: DetectMultiBackend, im: torch.Tensor, runs: int, warmup: int) -> float:
    """Median wall time in ms of ``runs`` calls on ``im`` after ``warmup`` untimed ones."""
    with torch.inference_mode():
        for _ in range(warmup):
            backend(im)
        times = []
        for _ in range(runs):
            t = time.perf_counter()
            backend(im)
            times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times) if times else math.nan


def one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return (text[0] if text else type(e).__name__)[:240]


def measure_cell(model: nn.Module, fmt: Format, im: torch.Tensor, expected: torch.Tensor, file: Path,
                 calib: list | None, runs: int, warmup: int, data: str | None, trained: Path | None,
                 map_pt: float | None) -> dict:
    """Export ``model`` to ``fmt`` and measure it; a dict with status, rel_diff, ms, map_diff and reason."""
    cell = {"format": fmt.label, "precision": fmt.precision, "imgsz": im.shape[-1], "status": "", "rel_diff": "",
            "ms": "", "map_diff": "", "reason": ""}
    meta = export_metadata(model, im.shape[2:], precision=fmt.precision)
    try:
        path = fmt.export(model, im, file, meta, calib)
    except UserError as e:
        cell.update(status="refused", reason=one_line(e))
        return cell
    except Exception as e:  # a converter's own failure: recorded with its type, the matrix goes on
        LOGGER.debug(traceback.format_exc())
        cell.update(status="failed", reason=f"{type(e).__name__}: {one_line(e)}")
        return cell
    try:
        backend = DetectMultiBackend(path, data=data)
        with torch.inference_mode():
            got = backend(im)
    except Exception as e:  # the runtime could not load or run what the converter wrote
        cell.update(status="no run", reason=f"{type(e).__name__}: {one_line(e)}")
        return cell
    rel = ((got - expected).abs().max() / expected.abs().max().clamp(min=1e-9)).item()
    cell.update(rel_diff=f"{rel:.1e}", ms=f"{latency_ms(backend, im, runs, warmup):.1f}" if runs else "")
    if trained is not None and data and map_pt is not None:
        cell["map_diff"] = f"{map5095(path, data, im.shape[-1], file.parent / 'val') - map_pt:+.4f}"
    cell["status"] = verdict(cell)
    return cell


def verdict(cell: dict) -> str:
    """'ok' when a measured cell is within its tolerances (fp32 output difference, mAP difference), else 'off'."""
    ok = cell["precision"] != "fp32" or float(cell["rel_diff"]) <= FP32_REL_TOL
    if cell.get("map_diff"):
        ok = ok and abs(float(cell["map_diff"])) <= MAP_TOL[cell["precision"]]
    return "ok" if ok else "off"


MEASURES = {"rel_diff": "output difference", "ms": "latency", "map_diff": "mAP50-95 difference"}


def caption_sizes(rows: list[dict], imgsz: int) -> str:
    """'output difference, latency at 640 px, mAP50-95 difference at 256 px': the input sizes each measure was
    taken at, from the cells' "sizes" (merged cells) or "imgsz" (``imgsz`` where a row has neither)."""
    sizes: dict[str, set[int]] = {}
    for r in rows:
        for field in MEASURES:
            if r.get(field):
                px = r.get("sizes", {}).get(field) or r.get("imgsz") or imgsz
                sizes.setdefault(field, set()).add(int(px))
    by_size: dict[str, list[str]] = {}
    for field, text in MEASURES.items():
        if field in sizes:
            by_size.setdefault("/".join(str(s) for s in sorted(sizes[field])), []).append(text)
    return ", ".join(f"{', '.join(names)} at {px} px" for px, names in by_size.items())


def markdown(rows: list[dict], formats: Sequence[Format], threads: int, imgsz: int) -> str:
    """The matrix as Markdown: one row a variant, one column a format, then the reasons of refused cells."""
    labels = [f.label for f in formats]
    cfgs = list(dict.fromkeys(r["cfg"] for r in rows))
    cells = {(r["cfg"], r["format"]): r for r in rows}
    reasons: dict[str, int] = {}
    lines = [f"| variant (scale n) | {' | '.join(labels)} |", f"| --- |{' :---: |' * len(labels)}"]
    for cfg in cfgs:
        out = []
        for label in labels:
            r = cells.get((cfg, label))
            if r is None:
                out.append("")
            elif r["status"] in ("ok", "off"):
                mark = "✅" if r["status"] == "ok" else "⚠️"
                ms = f" {float(r['ms']):.0f} ms" if r["ms"] else ""
                md = f" mAP {r['map_diff']}" if r["map_diff"] else ""
                out.append(f"{mark} {r['rel_diff']}{ms}{md}")
            elif r["status"] == "not installed":
                out.append("—")
            else:
                n = reasons.setdefault(f"{r['status']}: {r['reason']}", len(reasons) + 1)
                out.append(f"❌ [{n}]")
        lines.append(f"| {Path(cfg).stem} | {' | '.join(out)} |")
    lines.append("")
    tol = ", ".join(f"{p} {t:g}" for p, t in MAP_TOL.items())
    lines.append(f"Cell: ✅ exported, runs and within tolerance (⚠️ outside it): relative max abs output difference "
                 f"to PyTorch (fp32 formats pass at <= {FP32_REL_TOL:g}), median latency when timed (batch 1, "
                 f"threads: {threads}), mAP50-95 difference to PyTorch on --data's val split when trained weights "
                 f"were given (passes within {tol}); {caption_sizes(rows, imgsz)}; — package not installed; blank: not "
                 f"measured; ❌ see below.")
    for text, n in reasons.items():
        lines.append(f"{n}. {text}")
    return "\n".join(lines)


def write_results(rows: list[dict], formats: Sequence[Format], threads: int, imgsz: int, out: Path) -> None:
    """The cells as out.csv and the Markdown table as out.md."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.with_suffix(".csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["cfg"])
        writer.writeheader()
        writer.writerows(rows)
    out.with_suffix(".md").write_text(markdown(rows, formats, threads, imgsz) + "\n")


def run(cfg: Sequence[str] | None = None, formats: Sequence[str] | None = None, imgsz: int = 640, threads: int = 2,
        runs: int = 10, warmup: int = 2, calib: int = 32, data: str = "data/shapes.yaml",
        weights_dir: str | None = None, out: str | Path = RESULTS / "deploy_matrix",
        write_readme: bool = False, readme: str | Path = ROOT / "README.md") -> list[dict]:
    """Measure the matrix; returns one dict per (variant, format) cell and writes out.{csv,md}."""
    torch.set_num_threads(threads)
    wanted = None if formats is None else {x.lower() for x in formats}
    chosen = [f for f in FORMATS if wanted is None or f.label.lower() in wanted]
    if formats and not chosen:
        raise UserError(f"--formats {list(formats)}: choose from {list(FORMAT_NAMES)}")
    level = LOGGER.level
    LOGGER.setLevel(logging.WARNING)
    rows = []
    try:
        calib_images = None
        if any(f.precision == "int8" and installed(f) for f in chosen):
            calib_images = calibration_images(data, (imgsz, imgsz), n=calib)
        torch.manual_seed(0)
        im = torch.rand(1, 3, imgsz, imgsz)
        for c in cfg or default_cfgs():
            model, trained = build(c, Path(weights_dir) if weights_dir else None)
            with torch.no_grad():
                expected = model(im)
            expected = expected[0] if isinstance(expected, (list, tuple)) else expected
            with tempfile.TemporaryDirectory(prefix="deploy-matrix-") as tmp:
                file = Path(tmp) / Path(c).stem
                map_pt = map5095(trained, data, imgsz, Path(tmp) / "val") if trained is not None else None
                for fmt in chosen:
                    t = time.time()
                    if not installed(fmt):
                        cell = {"format": fmt.label, "precision": fmt.precision, "imgsz": imgsz,
                                "status": "not installed", "rel_diff": "", "ms": "", "map_diff": "",
                                "reason": f"needs {', '.join(fmt.needs) or 'its converter'}"}
                    else:
                        cell = measure_cell(model, fmt, im, expected, file, calib_images, runs, warmup, data,
                                            trained, map_pt)
                    rows.append({"cfg": c, **cell})
                    print(f"{c:28s} {fmt.label:14s} {cell['status']:8s} {cell['rel_diff']:>8s} {cell['ms']:>7s} "
                          f"({time.time() - t:.0f} s) {cell['reason'][:120]}", flush=True)
            if out:  # after each variant: a long run that is stopped keeps what it measured
                write_results(rows, chosen, threads, imgsz, Path(out))
    finally:
        LOGGER.setLevel(level)
    table = markdown(rows, chosen, threads, imgsz)
    if write_readme:
        replace_readme_block(table, Path(readme), START, END)
    print(table)
    return rows


def merge_cell(old: dict | None, new: dict, default_imgsz: int) -> dict:
    """``new`` laid over ``old`` (two result files' cells of one variant and format): measured fields of both kept,
    the later file's non-empty ones winning and the verdict taken again; a later refusal or failure replaces the
    cell; 'not installed' never hides a measurement. The cell's "sizes" maps each measured field to its input size."""
    if old is not None and new["status"] == "not installed":
        return old
    px = int(new.get("imgsz") or default_imgsz)
    measured = {field: px for field in MEASURES if new.get(field)}
    if old is not None and old["status"] in ("ok", "off") and new["status"] in ("ok", "off"):
        cell = {**old, **{k: v for k, v in new.items() if v not in ("", None)}}
        cell["sizes"] = {**old["sizes"], **measured}
        cell["status"] = verdict(cell)
        return cell
    return {**new, "sizes": measured}


def from_csv(files: Sequence[str | Path], threads: int = 2, imgsz: int = 640, write_readme: bool = False,
             readme: str | Path = ROOT / "README.md") -> str:
    """The table of the cells saved in ``files`` merged field by field (``merge_cell``; e.g. latency from a 640 px
    run, mAP differences from a run at the training size), columns in the matrix's order; ``imgsz`` is the size of
    rows saved without one. With ``write_readme`` it goes into README between the markers."""
    cells: dict[tuple[str, str], dict] = {}
    for f in files:
        with open(f, newline="") as fh:
            for r in csv.DictReader(fh):
                key = (r["cfg"], r["format"])
                cells[key] = merge_cell(cells.get(key), r, imgsz)
    labels = {fmt for _, fmt in cells}
    order = {c: i for i, c in enumerate(default_cfgs())}
    rows = sorted(cells.values(), key=lambda r: (order.get(r["cfg"], len(order)), FORMAT_NAMES.index(r["format"])))
    table = markdown(rows, [f for f in FORMATS if f.label in labels], threads, imgsz)
    if write_readme:
        replace_readme_block(table, Path(readme), START, END)
    print(table)
    return table


def parse_opt(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cfg", nargs="+", default=None, help="model yamls (default: yolov5n + every variant at n)")
    parser.add_argument("--formats", nargs="+", default=None, help=f"columns (default all): {list(FORMAT_NAMES)}")
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=10, help="timed calls per cell (0: no latency)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--calib", type=int, default=32, help="INT8 calibration images from --data's train split")
    parser.add_argument("--data", default="data/shapes.yaml")
    parser.add_argument("--weights-dir", default=None, help="trained <cfg stem>.pt files: adds the mAP50-95 diff")
    parser.add_argument("--out", default=str(RESULTS / "deploy_matrix"))
    parser.add_argument("--write-readme", action="store_true")
    parser.add_argument("--from-csv", nargs="+", default=None, help="only render the table of saved results")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    opt = parse_opt(argv)
    if opt.from_csv:
        return exit_code(lambda: from_csv(opt.from_csv, opt.threads, opt.imgsz, opt.write_readme))
    del opt.from_csv
    return exit_code(lambda: run(**vars(opt)))


if __name__ == "__main__":
    sys.exit(main())
