"""Mixed precision for training: which autocast (if any) a device gets, and the CUDA AMP sanity check.

``--amp auto`` (the default) picks, per device:
- CUDA: fp16 autocast with a GradScaler, after a check that the model's fp16 outputs match its fp32 outputs on a
  fixed input (some GPUs and drivers produce NaN or zeros in fp16); if they do not, fp32 with a warning.
- CPU with native bf16 (oneDNN reports it: AVX512-BF16 or AMX): bf16 autocast and channels-last tensors, which
  oneDNN runs about 2x faster than fp32 for YOLOv5n at 256 px (SPEC: 62 -> 130 img/s per training step).
- CPU without native bf16 (AVX2, AVX-512 without bf16): fp32 with channels-last tensors, the fastest exact path
  there (a yolov5n forward + backward at 256 px, batch 16, under an AVX2 ISA cap: 0.81x of contiguous fp32).
- anything else: fp32.
``--amp on`` also uses bf16 on a CPU without native support (emulated, usually slower; said in a warning),
``--amp off`` is fp32 everywhere. Only the forward pass runs under autocast: the loss is computed in fp32 from
the float-cast predictions, and parameters, optimizer state, EMA and checkpoints stay fp32.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, ExitStack, nullcontext
from copy import deepcopy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

from utils.general import LOGGER, UserError
from utils.torch_utils import de_parallel

AMP_CHOICES = ("auto", "on", "off")
CHECK_IMGSZ = 128  # input size of the CUDA sanity check (any multiple of 32 works)
CHECK_RTOL, CHECK_ATOL = 0.05, 0.05  # fp16 outputs within 5% (or 0.05 absolute) of fp32 pass


@dataclass(frozen=True)
class AmpPolicy:
    """How the training loop runs its forward pass: ``dtype`` None means fp32 without autocast."""

    device_type: str
    dtype: torch.dtype | None = None
    channels_last: bool = False
    reason: str = ""

    @property
    def enabled(self) -> bool:
        return self.dtype is not None

    @property
    def fp16(self) -> bool:
        """fp16 needs loss scaling (GradScaler) and gives validation in half precision; bf16 needs neither."""
        return self.dtype == torch.float16

    @property
    def name(self) -> str:
        return {torch.float16: "fp16", torch.bfloat16: "bf16"}.get(self.dtype, "fp32")

    def autocast(self) -> AbstractContextManager:
        return torch.autocast(self.device_type, dtype=self.dtype) if self.enabled else nullcontext()

    def training_forward(self) -> ExitStack:
        """The context of a training forward pass: the autocast and, for channels-last on the CPU,
        DenseConcatGrads."""
        stack = ExitStack()
        stack.enter_context(self.autocast())
        if self.channels_last and self.device_type == "cpu" and self.enabled:  # for bf16 kernels; fp32 lost 0.11x
            stack.enter_context(DenseConcatGrads())
        return stack

    def grad_scaler(self) -> torch.amp.GradScaler:
        return torch.amp.GradScaler("cuda", enabled=self.fp16)

    def describe(self) -> str:
        layout = " + channels-last" if self.channels_last else ""
        mode = f"{self.name} autocast{layout}" if self.enabled else f"fp32{layout}"
        return f"{mode} on {self.device_type.upper()} ({self.reason})"


def cpu_has_native_bf16() -> bool:
    """True when oneDNN runs bf16 natively on this CPU (AVX512-BF16 or AMX); checked via /proc/cpuinfo when the
    oneDNN query is unavailable."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a build without oneDNN or without the private query
        pass
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(f in flags.split() for f in ("avx512_bf16", "amx_bf16"))


