"""PyTorch helpers: device selection, model summaries and FLOPs, EMA, timing; and, at the end, the names that
official YOLOv5 v7.0 scripts import from ``utils.torch_utils``."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from copy import deepcopy
from pathlib import Path
from typing import Any

import torch
import torch.backends.xnnpack  # noqa: F401 (``import torch`` leaves it out; save_for_mobile reads it)
import torch.nn as nn
import torch.nn.functional as F

from utils.general import LOGGER, UserError
from utils.training import EarlyStopping, build_optimizer  # noqa: F401 (EarlyStopping: official import path)

LOCAL_RANK = int(os.getenv("LOCAL_RANK", -1))
RANK = int(os.getenv("RANK", -1))
WORLD_SIZE = int(os.getenv("WORLD_SIZE", 1))


def select_device(device: str | int | None = "", batch_size: int = 0) -> torch.device:
    """'' or None -> first CUDA device if any else CPU; 'cpu'; '0' or '0,1' -> CUDA devices (clear error if absent)."""
    device = str(device or "").strip().lower().replace("cuda:", "").replace("none", "")
    if device == "cpu" or (not device and not torch.cuda.is_available()):
        LOGGER.info(f"torch {torch.__version__} CPU")
        return torch.device("cpu")
    if device == "mps":
        return torch.device("mps")
    if device:
        if not torch.cuda.is_available():
            raise UserError(f"--device {device} requested but CUDA is not available here; use --device cpu")
        ids = [int(x) for x in device.split(",") if x.strip()]
        n = torch.cuda.device_count()
        bad = [i for i in ids if i >= n]
        if bad:
            raise UserError(f"--device {device}: CUDA device(s) {bad} not found ({n} available)")
        if len(ids) > 1 and batch_size and batch_size % len(ids):
            raise UserError(f"--batch-size {batch_size} is not a multiple of the number of GPUs {len(ids)}")
        first = ids[0] if LOCAL_RANK < 0 else LOCAL_RANK
    else:
        first = max(LOCAL_RANK, 0)
    p = torch.cuda.get_device_properties(first)
    LOGGER.info(f"torch {torch.__version__} CUDA:{first} ({p.name}, {p.total_memory / 1024 ** 2:.0f}MiB)")
    return torch.device(f"cuda:{first}")


def grid_stride(model: nn.Module) -> int:
    """The stride input sizes must be multiples of: the model's largest stride, at least 32 (YOLOv5's rule)."""
    return max(int(model.stride.max()), 32)


def time_sync() -> float:
    """Wall time after waiting for pending CUDA work."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter()


def de_parallel(model: nn.Module) -> nn.Module:
    """The bare model inside DataParallel / DistributedDataParallel."""
    return model.module if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)) else model


@contextmanager
def torch_distributed_zero_first(local_rank: int) -> Iterator[None]:
    """Make every process wait for local rank 0 (e.g. while it builds a cache)."""
    if local_rank not in (-1, 0):
        torch.distributed.barrier()
    yield
    if local_rank == 0:
        torch.distributed.barrier()


def count_flops(model: nn.Module, imgsz: int | tuple[int, int] = 640, ch: int | None = None) -> float:
    """GFLOPs (2 x multiply-adds) of one forward pass at ``imgsz`` (int or (h, w)), batch 1.

    Counted with torch.utils.flop_counter at a small stride-multiple size and scaled by the pixel count, which is
    exact for convolutional networks whose input is a multiple of the largest stride.
    """
    from torch.utils.flop_counter import FlopCounterMode

    h, w = (imgsz, imgsz) if isinstance(imgsz, int) else imgsz
    stride = int(max(getattr(model, "stride", torch.tensor([32])).max().item(), 32))
    probe = 2 * stride
    ch = ch or getattr(model, "yaml", {}).get("ch", 3)
    p = next(model.parameters())
    x = torch.zeros(1, ch, probe, probe, device=p.device, dtype=p.dtype)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        model.train(was_training)
    return counter.get_total_flops() / 1e9 * (h * w) / (probe * probe)


