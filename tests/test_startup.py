"""detect.py's start-up path: what a run on two images loads and runs between its imports and its first result.

The whole-process time against official v7.0 is measured by benchmarks/bench_startup.py; these tests pin the causes
found there: matplotlib (about 1 s of import) is not imported by detect.py, the load-time summary line does not
count FLOPs (the counter's dispatch mode imports torch._dynamo, about 1 s), and no warm-up pass runs on the CPU.
"""

import json
import os
import subprocess
import sys

import pytest
import torch

from models.backends import DetectMultiBackend
from utils.general import ROOT

FIXTURE = ROOT / "tests" / "fixtures" / "yolov5n-v7.0.pt"
IMAGES = ROOT / "data" / "images"

PROBE = """
import json, sys
import detect
imported = {m: m in sys.modules for m in ("matplotlib", "torch._dynamo", "pandas")}
detect.run(weights=sys.argv[1], source=sys.argv[2], imgsz=96, device="cpu", project=sys.argv[3], nosave=True)
after = {m: m in sys.modules for m in ("matplotlib", "torch._dynamo", "pandas")}
print(json.dumps({"imported": imported, "after": after}))
"""


@pytest.mark.slow
def test_detect_run_imports_no_plotting_and_no_dynamo(tmp_path):
    out = subprocess.run([sys.executable, "-c", PROBE, str(FIXTURE), str(IMAGES), str(tmp_path)], cwd=ROOT,
                         capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["imported"] == {"matplotlib": False, "torch._dynamo": False, "pandas": False}
    assert result["after"] == {"matplotlib": False, "torch._dynamo": False, "pandas": False}
    assert "summary: 214 layers, 1867405 parameters, 0 gradients" in out.stderr + out.stdout  # no GFLOPs counted


def test_cpu_warmup_runs_no_forward_pass(monkeypatch):
    backend = DetectMultiBackend(FIXTURE)
    calls = []
    monkeypatch.setattr(backend, "forward", lambda *a, **k: calls.append(a))
    backend.warmup(imgsz=(1, 3, 64, 64))
    assert calls == []  # skipped on the CPU, as official does
    backend.device = torch.device("meta")  # any other device type: the pass runs
    backend.warmup(imgsz=(1, 3, 64, 64))
    assert len(calls) == 1
