"""SCConv: spatial and channel reconstruction convolution.

Li, Wen, Zhao and Zhang, "SCConv: Spatial and Channel Reconstruction Convolution for Feature Redundancy",
CVPR 2023. A spatial reconstruction unit (SRU) separates informative from less informative positions using the
GroupNorm scale factors and cross-adds the two parts; a channel reconstruction unit (CRU) splits the channels, treats
one part with cheap group-wise + point-wise convolutions and the other with a point-wise convolution plus reuse, and
fuses both with a softmax over their pooled channel statistics.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn as nn

from models.layers import C1_C2_N, C3, KEEP, exporting


def _require_divisible(c: int, m: int, what: str) -> None:
    """Raise a ValueError naming ``what`` unless the channel count c is divisible by m."""
    if c % m:
        raise ValueError(f"{what}: {c} channels must be divisible by {m}")


class SRU(nn.Module):
    """Spatial reconstruction unit: (N, C, H, W) -> (N, C, H, W), C even.

    ``w = gamma / sum(gamma)`` (GroupNorm scales), ``r = sigmoid(gn(x) * w)``; informative weights
    ``W1 = where(r > t, 1, r)``, non-informative ``W2 = where(r > t, 0, r)`` (t = ``gate_threshold``);
    ``X1 = W1 * x``, ``X2 = W2 * x``; output ``cat(X1a + X2b, X1b + X2a)`` over the channel halves a, b.
    Exported, the mask ``r > t`` is computed without a comparison (``gate_weights_export``), with the same values.
    The GroupNorm uses ``gcd(group_num, C)`` groups so that it divides C at every model scale.
    """

    yaml_args: ClassVar[str] = KEEP

    def __init__(self, c: int, group_num: int = 16, gate_threshold: float = 0.5) -> None:
        super().__init__()
        _require_divisible(c, 2, "SRU (its two channel halves are cross-added)")
        self.gn = nn.GroupNorm(math.gcd(group_num, c), c)
        self.gate_threshold = gate_threshold

    def gate_weights(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(W1, W2), each (N, C, H, W): the informative and non-informative weights of every element of x."""
        gamma = self.gn.weight
        r = torch.sigmoid(self.gn(x) * (gamma / gamma.sum()).view(1, -1, 1, 1))
        if exporting():  # NCNN has no comparison layer: the same 0 / 1 mask in arithmetic, see gate_weights_export
            return self.gate_weights_export(r)
        informative = r > self.gate_threshold
        return torch.where(informative, torch.ones_like(r), r), torch.where(informative, torch.zeros_like(r), r)

    def gate_weights_export(self, r: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``gate_weights`` from r without a comparison: ``ceil(clamp(r - t, 0, 1))`` is exactly 1 where r > t (a
        difference of two unequal floats is never 0, and ceil maps all of (0, 1] to 1) and 0 elsewhere, so
        ``W2 = r - mask * r`` (r - r = 0 or r - 0 = r) and ``W1 = W2 + mask`` are ``where``'s values bit for bit."""
        informative = torch.ceil(torch.clamp(r - self.gate_threshold, 0, 1))
        w2 = r - informative * r
        return w2 + informative, w2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w1, w2 = self.gate_weights(x)
        x1, x2 = w1 * x, w2 * x
        x1a, x1b = x1.chunk(2, 1)
        x2a, x2b = x2.chunk(2, 1)
        return torch.cat((x1a + x2b, x1b + x2a), 1)


class CRU(nn.Module):
    """Channel reconstruction unit: (N, C, H, W) -> (N, C, H, W).

    Split C into an upper part of ``alpha * C`` channels and a lower part; both are squeezed by ``squeeze_ratio``
    with 1x1 convs. Upper: group-wise k x k conv (``group_size`` groups, bias) + point-wise conv to C (Y1).
    Lower: point-wise conv to C - C_low/r concatenated with the squeezed lower part (Y2, C channels).
    Fuse: ``beta1, beta2 = softmax(avgpool(Y1), avgpool(Y2))`` per channel (the paper's beta1 + beta2 = 1;
    the public code normalises over all 2C channels instead, which shrinks the output by about 1/C);
    output ``beta1 * Y1 + beta2 * Y2``.
    """

    yaml_args: ClassVar[str] = KEEP

    def __init__(
        self, c: int, alpha: float = 0.5, squeeze_ratio: int = 2, group_size: int = 2, group_kernel_size: int = 3
    ) -> None:
        super().__init__()
        self.c_up = c_up = int(alpha * c)
        self.c_low = c_low = c - c_up
        if not (0 < c_up < c):
            raise ValueError(f"CRU: alpha={alpha} must split {c} channels into two non-empty parts")
        _require_divisible(c_up, squeeze_ratio, "CRU upper part (squeeze_ratio)")
        _require_divisible(c_low, squeeze_ratio, "CRU lower part (squeeze_ratio)")
        s_up, s_low = c_up // squeeze_ratio, c_low // squeeze_ratio
        _require_divisible(s_up, group_size, "CRU squeezed upper part (group_size)")
        _require_divisible(c, group_size, "CRU output (group_size)")
        self.squeeze_up = nn.Conv2d(c_up, s_up, 1, bias=False)
        self.squeeze_low = nn.Conv2d(c_low, s_low, 1, bias=False)
        self.gwc = nn.Conv2d(s_up, c, group_kernel_size, padding=group_kernel_size // 2, groups=group_size)
        self.pwc_up = nn.Conv2d(s_up, c, 1, bias=False)
        self.pwc_low = nn.Conv2d(s_low, c - s_low, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        up, low = x.split((self.c_up, self.c_low), 1)
        up, low = self.squeeze_up(up), self.squeeze_low(low)
        y1 = self.gwc(up) + self.pwc_up(up)
        y2 = torch.cat((self.pwc_low(low), low), 1)
        return self.fuse_branches(y1, y2)

    @staticmethod
    def fuse_branches(y1: torch.Tensor, y2: torch.Tensor) -> torch.Tensor:
        """Per-channel softmax of the two branches' global averages, then their weighted sum."""
        if exporting():
            return CRU.fuse_branches_export(y1, y2)
        beta = torch.stack((y1.mean((2, 3)), y2.mean((2, 3)))).softmax(0)[..., None, None]  # (2, N, C, 1, 1)
        return beta[0] * y1 + beta[1] * y2

    @staticmethod
    def fuse_branches_export(y1: torch.Tensor, y2: torch.Tensor) -> torch.Tensor:
        """``fuse_branches`` with the pair of averages side by side on a last axis of 2 rather than stacked on a new
        first axis and unbound (PNNX leaves that unbind, which NCNN lacks); the same softmax of the same two values."""
        beta = torch.cat((y1.mean((2, 3), keepdim=True), y2.mean((2, 3), keepdim=True)), 3).softmax(3)  # (N, C, 1, 2)
        beta1, beta2 = beta.chunk(2, 3)
        return beta1 * y1 + beta2 * y2


class ScConv(nn.Module):
    """SCConv block, SRU then CRU: (N, c, H, W) -> (N, c, H, W); channels in = out (yaml rule KEEP)."""

    yaml_args: ClassVar[str] = KEEP

    def __init__(
        self,
        c: int,
        group_num: int = 16,
        gate_threshold: float = 0.5,
        alpha: float = 0.5,
        squeeze_ratio: int = 2,
        group_size: int = 2,
        group_kernel_size: int = 3,
    ) -> None:
        super().__init__()
        self.sru = SRU(c, group_num, gate_threshold)
        self.cru = CRU(c, alpha, squeeze_ratio, group_size, group_kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cru(self.sru(x))


class C3_ScConv(C3):
    """C3 with ``n`` ScConv blocks (on c_ = c2 * e channels) in place of the Bottlenecks: (N, c1, H, W) ->
    (N, c2, H, W). ``shortcut`` and ``g`` are accepted so that C3 yaml rows work unchanged; ScConv uses neither."""

    yaml_args: ClassVar[str] = C1_C2_N

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = True, g: int = 1, e: float = 0.5) -> None:
        super().__init__(c1, c2, n, shortcut, g, e)
        self.m = nn.Sequential(*(ScConv(int(c2 * e)) for _ in range(n)))
