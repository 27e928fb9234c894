"""utils/allocator.py: freed memory kept for reuse (no page faults for blocks allocated again), left to the user's
own malloc settings, and applied by every entry point that runs a model."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import detect
import val
from engine import training
from segment import predict as segment_predict
from segment import val as segment_val
from utils.allocator import glibc_version

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "yolov5n-v7.0.pt"

# a child that frees and allocates a 64 MB block as PyTorch does an activation map, and counts the page faults
CHILD = """
import json, resource, sys
sys.path.insert(0, {root!r})
from utils.allocator import keep_freed_memory
kept = keep_freed_memory() if sys.argv[1] == "keep" else False
import torch
for _ in range(20):  # 64 MB blocks: glibc settles on the blocks it reuses within a few rounds
    x = torch.ones(16 * 2**20)
    del x
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    x = torch.ones(16 * 2**20)
    del x
faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 5
print(json.dumps({{"kept": kept, "faults": faults}}))
"""
GLIBC = glibc_version() is not None


def faults_per_block(folder, mode, **env):
    script = folder / "child.py"
    script.write_text(CHILD.format(root=str(ROOT)))
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")} | env
    out = subprocess.run([sys.executable, str(script), mode], capture_output=True, text=True, timeout=120,
                         env=environ, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def kept_faults(tmp_path_factory):
    result = faults_per_block(tmp_path_factory.mktemp("kept"), "keep")
    assert result["kept"]
    return result["faults"]


@pytest.mark.skipif(not GLIBC, reason="glibc's malloc only")
def test_kept_memory_is_reused_without_page_faults(tmp_path, kept_faults):
    """With glibc's defaults a freed 64 MB block goes back to the OS and its pages fault again when the next block
    is written (16,384 of 4 KB, or 32 huge pages); kept, the block is reused and (almost) nothing faults."""
    default = faults_per_block(tmp_path, "default")
    assert not default["kept"]
    assert default["faults"] >= 32 and kept_faults * 20 < default["faults"]


@pytest.mark.skipif(not GLIBC, reason="glibc's malloc only")
@pytest.mark.parametrize("env", [{"MALLOC_ARENA_MAX": "2"}, {"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=0"},
                                 {"LD_PRELOAD": "libjemalloc-absent.so"}])
def test_the_users_own_malloc_settings_are_left_alone(tmp_path, kept_faults, env):
    """Any glibc malloc setting in the environment, or another allocator preloaded, is the user's choice: nothing
    is changed and blocks fault as glibc makes them."""
    result = faults_per_block(tmp_path, "keep", **env)
    assert not result["kept"]
    assert result["faults"] >= 32 and kept_faults * 20 < result["faults"]


class Applied(Exception):
    """Raised by the stand-in for keep_freed_memory: the entry point asked for it before any work."""


def _raise_applied():
    raise Applied


@pytest.mark.parametrize("module, call", [
    (detect, lambda tmp: detect.run(weights=FIXTURE, source=ROOT / "data/images", project=tmp)),
    (val, lambda tmp: val.run(weights=FIXTURE, data=ROOT / "data/coco8.yaml", project=tmp)),
    (segment_predict, lambda tmp: segment_predict.run(weights=FIXTURE, source=ROOT / "data/images", project=tmp)),
    (segment_val, lambda tmp: segment_val.run(weights=FIXTURE, data=ROOT / "data/coco8-seg.yaml", project=tmp)),
    (training, lambda tmp: training.setup({}, None, None, None)),
], ids=["detect", "val", "segment-predict", "segment-val", "train"])
def test_every_entry_point_that_runs_a_model_keeps_freed_memory(tmp_path, monkeypatch, module, call):
    monkeypatch.setattr(module, "keep_freed_memory", _raise_applied)
    with pytest.raises(Applied):
        call(tmp_path)
