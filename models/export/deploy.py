"""Which module of a model an operator a runtime lacks comes from, for the one-line refusal of an export.

Converters name the operator they cannot express (an NCNN layer type, a TFLite op, an MNN op); users graft modules,
not operators, so the refusal names the module class in the model that brings that operator in. The table lists the
operators of this project's modules that are not plain convolution / activation / resampling arithmetic.
"""

import torch.nn as nn

from utils.general import UserError

# operator (lower case, as converters spell it, without separators) -> module classes that use it
OPERATOR_MODULES = {
    "gridsample": ("AKConv",),
    "gather": ("AKConv",),
    "gathernd": ("AKConv",),
    "groupnorm": ("SRU", "ScConv", "C3_ScConv"),
    "layernorm": ("FocalModulation", "LayerNorm2d", "TransformerLayer"),
    "erf": ("FocalModulation",),
    "gelu": ("FocalModulation",),
    # space-to-depth; exported as pixel_unshuffle (models.layers.space_to_depth), which NCNN runs as Reorg
    "pixelunshuffle": ("SPDConv", "SpaceToDepth", "Focus"),
    "reorg": ("SPDConv", "SpaceToDepth", "Focus"),
    "spacetodepth": ("SPDConv", "SpaceToDepth", "Focus"),
    "depthtospace": ("SPDConv", "SpaceToDepth", "Focus"),
    "multiheadattention": ("TransformerLayer", "C3TR"),
    "ceil": ("SRU", "ScConv", "C3_ScConv"),  # SRU's gate r > threshold, exported as ceil(clamp(r - threshold, 0, 1))
}


def operator_module(model: nn.Module, op: str) -> str:
    """The class name of the first module in ``model`` known to use ``op``, else 'a layer'."""
    key = "".join(ch for ch in op.lower().rsplit(".", 1)[-1] if ch.isalnum())
    owners = OPERATOR_MODULES.get(key, ())
    for m in model.modules():
        if type(m).__name__ in owners:
            return type(m).__name__
    return "a layer"


def unsupported_layer_error(model: nn.Module, runtime: str, op: str) -> UserError:
    """The one-line refusal: module, operator and runtime."""
    return UserError(f"--include {runtime}: {operator_module(model, op)} needs the operator {op}, which {runtime} "
                     f"does not have; export this model to onnx or openvino instead")
