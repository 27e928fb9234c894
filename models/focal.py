"""Focal modulation, the token mixer of FocalNet, used in place of SPPF.

Yang, Li, Dai and Gao, "Focal Modulation Networks", NeurIPS 2022 (arXiv 2203.11926). A linear projection gives a
query, a context and L + 1 gates; L stacked depth-wise convolutions of growing kernel gather context at growing
ranges, a global average adds image-level context, the gated sum is turned into a modulator by a 1x1 conv and
multiplies the query element-wise.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.layers import KEEP


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an NCHW tensor (each pixel's C-vector normalised): (N, C, H, W) -> same."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias, self.eps).permute(
            0, 3, 1, 2
        )


class FocalModulation(nn.Module):
    """Focal modulation on NCHW tensors: (N, dim, H, W) -> (N, dim, H, W) (yaml rule KEEP).

    Args:
        dim: channels in and out. focal_window: kernel of the first depth-wise conv; level l uses
        ``focal_factor * l + focal_window`` (all must be odd). focal_level: L, number of context levels.
        bias: bias of the input projection ``proj_in`` and of the modulator conv ``h``. proj_drop: dropout after
        the output projection. use_postln_in_modulation: LayerNorm over channels after ``q * h(ctx)``.
        normalize_modulator: divide the gated context by L + 1.
    The input projection is ``proj_in`` (FocalNet's ``f``): parse_model sets ``.f`` (the yaml 'from') on layers.
    """

    yaml_args: ClassVar[str] = KEEP

    def __init__(
        self,
        dim: int,
        focal_window: int = 3,
        focal_level: int = 2,
        focal_factor: int = 2,
        bias: bool = True,
        proj_drop: float = 0.0,
        use_postln_in_modulation: bool = False,
        normalize_modulator: bool = False,
    ) -> None:
        super().__init__()
        kernels = [focal_factor * level + focal_window for level in range(focal_level)]
        if focal_level < 1 or any(k % 2 == 0 or k < 1 for k in kernels):
            raise ValueError(
                f"FocalModulation: focal_level must be >= 1 and every kernel (focal_factor * l + focal_window) odd "
                f"and positive so that the map size is kept, got kernels {kernels}"
            )
        self.focal_level = focal_level
        self.normalize_modulator = normalize_modulator
        self.proj_in = nn.Conv2d(dim, 2 * dim + focal_level + 1, 1, bias=bias)
        self.focal_layers = nn.ModuleList(
            nn.Sequential(nn.Conv2d(dim, dim, k, padding=k // 2, groups=dim, bias=False), nn.GELU()) for k in kernels
        )
        self.act = nn.GELU()
        self.h = nn.Conv2d(dim, dim, 1, bias=bias)
        self.ln = LayerNorm2d(dim) if use_postln_in_modulation else nn.Identity()
        self.proj = nn.Conv2d(dim, dim, 1)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        q, ctx, gates = self.proj_in(x).split((c, c, self.focal_level + 1), 1)
        ctx_all = 0
        for level, layer in enumerate(self.focal_layers):
            ctx = layer(ctx)
            ctx_all = ctx_all + ctx * gates[:, level : level + 1]
        ctx_global = self.act(ctx.mean((2, 3), keepdim=True))
        ctx_all = ctx_all + ctx_global * gates[:, self.focal_level :]
        if self.normalize_modulator:
            ctx_all = ctx_all / (self.focal_level + 1)
        out = self.ln(q * self.h(ctx_all))
        return self.proj_drop(self.proj(out))
