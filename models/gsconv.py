"""GSConv and the slim-neck blocks (Li et al., "Slim-neck by GSConv: A better design paradigm of detector
architectures for autonomous vehicles", arXiv 2206.02424).

GSConv mixes a dense convolution with a cheap depth-wise one and interleaves their channels (channel shuffle),
so that the information of the dense half reaches every part of the output. The slim-neck puts GSConv in
place of the neck's Convs and VoVGSCSP (a one-shot aggregation CSP block of GS bottlenecks) in place of its C3s.
Attribute names follow the authors' code (cv1, cv2, shuf, conv_lighting, shortcut, gsb, cv3).

Differences from the authors' YOLOv5 code (their state dicts load, but outputs differ):
- Activation: their Convs (inside GSConv too) use Mish; here every Conv keeps YOLOv5's SiLU (or the model
  yaml's ``activation``), so a slim-neck trained with their code needs ``activation: nn.Mish()`` to match.
- Channel order: their shuffle takes the even channels of [dense, depth-wise] and then the odd ones
  ([d0, d2, .., w0, w2, .., d1, d3, .., w1, w3, ..]), the inverse permutation of the interleave here
  ([d0, w0, d1, w1, ..]). Both spread the dense half over the output, but the layer after a GSConv sees its
  input channels in another order, so weights trained there do not reproduce their outputs here.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn as nn

from models.layers import C1_C2, C1_C2_N, Conv, DWConv


def channel_shuffle(x: torch.Tensor) -> torch.Tensor:
    """Interleave the two channel halves: (B, 2C, H, W) [a0..aC-1, b0..bC-1] -> [a0, b0, a1, b1, ...].

    Batch, height and width keep their own dimensions throughout (view -> transpose -> view of (B, 2, C, H, W)),
    so exported graphs have no reshape that merges the batch into other axes (TensorRT needs that).
    """
    b, c, h, w = x.shape
    return x.view(b, 2, c // 2, h, w).transpose(1, 2).reshape(b, c, h, w)


def _half_channels(c2: int, name: str) -> int:
    if c2 % 2:
        raise ValueError(f"{name}: output channels must be even (two halves are concatenated), got c2={c2}")
    return c2 // 2


class GSConv(nn.Module):
    """GSConv: (B, c1, H, W) -> (B, c2, H/s, W/s), c2 even.

    ``cv1`` = Conv(c1, c2/2, k, s, g) (dense), ``cv2`` = depth-wise 5x5 Conv on its output; the two are
    concatenated and their channels interleaved (``channel_shuffle``: the inverse of the authors' even/odd
    order, and SiLU where they use Mish; see the module docstring).
    """

    yaml_args: ClassVar[str] = C1_C2

    def __init__(
        self, c1: int, c2: int, k: int = 1, s: int = 1, g: int = 1, act: bool | nn.Module = True
    ) -> None:
        super().__init__()
        c_ = _half_channels(c2, type(self).__name__)
        self.cv1 = Conv(c1, c_, k, s, None, g, act=act)
        self.cv2 = Conv(c_, c_, 5, 1, None, c_, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.cv1(x)
        return channel_shuffle(torch.cat((x1, self.cv2(x1)), 1))


class GSConvns(GSConv):
    """GSConv with the normative shuffle: a learned 1x1 convolution (no bias) then ReLU replaces the interleave.

    (B, c1, H, W) -> (B, c2, H/s, W/s); k, s, g and act apply to the dense part as in GSConv. The authors' code
    ignored k and s and applied ``nn.ReLU`` to a tensor (constructing a module instead of activating).
    """

    yaml_args: ClassVar[str] = C1_C2

    def __init__(
        self, c1: int, c2: int, k: int = 1, s: int = 1, g: int = 1, act: bool | nn.Module = True
    ) -> None:
        super().__init__(c1, c2, k, s, g, act)
        self.shuf = nn.Conv2d(c2, c2, 1, 1, 0, bias=False)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.cv1(x)
        return self.act(self.shuf(torch.cat((x1, self.cv2(x1)), 1)))


class GSBottleneck(nn.Module):
    """GS bottleneck: (B, c1, H, W) -> (B, c2, H/s, W/s).

    ``conv_lighting`` = GSConv(c1, c_, 1, s) then GSConv(c_, c2, k, 1, act=False) with c_ = c2 * e, plus the
    ``shortcut`` = Conv(c1, c2, 1, s, act=False) projection.
    """

    yaml_args: ClassVar[str] = C1_C2

    def __init__(self, c1: int, c2: int, k: int = 3, s: int = 1, e: float = 0.5) -> None:
        super().__init__()
        c_ = int(c2 * e)
        self.conv_lighting = nn.Sequential(GSConv(c1, c_, 1, s), GSConv(c_, c2, k, 1, act=False))
        self.shortcut = Conv(c1, c2, 1, s, act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_lighting(x) + self.shortcut(x)


class GSBottleneckC(GSBottleneck):
    """Cheap GS bottleneck: as GSBottleneck with a 1x1 depth-wise shortcut (DWConv(c1, c2, 1, s, act=False))."""

    yaml_args: ClassVar[str] = C1_C2

    def __init__(self, c1: int, c2: int, k: int = 3, s: int = 1, e: float = 0.5) -> None:
        super().__init__(c1, c2, k, s, e)
        self.shortcut = DWConv(c1, c2, 1, s, act=False)


class VoVGSCSP(nn.Module):
    """VoV-GSCSP: (B, c1, H, W) -> (B, c2, H, W), the slim-neck's replacement for C3.

    ``cv1`` -> ``n`` GS bottlenecks (c_ -> c_, c_ = c2 * e) in ``gsb``; ``cv2`` is the bypass; ``cv3`` merges the
    concatenation [bypass, bottlenecks]. ``shortcut`` and ``g`` are accepted so that C3's yaml arguments work; a GS
    bottleneck always has its projection shortcut.
    """

    yaml_args: ClassVar[str] = C1_C2_N

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = True, g: int = 1, e: float = 0.5) -> None:
        super().__init__()
        c_ = int(c2 * e)
        self.cv1 = Conv(c1, c_, 1, 1)
        self.cv2 = Conv(c1, c_, 1, 1)
        self.gsb = nn.Sequential(*(self.bottleneck(c_) for _ in range(n)))
        self.cv3 = Conv(2 * c_, c2, 1)

    @staticmethod
    def bottleneck(c_: int) -> nn.Module:
        return GSBottleneck(c_, c_, e=1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cv3(torch.cat((self.cv2(x), self.gsb(self.cv1(x))), 1))  # bypass first, as the authors


class VoVGSCSPC(VoVGSCSP):
    """Cheap VoV-GSCSP: ``n`` cheap GS bottlenecks (GSBottleneckC, hidden width c_ / 2) in ``gsb``."""

    yaml_args: ClassVar[str] = C1_C2_N

    @staticmethod
    def bottleneck(c_: int) -> nn.Module:
        return GSBottleneckC(c_, c_, e=0.5)
