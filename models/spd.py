"""SPD-Conv: space-to-depth followed by a non-strided convolution.

Sunkara and Luo, "No More Strided Convolutions or Pooling: A New CNN Building Block for Low-Resolution Images and
Small Objects", ECML-PKDD 2022 (arXiv 2208.03641). Replaces a stride-2 convolution: instead of skipping pixels, every
2x2 block of pixels is moved into the channels, so the downsampling discards nothing.
"""

import torch.nn.functional as F

from models.layers import C1_C2, Conv, space_to_depth


class SPDConv(Conv):
    """Space-to-depth by 2, then Conv(4 * c1, c2, k, s) + BatchNorm + SiLU.

    Args: as ``Conv``; c1 is the channel count of the input *before* space-to-depth. ``s`` is the stride of the
    convolution after the space-to-depth (1 in the paper), so the total downsampling is 2 * s.
    Shape: (N, c1, H, W) -> (N, c2, ceil(H / 2), ceil(W / 2)) for s=1 and the default padding.

    Odd H or W: the input is zero-padded by one row (bottom) or column (right) to an even size before the
    space-to-depth, so no pixel is dropped and the output size ceil(H / 2) equals that of the 3x3 stride-2 Conv the
    block replaces (which zero-pads too).
    Channel order of the space-to-depth (``models.layers.space_to_depth``): ``x[..., ::2, ::2]``,
    ``x[..., 1::2, ::2]``, ``x[..., ::2, 1::2]``, ``x[..., 1::2, 1::2]``. ``fuse()`` folds the BatchNorm (from Conv).
    """

    yaml_args = C1_C2
    spatial_multiple = 2  # space-to-depth pairs rows and columns

    def __init__(self, c1, c2, k=1, s=1, p=None, g=1, d=1, act=True):
        super().__init__(4 * c1, c2, k, s, p, g, d, act)

    def forward(self, x):
        h, w = x.shape[-2:]
        if h % 2 or w % 2:
            x = F.pad(x, (0, w % 2, 0, h % 2))
        return super().forward(space_to_depth(x))
