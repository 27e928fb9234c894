"""The GPU checks in one prepared run, for a session that is lent a CUDA machine for a few minutes: the CUDA-marked
tests, fp16 AMP training against --amp off (speed and mAP), DDP over NCCL on every GPU, and every export format on
the GPU (TensorRT where the tensorrt package is installed, ONNX Runtime on CUDA where onnxruntime-gpu is).

Each step runs as its own process under a time limit, its output in OUT/<step>.log; a summary table (step, exit
status, seconds, the log's last line) is printed and written to OUT/summary.md, also when a step fails or times
out, so one call returns everything. The steps' time limits add up to 9 minutes (a lent machine runs one command
for at most 10); on one H100 they should take about half of that.

Usage (repository root of the GPU machine):
    python benchmarks/gpu_check.py --out "$OUT"
    python benchmarks/gpu_check.py --dry-run            # print the steps' commands only
    python benchmarks/gpu_check.py --only amp ddp --epochs 20
"""

import argparse
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "yolov5n-v7.0.pt"  # official yolov5n, COCO-trained
TENSORRT_TEST = "test_engine_export_and_outputs"  # the CUDA-marked test outside tests/test_cuda.py


@dataclass(frozen=True)
class Step:
    name: str
    argv: list[str]
    timeout_s: int


def steps(n_gpus: int, out: Path, epochs: int = 10) -> list[Step]:
    """The checks in their order for a machine with ``n_gpus`` CUDA devices."""
    py, n = sys.executable, max(n_gpus, 1)
    devices = ",".join(str(i) for i in range(n))
    return [
        Step("tests", [py, "-m", "pytest", "tests/test_cuda.py", f"tests/test_formats.py::{TENSORRT_TEST}", "-q",
                       "-rs", "-p", "no:cacheprovider"], 150),
        Step("amp", [py, "benchmarks/bench_train.py", "--device", "0", "--cfg", "yolov5s.yaml", "--imgsz", "640",
                     "--amp", "off", "auto", "--epochs", str(epochs), "--seeds", "0", "--workers", "8"], 200),
        Step("ddp", [py, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(n),
                     "train.py", "--data", "coco8.yaml", "--cfg", "yolov5n.yaml", "--weights", "", "--imgsz", "320",
                     "--batch-size", str(8 * n), "--epochs", "2", "--workers", "2", "--device", devices,
                     "--sync-bn", "--noplots", "--project", str(out / "runs"), "--name", "ddp", "--exist-ok"], 90),
        Step("formats", [py, "benchmarks.py", "--weights", str(FIXTURE), "--imgsz", "320", "--data", "coco8.yaml",
                         "--device", "0"], 100),
    ]


def run_step(step: Step, out: Path) -> tuple[int | str, float, str]:
    """(exit status or 'timeout', seconds, the log's last non-empty line) of one step; output in OUT/<name>.log."""
    log = out / f"{step.name}.log"
    t0 = time.time()
    with open(log, "w") as f:
        f.write(f"$ {shlex.join(step.argv)}\n")
        f.flush()
        try:
            rc = subprocess.run(step.argv, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT,
                                timeout=step.timeout_s).returncode
        except subprocess.TimeoutExpired:
            rc = "timeout"
    lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    return rc, time.time() - t0, (lines[-1] if lines else "")[:160]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "gpu_check", help="logs and summary.md go here")
    p.add_argument("--only", nargs="+", default=None, help="run these steps only (tests, amp, ddp, formats)")
    p.add_argument("--epochs", type=int, default=10, help="epochs of each AMP training run")
    p.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    args = p.parse_args(argv)

    import torch  # after argument parsing: --help and --dry-run stay quick

    n_gpus = torch.cuda.device_count()
    if not n_gpus and not args.dry_run:
        print("gpu_check: no CUDA device visible to torch (torch.cuda.device_count() == 0); nothing to check")
        return 2
    chosen = [s for s in steps(n_gpus, args.out, args.epochs) if args.only is None or s.name in args.only]
    if args.dry_run:
        for s in chosen:
            print(f"{s.name} (limit {s.timeout_s} s): {shlex.join(s.argv)}")
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    names = ", ".join(torch.cuda.get_device_name(i) for i in range(n_gpus))
    rows = [f"GPU check: {n_gpus} x {names}; torch {torch.__version__}, CUDA {torch.version.cuda}", "",
            "| step | exit | seconds | last line of its log |", "|---|---|---|---|"]
    print(rows[0], flush=True)
    failed = []
    for s in chosen:
        rc, seconds, last = run_step(s, args.out)
        rows.append(f"| {s.name} | {rc} | {seconds:.0f} | {last.replace('|', '/')} |")
        print(rows[-1], flush=True)
        if rc != 0:
            failed.append(s.name)
    (args.out / "summary.md").write_text("\n".join(rows) + "\n")
    print("\n".join(rows))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
