"""Other CSP blocks of official YOLOv5: BottleneckCSP (YOLOv5 before v4.0, and yolov5-panet of old), C3x (C3 of
CrossConvs), C3SPP (C3 around an SPP), and CrossConv itself.

CSP: Wang et al., "CSPNet: A New Backbone that can Enhance Learning Capability of CNN", CVPRW 2020
(arXiv 1911.11929). Attribute names are the official ones so official state dicts load unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
import torch.nn as nn

from models.layers import C1_C2, C1_C2_N, C3, SPP, Bottleneck, Conv


class CrossConv(nn.Module):
    """A k x k convolution factored into 1 x k (stride (1, s)) then k x 1 (stride (s, 1)), plus the input when
    ``shortcut``, c1 == c2 and s == 1: (N, c1, H, W) -> (N, c2, H/s, W/s). (The official block also tries the
    residual at s == 2, where the sizes differ and it fails.)"""

    yaml_args: ClassVar[str] = C1_C2

    def __init__(
        self, c1: int, c2: int, k: int = 3, s: int = 1, g: int = 1, e: float = 1.0, shortcut: bool = False
    ) -> None:
        super().__init__()
        c_ = int(c2 * e)
        self.cv1 = Conv(c1, c_, (1, k), (1, s))
        self.cv2 = Conv(c_, c2, (k, 1), (s, 1), g=g)
        self.add = shortcut and c1 == c2 and s == 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class BottleneckCSP(nn.Module):
    """The original CSP bottleneck block: (N, c1, H, W) -> (N, c2, H, W).

    Branch 1: ``cv1`` (Conv 1x1 to c_ = c2 * e), ``n`` Bottlenecks ``m``, plain 1x1 conv ``cv3``.
    Branch 2: plain 1x1 conv ``cv2`` of the input. Their concatenation goes through ``bn`` and ``act`` (SiLU),
    then ``cv4`` (Conv 1x1 to c2). Unlike C3, the two branch ends are bare convolutions sharing one BatchNorm.
    """

    yaml_args: ClassVar[str] = C1_C2_N

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = True, g: int = 1, e: float = 0.5) -> None:
        super().__init__()
        c_ = int(c2 * e)
        self.cv1 = Conv(c1, c_, 1, 1)
        self.cv2 = nn.Conv2d(c1, c_, 1, 1, bias=False)
        self.cv3 = nn.Conv2d(c_, c_, 1, 1, bias=False)
        self.cv4 = Conv(2 * c_, c2, 1, 1)
        self.bn = nn.BatchNorm2d(2 * c_)
        self.act = nn.SiLU()
        self.m = nn.Sequential(*(Bottleneck(c_, c_, shortcut, g, e=1.0) for _ in range(n)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.cat((self.cv3(self.m(self.cv1(x))), self.cv2(x)), 1)
        return self.cv4(self.act(self.bn(y)))


class C3x(C3):
    """C3 whose ``n`` inner blocks are CrossConvs (3x3 as 1x3 then 3x1, residual when ``shortcut``)."""

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = True, g: int = 1, e: float = 0.5) -> None:
        super().__init__(c1, c2, n, shortcut, g, e)
        c_ = int(c2 * e)
        self.m = nn.Sequential(*(CrossConv(c_, c_, 3, 1, g, 1.0, shortcut) for _ in range(n)))


class C3SPP(C3):
    """C3 whose inner block is an SPP with max-pool kernels ``k`` (channels c2 * e in and out)."""

    yaml_args: ClassVar[str] = C1_C2  # no repeat count: its yaml arguments are [c2, k]

    def __init__(
        self,
        c1: int,
        c2: int,
        k: Sequence[int] = (5, 9, 13),
        shortcut: bool = True,
        g: int = 1,
        e: float = 0.5,
    ) -> None:
        super().__init__(c1, c2, 1, shortcut, g, e)
        c_ = int(c2 * e)
        self.m = SPP(c_, c_, k)
