"""glibc malloc settings for CPU training: freed tensor memory stays in the process for the next step.

By default glibc serves every block above its mmap threshold (128 KiB, raised dynamically up to 32 MiB) with a fresh
mmap and unmaps it when freed, and trims the heap's top when more than the trim threshold is free. A training step
on the CPU frees and reallocates the same activations every step, so the kernel maps and zeroes them anew each
time: yolov5n at 256 px, batch 16 takes ~25,000 page faults (~100 MB zeroed) per step, serially with the
convolutions. Serving large blocks from the heap and never trimming it makes those pages reused: ~700 faults a step.
The numbers computed are unchanged; the cost is that memory freed during training is not given back to the OS
until the process ends (the peak is what training needs anyway).
"""

from __future__ import annotations

import ctypes
import platform

from utils.general import LOGGER

M_TRIM_THRESHOLD = -1  # mallopt parameters (malloc.h)
M_MMAP_THRESHOLD = -3
KEEP_BELOW = 1 << 30  # blocks under 1 GiB from the heap; the largest the int argument takes as a round number


def keep_freed_memory() -> bool:
    """Set glibc's mmap and trim thresholds to KEEP_BELOW for this process (and the data loader workers it forks
    later); True when set. Elsewhere (musl, macOS, Windows) nothing changes."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        ok = libc.mallopt(M_MMAP_THRESHOLD, KEEP_BELOW) == 1 and libc.mallopt(M_TRIM_THRESHOLD, KEEP_BELOW) == 1
    except (OSError, AttributeError):
        return False
    if not ok:
        LOGGER.debug("glibc mallopt refused the mmap/trim thresholds; training runs with malloc's defaults")
    return ok
