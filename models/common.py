"""The public face of ``models/``: every building block and module family, importable from one place.

Official YOLOv5 code and checkpoints name ``models.common.<Class>``, so ``from models.common import Conv, SPDConv``
keeps working. This file only re-exports; the leaves (``layers.py`` and the family files) never import it.
``DetectMultiBackend``, ``AutoShape`` and ``Detections`` (inference wrappers, which build on ``models/yolo.py``,
which reads this file) are resolved on first access by the module ``__getattr__``, so importing this file never
cycles.
"""

from __future__ import annotations

import importlib

from models.acnet import ACConv  # noqa: F401
from models.akconv import AKConv  # noqa: F401
from models.classify_head import Classify  # noqa: F401
from models.csp import C3SPP, BottleneckCSP, C3x, CrossConv  # noqa: F401
from models.focal import FocalModulation  # noqa: F401
from models.ghost import C3Ghost, GhostBottleneck, GhostConv  # noqa: F401
from models.gsconv import GSBottleneck, GSBottleneckC, GSConv, GSConvns, VoVGSCSP, VoVGSCSPC  # noqa: F401
from models.layers import (  # noqa: F401
    C3,
    SPP,
    SPPF,
    Bottleneck,
    Concat,
    Conv,
    DWConv,
    Focus,
    autopad,
    fold_bn,
    fuse_conv_and_bn,
    space_to_depth,
)
from models.mixconv import MixConv2d  # noqa: F401
from models.resample import Contract, DWConvTranspose2d, Expand  # noqa: F401
from models.scconv import CRU, SRU, C3_ScConv, ScConv  # noqa: F401
from models.segment_head import Proto  # noqa: F401
from models.spd import SpaceToDepth, SPDConv  # noqa: F401
from models.transformer import C3TR, TransformerBlock, TransformerLayer  # noqa: F401

_LAZY = {"DetectMultiBackend": "models.backends", "AutoShape": "models.autoshape", "Detections": "models.autoshape"}


def __getattr__(name: str) -> type:
    """``from models.common import DetectMultiBackend, AutoShape`` (official YOLOv5 import paths), imported lazily."""
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'models.common' has no attribute '{name}'")
