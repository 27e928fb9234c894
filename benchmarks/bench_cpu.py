"""CPU inference by runtime against this CPU's measured matmul peak, natively and under an AVX2 cap (emulating the
AVX2-only CPUs most laptops, desktops and cloud VMs have).

    python benchmarks/bench_cpu.py --cfg yolov5s.yaml --imgsz 640 --threads 2 --runs 20 --isa native avx2

For each ``--isa`` (a fresh process each; ``avx2`` sets ONEDNN_MAX_CPU_ISA=AVX2, OV_CPU_MAX_ISA=AVX2 and
ATEN_CPU_CAPABILITY=avx2 before torch or OpenVINO load) it prints
  - the peak GFLOP/s of a 2048x2048 matmul in fp32 and bf16 (PyTorch/oneDNN; under the AVX2 cap bf16 loses its
    native path, which shows that the cap took effect; then measured at 512, the fallback being very slow),
  - batch-1 latency at --imgsz of PyTorch fused channels-last fp32, ONNX Runtime fp32 and INT8 (static QDQ), OpenVINO
    FP32 and INT8 (NNCF), each as ms, ratio to PyTorch channels-last, achieved GFLOP/s (the model's FLOPs / time) and
    fraction of the fp32 matmul peak.
What the cap reaches: PyTorch's oneDNN and ATen kernels honour it; OpenVINO's oneDNN honours ONEDNN_MAX_CPU_ISA and
its own kernels OV_CPU_MAX_ISA only in builds that enable it (debug-caps builds before 2026.x); ONNX Runtime's MLAS
picks kernels by cpuid and has no cap, so its rows under ``avx2`` still use AVX-512 on an AVX-512 CPU. The table says
which rows ran capped. Models are built from the yaml with random weights (timing does not depend on them), INT8
calibrated on 16 random images. Formats take turns block by block, as benchmarks/formats.py does.
"""

import argparse
import json
import logging
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ISA_ENV = {"avx2": {"ONEDNN_MAX_CPU_ISA": "AVX2", "OV_CPU_MAX_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"},
           "native": {}}
CAPPED_BY = {"PyTorch channels-last": True, "ONNX Runtime": False, "ONNX Runtime INT8": False,
             "OpenVINO FP32": "partly", "OpenVINO INT8": "partly"}


def matmul_peak(dtype_name: str, n: int = 2048, runs: int = 5) -> float:
    """Best GFLOP/s of an n x n matmul in ``dtype_name`` ('float32' or 'bfloat16') over ``runs`` calls."""
    import torch

    dtype = getattr(torch, dtype_name)
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    a @ b
    best = math.inf
    for _ in range(runs):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def build_runners(cfg: str, imgsz: int, folder: Path) -> tuple[dict, float]:
    """({row name: callable on a (1, 3, imgsz, imgsz) tensor}, GFLOPs of one pass) for the runtimes installed."""
    import importlib.util

    import numpy as np
    import torch

    from models.backends import DetectMultiBackend
    from models.export import export_model
    from models.yolo import Model
    from utils.torch_utils import count_flops

    torch.manual_seed(0)
    model = Model(cfg).fuse(verbose=False).eval()
    gflops = count_flops(model, imgsz)
    cl = model.to(memory_format=torch.channels_last)
    runners = {"PyTorch channels-last": lambda x: cl(x.contiguous(memory_format=torch.channels_last))}
    im = torch.zeros(1, 3, imgsz, imgsz)
    include = [f for f, m in (("onnx", "onnxruntime"), ("openvino", "openvino")) if importlib.util.find_spec(m)]
    if include:
        (folder / "q").mkdir(parents=True, exist_ok=True)
        calib = [np.random.default_rng(i).random((1, 3, imgsz, imgsz), dtype=np.float32) for i in range(16)]
        fp32, _ = export_model(Model(cfg).eval(), im, folder / "m.pt", include=include, check=False)
        int8, _ = export_model(Model(cfg).eval(), im, folder / "q" / "m.pt", include=include, check=False,
                               calib=calib if importlib.util.find_spec("nncf") else None)
        for f in [*fp32, *int8]:
            name = {".onnx": "ONNX Runtime"}.get(f.suffix, "OpenVINO FP32")
            if "int8" in f.name:
                name = name.replace(" FP32", "") + " INT8"
            runners[name] = DetectMultiBackend(f)
    return runners, gflops


