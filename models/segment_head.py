"""Mask prototypes of YOLOv5 v7.0 instance segmentation (YOLACT, Bolya et al. 2019, section 3.2).

``Proto(c1, c_, c2)``: (N, c1, H, W) P3 features -> (N, c2, 2H, 2W) prototype maps: 3x3 Conv -> nearest x2
upsample -> 3x3 Conv -> 1x1 Conv, attribute names as official (cv1, upsample, cv2, cv3) so state-dict keys match.
With P3 at stride 8 the prototypes are at 1/4 of the input. The ``Segment`` head that owns it lives beside
``Detect`` in models/yolo.py (official name ``models.yolo.Segment``).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from models.layers import Conv


class Proto(nn.Module):
    """Prototype branch: c1 input channels, c_ hidden channels, c2 prototypes (nm, 32 in official models)."""

    def __init__(self, c1: int, c_: int = 256, c2: int = 32) -> None:
        super().__init__()
        self.cv1 = Conv(c1, c_, k=3)
        self.upsample = nn.Upsample(scale_factor=2, mode="nearest")
        self.cv2 = Conv(c_, c_, k=3)
        self.cv3 = Conv(c_, c2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cv3(self.cv2(self.upsample(self.cv1(x))))
