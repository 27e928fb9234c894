"""Markdown table of the stock yolov5s and every variant yaml at s scale: parameters, GFLOPs and CPU latency at 640.

Parameters are those of the model as trained; GFLOPs and latency those of the fused model (Model.fuse()).

    python benchmarks/variants_table.py                      # all: yolov5s.yaml and models/yolov5s_*.yaml
    python benchmarks/variants_table.py --cfg yolov5s.yaml yolov5s_ScConv.yaml --runs 5
    python benchmarks/variants_table.py --write-readme       # also replace the table block in README.md

Latency: the fused model (Model.fuse()), batch 1, inference mode, median of ``--runs`` forward passes after
``--warmup``, ``--threads`` CPU threads. Absolute times depend on the machine and its load; the ratio to yolov5s,
measured in the same run, is the comparable number.
"""

import argparse
import logging
import sys
from copy import deepcopy
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from benchmarks.bench_latency import time_forward  # noqa: E402
from models.yolo import Model  # noqa: E402
from utils.general import LOGGER, ROOT, UserError  # noqa: E402
from utils.torch_utils import count_flops  # noqa: E402

START, END = "<!-- variants-table:start -->", "<!-- variants-table:end -->"
BASELINE = "yolov5s.yaml"


def default_cfgs():
    """The stock yolov5s followed by every variant yaml in models/."""
    return [BASELINE] + sorted(p.name for p in (ROOT / "models").glob("yolov5s_*.yaml"))


def measure(cfg, img, threads, runs, warmup):
    """(parameters of the trainable model, GFLOPs at img and median latency in ms of the fused model) of a yaml.

    GFLOPs are counted after fusing because that is the form that runs: ACConv's three branches become one conv.
    """
    torch.manual_seed(0)
    model = Model(cfg).eval()
    params = sum(p.numel() for p in model.parameters())
    fused = deepcopy(model).fuse().eval()
    gflops = count_flops(fused, img)
    median_ms = time_forward(fused, torch.rand(1, 3, img, img), runs, warmup, channels_last=True)[0]
    return params, gflops, median_ms


def markdown_table(rows, img, threads, runs):
    """Rows of (cfg, params, gflops, ms) as a Markdown table with the latency ratio to yolov5s when measured."""
    base_ms = next((ms for cfg, _, _, ms in rows if cfg == BASELINE), None)
    lines = [
        f"| model | parameters | GFLOPs ({img}, fused) "
        f"| CPU ms ({img}, batch 1, fused, channels-last, {threads} threads, median of {runs}) "
        f"| latency vs yolov5s |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for cfg, params, gflops, ms in rows:
        ratio = f"{ms / base_ms:.2f}x" if base_ms else "-"
        lines.append(f"| {Path(cfg).stem} | {params:,} | {gflops:.1f} | {ms:.0f} | {ratio} |")
    return "\n".join(lines)


def replace_readme_block(table, readme, start=START, end=END):
    """Replace the text between the ``start`` and ``end`` markers (the variants table's) of ``readme``."""
    text = readme.read_text()
    if text.count(start) != 1 or text.count(end) != 1 or text.index(start) > text.index(end):
        raise UserError(f"{readme} needs exactly one '{start}' followed by one '{end}' line to place the table in")
    head, rest = text.split(start)
    _, tail = rest.split(end)
    readme.write_text(f"{head}{start}\n{table}\n{end}{tail}")


def run(cfg=None, img=640, threads=2, runs=5, warmup=2, write_readme=False, readme=ROOT / "README.md"):
    LOGGER.setLevel(logging.WARNING)  # the layer tables are not part of the output
    torch.set_num_threads(threads)
    rows = []
    for c in cfg or default_cfgs():
        rows.append((c, *measure(c, img, threads, runs, warmup)))
        print(f"measured {c}: {rows[-1][1]:,} parameters, {rows[-1][2]:.1f} GFLOPs, {rows[-1][3]:.0f} ms", flush=True)
    table = markdown_table(rows, img, threads, runs)
    print(table)
    if write_readme:
        replace_readme_block(table, Path(readme))
        print(f"table written to {readme}")
    return table


def parse_opt(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cfg", nargs="+", default=None, help="model yamls (default: yolov5s.yaml and every variant)")
    p.add_argument("--img", type=int, default=640, help="image size (pixels) for GFLOPs and latency")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--runs", type=int, default=5, help="timed forward passes per model (median reported)")
    p.add_argument("--warmup", type=int, default=2, help="untimed forward passes before timing")
    p.add_argument("--write-readme", action="store_true", help="replace the table between the markers in --readme")
    p.add_argument("--readme", type=Path, default=ROOT / "README.md", help="README to write with --write-readme")
    return p.parse_args(argv)


if __name__ == "__main__":
    try:
        run(**vars(parse_opt()))
    except UserError as e:
        LOGGER.error(f"ERROR: {e}")
        sys.exit(1)
