"""The image-classification head of YOLOv5 v7.0's ``-cls`` models.

``Classify(c1, c2)``: (N, c1, H, W) features (or a list of them, concatenated on channels) -> (N, c2) class logits:
a 1x1 Conv to 1280 channels, global average pooling, dropout, a linear layer. Attribute names as official (conv,
pool, drop, linear) so state-dict keys match. ``ClassificationModel`` (models/yolo.py) puts it on a detection
backbone.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from models.layers import Conv


class Classify(nn.Module):
    """c1 input channels, c2 classes; k, s, p, g as Conv's for the 1x1 projection to 1280 channels."""

    hidden = 1280  # as EfficientNet-B0's head, the width official YOLOv5 uses

    def __init__(self, c1: int, c2: int, k: int = 1, s: int = 1, p: int | None = None, g: int = 1,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.conv = Conv(c1, self.hidden, k, s, p, g)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(p=dropout, inplace=True)
        self.linear = nn.Linear(self.hidden, c2)

    def forward(self, x: torch.Tensor | list[torch.Tensor]) -> torch.Tensor:
        if isinstance(x, list):
            x = torch.cat(x, 1)
        return self.linear(self.drop(self.pool(self.conv(x)).flatten(1)))