def model_info(
    model: nn.Module, verbose: bool = False, imgsz: int | tuple[int, int] = 640, flops: bool = True
) -> tuple[int, int, int, float | None]:
    """Log 'summary: L layers, P parameters, G gradients, F GFLOPs' and return (layers, params, grads, gflops).

    ``flops=False`` leaves the FLOP count out (gflops None), as official's line reads without thop: counting runs a
    forward pass under a dispatch mode, whose first use imports torch._dynamo (about 1 s on a 2-core CPU), which a
    model loaded for detect.py or val.py should not pay at every start."""
    n_p = sum(x.numel() for x in model.parameters())
    n_g = sum(x.numel() for x in model.parameters() if x.requires_grad)
    n_l = len(list(model.modules()))
    if verbose:
        LOGGER.info(f"{'layer':>5} {'name':>40} {'gradient':>9} {'parameters':>12} {'shape':>20}")
        for i, (name, p) in enumerate(model.named_parameters()):
            LOGGER.info(f"{i:5g} {name:>40} {str(p.requires_grad):>9} {p.numel():12g} {str(list(p.shape)):>20}")
    gflops, fs = None, ""
    try:
        if flops:
            gflops = count_flops(model, imgsz)
            fs = f", {gflops:.1f} GFLOPs"
    except Exception as e:  # FLOPs are informative only; a module the counter cannot trace must not stop a build
        LOGGER.warning(f"WARNING: FLOPs not computed: {e}")
    name = type(model).__name__
    LOGGER.info(f"{name} summary: {n_l} layers, {n_p} parameters, {n_g} gradients{fs}")
    return n_l, n_p, n_g, gflops


