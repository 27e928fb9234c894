"""GhostNet blocks in YOLOv5's form (Han et al., "GhostNet: More Features from Cheap Operations", CVPR 2020,
arXiv 1911.11907), used by the official models/hub/yolov5s-ghost.yaml.

A ghost convolution computes half of its output channels with an ordinary convolution and derives the other half
from them with a cheap depth-wise 5x5 convolution. Attribute names are the official ones (``cv1``/``cv2``;
``conv``/``shortcut``; C3Ghost's ``m``) so official state dicts load unchanged.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn as nn

from models.layers import C1_C2, C3, Conv, DWConv


class GhostConv(nn.Module):
    """(N, c1, H, W) -> (N, c2, H/s, W/s), c2 even.

    ``cv1`` = Conv(c1, c2/2, k, s, g) gives the primary half; ``cv2`` = depth-wise 5x5 Conv on it gives the
    ghost half; the output is their concatenation [primary, ghost].
    """

    yaml_args: ClassVar[str] = C1_C2

    def __init__(
        self, c1: int, c2: int, k: int = 1, s: int = 1, g: int = 1, act: bool | nn.Module = True
    ) -> None:
        super().__init__()
        if c2 % 2:
            raise ValueError(f"GhostConv: output channels must be even (primary + ghost halves), got c2={c2}")
        c_ = c2 // 2
        self.cv1 = Conv(c1, c_, k, s, None, g, act=act)
        self.cv2 = Conv(c_, c_, 5, 1, None, c_, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        primary = self.cv1(x)
        return torch.cat((primary, self.cv2(primary)), 1)


class GhostBottleneck(nn.Module):
    """Ghost bottleneck: (N, c1, H, W) -> (N, c2, H/s, W/s), s in {1, 2}.

    ``conv``: GhostConv to c2/2, a depth-wise k x k stride-2 Conv (no activation) when s == 2, GhostConv to c2
    (no activation). ``shortcut``: identity when s == 1 and c1 == c2, else a projection as in GhostNet: a
    depth-wise k x k Conv of stride s and a 1x1 Conv to c2 (no activations). Output: conv(x) + shortcut(x).
    (Official YOLOv5 only projects at s == 2, and fails on s == 1 with c1 != c2; its layouts load unchanged.)
    """

    yaml_args: ClassVar[str] = C1_C2

    def __init__(self, c1: int, c2: int, k: int = 3, s: int = 1) -> None:
        super().__init__()
        if s not in (1, 2):
            raise ValueError(f"GhostBottleneck: stride must be 1 or 2, got {s}")
        c_ = c2 // 2
        self.conv = nn.Sequential(
            GhostConv(c1, c_, 1, 1),
            DWConv(c_, c_, k, s, act=False) if s == 2 else nn.Identity(),
            GhostConv(c_, c2, 1, 1, act=False),
        )
        self.shortcut = (
            nn.Identity() if s == 1 and c1 == c2
            else nn.Sequential(DWConv(c1, c1, k, s, act=False), Conv(c1, c2, 1, 1, act=False))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) + self.shortcut(x)


class C3Ghost(C3):
    """C3 whose ``n`` inner blocks are GhostBottlenecks (stride 1); ``shortcut`` has no effect (always residual)."""

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = True, g: int = 1, e: float = 0.5) -> None:
        super().__init__(c1, c2, n, shortcut, g, e)
        c_ = int(c2 * e)
        self.m = nn.Sequential(*(GhostBottleneck(c_, c_) for _ in range(n)))
