"""AutoBatch (``train.py --batch-size -1``): the largest batch whose training step fits a fraction of the GPU memory.

A few batch sizes are profiled (forward and backward of the training model at the training image size); the
memory they take is fitted with a straight line, memory = a * batch + b, which is then solved for the batch that
fills ``fraction`` (60%) of the device's total memory minus what other processes and the CUDA context already
hold. CUDA only: CPU training has no fixed memory budget to fill.
"""

from __future__ import annotations

from collections.abc import Sequence
from copy import deepcopy

import numpy as np
import torch

from utils.amp import AmpPolicy, select_amp
from utils.general import LOGGER, UserError, colorstr

PROFILE_BATCH_SIZES = (1, 2, 4, 8, 16)
DEFAULT_FRACTION = 0.6
FALLBACK_BATCH_SIZE = 16
MAX_BATCH_SIZE = 1024


def fit_batch_size(
    batch_sizes: Sequence[int],
    memory_gb: Sequence[float | None],
    free_gb: float,
    fraction: float = DEFAULT_FRACTION,
    fallback: int = FALLBACK_BATCH_SIZE,
) -> int:
    """The batch size whose predicted memory use fills ``fraction`` of ``free_gb``.

    ``memory_gb[i]`` is what batch ``batch_sizes[i]`` took (None where it ran out of memory). Sizes that failed
    cap the answer below the smallest failing size; with fewer than two measurements, or a fit that does not
    grow with the batch, the ``fallback`` is returned. Always between 1 and MAX_BATCH_SIZE.
    """
    measured = [(b, m) for b, m in zip(batch_sizes, memory_gb) if m is not None]
    failed = [b for b, m in zip(batch_sizes, memory_gb) if m is None]
    if len(measured) < 2:
        return fallback
    slope, intercept = np.polyfit(*zip(*measured), deg=1)
    if slope <= 0:
        return fallback
    batch = int((free_gb * fraction - intercept) / slope + 1e-6)  # the fit's rounding must not lose a whole image
    if failed:
        batch = min(batch, min(failed) - 1)
    return max(1, min(batch, MAX_BATCH_SIZE))


def profile_memory(
    model: torch.nn.Module, imgsz: int, batch_sizes: Sequence[int], device: torch.device, amp: AmpPolicy
) -> list[float | None]:
    """GB of CUDA memory that a training step (forward + backward, under ``amp``'s autocast) of each batch size
    reaches; None for a size that runs out of memory."""
    memory = []
    probe = deepcopy(model).train()
    for batch in batch_sizes:
        torch.cuda.reset_peak_memory_stats(device)
        try:
            x = torch.rand(batch, 3, imgsz, imgsz, device=device)
            with amp.autocast():
                out = probe(x)
            sum(o.float().sum() for o in out).backward()
            memory.append(torch.cuda.max_memory_reserved(device) / 1e9)
        except torch.cuda.OutOfMemoryError:
            memory.append(None)
        probe.zero_grad(set_to_none=True)
        torch.cuda.empty_cache()
    del probe
    return memory


def autobatch(
    model: torch.nn.Module, imgsz: int, device: torch.device, amp: AmpPolicy, fraction: float = DEFAULT_FRACTION
) -> int:
    """Profile ``model`` at ``imgsz`` on CUDA ``device`` and return the batch size for ``fraction`` of its memory."""
    prefix = colorstr("AutoBatch: ")
    if device.type != "cuda":
        raise UserError("--batch-size -1 (AutoBatch) needs a CUDA device; on CPU pass a batch size, e.g. "
                        "--batch-size 16")
    props = torch.cuda.get_device_properties(device)
    total = props.total_memory / 1e9
    held = (torch.cuda.memory_reserved(device) + torch.cuda.memory_allocated(device)) / 1e9
    free = total - held
    LOGGER.info(f"{prefix}{props.name} {total:.1f}G total, {held:.2f}G held, {free:.2f}G free; profiling batch "
                f"sizes {list(PROFILE_BATCH_SIZES)} at {imgsz} px")
    memory = profile_memory(model, imgsz, PROFILE_BATCH_SIZES, device, amp)
    batch = fit_batch_size(PROFILE_BATCH_SIZES, memory, free, fraction)
    measured = ", ".join(f"{b}: {m:.2f}G" if m else f"{b}: out of memory" for b, m in zip(PROFILE_BATCH_SIZES, memory))
    LOGGER.info(f"{prefix}using --batch-size {batch} for {fraction:.0%} of {free:.2f}G (measured {measured})")
    return batch


# Official YOLOv5 v7.0 name (its train.py imports it from here).
def check_train_batch_size(model: torch.nn.Module, imgsz: int = 640, amp: bool = True) -> int:
    """AutoBatch for ``model`` on its device: the batch size for DEFAULT_FRACTION of the CUDA memory, or
    FALLBACK_BATCH_SIZE with a warning when the model is not on a CUDA device."""
    device = next(model.parameters()).device
    if device.type != "cuda":
        LOGGER.warning(f"{colorstr('AutoBatch: ')}WARNING: needs a CUDA device; using batch size {FALLBACK_BATCH_SIZE}")
        return FALLBACK_BATCH_SIZE
    return autobatch(deepcopy(model).train(), imgsz, device, select_amp("auto" if amp else "off", "cuda"))
