"""Whole-process time of ``detect.py`` on a few images, side by side with other commands (official YOLOv5 v7.0,
another checkout of this project), alternating A/B/... in each round so that a noisy shared CPU hits all alike.

    python benchmarks/bench_startup.py --weights yolov5n.pt --source data/images --rounds 7 \
        --official /tmp/offenv --official-path /tmp/offstub --baseline /tmp/cpu_base

Each command runs in a fresh process; the table gives the median wall time, the median CPU time (user + system of
the child, less sensitive to other processes than wall time) and both as a ratio of official's (or of the first
command when no official is given), plus ``--help``'s time, which is imports only. ``--official`` is a folder holding
the pip ``yolov5`` package (run as ``python -m yolov5.detect``); ``--official-path`` adds folders to its PYTHONPATH
(e.g. stand-ins for packages it imports that are not installed here). Official's own checkpoints need full
unpickling under torch >= 2.6, so its runs set TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 (the fixture is trusted).
"""

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def timed_run(cmd: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float, int]:
    """(wall s, child CPU s, exit code) of one run of ``cmd``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    rc = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), rc


def commands(weights: str, source: str, project: Path, official: str | None, official_path: list[str],
             baseline: str | None) -> dict[str, tuple[list[str], Path, dict[str, str]]]:
    """name -> (argv, cwd, env) of each detect command, with its --help twin named '<name> --help'."""
    args = ["--weights", str(Path(weights).resolve()), "--source", str(Path(source).resolve()), "--device", "cpu"]
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "0"}
    out = {}
    if official:
        off_env = {**env, "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1",
                   "PYTHONPATH": os.pathsep.join([official, *official_path])}
        base = [sys.executable, "-m", "yolov5.detect"]
        out["official"] = ([*base, *args, "--project", str(project / "official")], project, off_env)
        out["official --help"] = ([*base, "--help"], project, off_env)
    if baseline:
        base = [sys.executable, str(Path(baseline) / "detect.py")]
        out["baseline"] = ([*base, *args, "--project", str(project / "baseline")], Path(baseline), env)
        out["baseline --help"] = ([*base, "--help"], Path(baseline), env)
    base = [sys.executable, str(ROOT / "detect.py")]
    out["this"] = ([*base, *args, "--project", str(project / "this")], ROOT, env)
    out["this --help"] = ([*base, "--help"], ROOT, env)
    return out


def run(weights: str, source: str, rounds: int = 5, official: str | None = None,
        official_path: list[str] | None = None, baseline: str | None = None) -> dict[str, tuple[float, float]]:
    """Median (wall s, CPU s) per command over ``rounds`` alternating rounds; prints the table."""
    with tempfile.TemporaryDirectory() as tmp:
        cmds = commands(weights, source, Path(tmp), official, official_path or [], baseline)
        for name, (cmd, cwd, env) in cmds.items():  # one untimed run each: disk cache, .pyc files
            if timed_run(cmd, cwd, env)[2] != 0:
                raise SystemExit(f"{name} failed: {' '.join(cmd)}")
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in cmds}
        for r in range(rounds):
            order = list(cmds) if r % 2 == 0 else list(cmds)[::-1]
            for name in order:
                wall, cpu, _ = timed_run(*cmds[name])
                times[name].append((wall, cpu))
    med = {n: (statistics.median(w for w, _ in t), statistics.median(c for _, c in t)) for n, t in times.items()}
    ref = "official" if official else next(iter(cmds))
    print(f"{'command':<18} {'wall s':>7} {'CPU s':>7} {'wall/ref':>9} {'CPU/ref':>8}   (median of {rounds}, "
          f"ref = {ref}; --help rows against the ref's --help)")
    for name, (wall, cpu) in med.items():
        r = f"{ref} --help" if name.endswith("--help") else ref
        print(f"{name:<18} {wall:7.2f} {cpu:7.2f} {wall / med[r][0]:9.2f} {cpu / med[r][1]:8.2f}")
    return med


def parse_opt(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", required=True, help="a .pt checkpoint both projects read (official format)")
    parser.add_argument("--source", default=str(ROOT / "data/images"), help="images for detect.py")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds (median reported)")
    parser.add_argument("--official", default=None, help="folder holding the pip yolov5 package")
    parser.add_argument("--official-path", nargs="*", default=[], help="extra PYTHONPATH folders for official")
    parser.add_argument("--baseline", default=None, help="another checkout of this project to compare with")
    return parser.parse_args(argv)


if __name__ == "__main__":
    run(**vars(parse_opt()))
