"""Resampling layers of official YOLOv5: Contract (space to depth by ``gain``), Expand (its inverse, depth to
space) and DWConvTranspose2d (a depth-wise transposed convolution for learned upsampling).

Contract's channel order is the official one (row offset major, column offset minor, then the input channel),
which differs from ``models.layers.space_to_depth`` (Focus, SPD-Conv); Expand inverts Contract exactly.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn as nn

from models.layers import C1_C2, PLAIN


class Contract(nn.Module):
    """(N, C, H, W) -> (N, C * gain**2, H / gain, W / gain); H and W must be multiples of ``gain``."""

    yaml_args: ClassVar[str] = PLAIN  # yaml arguments: [gain]
    spatial_multiple: ClassVar[int] = 2

    def __init__(self, gain: int = 2) -> None:
        super().__init__()
        self.gain = gain

    @staticmethod
    def yaml_c2(c1: int, args: list[int]) -> int:
        return c1 * (args[0] if args else 2) ** 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        s = self.gain
        x = x.view(n, c, h // s, s, w // s, s)  # (n, c, h', row offset, w', column offset)
        return x.permute(0, 3, 5, 1, 2, 4).reshape(n, c * s * s, h // s, w // s)


class Expand(nn.Module):
    """(N, C, H, W) -> (N, C / gain**2, H * gain, W * gain); C must be a multiple of ``gain**2``."""

    yaml_args: ClassVar[str] = PLAIN  # yaml arguments: [gain]

    def __init__(self, gain: int = 2) -> None:
        super().__init__()
        self.gain = gain

    @staticmethod
    def yaml_c2(c1: int, args: list[int]) -> int:
        return c1 // (args[0] if args else 2) ** 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        s = self.gain
        x = x.view(n, s, s, c // s**2, h, w)  # (n, row offset, column offset, c', h, w)
        return x.permute(0, 3, 4, 1, 5, 2).reshape(n, c // s**2, h * s, w * s)


class DWConvTranspose2d(nn.ConvTranspose2d):
    """Transposed convolution with groups = gcd(c1, c2) (depth-wise when c1 == c2), with bias.

    Args: c1, c2 channels, k kernel, s stride, p1 padding, p2 output padding.
    Shape: (N, c1, H, W) -> (N, c2, (H - 1) * s - 2 * p1 + k + p2, likewise for W).
    """

    yaml_args: ClassVar[str] = C1_C2

    def __init__(self, c1: int, c2: int, k: int = 1, s: int = 1, p1: int = 0, p2: int = 0) -> None:
        super().__init__(c1, c2, k, s, p1, p2, groups=math.gcd(c1, c2))