def select_amp(choice: str, device_type: str, native_bf16: bool | None = None) -> AmpPolicy:
    """The AmpPolicy for ``--amp choice`` on ``device_type`` ('cuda', 'cpu', 'mps', ...) before any model check.
    ``native_bf16`` overrides the CPU capability query (tests)."""
    if choice not in AMP_CHOICES:
        raise UserError(f"--amp {choice!r} is not a choice; use one of {', '.join(AMP_CHOICES)}")
    cuda_layout = device_type == "cuda"  # channels-last helps cuDNN in every precision (as before --amp)
    if choice == "off":
        return AmpPolicy(device_type, None, cuda_layout, "--amp off")
    if device_type == "cuda":
        return AmpPolicy("cuda", torch.float16, True, f"--amp {choice}")
    if device_type == "cpu":
        native = cpu_has_native_bf16() if native_bf16 is None else native_bf16
        if native:
            return AmpPolicy("cpu", torch.bfloat16, True, f"--amp {choice}, CPU has native bf16")
        if choice == "on":
            LOGGER.warning("WARNING: --amp on: this CPU has no native bf16 (AVX512-BF16/AMX); bf16 is emulated "
                           "and usually slower than fp32 (--amp auto picks fp32 here)")
            return AmpPolicy("cpu", torch.bfloat16, True, "--amp on, bf16 emulated")
        return AmpPolicy("cpu", None, True, "--amp auto, CPU without native bf16: fp32 channels-last")
    if choice == "on":
        LOGGER.warning(f"WARNING: --amp on: no mixed precision for device type '{device_type}'; training in fp32")
    return AmpPolicy(device_type, None, False, f"no mixed precision on {device_type}")


def outputs_match(
    reference: torch.Tensor, candidate: torch.Tensor, rtol: float = CHECK_RTOL, atol: float = CHECK_ATOL
) -> bool:
    """True when ``candidate`` (an autocast output) is finite and close to the fp32 ``reference``."""
    candidate = candidate.float()
    return bool(torch.isfinite(candidate).all()) and torch.allclose(candidate, reference.float(), rtol, atol)


def check_amp(model: torch.nn.Module, policy: AmpPolicy, imgsz: int = CHECK_IMGSZ) -> AmpPolicy:
    """Run the model (a copy, eval mode) on a fixed input in fp32 and under the policy's autocast; the policy
    when the outputs match, else fp32 with a warning (YOLOv5's AMP check, on a seeded input instead of an
    image)."""
    if not policy.enabled:
        return policy
    bare = de_parallel(model)
    probe = deepcopy(bare).eval()
    device = next(bare.parameters()).device
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, imgsz, imgsz, generator=generator).to(device)
    with torch.no_grad():
        reference = probe(x)[0]
        with policy.autocast():
            candidate = probe(x)[0]
    del probe
    if outputs_match(reference, candidate):
        LOGGER.info(f"AMP: checks passed ({policy.name} outputs match fp32)")
        return policy
    LOGGER.warning(f"WARNING: AMP check failed ({policy.name} outputs differ from fp32 or are not finite); "
                   f"training in fp32. Use --amp off to skip this check")
    return AmpPolicy(policy.device_type, None, policy.channels_last, f"{policy.name} check failed")


def _dense_channels_last(grad: torch.Tensor) -> torch.Tensor | None:
    if grad.dim() == 4 and not grad.is_contiguous(memory_format=torch.channels_last):
        return grad.contiguous(memory_format=torch.channels_last)
    return None  # keep the gradient as it is


class DenseConcatGrads(TorchFunctionMode):
    """Within this context, every 4-D input of a concatenation gets its gradient as a dense channels-last tensor.

    The backward of a channel concatenation (C3, SPPF, Concat, most plug-in modules) hands each input a channel
    slice of the concatenated gradient, strided in channels-last; CPU kernels such as SiLU's backward in bf16 run
    about 8x slower on such a slice than on a dense copy (16x32x64x64: 4.9 ms vs 0.6 ms; the copy 0.2 ms). For a
    yolov5n bf16 training step that is about 8% of its time. Only the layout changes, not the values. A mode
    rather than module hooks: it covers any module's torch.cat and leaves no state on the model."""

    def __torch_function__(
        self, func: Callable, types: tuple[type, ...], args: tuple = (), kwargs: dict[str, Any] | None = None
    ) -> Any:
        kwargs = kwargs or {}
        if func in _CONCATENATIONS:
            for t in args[0] if args else kwargs["tensors"]:
                if isinstance(t, torch.Tensor) and t.requires_grad and t.dim() == 4:
                    t.register_hook(_dense_channels_last)
        return func(*args, **kwargs)


_CONCATENATIONS = (torch.cat, torch.concat, torch.concatenate)
