"""MixConv: mixed depth-wise convolution (Tan and Le, "MixConv: Mixed Depthwise Convolutional Kernels",
BMVC 2019, arXiv 1907.09595), in official YOLOv5's form (``m``: one conv per kernel size, ``bn``, ``act``).

The output channels are split into groups, one per kernel size; each group is a grouped convolution of the whole
input with its kernel, the groups are concatenated, then BatchNorm and SiLU.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar

import torch
import torch.nn as nn

from models.layers import C1_C2


def mixconv_split(c2: int, kernels: Sequence[int], equal_ch: bool = True) -> list[int]:
    """Output channels per kernel size.

    ``equal_ch``: about equal; output channel i goes to group floor(i * (n - 1e-6) / (c2 - 1)), the official
    rule (so official state-dict shapes match, e.g. 11 channels over 3 kernels split 4, 3, 4). Otherwise each
    group gets a share inversely proportional to its kernel area, so every group has about the same number of
    weights.
    """
    n = len(kernels)
    if equal_ch:
        group = torch.linspace(0, n - 1e-6, c2).floor().long()
        return torch.bincount(group, minlength=n).tolist()
    inverse_area = torch.tensor([1.0 / k**2 for k in kernels], dtype=torch.float64)
    return [int(c) for c in torch.round(c2 * inverse_area / inverse_area.sum())]


class MixConv2d(nn.Module):
    """(N, c1, H, W) -> (N, c2, H/s, W/s) with one kernel size per channel group (odd kernels)."""

    yaml_args: ClassVar[str] = C1_C2

    def __init__(self, c1: int, c2: int, k: Sequence[int] = (1, 3), s: int = 1, equal_ch: bool = True) -> None:
        super().__init__()
        split = mixconv_split(c2, k, equal_ch)
        if sum(split) != c2 or min(split) < 1:
            raise ValueError(f"MixConv2d: cannot split {c2} output channels over kernels {list(k)} ({split})")
        self.m = nn.ModuleList(
            nn.Conv2d(c1, c, kernel, s, kernel // 2, groups=math.gcd(c1, c), bias=False) for kernel, c in zip(k, split)
        )
        self.bn = nn.BatchNorm2d(c2)
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(torch.cat([m(x) for m in self.m], 1)))
