"""utils/malloc.py: with keep_freed_memory, large tensors freed and allocated again reuse their pages instead of
being mapped and zeroed anew by the kernel (counted as minor page faults, in a fresh process each)."""

import platform
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# a "step" like a layer's forward: activations made, combined and freed; 3 steps to settle, then 20 counted
PROBE = """
import resource, sys
import torch
sys.path.insert(0, {root!r})
from utils.malloc import keep_freed_memory
kept = keep_freed_memory() if {keep} else False
def step():
    x = torch.ones(16, 16, 128, 128)  # 16 MiB
    return torch.cat([x, torch.nn.functional.silu(x)], 1).sum()
for _ in range(3):
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    step()
print(kept, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def page_faults(keep: bool) -> tuple[bool, int]:
    out = subprocess.run([sys.executable, "-c", PROBE.format(root=str(ROOT), keep=keep)], capture_output=True,
                         text=True, check=True).stdout.split()
    return out[0] == "True", int(out[1])


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_freed_blocks_are_reused_instead_of_faulted_in_again():
    kept, kept_faults = page_faults(keep=True)
    _, default_faults = page_faults(keep=False)
    assert kept
    assert default_faults > 20 * 4_096  # every step maps at least 16 MiB of its 64 anew
    assert kept_faults < default_faults / 10  # at most an occasional new block as the heap settles
