"""PyTorch on the CPU with glibc's default malloc against freed memory kept for reuse (utils/allocator.py).

Each workload runs in a fresh child process per setting, the settings alternating (in reversed order every other
round) so that a noisy shared CPU hits both alike. A child builds yolov5n (or --cfg) with random weights and times
``--iters`` iterations after two untimed ones:

  infer-b1:   a fused model's forward pass at --imgsz, batch 1, inference mode (detect.py's work)
  infer-b32:  the same at batch 32 (val.py's default batch size)
  train-256:  a training step at 256 px, batch 16: channels-last fp32 forward, ComputeLoss, backward, gradient
              clipping, SGD, EMA (train.py's step, --amp auto without bf16)
  train-640:  the same at 640 px

Prints per workload and setting the medians over rounds of: seconds per iteration, user and system CPU seconds per
iteration, page faults per iteration, and the child's peak resident memory; then the ratio kept / default. An AVX2
CPU is emulated by the environment of this process (ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2), which the
children inherit.

    python benchmarks/bench_allocator.py [--workloads infer-b1 infer-b32 train-256 train-640] [--rounds 3]
"""

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SETTINGS = ("default", "kept")
WORKLOADS = {"infer-b1": (1, None), "infer-b32": (32, None), "train-256": (16, 256), "train-640": (16, 640)}


def child(workload: str, setting: str, cfg: str, imgsz: int, iters: int) -> dict:
    """Time ``workload`` in this process under ``setting``; the figures as a dict."""
    from utils.allocator import keep_freed_memory

    kept = keep_freed_memory() if setting == "kept" else False
    import torch

    from models.yolo import Model
    from utils.general import LOGGER, yaml_load
    from utils.loss import ComputeLoss
    from utils.torch_utils import ModelEMA
    from utils.training import build_optimizer

    LOGGER.setLevel("WARNING")
    torch.manual_seed(0)
    batch, train_size = WORKLOADS[workload]
    model = Model(cfg, nc=80)
    if train_size is None:
        model.fuse().eval()
        x = torch.rand(batch, 3, imgsz, imgsz)

        def iteration():
            with torch.inference_mode():
                model(x)
    else:
        hyp = yaml_load(ROOT / "data/hyps/hyp.scratch-low.yaml")
        model = model.to(memory_format=torch.channels_last)
        model.hyp = hyp
        compute_loss, ema = ComputeLoss(model, hyp), ModelEMA(model)
        optimizer = build_optimizer(model, "SGD", hyp["lr0"], hyp["momentum"], hyp["weight_decay"])
        x = torch.rand(batch, 3, train_size, train_size).contiguous(memory_format=torch.channels_last)
        targets = torch.rand(4 * batch, 6)
        targets[:, 0] = torch.arange(4 * batch) % batch
        targets[:, 1] = (targets[:, 1] * 80).floor()
        targets[:, 4:] = targets[:, 4:] * 0.3 + 0.05

        def iteration():
            loss, _ = compute_loss(model(x), targets)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=10.0, foreach=True)
            optimizer.step()
            optimizer.zero_grad()
            ema.update(model)

    for _ in range(2):
        iteration()
    before, times = resource.getrusage(resource.RUSAGE_SELF), []
    for _ in range(iters):
        t0 = time.perf_counter()
        iteration()
        times.append(time.perf_counter() - t0)
    after = resource.getrusage(resource.RUSAGE_SELF)
    return {"s": statistics.median(times), "user": (after.ru_utime - before.ru_utime) / iters,
            "sys": (after.ru_stime - before.ru_stime) / iters, "faults": (after.ru_minflt - before.ru_minflt) / iters,
            "peak_mb": after.ru_maxrss / 1024, "kept": kept}


def run_child(workload: str, setting: str, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--child", workload, setting, "--cfg", args.cfg, "--imgsz", str(args.imgsz),
           "--iters", str(args.iters)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(args: argparse.Namespace) -> None:
    import torch

    from utils.allocator import glibc_version

    print(f"bench_allocator: {Path(args.cfg).stem}, inference at {args.imgsz} px, {args.iters} iterations after 2, "
          f"{args.rounds} rounds; torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}"
          f", {glibc_version() or 'no glibc'}")
    print("| workload | setting | s / iteration | user s | system s | page faults | peak MB |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    summary = []
    for workload in args.workloads:
        runs = {s: [] for s in SETTINGS}
        for r in range(args.rounds):
            for setting in SETTINGS if r % 2 == 0 else SETTINGS[::-1]:
                runs[setting].append(run_child(workload, setting, args))
        if not all(run["kept"] for run in runs["kept"]):
            print(f"{workload}: freed memory could not be kept here (not glibc, or malloc set by the environment)")
        med = {s: {k: statistics.median(run[k] for run in runs[s]) for k in ("s", "user", "sys", "faults", "peak_mb")}
               for s in SETTINGS}
        for s in SETTINGS:
            m = med[s]
            print(f"| {workload} | {s} | {m['s']:.3f} | {m['user']:.3f} | {m['sys']:.3f} | {m['faults']:.0f} | "
                  f"{m['peak_mb']:.0f} |")
        ratios = [b["s"] / a["s"] for a, b in zip(runs["default"], runs["kept"])]
        summary.append(f"{workload}: kept / default {med['kept']['s'] / med['default']['s']:.2f}x per iteration "
                       f"(per round {', '.join(f'{x:.2f}' for x in ratios)}), peak memory "
                       f"{med['kept']['peak_mb'] / med['default']['peak_mb']:.2f}x")
    print("\n".join(summary))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workloads", nargs="+", choices=list(WORKLOADS), default=list(WORKLOADS))
    parser.add_argument("--cfg", default="yolov5n.yaml")
    parser.add_argument("--imgsz", type=int, default=640, help="inference size")
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", nargs=2, metavar=("WORKLOAD", "SETTING"), help=argparse.SUPPRESS)
    return parser.parse_args(argv)


if __name__ == "__main__":
    opt = parse_args()
    if opt.child:
        print(json.dumps(child(*opt.child, opt.cfg, opt.imgsz, opt.iters)))
    else:
        main(opt)
