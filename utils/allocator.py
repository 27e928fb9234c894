"""The process's memory allocator: freed memory kept for reuse instead of handed back to the OS (glibc).

glibc's malloc serves big blocks (from 128 KB, adaptively up to 32 MB, always above that) with fresh ``mmap``s and
returns free memory at the top of its heap to the OS. PyTorch on the CPU allocates every activation map anew at
every forward and backward pass and frees it soon after, so the kernel maps and zeroes the same memory again and
again: a page fault per 4 KB page, each costing microseconds on a virtual machine. Kept instead (what PyTorch's
caching allocator does on GPUs, and jemalloc/tcmalloc via ``LD_PRELOAD`` on CPUs; here with no new library), on a
2-core AMD EPYC VM, yolov5n (``benchmarks/bench_allocator.py``): inference at 640, batch 32 (val.py's), 1.16
million page faults and 2.4 s of system time per batch before, none after, 0.55x the time per batch; a training
step at 256 px 0.72x, at 640 px 0.70x.

The cost is resident memory. The process holds what it has used until it ends, and glibc's aligned allocations
leave some blocks unused before it settles: peak memory 1.20x for that inference (1.9 GB instead of 1.6 GB),
0.98x-1.07x for training; over 300 training steps of random sizes and batches the process settled at the same
size as with glibc's defaults (1.95 GB). Applied by the entry points that run models (training, val, detect);
numbers are unchanged. Any of glibc's MALLOC_ variables in the environment (e.g. its default
``MALLOC_TRIM_THRESHOLD_=131072``) keeps glibc's own behaviour.
"""

from __future__ import annotations

import ctypes
import os

# glibc's mallopt parameters (malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
# the environment settings by which a user chooses the allocator's behaviour; any of them set: left alone
GLIBC_MALLOC_ENV = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_MAX_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TOP_PAD_",
                    "MALLOC_ARENA_MAX", "GLIBC_TUNABLES")

_kept = False


def glibc_version() -> str | None:
    """This process's C library as glibc names itself ('glibc 2.36'); None for any other (macOS, musl, Windows)."""
    if "CS_GNU_LIBC_VERSION" not in getattr(os, "confstr_names", {}):  # POSIX only
        return None
    version = os.confstr("CS_GNU_LIBC_VERSION")
    return version if version and version.startswith("glibc") else None


def keep_freed_memory() -> bool:
    """Make glibc's malloc keep freed memory for reuse: no ``mmap`` for big blocks (``M_MMAP_MAX`` 0), no trimming
    of the heap (``M_TRIM_THRESHOLD`` at its maximum). Returns whether the process now runs so. Nothing is done off
    glibc, when the environment sets glibc's malloc options itself, or when ``LD_PRELOAD`` brings another
    allocator (jemalloc, tcmalloc, mimalloc): those choices are the user's."""
    global _kept
    if _kept:
        return True
    if glibc_version() is None or any(k in os.environ for k in GLIBC_MALLOC_ENV):
        return False
    if "malloc" in os.environ.get("LD_PRELOAD", ""):
        return False
    try:
        libc = ctypes.CDLL(None)
        _kept = libc.mallopt(M_MMAP_MAX, 0) == 1 and libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1) == 1
    except (OSError, AttributeError):  # no C library to ask (a static or foreign interpreter)
        return False
    return _kept
