"""CPU latency of a model at batch 1: unfused vs fused, and the faster CPU paths (channels-last, inference mode).

    python benchmarks/bench_latency.py --cfg yolov5s.yaml --img 640 --threads 2 --runs 20 [--compile]

Prints the median and the spread of ``--runs`` timed forward passes after ``--warmup`` untimed ones.
"""

import argparse
import statistics
import sys
import time
from copy import deepcopy
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import logging  # noqa: E402

import torch  # noqa: E402

from models.yolo import Model  # noqa: E402
from utils.general import LOGGER  # noqa: E402


def time_forward(model, x, runs, warmup, channels_last=False):
    """Median and min/max (ms) of ``runs`` forward passes under inference mode."""
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    times = []
    with torch.inference_mode():
        for i in range(warmup + runs):
            t = time.perf_counter()
            model(x)
            if i >= warmup:
                times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times), min(times), max(times)


def compiled(model, x):
    """The fused model through torch.compile (inductor, weights frozen: conv + activation fusion, prepacking)."""
    import torch._inductor.config as inductor_config

    inductor_config.freezing = True
    model = torch.compile(model.to(memory_format=torch.channels_last))
    with torch.no_grad():
        model(x.contiguous(memory_format=torch.channels_last))  # compile outside the timed runs
    return model


def run(cfg="yolov5s.yaml", img=640, threads=2, runs=20, warmup=3, compile=False):
    LOGGER.setLevel(logging.WARNING)  # the layer table is not part of the measurement
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = Model(cfg).eval()
    fused = deepcopy(model).fuse().eval()
    x = torch.rand(1, 3, img, img)
    rows = [
        ("unfused", time_forward(model, x, runs, warmup)),
        ("fused", time_forward(fused, x, runs, warmup)),
        ("fused + channels-last", time_forward(fused, x, runs, warmup, channels_last=True)),
    ]
    if compile:
        rows.append(("fused + torch.compile", time_forward(compiled(fused, x), x, runs, warmup, channels_last=True)))
    print(f"{cfg} at {img}x{img}, batch 1, {threads} threads, {runs} runs (after {warmup} warm-up)")
    print(f"{'path':<24}{'median ms':>10}{'min ms':>10}{'max ms':>10}")
    for name, (med, lo, hi) in rows:
        print(f"{name:<24}{med:>10.1f}{lo:>10.1f}{hi:>10.1f}")
    return rows


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cfg", default="yolov5s.yaml")
    p.add_argument("--img", type=int, default=640)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--compile", action="store_true", help="also time torch.compile (needs a C++ compiler)")
    run(**vars(p.parse_args()))
