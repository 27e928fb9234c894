"""ACNet asymmetric convolution block.

Ding et al., "ACNet: Strengthening the Kernel Skeletons for Powerful CNN via Asymmetric Convolution Blocks",
ICCV 2019 (arXiv 1908.03930). Training uses three parallel branches (k x k, 1 x k, k x 1, each with BatchNorm);
since convolution is linear, the BN-folded 1 x k and k x 1 kernels add onto the centre row and column of the
k x k kernel, so inference needs one k x k convolution.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.layers import C1_C2, Conv, autopad, fold_bn


class ACConv(nn.Module):
    """Asymmetric convolution block: act(BN(conv_kxk(x)) + BN(conv_1xk(x)) + BN(conv_kx1(x))).

    Args as ``Conv`` (c1 in, c2 out, k odd kernel, s stride, p padding, g groups, d dilation, act).
    Shape: (N, c1, H, W) -> (N, c2, H', W'), H' and W' as for ``Conv(c1, c2, k, s, p, g, d)``.
    The branches are plain ``nn.Conv2d`` + ``nn.BatchNorm2d`` (not ``Conv``) so that ``Model.fuse()``, which calls
    ``fuse()`` on every submodule, reaches only ``ACConv.fuse()``. After ``fuse()`` the block is one k x k
    convolution with bias (``conv``) and the branch modules are None; outputs equal the eval-mode block.
    """

    yaml_args: ClassVar[str] = C1_C2

    def __init__(
        self,
        c1: int,
        c2: int,
        k: int = 3,
        s: int = 1,
        p: int | None = None,
        g: int = 1,
        d: int = 1,
        act: bool | nn.Module = True,
    ) -> None:
        super().__init__()
        if k % 2 == 0:
            raise ValueError(f"ACConv needs an odd kernel size to align its 1x{k} and {k}x1 branches, got k={k}")
        p = autopad(k, p, d)
        p_side = p - d * (k // 2)  # padding of the short side of the 1xk and kx1 kernels, aligned to the centre
        if p_side < 0:
            raise ValueError(f"ACConv: padding {p} is smaller than the kernel's half-width {d * (k // 2)}")
        self.conv = nn.Conv2d(c1, c2, k, s, p, dilation=d, groups=g, bias=False)
        self.bn = nn.BatchNorm2d(c2)
        self.conv_1xk = nn.Conv2d(c1, c2, (1, k), s, (p_side, p), dilation=d, groups=g, bias=False)
        self.bn_1xk = nn.BatchNorm2d(c2)
        self.conv_kx1 = nn.Conv2d(c1, c2, (k, 1), s, (p, p_side), dilation=d, groups=g, bias=False)
        self.bn_kx1 = nn.BatchNorm2d(c2)
        self.act = Conv.default_act if act is True else act if isinstance(act, nn.Module) else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.conv_1xk is None:  # fused
            return self.act(self.conv(x))
        y = self.bn(self.conv(x)) + self.bn_1xk(self.conv_1xk(x)) + self.bn_kx1(self.conv_kx1(x))
        return self.act(y)

    @torch.no_grad()
    def fuse(self) -> ACConv:
        """Fold the BatchNorms and add the asymmetric kernels into the k x k kernel (eval-mode equivalent)."""
        if self.conv_1xk is None:
            return self
        k = self.conv.kernel_size[0]
        kernel, bias = fold_bn(self.conv.weight, None, self.bn)
        k_1xk, b_1xk = fold_bn(self.conv_1xk.weight, None, self.bn_1xk)
        k_kx1, b_kx1 = fold_bn(self.conv_kx1.weight, None, self.bn_kx1)
        half = k // 2
        kernel = kernel + F.pad(k_1xk, (0, 0, half, half)) + F.pad(k_kx1, (half, half, 0, 0))
        c = self.conv
        fused = nn.Conv2d(
            c.in_channels, c.out_channels, c.kernel_size, c.stride, c.padding, dilation=c.dilation,
            groups=c.groups, bias=True,
        ).to(device=c.weight.device, dtype=c.weight.dtype)
        fused.weight.copy_(kernel)
        fused.bias.copy_(bias + b_1xk + b_kx1)
        self.conv = fused.requires_grad_(False)
        self.bn = self.conv_1xk = self.bn_1xk = self.conv_kx1 = self.bn_kx1 = None
        return self
