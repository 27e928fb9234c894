"""Building blocks of YOLOv5 v6.0-v7.0: the leaf of ``models/`` (it imports only torch).

Attribute names (``conv``, ``bn``, ``cv1``, ``m`` ...) are those of the official implementation, so that
state-dict keys match official checkpoints one to one. Module-family files import their basics from here;
``models/common.py`` is the public face that re-exports everything, as YOLOv5 users expect.

The yaml contract lives on each module class, so that adding a module is: write the class, re-export it in
``models/common.py``, write the yaml. ``parse_model`` registers every class re-exported there that has
``yaml_args``; the optional attributes below are read where they matter.

- ``yaml_args``: how a yaml row's arguments become constructor arguments (one of the constants below).
- ``onnx_opset``: the lowest ONNX opset that expresses the module (export picks at least this; default 11).
- ``yaml_c2(c1, args)``: staticmethod giving the output channels of a ``PLAIN`` module (default: c1).
- ``spatial_multiple``: input height and width must be multiples of this (default 1; the contract test uses it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F

# Values of ``yaml_args``. ``c1`` is the input channel count (of the layer in ``from``), ``c2`` the first yaml
# argument scaled by width_multiple and rounded up to a multiple of 8.
C1_C2 = "c1_c2"  # Module(c1, c2, *args[1:])
C1_C2_N = "c1_c2_n"  # Module(c1, c2, n, *args[1:]): the repeat count goes inside the module
KEEP = "keep"  # Module(c1, *args[1:]): channels in = out; args[0], if given, must scale to c1
CONCAT = "concat"  # Module(*args) on a list of inputs; output channels = the sum of the inputs'
PLAIN = "plain"  # Module(*args) as written; output channels = yaml_c2(c1, args) if the class has it, else c1


def autopad(k: int | Sequence[int], p: int | Sequence[int] | None = None, d: int = 1) -> int | list[int]:
    """Padding that keeps the spatial size for stride 1 ('same'), for an int or per-axis kernel size."""
    if d > 1:
        k = d * (k - 1) + 1 if isinstance(k, int) else [d * (x - 1) + 1 for x in k]
    if p is None:
        p = k // 2 if isinstance(k, int) else [x // 2 for x in k]
    return p


class Conv(nn.Module):
    """Conv2d (no bias) -> BatchNorm2d -> activation (SiLU by default).

    Args: c1 in channels, c2 out channels, k kernel, s stride, p padding (None = same), g groups, d dilation,
    act True for SiLU, an ``nn.Module`` to use it, anything else for identity.
    Shape: (N, c1, H, W) -> (N, c2, ceil(H / s), ceil(W / s)) with the default padding and odd k.
    ``fuse()`` folds the BatchNorm into the convolution (eval-mode equivalent, for inference and export).
    """

    yaml_args: ClassVar[str] = C1_C2
    default_act: ClassVar[nn.Module] = nn.SiLU()

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
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, k, s, autopad(k, p, d), groups=g, dilation=d, bias=False)
        self.bn = nn.BatchNorm2d(c2)
        self.act = self.default_act if act is True else act if isinstance(act, nn.Module) else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))

    @torch.no_grad()
    def fuse(self) -> Conv:
        """Fold BatchNorm into the convolution; afterwards ``bn`` is an identity."""
        if isinstance(self.bn, nn.BatchNorm2d):
            self.conv = fuse_conv_and_bn(self.conv, self.bn)
            self.bn = nn.Identity()
        return self


def fuse_conv_and_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """Return a Conv2d (with bias) equal to ``bn(conv(x))`` in eval mode."""
    fused = nn.Conv2d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        conv.stride,
        conv.padding,
        dilation=conv.dilation,
        groups=conv.groups,
        bias=True,
    ).to(conv.weight.device)
    kernel, bias = fold_bn(conv.weight, conv.bias, bn)
    fused.weight.copy_(kernel)
    fused.bias.copy_(bias)
    return fused.requires_grad_(False)


def fold_bn(
    weight: torch.Tensor, bias: torch.Tensor | None, bn: nn.BatchNorm2d
) -> tuple[torch.Tensor, torch.Tensor]:
    """Kernel and bias of a convolution followed by ``bn`` (eval statistics) as one convolution."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    bias = torch.zeros_like(bn.running_mean) if bias is None else bias
    return weight * scale.reshape(-1, 1, 1, 1), bn.bias + (bias - bn.running_mean) * scale


class DWConv(Conv):
    """Depth-wise convolution: groups = gcd(c1, c2)."""

    def __init__(
        self, c1: int, c2: int, k: int | Sequence[int] = 1, s: int = 1, d: int = 1, act: bool | nn.Module = True
    ) -> None:
        super().__init__(c1, c2, k, s, g=torch.gcd(torch.tensor(c1), torch.tensor(c2)).item(), d=d, act=act)


