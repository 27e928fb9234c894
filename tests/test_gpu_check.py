"""benchmarks/gpu_check.py, the prepared run for a lent GPU machine, checked where there is none: every step's
command is one its script accepts, the steps' logs and summary come out also for a failing or overrunning step,
and without CUDA it stops with one line."""

import importlib.util
import sys
from pathlib import Path

import train
from benchmarks import bench_train, gpu_check


def root_benchmarks_script():
    """The root benchmarks.py (``import benchmarks`` gives the benchmarks/ package of the same name)."""
    spec = importlib.util.spec_from_file_location("benchmarks_script", gpu_check.ROOT / "benchmarks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_step_is_a_command_its_script_accepts(tmp_path):
    by_name = {s.name: s.argv for s in gpu_check.steps(n_gpus=2, out=tmp_path, epochs=7)}
    assert list(by_name) == ["tests", "amp", "ddp", "formats"]
    assert sum(s.timeout_s for s in gpu_check.steps(1, tmp_path)) <= 540  # inside one 600 s device command
    for node in by_name["tests"][3:5]:  # the test files, and the TensorRT test by name
        path, _, test = node.partition("::")
        assert (gpu_check.ROOT / path).is_file() and (not test or f"def {test}(" in (gpu_check.ROOT / path).read_text())
    amp = bench_train.parse_args(by_name["amp"][2:])
    assert (amp.cfg, amp.imgsz, amp.amp, amp.epochs, amp.device) == ("yolov5s.yaml", 640, ["off", "auto"], 7, "0")
    ddp = by_name["ddp"]
    assert ddp[ddp.index("--nproc_per_node") + 1] == "2"
    opt = train.parse_opt(ddp[ddp.index("train.py") + 1:])
    assert (opt.device, opt.batch_size, opt.sync_bn, opt.weights) == ("0,1", 16, True, "")
    assert Path(opt.project) == tmp_path / "runs"
    formats = root_benchmarks_script().parse_opt(by_name["formats"][2:])
    assert Path(formats.weights).is_file() and formats.device == "0"


def test_steps_log_and_summarise_failures_and_time_limits(tmp_path):
    ok = gpu_check.Step("ok", [sys.executable, "-c", "print('first'); print('all good')"], 60)
    assert gpu_check.run_step(ok, tmp_path)[::2] == (0, "all good")
    assert (tmp_path / "ok.log").read_text().splitlines()[1:] == ["first", "all good"]
    failing = gpu_check.Step("bad", [sys.executable, "-c", "raise SystemExit('broken')"], 60)
    assert gpu_check.run_step(failing, tmp_path)[::2] == (1, "broken")
    slow = gpu_check.Step("slow", [sys.executable, "-c", "import time; time.sleep(30)"], 1)
    rc, seconds, _ = gpu_check.run_step(slow, tmp_path)
    assert rc == "timeout" and seconds < 20


def test_without_cuda_it_stops_in_one_line(capsys, monkeypatch):
    monkeypatch.setattr("torch.cuda.device_count", lambda: 0)
    assert gpu_check.main(["--out", "unused"]) == 2
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "no CUDA device" in out[0]
    assert gpu_check.main(["--dry-run", "--only", "ddp"]) == 0
    assert capsys.readouterr().out.startswith("ddp (limit 90 s): ")
