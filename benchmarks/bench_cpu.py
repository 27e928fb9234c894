"""CPU inference by runtime against this CPU's measured matmul peak, natively and under an AVX2 cap (emulating the
AVX2-only CPUs most laptops, desktops and cloud VMs have).

    python benchmarks/bench_cpu.py --cfg yolov5s.yaml --imgsz 640 --threads 2 --runs 20 --isa native avx2
    python benchmarks/bench_cpu.py --official /tmp/offenv /tmp/offstub --int8-variants --profile

``--official`` (folders put on sys.path that hold the ``yolov5`` pip package of official v7.0, and stand-ins for
torchvision if it is missing: the model forward never calls it) adds official's fused channels-last model built
from its own yaml, the reference of the ratios then. ``--int8-variants`` adds the INT8 settings that were not
kept as defaults (NNCF performance preset, NNCF with the Detect head quantized too, ONNX Runtime with the
convolutions alone quantized, ONNX Runtime with 8-bit instead of 7-bit weights). ``--profile`` prints OpenVINO
INT8's own per-operation timing (PERF_COUNT) summed by operation and kernel: the share of the int8 convolutions
bounds what any other setting can gain.

For each ``--isa`` (a fresh process each; ``avx2`` sets ONEDNN_MAX_CPU_ISA=AVX2, OV_CPU_MAX_ISA=AVX2 and
ATEN_CPU_CAPABILITY=avx2 before torch or OpenVINO load) it prints
  - the peak GFLOP/s of a 2048x2048 matmul in fp32 and bf16 (PyTorch/oneDNN; under the AVX2 cap bf16 loses its
    native path, which shows that the cap took effect; then measured at 512, the fallback being very slow),
  - batch-1 latency at --imgsz of PyTorch fused channels-last fp32, ONNX Runtime fp32 and INT8 (static QDQ), OpenVINO
    FP32 and INT8 (NNCF), each as ms, ratio to PyTorch channels-last, achieved GFLOP/s (the model's FLOPs / time) and
    fraction of the fp32 matmul peak.
What the cap reaches: PyTorch's oneDNN and ATen kernels honour it; OpenVINO 2026.4's profile (--profile) shows only
avx2 kernels under it, its own (Subgraph) included, so its rows count as capped; ONNX Runtime's MLAS
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
OFFICIAL = "official v7.0 PyTorch channels-last"
CAPPED_BY = {"official": True, "PyTorch": True, "ONNX Runtime": False, "OpenVINO": True}  # by the row name's start


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


def official_runner(cfg: str, paths: list[str]):
    """Official v7.0's fused channels-last model built from its own ``cfg`` yaml (random weights), with ``paths``
    (the pip package's folder, stand-ins) put first on sys.path: a callable on a (1, 3, h, w) tensor."""
    import contextlib
    import io

    import torch

    sys.path[:0] = paths
    import yolov5  # official v7.0, run side by side (never part of the project)
    from yolov5.models.yolo import Model as OfficialModel

    with contextlib.redirect_stdout(io.StringIO()):  # its summaries would mix into the child's JSON line
        model = OfficialModel(str(Path(yolov5.__file__).parent / "models" / cfg)).fuse().eval()
    model = model.to(memory_format=torch.channels_last)
    return lambda x: model(x.contiguous(memory_format=torch.channels_last))


def int8_variants(model, folder: Path, fp32: list[Path], int8: list[Path], calib: list) -> dict:
    """{row name: exported path} of the INT8 settings not taken as defaults, quantized from the fp32 exports."""
    import shutil

    from models.backends import OPENVINO_METADATA
    from models.export.onnx import export_onnx_int8
    from models.export.openvino import quantize_openvino
    from utils.optional import import_openvino

    variants = {}
    for f in fp32:
        if f.suffix == ".onnx":
            (folder / "conv").mkdir(exist_ok=True)
            variants["ONNX Runtime INT8 conv only"] = export_onnx_int8(shutil.copy(f, folder / "conv"), calib,
                                                                       conv_only=True)
            (folder / "w8").mkdir(exist_ok=True)
            variants["ONNX Runtime INT8 8-bit weights"] = export_onnx_int8(shutil.copy(f, folder / "w8"), calib,
                                                                           reduce_range=False)
        else:
            ov = import_openvino()
            ov_int8 = next(p for p in int8 if p.suffix != ".onnx")
            for name, kw in (("OpenVINO INT8 performance preset", {"preset": "performance"}),
                             ("OpenVINO INT8 head quantized", {"head_float": False})):
                out = folder / name.replace(" ", "_")
                out.mkdir()
                quantized = quantize_openvino(ov.Core().read_model(str(next(f.glob("*.xml")))), model, calib, **kw)
                ov.save_model(quantized, str(out / "m.xml"))
                shutil.copy(ov_int8 / OPENVINO_METADATA, out)
                variants[name] = out
    return variants


def openvino_profile(folder: Path, imgsz: int, threads: int, runs: int = 5) -> dict[str, float]:
    """{'<operation type> <kernel>': ms per call} of an OpenVINO model compiled as DetectMultiBackend compiles it,
    with PERF_COUNT on, averaged over ``runs`` calls after one warm-up call."""
    import numpy as np

    from models.backends import openvino_config
    from utils.optional import import_openvino

    ov = import_openvino()
    core = ov.Core()
    config = {**openvino_config(core, "int8", threads), "PERF_COUNT": True}
    request = core.compile_model(core.read_model(str(next(folder.glob("*.xml")))), "CPU", config).create_infer_request()
    x = np.random.default_rng(0).random((1, 3, imgsz, imgsz), dtype=np.float32)
    request.infer([x])
    totals: dict[str, float] = {}
    for _ in range(runs):
        request.infer([x])
        for info in request.get_profiling_info():
            if info.status.name == "EXECUTED":
                key = f"{info.node_type} {info.exec_type}"
                totals[key] = totals.get(key, 0.0) + info.real_time.total_seconds() * 1e3 / runs
    return dict(sorted(totals.items(), key=lambda kv: -kv[1]))


def build_runners(cfg: str, imgsz: int, folder: Path, official: list[str] | None = None,
                  variants: bool = False, threads: int = 2, profile: bool = False) -> tuple[dict, float, dict]:
    """({row name: callable on a (1, 3, imgsz, imgsz) tensor}, GFLOPs of one pass, OpenVINO INT8 profile with
    ``profile``, else {}) for the runtimes installed; official v7.0's model first with ``official``, the other INT8
    settings with ``variants``."""
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
    runners = {OFFICIAL: official_runner(cfg, official)} if official else {}
    runners["PyTorch channels-last"] = lambda x: cl(x.contiguous(memory_format=torch.channels_last))
    kernel_times = {}
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
                if profile and f.suffix != ".onnx":
                    kernel_times = openvino_profile(f, imgsz, threads)
            runners[name] = DetectMultiBackend(f)
        if variants and int8:
            for name, f in int8_variants(model, folder, fp32, int8, calib).items():
                runners[name] = DetectMultiBackend(f)
    return runners, gflops, kernel_times


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


def measure(cfg: str, imgsz: int, threads: int, runs: int, official: list[str] | None = None,
            variants: bool = False, profile: bool = False) -> dict:
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
        runners, gflops, kernel_times = build_runners(cfg, imgsz, Path(tmp), official, variants, threads, profile)
        ms = latencies(runners, imgsz, runs)
    return {"capability": torch.backends.cpu.get_cpu_capability(), "native_bf16": cpu_has_native_bf16(),
            "peak": peak, "gflops": gflops, "ms": ms, "profile": kernel_times, "load": os.getloadavg()}


def run(cfg: str = "yolov5s.yaml", imgsz: int = 640, threads: int = 2, runs: int = 20,
        isa: tuple[str, ...] = ("native", "avx2"), official: list[str] | None = None, int8_variants: bool = False,
        profile: bool = False) -> dict[str, dict]:
    """Measure each ``isa`` in its own process and print the table."""
    results = {}
    for kind in isa:
        env = {**os.environ, **ISA_ENV[kind]}
        cmd = [sys.executable, __file__, "--child", "--cfg", cfg, "--imgsz", str(imgsz), "--threads", str(threads),
               "--runs", str(runs), *(["--official", *official] if official else []),
               *(["--int8-variants"] if int8_variants else []), *(["--profile"] if profile else [])]
        out = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if out.returncode != 0:
            raise SystemExit(f"{kind}: {out.stderr[-2000:]}")
        results[kind] = json.loads(out.stdout.strip().splitlines()[-1])
    for kind, r in results.items():
        fp32, bf16 = r["peak"]["float32"], r["peak"]["bfloat16"]
        print(f"\n{kind}: torch capability {r['capability']}, oneDNN native bf16 {r['native_bf16']}; 2048 matmul "
              f"peak fp32 {fp32:.0f} GFLOP/s, bf16 {bf16:.0f} GFLOP/s; {cfg} {r['gflops']:.1f} GFLOPs at {imgsz}, "
              f"{threads} threads")
        reference = OFFICIAL if OFFICIAL in r["ms"] else "PyTorch channels-last"
        base = r["ms"][reference]
        print(f"load average {' / '.join(f'{v:.1f}' for v in r['load'])} at the end")
        print(f"| runtime | ms | vs {reference} | GFLOP/s | of fp32 peak | ISA cap applied ({kind}) |")
        print("| --- | ---: | ---: | ---: | ---: | --- |")
        for name, ms in r["ms"].items():
            achieved = r["gflops"] / ms * 1e3
            capped = "n/a" if kind == "native" else {True: "yes", False: "no (cpuid)"}[
                next((v for k, v in CAPPED_BY.items() if name.startswith(k)), False)]
            print(f"| {name} | {ms:.1f} | {ms / base:.2f}x | {achieved:.0f} | {achieved / fp32:.2f} | {capped} |")
        if profile and r["profile"]:
            total = sum(r["profile"].values())
            conv = sum(v for k, v in r["profile"].items() if k.startswith("Convolution") and k.endswith("I8"))
            print(f"\nOpenVINO INT8 profile ({kind}): {total:.1f} ms of kernels per call, int8 convolutions "
                  f"{conv / total:.1%}")
            for k, v in list(r["profile"].items())[:10]:
                print(f"  {k:48s} {v:8.2f} ms {v / total:6.1%}")
    return results


def parse_opt(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cfg", default="yolov5s.yaml", help="model yaml (random weights)")
    p.add_argument("--imgsz", type=int, default=640)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=20, help="timed calls per runtime (median reported)")
    p.add_argument("--isa", nargs="+", default=["native", "avx2"], choices=tuple(ISA_ENV))
    p.add_argument("--official", nargs="+", metavar="DIR", help="folders holding official v7.0's yolov5 package "
                   "(and torchvision stand-ins): adds its model as the reference row")
    p.add_argument("--int8-variants", action="store_true", help="add the INT8 settings not taken as defaults")
    p.add_argument("--profile", action="store_true", help="print OpenVINO INT8's per-operation time")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    return p.parse_args(argv)


if __name__ == "__main__":
    opt = parse_opt()
    if opt.child:
        print(json.dumps(measure(opt.cfg, opt.imgsz, opt.threads, opt.runs, opt.official, opt.int8_variants,
                                 opt.profile)))
    else:
        run(opt.cfg, opt.imgsz, opt.threads, opt.runs, tuple(opt.isa), opt.official, opt.int8_variants, opt.profile)