def latencies(runners: dict, imgsz: int, runs: int, warmup: int = 2, blocks: int = 2) -> dict[str, float]:
    """{name: median ms} with the formats taking turns block by block (order rotating)."""
    import torch

    x = torch.rand(1, 3, imgsz, imgsz)
    times = {n: [] for n in runners}
    names = list(runners)
    with torch.inference_mode():
        for b in range(blocks):
            for name in names[b % len(names):] + names[:b % len(names)]:
                for i in range(warmup + math.ceil(runs / blocks)):
                    t = time.perf_counter()
                    runners[name](x)
                    if i >= warmup:
                        times[name].append((time.perf_counter() - t) * 1e3)
    return {n: statistics.median(v) for n, v in times.items()}


def measure(cfg: str, imgsz: int, threads: int, runs: int) -> dict:
    """One process's measurements (called in the child with the ISA environment already set)."""
    import torch

    from utils.amp import cpu_has_native_bf16
    from utils.general import LOGGER

    LOGGER.setLevel(logging.WARNING)
    torch.set_num_threads(threads)
    # without native bf16 the matmul falls back to a reference kernel that takes minutes at 2048: measured at 512
    peak = {"float32": matmul_peak("float32"), "bfloat16": matmul_peak("bfloat16", 2048 if cpu_has_native_bf16()
                                                                         else 512, runs=2)}
    with tempfile.TemporaryDirectory() as tmp:
        runners, gflops = build_runners(cfg, imgsz, Path(tmp))
        ms = latencies(runners, imgsz, runs)
    return {"capability": torch.backends.cpu.get_cpu_capability(), "native_bf16": cpu_has_native_bf16(),
            "peak": peak, "gflops": gflops, "ms": ms}


def run(cfg: str = "yolov5s.yaml", imgsz: int = 640, threads: int = 2, runs: int = 20,
        isa: tuple[str, ...] = ("native", "avx2")) -> dict[str, dict]:
    """Measure each ``isa`` in its own process and print the table."""
    results = {}
    for kind in isa:
        env = {**os.environ, **ISA_ENV[kind]}
        cmd = [sys.executable, __file__, "--child", "--cfg", cfg, "--imgsz", str(imgsz), "--threads", str(threads),
               "--runs", str(runs)]
        out = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if out.returncode != 0:
            raise SystemExit(f"{kind}: {out.stderr[-2000:]}")
        results[kind] = json.loads(out.stdout.strip().splitlines()[-1])
    for kind, r in results.items():
        fp32, bf16 = r["peak"]["float32"], r["peak"]["bfloat16"]
        print(f"\n{kind}: torch capability {r['capability']}, oneDNN native bf16 {r['native_bf16']}; 2048 matmul "
              f"peak fp32 {fp32:.0f} GFLOP/s, bf16 {bf16:.0f} GFLOP/s; {cfg} {r['gflops']:.1f} GFLOPs at {imgsz}, "
              f"{threads} threads")
        base = r["ms"]["PyTorch channels-last"]
        print(f"| runtime | ms | vs PyTorch CL | GFLOP/s | of fp32 peak | ISA cap applied ({kind}) |")
        print("| --- | ---: | ---: | ---: | ---: | --- |")
        for name, ms in r["ms"].items():
            achieved = r["gflops"] / ms * 1e3
            capped = "n/a" if kind == "native" else {True: "yes", False: "no (cpuid)", "partly": "oneDNN part"}[
                CAPPED_BY.get(name, False)]
            print(f"| {name} | {ms:.1f} | {ms / base:.2f}x | {achieved:.0f} | {achieved / fp32:.2f} | {capped} |")
    return results


def parse_opt(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cfg", default="yolov5s.yaml", help="model yaml (random weights)")
    p.add_argument("--imgsz", type=int, default=640)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=20, help="timed calls per runtime (median reported)")
    p.add_argument("--isa", nargs="+", default=["native", "avx2"], choices=tuple(ISA_ENV))
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    return p.parse_args(argv)


if __name__ == "__main__":
    opt = parse_opt()
    if opt.child:
        print(json.dumps(measure(opt.cfg, opt.imgsz, opt.threads, opt.runs)))
    else:
        run(opt.cfg, opt.imgsz, opt.threads, opt.runs, tuple(opt.isa))
