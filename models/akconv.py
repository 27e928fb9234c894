"""AKConv, alterable kernel convolution (Zhang et al. 2023, "AKConv: Convolutional Kernel with Arbitrary Sampled
Shapes and Arbitrary Number of Parameters", arXiv 2311.11587).

A convolution with ``num_param`` sampling points in any number (not only k x k): each output location samples
the input at an initial pattern of points moved by learned offsets, bilinearly, and a column convolution mixes
the samples. Attribute names (``p_conv``, ``conv``) follow the authors' code so their state dicts load.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from models.layers import C1_C2, exporting, fuse_conv_and_bn


def initial_pattern(num_param: int) -> torch.Tensor:
    """(2, N) initial sampling points, rows then columns: rows of round(sqrt(N)) points plus a remainder row.

    N=5 gives (0,0) (0,1) (1,0) (1,1) (2,0); N=9 gives the 3x3 square. Points are relative to the output
    location's top-left anchor, as in the authors' code.
    """
    per_row = round(math.sqrt(num_param))
    points = [(i // per_row, i % per_row) for i in range(num_param)]
    return torch.tensor(points, dtype=torch.float32).t().contiguous()


class _RowGradient(torch.autograd.Function):
    """Identity on the samples whose backward also returns the gradient of the sampled ``rows``.

    Samples are ``s[m] = sum_k weights[m, k] * rows[index[m, k]]`` (one ``embedding_bag``). Autograd's own gradient
    for ``rows`` scatters 4 * M rows one by one; here it is computed as a second ``embedding_bag`` over the
    transposed bags: the (sample, corner) pairs grouped by the row they read (one sort of the indices).
    """

    @staticmethod
    def forward(ctx, samples, rows, index, weights):
        ctx.save_for_backward(index, weights)
        ctx.num_rows = rows.shape[0]
        return samples

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        index, weights = ctx.saved_tensors
        grad_rows = None
        if ctx.needs_input_grad[1]:
            flat = index.view(-1)
            order = torch.sort(flat).indices  # (sample, corner) pairs grouped by the row they read
            counts = torch.bincount(flat, minlength=ctx.num_rows)
            offsets = counts.cumsum(0).sub_(counts)
            per_sample = weights.reshape(-1)[order]
            grad_rows = F.embedding_bag(order.div_(4, rounding_mode="floor"), grad, offsets, mode="sum",
                                        per_sample_weights=per_sample)
        return grad, grad_rows, None, None


def bilinear_rows(rows: torch.Tensor, index: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """(M, C) samples ``sum_k weights[m, k] * rows[index[m, k]]`` from rows (R, C), index (M, 4), weights (M, 4).

    Gradients flow to ``rows`` (via ``_RowGradient``) and to ``weights`` (embedding_bag's own backward).
    """
    samples = F.embedding_bag(index, rows.detach(), per_sample_weights=weights, mode="sum")
    return _RowGradient.apply(samples, rows, index, weights) if rows.requires_grad else samples


def scale_grad(t: torch.Tensor, scale: float) -> torch.Tensor:
    """Identity in the forward pass whose backward multiplies the gradient by ``scale`` (exact forward values)."""
    d = t.detach()
    return d + (t - d) * scale


class AKConv(nn.Module):
    """Alterable kernel convolution: (B, c1, H, W) -> (B, c2, h, w), h = (H - 1) // stride + 1 (same for w).

    ``p_conv`` (3x3, the layer's stride, zero-initialised weight and bias) predicts offsets (B, 2N, h, w): the first
    N channels move rows, the last N columns. Sampling point n of output (i, j) is at
    ``(i * stride + row_n + dy, j * stride + col_n + dx)``, clamped inside the map (H - 1, W - 1) and read
    bilinearly. The N samples are mixed by ``conv`` = Conv2d kernel (N, 1) stride (N, 1) -> BatchNorm -> SiLU,
    as in the authors' code (weights load unchanged).

    Computation: the four corner weights and flat indices of every sampling point are small (B*h*w*N, 4) tensors;
    the samples are one ``embedding_bag`` over the channels-last input, laid out (B*h*w, N*c1) so that the column
    convolution is one matrix product. Nothing of size 4 x samples is created.
    ONNX export (tracing) uses the same function through ``grid_sample`` (opset 16+), exportable and equal to
    1e-4. See benchmarks/bench_akconv.py for speed and memory against the plain gather implementation.

    Offset learning rate: the paper's code means the offset branch to learn at 0.1x the learning rate. Here the
    gradients of ``p_conv``'s weight and bias are multiplied by ``offset_lr_scale`` (0.1) in the backward pass.
    That equals a 0.1x learning rate only for SGD (with or without momentum) on parameters without weight decay:
    the optimizer adds weight decay after the scaling, so ``p_conv.weight`` (which train.py decays) still decays
    at the full rate, and its steps differ from a true 0.1x learning rate once it is non-zero (the bias, not
    decayed, is exact). Adam-type optimisers divide by the gradient's running scale, so there the 0.1 changes
    almost nothing. A separate optimizer parameter group at 0.1x lr would be exact for every optimizer.

    Differences from the authors' code (weights load unchanged; outputs differ where noted):
    - Their learning-rate hook (a full backward hook on ``p_conv`` that builds scaled generators and returns
      nothing) is a no-op: there the offset branch trains at the full learning rate.
    - Border sampling: they clamp the four corners and the position separately, so a point on or beyond the last
      row or column, or beyond the first, reads both of its clamped corners with weight 1 each: the border pixel
      counts twice per axis (four times at a corner). Here the position is clamped first and a corner clamped
      onto its neighbour gets weight 0, so the bilinear weights always sum to 1.
    """

    yaml_args: ClassVar[str] = C1_C2
    onnx_opset: ClassVar[int] = 16  # bilinear sampling at learned offsets: GridSample entered the standard opset in 16

    offset_lr_scale: float = 0.1

    pattern: torch.Tensor  # buffer (2, num_param): the initial sampling points

    def __init__(self, c1: int, c2: int, num_param: int, stride: int = 1, bias: bool | None = None) -> None:
        super().__init__()
        if not isinstance(num_param, int) or num_param < 1:
            raise ValueError(f"AKConv: num_param (sampling points) must be a positive integer, got {num_param!r}")
        if not isinstance(stride, int) or stride < 1:
            raise ValueError(f"AKConv: stride must be a positive integer, got {stride!r}")
        self.num_param = num_param
        self.stride = stride
        self.conv = nn.Sequential(
            nn.Conv2d(c1, c2, kernel_size=(num_param, 1), stride=(num_param, 1), bias=bool(bias)),
            nn.BatchNorm2d(c2),
            nn.SiLU(),
        )
        self.p_conv = nn.Conv2d(c1, 2 * num_param, kernel_size=3, padding=1, stride=stride)
        nn.init.zeros_(self.p_conv.weight)
        nn.init.zeros_(self.p_conv.bias)  # zero offsets at the start: the initial pattern itself
        self.register_buffer("pattern", initial_pattern(num_param), persistent=False)

    def offsets(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 2N, h, w) offsets; their parameters get ``offset_lr_scale`` times the gradient."""
        weight, bias = self.p_conv.weight, self.p_conv.bias
        if torch.is_grad_enabled() and not torch.jit.is_tracing():
            weight = scale_grad(weight, self.offset_lr_scale)
            bias = None if bias is None else scale_grad(bias, self.offset_lr_scale)
        return F.conv2d(x, weight, bias, self.p_conv.stride, self.p_conv.padding)

    def positions(self, offset: torch.Tensor, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Sampling rows and columns, each (B, N, h, w), clamped inside a height x width map."""
        _, _, h, w = offset.shape
        n, t = self.num_param, offset.dtype
        rows_0 = torch.arange(h, device=offset.device, dtype=t).mul_(self.stride).view(1, 1, h, 1)
        cols_0 = torch.arange(w, device=offset.device, dtype=t).mul_(self.stride).view(1, 1, 1, w)
        pattern = self.pattern.to(t)
        rows = (offset[:, :n] + rows_0 + pattern[0].view(1, n, 1, 1)).clamp(0, height - 1)
        cols = (offset[:, n:] + cols_0 + pattern[1].view(1, n, 1, 1)).clamp(0, width - 1)
        return rows, cols

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if exporting():
            return self.forward_export(x)
        b, c, height, width = x.shape
        if b * height * width >= 2**31:
            raise ValueError(f"AKConv: input {tuple(x.shape)} has too many pixels for int32 indices; use a smaller "
                            "batch")
        pixels = x.permute(0, 2, 3, 1).contiguous()  # channels-last: the sampled rows, and a faster p_conv
        offset = self.offsets(pixels.permute(0, 3, 1, 2))
        h, w = offset.shape[2:]
        rows, cols = (p.permute(0, 2, 3, 1) for p in self.positions(offset, height, width))  # (B, h, w, N)
        r0, c0 = rows.detach().floor(), cols.detach().floor()
        fr, fc = rows - r0, cols - c0  # fractional parts carry the gradient of the positions
        r0, c0 = r0.int(), c0.int()  # int32 indices: half the memory of int64 and a faster sort
        r1, c1 = (r0 + 1).clamp_(max=height - 1), (c0 + 1).clamp_(max=width - 1)  # weight 0 when clamped
        first_row = torch.arange(b, device=x.device, dtype=torch.int32).view(b, 1, 1, 1) * (height * width)
        r0, r1 = r0 * width + first_row, r1 * width + first_row
        index = torch.stack((r0 + c0, r0 + c1, r1 + c0, r1 + c1), -1).view(-1, 4)
        gr, gc = 1 - fr, 1 - fc
        weights = torch.stack((gr * gc, gr * fc, fr * gc, fr * fc), -1).view(-1, 4)
        samples = bilinear_rows(pixels.view(-1, c), index, weights)  # (B*h*w*N, c1)
        y = self.column_conv(samples.view(b * h * w, self.num_param, c))  # (B*h*w, c2)
        y = y.view(b, h, w, -1).permute(0, 3, 1, 2).contiguous()  # NCHW for the BatchNorm and the next layers
        return self.conv[2](self.conv[1](y))

    def column_conv(self, samples: torch.Tensor) -> torch.Tensor:
        """``conv[0]`` as a matrix product: samples (P, N, c1) -> (P, c2).

        The weight is (c2, c1, N); whichever of weight and samples is smaller is reordered to match the other
        (the samples in deep, low-resolution layers, the weight elsewhere).
        """
        p, n, c = samples.shape
        conv = self.conv[0]
        if samples.numel() < conv.weight.numel():
            samples, weight = samples.transpose(1, 2).reshape(p, c * n), conv.weight.reshape(conv.out_channels, c * n)
        else:
            samples, weight = samples.view(p, n * c), conv.weight.reshape(conv.out_channels, c, n).transpose(1, 2)
        return F.linear(samples, weight.reshape(conv.out_channels, n * c), conv.bias)

    def forward_export(self, x: torch.Tensor) -> torch.Tensor:
        """The same function with ``grid_sample`` (ONNX GridSample) and the column conv as a 1x1 conv."""
        b, c, height, width = x.shape
        offset = self.offsets(x)
        h, w = offset.shape[2:]
        rows, cols = self.positions(offset, height, width)
        # align_corners=True maps -1 and 1 to the first and last pixel; max() keeps a 1-pixel map at -1
        grid = torch.stack((cols * (2 / max(width - 1, 1)) - 1, rows * (2 / max(height - 1, 1)) - 1), -1)
        samples = F.grid_sample(x, grid.view(b, self.num_param * h, w, 2), mode="bilinear", padding_mode="border",
                                align_corners=True)  # (B, c1, N*h, w): (B, c1, N, h, w) in memory
        column_conv = self.conv[0]
        weight = column_conv.weight.reshape(column_conv.out_channels, c * self.num_param, 1, 1)
        y = F.conv2d(samples.view(b, c * self.num_param, h, w), weight, column_conv.bias)
        return self.conv[2](self.conv[1](y))

    @torch.no_grad()
    def fuse(self) -> AKConv:
        """Fold the BatchNorm into the column convolution (eval-mode equivalent); ``conv[1]`` becomes an identity."""
        if isinstance(self.conv[1], nn.BatchNorm2d):
            self.conv[0] = fuse_conv_and_bn(self.conv[0], self.conv[1])
            self.conv[1] = nn.Identity()
        return self
