"""Transformer blocks in YOLOv5's form, used by the official models/hub/yolov5s-transformer.yaml (C3TR).

Vision-transformer encoder layers (Dosovitskiy et al., "An Image is Worth 16x16 Words", arXiv 2010.11929) applied
to a feature map whose H * W positions are the tokens. Differences from the textbook layer, kept for official
state-dict compatibility: no LayerNorm, separate bias-free q/k/v projections in front of
``nn.MultiheadAttention`` (which projects again), a bias-free two-layer MLP without activation, and a learned
position embedding that is a Linear map of the tokens themselves. Attribute names are the official ones.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn as nn

from models.layers import C1_C2, C3, Conv


class TransformerLayer(nn.Module):
    """Tokens (L, N, c) -> (L, N, c): x + attention(q(x), k(x), v(x)), then x + fc2(fc1(x))."""

    def __init__(self, c: int, num_heads: int) -> None:
        super().__init__()
        if c % num_heads:
            raise ValueError(f"TransformerLayer: {c} channels do not split into {num_heads} heads")
        self.q = nn.Linear(c, c, bias=False)
        self.k = nn.Linear(c, c, bias=False)
        self.v = nn.Linear(c, c, bias=False)
        self.ma = nn.MultiheadAttention(embed_dim=c, num_heads=num_heads)
        self.fc1 = nn.Linear(c, c, bias=False)
        self.fc2 = nn.Linear(c, c, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.ma(self.q(x), self.k(x), self.v(x), need_weights=False)[0] + x
        return self.fc2(self.fc1(x)) + x


class TransformerBlock(nn.Module):
    """(N, c1, H, W) -> (N, c2, H, W): optional 1x1 ``conv`` to c2 (when c1 != c2), tokens plus their learned
    position embedding ``linear``, then ``num_layers`` TransformerLayers (``tr``); c2 divisible by num_heads.
    (TransformerLayer works on token sequences, so only this block and C3TR are yaml modules.)"""

    yaml_args: ClassVar[str] = C1_C2

    def __init__(self, c1: int, c2: int, num_heads: int = 4, num_layers: int = 1) -> None:
        super().__init__()
        self.conv = Conv(c1, c2) if c1 != c2 else None
        self.linear = nn.Linear(c2, c2)
        self.tr = nn.Sequential(*(TransformerLayer(c2, num_heads) for _ in range(num_layers)))
        self.c2 = c2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.conv is not None:
            x = self.conv(x)
        n, _, h, w = x.shape
        tokens = x.flatten(2).permute(2, 0, 1)  # (H * W, N, c2): sequence first, as nn.MultiheadAttention expects
        tokens = self.tr(tokens + self.linear(tokens))
        return tokens.permute(1, 2, 0).reshape(n, self.c2, h, w)


class C3TR(C3):
    """C3 whose inner block is one TransformerBlock of ``n`` layers with 4 heads (c2 * e divisible by 4)."""

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = True, g: int = 1, e: float = 0.5) -> None:
        super().__init__(c1, c2, n, shortcut, g, e)
        c_ = int(c2 * e)
        self.m = TransformerBlock(c_, c_, 4, n)