def initialize_weights(model: nn.Module) -> None:
    """YOLOv5's initial settings: BatchNorm eps 1e-3 and momentum 0.03, in-place activations."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.eps = 1e-3
            m.momentum = 0.03
        elif isinstance(m, (nn.Hardswish, nn.LeakyReLU, nn.ReLU, nn.ReLU6, nn.SiLU)):
            m.inplace = True


def scale_img(img: torch.Tensor, ratio: float = 1.0, same_shape: bool = False, gs: int = 32) -> torch.Tensor:
    """Resize a BCHW batch by ``ratio`` and pad to a multiple of ``gs`` (grey 0.447) unless ``same_shape``."""
    if ratio == 1.0:
        return img
    h, w = img.shape[2:]
    s = (int(h * ratio), int(w * ratio))
    img = F.interpolate(img, size=s, mode="bilinear", align_corners=False)
    if not same_shape:
        h, w = (math.ceil(x * ratio / gs) * gs for x in (h, w))
    return F.pad(img, [0, w - s[1], 0, h - s[0]], value=0.447)


class ModelEMA:
    """Exponential moving average of a model's state: decay ramps up as ``decay * (1 - exp(-updates / tau))``.

    Keeps a copy in eval mode; floating-point entries of the state dict (parameters and buffers) are averaged.
    """

    def __init__(self, model: nn.Module, decay: float = 0.9999, tau: float = 2000, updates: int = 0) -> None:
        self.ema = deepcopy(de_parallel(model)).eval()
        self.updates = updates
        self.decay = lambda x: decay * (1 - math.exp(-x / tau))
        for p in self.ema.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = self.decay(self.updates)
        msd = de_parallel(model).state_dict()
        floats = [(k, v) for k, v in self.ema.state_dict().items() if v.dtype.is_floating_point]
        ema, new = [v for _, v in floats], [msd[k].detach() for k, _ in floats]
        # one multi-tensor op each instead of two small ops per tensor: the same arithmetic, a fraction of the time
        torch._foreach_mul_(ema, d)
        torch._foreach_add_(ema, new, alpha=1 - d)

    def update_attr(
        self, model: nn.Module, include: Collection[str] = (), exclude: Collection[str] = ("process_group", "reducer")
    ) -> None:
        for k, v in de_parallel(model).__dict__.items():
            if (not include or k in include) and not k.startswith("_") and k not in exclude:
                setattr(self.ema, k, v)


def save_for_mobile(file: str | Path, extra_files: Collection[str] = ()) -> Path | None:
    """export.py --optimize: TorchScript ``file`` (an export of this project) optimized for mobile CPUs by
    torch.utils.mobile_optimizer and saved beside it for PyTorch Mobile's lite interpreter as <stem>.ptl, keeping
    ``extra_files``; None, with a warning, where this torch build lacks XNNPACK, which the optimization needs."""
    if not torch.backends.xnnpack.enabled:
        LOGGER.warning(f"WARNING: --optimize needs a torch build with XNNPACK (torch {torch.__version__} has none); "
                       f"{Path(file).name} is not optimized for mobile")
        return None
    from torch.utils.mobile_optimizer import optimize_for_mobile

    extra = dict.fromkeys(extra_files, "")
    module = torch.jit.load(str(file), map_location="cpu", _extra_files=extra)
    out = Path(file).with_suffix(".ptl")
    optimize_for_mobile(module)._save_for_lite_interpreter(str(out), _extra_files=extra)
    LOGGER.info(f"PyTorch Mobile: {out} optimized for mobile ({out.stat().st_size / 1e6:.1f} MB)")
    return out

# ---------------------------------------------------------------------------------------------------------------
# Official YOLOv5 v7.0 names (its train.py, val.py, detect.py and export.py import them from here), thin over the
# project's own helpers.
# ---------------------------------------------------------------------------------------------------------------
def smart_inference_mode(torch_1_9: bool = True) -> Callable[[Callable], Callable]:
    """Decorator factory: ``@smart_inference_mode()`` runs the function under torch.inference_mode (no_grad when
    ``torch_1_9`` is False)."""

    def decorate(fn: Callable) -> Callable:
        return (torch.inference_mode if torch_1_9 else torch.no_grad)()(fn)

    return decorate


def smart_DDP(model: nn.Module) -> nn.parallel.DistributedDataParallel:
    """``model`` wrapped for DistributedDataParallel training on this process's GPU (LOCAL_RANK), or on the CPU
    (gloo) when the model is there."""
    if next(model.parameters()).device.type == "cuda":
        return nn.parallel.DistributedDataParallel(model, device_ids=[LOCAL_RANK], output_device=LOCAL_RANK)
    return nn.parallel.DistributedDataParallel(model)


def smart_optimizer(model: nn.Module, name: str = "Adam", lr: float = 0.001, momentum: float = 0.9,
                    decay: float = 1e-5) -> torch.optim.Optimizer:
    """YOLOv5's optimizer: parameter groups biases (no decay), weights (``decay``), normalisation weights (no
    decay); see utils.training.build_optimizer."""
    return build_optimizer(model, name, lr, momentum, decay)


def smart_resume(ckpt: dict[str, Any], optimizer: torch.optim.Optimizer, ema: ModelEMA | None = None,
                 weights: str = "yolov5s.pt", epochs: int = 300, resume: bool = True) -> tuple[float, int, int]:
    """Continue from checkpoint ``ckpt``: load its optimizer and EMA state; returns (best fitness, first epoch,
    total epochs). Without ``resume``, a checkpoint trained past ``epochs`` fine-tunes that many more."""
    best_fitness, start_epoch = 0.0, ckpt["epoch"] + 1
    if ckpt.get("optimizer") is not None:
        optimizer.load_state_dict(ckpt["optimizer"])
        best_fitness = ckpt.get("best_fitness") or 0.0
    if ema is not None and ckpt.get("ema") is not None:
        state = ckpt["ema"]
        state = state.float().state_dict() if isinstance(state, nn.Module) else state
        ema.ema.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
        ema.updates = ckpt.get("updates", 0)
    if resume and start_epoch <= 0:
        raise UserError(f"{weights} has finished training; nothing to resume. Start a new run with --weights "
                        f"{weights}")
    if epochs < start_epoch:
        LOGGER.info(f"{weights}: {ckpt['epoch']} epochs trained already; fine-tuning {epochs} epochs more")
        epochs += ckpt["epoch"]
    return best_fitness, start_epoch, epochs