class Bottleneck(nn.Module):
    """1x1 Conv to c_ = c2 * e, 3x3 Conv to c2, plus the input when ``shortcut`` and c1 == c2."""

    yaml_args: ClassVar[str] = C1_C2

    def __init__(self, c1: int, c2: int, shortcut: bool = True, g: int = 1, e: float = 0.5) -> None:
        super().__init__()
        c_ = int(c2 * e)
        self.cv1 = Conv(c1, c_, 1, 1)
        self.cv2 = Conv(c_, c2, 3, 1, g=g)
        self.add = shortcut and c1 == c2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class C3(nn.Module):
    """CSP block with 3 convolutions: (N, c1, H, W) -> (N, c2, H, W).

    ``cv1`` feeds ``n`` bottlenecks, ``cv2`` is the bypass, ``cv3`` merges their concatenation.
    Subclasses replace ``self.m`` to swap the inner block (e.g. C3_ScConv).
    """

    yaml_args: ClassVar[str] = C1_C2_N

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = True, g: int = 1, e: float = 0.5) -> None:
        super().__init__()
        c_ = int(c2 * e)
        self.cv1 = Conv(c1, c_, 1, 1)
        self.cv2 = Conv(c1, c_, 1, 1)
        self.cv3 = Conv(2 * c_, c2, 1)
        self.m = nn.Sequential(*(Bottleneck(c_, c_, shortcut, g, e=1.0) for _ in range(n)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cv3(torch.cat((self.m(self.cv1(x)), self.cv2(x)), 1))


class SPP(nn.Module):
    """Spatial pyramid pooling (YOLOv3-SPP): parallel max-pools of kernels ``k``, concatenated."""

    yaml_args: ClassVar[str] = C1_C2

    def __init__(self, c1: int, c2: int, k: Sequence[int] = (5, 9, 13)) -> None:
        super().__init__()
        c_ = c1 // 2
        self.cv1 = Conv(c1, c_, 1, 1)
        self.cv2 = Conv(c_ * (len(k) + 1), c2, 1, 1)
        self.m = nn.ModuleList(nn.MaxPool2d(kernel_size=x, stride=1, padding=x // 2) for x in k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.cv1(x)
        return self.cv2(torch.cat([x] + [m(x) for m in self.m], 1))


class SPPF(nn.Module):
    """Fast SPP: three chained k x k max-pools, equal to SPP(k=(5, 9, 13)) for k=5 and cheaper."""

    yaml_args: ClassVar[str] = C1_C2

    def __init__(self, c1: int, c2: int, k: int = 5) -> None:
        super().__init__()
        c_ = c1 // 2
        self.cv1 = Conv(c1, c_, 1, 1)
        self.cv2 = Conv(c_ * 4, c2, 1, 1)
        self.m = nn.MaxPool2d(kernel_size=k, stride=1, padding=k // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.cv1(x)
        y1 = self.m(x)
        y2 = self.m(y1)
        return self.cv2(torch.cat((x, y1, y2, self.m(y2)), 1))


class Focus(nn.Module):
    """Space-to-depth by 2 then Conv (YOLOv5 up to v5.0): (N, c1, H, W) -> (N, c2, H/2, W/2), H and W even."""

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
        act: bool | nn.Module = True,
    ) -> None:
        super().__init__()
        self.conv = Conv(c1 * 4, c2, k, s, p, g, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv = self.conv
        return conv.act(conv.bn(conv_after_space_to_depth(conv.conv, x)))


def exporting() -> bool:
    """True while the model is traced or exported (TorchScript trace, ONNX, ``torch.export``): modules with a
    deploy form (the same function in operators every runtime has) switch to it."""
    return torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() or torch.compiler.is_exporting()


def space_to_depth(x: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, 4C, H/2, W/2): four blocks of C channels, the pixels (dy, dx) = (0, 0), (1, 0), (0, 1),
    (1, 1) of every 2x2 patch (top-left, bottom-left, top-right, bottom-right).

    Exporting: the same tensor from ``pixel_unshuffle`` (channel ``4c + 2dy + dx``) regrouped by a reshape and a
    permute, because NCNN has no stepped slice (``x[..., ::2, ::2]``) but has PixelUnshuffle (its Reorg layer).
    """
    if exporting():
        n, c = x.shape[:2]
        y = F.pixel_unshuffle(x, 2)
        h, w = y.shape[2:]
        # (N, c, dy, dx, h*w) -> (N, dx, dy, c, h*w): block dy + 2dx, channel c within it; 5-D at most (NCNN: 4-D
        # without the batch axis)
        return y.view(n, c, 2, 2, -1).permute(0, 3, 2, 1, 4).reshape(n, 4 * c, h, w)
    return torch.cat((x[..., ::2, ::2], x[..., 1::2, ::2], x[..., ::2, 1::2], x[..., 1::2, 1::2]), 1)


def conv_after_space_to_depth(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """``conv(space_to_depth(x))``. Exporting (ungrouped conv): the conv runs on ``F.pixel_unshuffle(x, 2)`` with
    its weight's input channels put in that order instead, so no regrouping of the activations is left in the
    graph (converters fold the reordered weight into a constant: one NCNN Reorg layer, then the Convolution)."""
    if not exporting() or not isinstance(conv, nn.Conv2d) or conv.groups != 1:
        return conv(space_to_depth(x))
    # input channel (dy + 2dx) * C + c of space_to_depth is channel 4c + 2dy + dx of pixel_unshuffle; a view and a
    # permute (not an index: TorchScript's operator check admits these) reorder the weight to match
    c2, c4, kh, kw = conv.weight.shape
    weight = conv.weight.view(c2, 2, 2, c4 // 4, kh, kw).permute(0, 3, 2, 1, 4, 5).reshape(c2, c4, kh, kw)
    return F.conv2d(F.pixel_unshuffle(x, 2), weight, conv.bias, conv.stride, conv.padding, conv.dilation)


class Concat(nn.Module):
    """Concatenate a list of tensors along ``dimension``."""

    yaml_args: ClassVar[str] = CONCAT

    def __init__(self, dimension: int = 1) -> None:
        super().__init__()
        self.d = dimension

    def forward(self, x: Sequence[torch.Tensor]) -> torch.Tensor:
        return torch.cat(x, self.d)
