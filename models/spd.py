"""SPD-Conv: space-to-depth followed by a non-strided convolution.

Sunkara and Luo, "No More Strided Convolutions or Pooling: A New CNN Building Block for Low-Resolution Images and
Small Objects", ECML-PKDD 2022 (arXiv 2208.03641). Replaces a stride-2 convolution: instead of skipping pixels, every
2x2 block of pixels is moved into the channels, so the downsampling discards nothing.

Two layouts: ``SPDConv`` is the paper's text order (space-to-depth, then a non-strided Conv from 4 * c1 channels);
``SpaceToDepth`` alone is the layer of the authors' own YOLOv5 code, where a stride-1 Conv runs *before* it at
full resolution and the next layer takes the 4x channels (see models/yolov5s_SPDConvAuthors.yaml).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.layers import C1_C2, PLAIN, Conv, conv_after_space_to_depth, space_to_depth


def space_to_depth_padded(x: torch.Tensor) -> torch.Tensor:
    """``space_to_depth`` after zero-padding an odd H or W by one row (bottom) or column (right).

    (N, C, H, W) -> (N, 4C, ceil(H / 2), ceil(W / 2)): no pixel is dropped, and the size equals that of the 3x3
    stride-2 Conv the block replaces (which zero-pads too).
    """
    return space_to_depth(padded_to_even(x))


def padded_to_even(x: torch.Tensor) -> torch.Tensor:
    """x with one zero row (bottom) and / or column (right) added where H or W is odd."""
    h, w = x.shape[-2:]
    if h % 2 or w % 2:
        x = F.pad(x, (0, w % 2, 0, h % 2))
    return x


class SPDConv(Conv):
    """Space-to-depth by 2, then Conv(4 * c1, c2, k, s) + BatchNorm + SiLU.

    Args: as ``Conv``; c1 is the channel count of the input *before* space-to-depth. ``s`` is the stride of the
    convolution after the space-to-depth (1 in the paper), so the total downsampling is 2 * s.
    Shape: (N, c1, H, W) -> (N, c2, ceil(H / 2), ceil(W / 2)) for s=1 and the default padding.

    Odd H or W: zero-padded to an even size first (``space_to_depth_padded``), so no pixel is dropped.
    Channel order of the space-to-depth (``models.layers.space_to_depth``): ``x[..., ::2, ::2]``,
    ``x[..., 1::2, ::2]``, ``x[..., ::2, 1::2]``, ``x[..., 1::2, 1::2]``. ``fuse()`` folds the BatchNorm (from Conv).
    Exported (NCNN has no stepped slice): ``F.pixel_unshuffle`` with the conv weight's input channels reordered to
    its channel order, the same function (``models.layers.conv_after_space_to_depth``).
    """

    yaml_args: ClassVar[str] = C1_C2
    spatial_multiple: ClassVar[int] = 2  # space-to-depth pairs rows and columns

    def __init__(
        self,
        c1: int,
        c2: int,
        k: int | Sequence[int] = 1,
        s: int = 1,
        p: int | Sequence[int] | None = None,
        g: int = 1,
        d: int = 1,
        act: bool | nn.Module = True,
    ) -> None:
        super().__init__(4 * c1, c2, k, s, p, g, d, act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(conv_after_space_to_depth(self.conv, padded_to_even(x))))


class SpaceToDepth(nn.Module):
    """Space-to-depth by 2 as a layer of its own (the SPD-Conv authors' YOLOv5 layout), no parameters.

    Shape: (N, C, H, W) -> (N, 4C, ceil(H / 2), ceil(W / 2)); odd sizes are zero-padded as in ``SPDConv``.
    In a yaml it takes no arguments and its output has 4x the channels of its input.
    """

    yaml_args: ClassVar[str] = PLAIN

    @staticmethod
    def yaml_c2(c1: int, args: list[int]) -> int:
        return 4 * c1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return space_to_depth_padded(x)
