"""Check TorchScript, ONNX and OpenVINO model files before anything in them runs.

A .torchscript file is a program: its methods can call any TorchScript operator, including ones that map files
into memory (``aten::from_file(..., shared=True)`` writes to disk), print, or reseed the random generators, and
``torch.jit.load`` itself runs a module's ``__setstate__``. So before loading, the archive's code must define no
``__setstate__`` (and its members must not unpack to more than ``MAX_UNPACKED_BYTES``); after loading, and before
any call, every method of every submodule (its inlined graph, nested blocks included) may use only the operators
in ``ALLOWED_OPS``, and no module may carry forward hooks. The list holds the tensor operators that this project's
own exports contain (every model yaml, traced at n scale, collected by walking the saved files), plus the
activations and layers the official model yamls may name. Anything else is refused with a UserError naming it.

An .onnx file is a program too, but a declarative one that ONNX Runtime interprets with its own operator set.
``check_onnx_file`` refuses, before a session is made, every way one reaches beyond computing detections from its
input: a tensor anywhere in the file (dense or sparse, initializer, attribute, subgraph, function, training graph:
``onnx_messages`` walks every field) stored in an external file ('../../secret' would be read into the model);
operators from a custom domain, local functions, subgraphs and any operator outside ``ONNX_OPS`` (those of this
project's exports; control flow such as If, Loop and Scan is not among them); and tensors larger than the input
justifies. For the last, the input's sizes are fixed (symbolic image sides at CHECK_IMGSZ), the shape arithmetic
on constants and known shapes is folded, and ONNX shape inference must then give every tensor a known size of at
most ELEMENTS_PER_INPUT_ELEMENT elements per input element (MIN_ELEMENT_LIMIT at least): a ConstantOfShape, Range,
Expand or Resize asking for a huge tensor, or whose size only the runtime could know, is refused.

An OpenVINO model folder is checked by ``check_openvino_ir`` before OpenVINO reads it: a small, entity-free IR xml
using only the standard operators in ``OPENVINO_LAYER_TYPES``, and a regular .bin in the same folder whose size is
what the xml's Const layers address.
"""

from __future__ import annotations

import math
import os
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import numpy as np
import torch

from utils.general import UserError
from utils.optional import require

ONNX_DOMAINS = ("", "ai.onnx")  # the standard operator set; exports of this project and of YOLOv5 use only it
MAX_UNPACKED_BYTES = 4 * 2**30  # far above any YOLOv5 export (yolov5x6 is about 0.6 GB in fp32)
# arange and expand are the ops that make tensors from sizes; exports size them by the input (Detect's grids: an
# arange per image side, an expand by anchors x 2). Sizes fixed in the file are bounded by these:
MAX_CONSTANT_ARANGE = 2**16  # numbers an arange with constant bounds may make
MAX_CONSTANT_EXPAND = 1024  # the product of an expand's constant sizes (Detect: anchors per level x 2)

ALLOWED_OPS = frozenset({
    # graph plumbing (no control flow, no calls: traced exports, inlined, have none)
    "prim::Constant", "prim::GetAttr", "prim::ListConstruct", "prim::ListUnpack", "prim::TupleConstruct",
    "prim::TupleUnpack", "prim::NumToTensor", "aten::Int", "aten::ScalarImplicit", "aten::size",
    # convolution, normalisation, pooling, resampling, attention (C3TR)
    "aten::_convolution", "aten::conv2d", "aten::conv_transpose2d", "aten::batch_norm", "aten::group_norm",
    "aten::layer_norm", "aten::max_pool2d", "aten::avg_pool2d", "aten::adaptive_avg_pool2d",
    "aten::upsample_nearest2d", "aten::upsample_bilinear2d", "aten::grid_sampler", "aten::constant_pad_nd",
    "aten::pad", "aten::linear", "aten::matmul", "aten::bmm", "aten::baddbmm", "aten::dropout",
    "aten::scaled_dot_product_attention",
    # activations a model yaml may choose (in place or not)
    "aten::sigmoid", "aten::sigmoid_", "aten::silu", "aten::silu_", "aten::relu", "aten::relu_",
    "aten::leaky_relu", "aten::leaky_relu_", "aten::hardswish", "aten::hardswish_", "aten::hardsigmoid",
    "aten::hardsigmoid_", "aten::hardtanh", "aten::hardtanh_", "aten::gelu", "aten::mish", "aten::mish_",
    "aten::elu", "aten::elu_", "aten::tanh", "aten::tanh_", "aten::softplus", "aten::softmax",
    # arithmetic, comparisons, reductions
    "aten::add", "aten::sub", "aten::mul", "aten::mul_", "aten::div", "aten::floor_divide", "aten::pow",
    "aten::reciprocal", "aten::clamp", "aten::ceil", "aten::gt", "aten::where", "aten::mean", "aten::sum",
    # shapes, and new tensors shaped like others
    "aten::cat", "aten::stack", "aten::chunk", "aten::split_with_sizes", "aten::view", "aten::reshape",
    "aten::flatten", "aten::unflatten", "aten::permute", "aten::transpose", "aten::contiguous", "aten::expand",
    "aten::squeeze", "aten::unsqueeze", "aten::select", "aten::slice", "aten::meshgrid", "aten::arange",
    "aten::to", "aten::zeros_like", "aten::ones_like", "aten::pixel_unshuffle",
})


# ONNX operators a file may use: those of this project's exports (every model yaml, static and --dynamic, fp32 and
# --int8) and of official YOLOv5 exports, plus the other activations and layers a model yaml may choose. No
# control flow (If, Loop, Scan: traced exports have none), no random generators, nothing reading files.
ONNX_OPS = frozenset({
    # shape arithmetic
    "Constant", "ConstantOfShape", "Shape", "Gather", "Unsqueeze", "Squeeze", "Concat", "Slice", "Split", "Cast",
    "Reshape", "Flatten", "Transpose", "Expand", "Range", "Identity", "Equal", "Where", "Greater", "Less", "Not",
    "Floor", "Ceil", "Neg", "Min", "Max",
    # convolution, normalisation, pooling, resampling, attention, padding
    "Conv", "ConvTranspose", "BatchNormalization", "InstanceNormalization", "GroupNormalization",
    "LayerNormalization", "MaxPool", "AveragePool", "GlobalAveragePool", "Resize", "GridSample", "Pad", "MatMul",
    "Gemm", "Softmax", "SpaceToDepth", "DepthToSpace",  # ORT's --int8 pre-processing fuses SPD's strided slices
    # activations
    "Sigmoid", "Relu", "LeakyRelu", "HardSwish", "HardSigmoid", "Clip", "Gelu", "Erf", "Mish", "Elu", "Tanh",
    "Softplus",
    # arithmetic and reductions
    "Add", "Sub", "Mul", "Div", "Pow", "Sqrt", "Reciprocal", "ReduceMean", "ReduceSum",
    # INT8 (QDQ) models
    "QuantizeLinear", "DequantizeLinear",
    # export --nms: the NMS and the selection, sorting and padding of its detections
    "NonMaxSuppression", "NonZero", "TopK", "ArgMax", "ReduceMax", "CumSum", "GatherND", "ScatterND",
    "ScatterElements",
})
# Operators whose output size can depend on values (how many boxes NMS keeps) but is bounded by their inputs'
# sizes: a tensor that shape inference cannot size is accepted only as the output of one of these, bounded by
# ``_dim_bound`` from the bounds of its inputs (export --nms graphs; see models/export/nms.py).
SAME_SIZE_OPS = frozenset({"Identity", "Cast", "Neg", "Not", "Sigmoid", "Relu", "Floor", "Ceil", "Sqrt", "Reciprocal",
                           "Clip", "Transpose", "Squeeze", "Unsqueeze", "Flatten", "Reshape", "Softmax",
                           "ScatterND", "ScatterElements"})  # (the scatters: the size of their data input)
SELECTING_OPS = frozenset({"Slice", "TopK", "Split", "ArgMax", "ReduceMax", "ReduceSum", "ReduceMean", "CumSum"})
DATA_DEPENDENT_OPS = frozenset({"NonMaxSuppression", "NonZero", "TopK", "GatherND", "ScatterND", "ScatterElements",
                                "CumSum", "ArgMax", "ReduceMax"})
CONTROL_FLOW_OPS = ("If", "Loop", "Scan")  # named as such when refused
BROADCASTING_OPS = frozenset({"Add", "Sub", "Mul", "Div", "Pow", "Where", "Equal", "Greater", "Less", "Min", "Max"})
FOLDABLE_OPS = ONNX_OPS - DATA_DEPENDENT_OPS - {"Conv", "ConvTranspose", "MatMul", "Gemm", "GridSample", "Resize",
                                                "MaxPool", "AveragePool"}
MAX_FOLD_ROUNDS = 8  # each round folds what the sizes found by the one before allow; exports need 4 or fewer
MAX_FOLDED_ELEMENTS = 4096  # shape arithmetic works on a few numbers; bigger constant tensors are left as they are
CHECK_IMGSZ = 640  # the image side at which a model with symbolic input sizes is sized
MIN_ELEMENT_LIMIT = 2**24  # any tensor may hold this many elements (64 MiB in fp32), whatever the input
ELEMENTS_PER_INPUT_ELEMENT = 64  # and this many per input element; yolov3's first layer (32 channels at full
# resolution), the largest tensor of the project's models relative to the input, has 11

# OpenVINO IR layer types a model folder may use: those of this project's exports (every model yaml; fp32, fp16
# weights and NNCF INT8) and the conversions of the ONNX operators above
OPENVINO_LAYER_TYPES = frozenset({
    # graph plumbing and shape arithmetic
    "Parameter", "Result", "Const", "Convert", "ShapeOf", "Gather", "Unsqueeze", "Squeeze", "Concat", "Reshape",
    "Transpose", "Broadcast", "Range", "StridedSlice", "Slice", "Split", "VariadicSplit", "ShuffleChannels",
    "Select", "Equal", "Greater", "Less", "LogicalNot", "Mod", "Floor", "Ceiling", "Negative", "Minimum", "Maximum",
    # convolution, normalisation, pooling, resampling, attention, padding
    "Convolution", "GroupConvolution", "ConvolutionBackpropData", "BatchNormInference", "MVN",
    "GroupNormalization", "MaxPool", "AvgPool", "Interpolate", "GridSample", "Pad", "MatMul", "SoftMax",
    "ScaledDotProductAttention",
    # activations
    "Sigmoid", "Swish", "ReLU", "PReLU", "HSwish", "HSigmoid", "Clamp", "Gelu", "Erf", "Mish", "Elu", "Tanh",
    "SoftPlus",
    # arithmetic, reductions, INT8 (NNCF)
    "Add", "Subtract", "Multiply", "Divide", "Power", "Sqrt", "ReduceMean", "ReduceSum", "FakeQuantize",
    # export --nms (converted from its ONNX graph)
    "NonMaxSuppression", "NonZero", "TopK", "ReduceMax", "ReduceProd", "CumSum", "GatherND", "ScatterNDUpdate",
    "ScatterElementsUpdate",
})
MAX_IR_XML_BYTES = 32 * 2**20  # a yolov5x6 IR graph is under 1 MB; its weights are in the .bin
SHARED_LIBRARY = re.compile(r"\.(so|dll|dylib)(\.\d+)*$", re.IGNORECASE)


def check_torchscript_archive(path: str | Path) -> None:
    """Refuse, before ``torch.jit.load``, an archive whose code defines ``__setstate__`` (the loader would run
    it) or whose members unpack to more than MAX_UNPACKED_BYTES."""
    try:
        with zipfile.ZipFile(path) as z:
            members = z.infolist()
            unpacked = sum(m.file_size for m in members)
            if unpacked > MAX_UNPACKED_BYTES:
                raise UserError(f"{path} would unpack to {unpacked / 1e9:.1f} GB (limit {MAX_UNPACKED_BYTES / 1e9:.1f}"
                                f" GB); refused")
            for m in members:
                if "/code/" in m.filename and m.filename.endswith(".py") and b"__setstate__" in z.read(m):
                    raise UserError(f"{path} defines __setstate__ in {m.filename}: code that torch.jit.load would "
                                    f"run; refused (TorchScript files are programs; re-export with export.py)")
    except zipfile.BadZipFile as e:
        raise UserError(f"{path} is not a readable TorchScript file (re-export it with export.py): {e}") from e


def _ops(block, found):
    for node in block.nodes():
        found.add(node.kind())
        for inner in node.blocks():
            _ops(inner, found)
        if node.hasAttribute("Subgraph"):  # forks and fusion groups carry their own graph
            _ops(node.g("Subgraph"), found)
    return found


def script_module_ops(module: torch.jit.ScriptModule) -> dict[str, str]:
    """{op kind: first 'module.method' using it} over every method of every submodule, calls inlined."""
    ops = {}
    for name, sub in module.named_modules():
        if sub._c._get_forward_hooks() or sub._c._get_forward_pre_hooks():
            ops.setdefault("forward hooks", name or "model")
        for method in sub._c._method_names():
            for kind in _ops(sub._c._get_method(method).inlined_graph, set()):
                ops.setdefault(kind, f"{name or 'model'}.{method}")
    return ops


def _size_source(value: torch.Value) -> int | None:
    """1 for a number read from a tensor's shape (the input's sides, in this project's exports); the number
    itself for a constant; None for anything computed (``size * 10**9`` is as unbounded as a constant)."""
    node = value.node()
    kind = node.kind()
    if kind == "aten::size":
        return 1
    if kind in ("aten::Int", "aten::ScalarImplicit", "prim::NumToTensor"):
        return _size_source(next(iter(node.inputs())))
    if kind == "prim::Constant":
        constant = node.output().toIValue()
        return constant if isinstance(constant, (int, float)) and not isinstance(constant, bool) else None
    return None


def _shape_problem(node: torch.Node) -> str | None:
    """Why ``node`` (an arange or expand) could ask for a huge tensor whatever the input, or None. A size must be
    read from a tensor's shape, or be a constant of a bounded extent: an arange of at most MAX_CONSTANT_ARANGE
    numbers, an expand by at most MAX_CONSTANT_EXPAND in total over the constant sizes."""
    if node.kind() == "aten::arange":
        names = [a.name for a in torch._C.parse_schema(node.schema()).arguments]
        bounds = {n: v for n, v in zip(names, node.inputs()) if n in ("start", "end", "step")}
        if any(_size_source(v) is None for v in bounds.values()):
            return "an arange whose bounds are computed, not read from a shape"
        constant = {n: _size_source(v) for n, v in bounds.items() if v.node().kind() == "prim::Constant"}
        start, end, step = constant.get("start", 0), constant.get("end", 0), constant.get("step", 1)
        if len(constant) == len(bounds):  # all fixed in the file
            extent = abs((end - start) / step) if step else 0
        else:  # a side read from a shape: the fixed ends must be small, a fixed step at least 1
            extent = max(abs(start), abs(end)) if abs(step) >= 1 else math.inf
        return f"an arange of up to {extent:.0f} numbers" if extent > MAX_CONSTANT_ARANGE else None
    sizes = list(node.inputs())[1]
    if sizes.node().kind() != "prim::ListConstruct":
        return "an expand to sizes computed at run time"
    factor = 1
    for item in sizes.node().inputs():
        size = _size_source(item)
        if size is None:
            return "an expand to a computed size"
        factor *= max(abs(size), 1) if item.node().kind() == "prim::Constant" else 1
    return f"an expand by {factor} over its input" if factor > MAX_CONSTANT_EXPAND else None


def _shape_problems(block: torch.Block, where: str, found: list[str]) -> list[str]:
    for node in block.nodes():
        if node.kind() in ("aten::arange", "aten::expand"):
            problem = _shape_problem(node)
            if problem:
                found.append(f"{problem} (in {where})")
        for inner in node.blocks():
            _shape_problems(inner, where, found)
    return found


def check_script_module(module: torch.jit.ScriptModule, source: str | Path) -> None:
    """UserError naming the first ops of ``module`` outside ALLOWED_OPS (and where they are used), or the first
    arange/expand whose size does not come from a tensor's shape and could allocate gigabytes per call."""
    refused = {k: v for k, v in script_module_ops(module).items() if k not in ALLOWED_OPS}
    if refused:
        listed = ", ".join(f"{k} (in {v})" for k, v in sorted(refused.items())[:5])
        raise UserError(f"{source} is refused: TorchScript files are programs, and this one uses {listed}, outside "
                        f"the tensor operations of this project's exports. Re-export it with export.py, or use the "
                        f".pt weights")
    for name, sub in module.named_modules():
        for method in sub._c._method_names():
            found = _shape_problems(sub._c._get_method(method).inlined_graph, f"{name or 'model'}.{method}", [])
            if found:
                raise UserError(f"{source} is refused: it makes {found[0]}, which could allocate gigabytes whatever "
                                f"the input; this project's exports size such tensors by the input. Re-export it "
                                f"with export.py, or use the .pt weights")


def load_torchscript(path: str | Path, **load_kwargs: object) -> torch.jit.ScriptModule:
    """``torch.jit.load`` guarded by the checks above: nothing in the file runs unless it passes them."""
    check_torchscript_archive(path)
    module = torch.jit.load(path, **load_kwargs)
    check_script_module(module, path)
    return module


def _protobuf_children(message):
    """The messages held in ``message``'s fields, repeated fields included."""
    for field in message.DESCRIPTOR.fields:
        if field.message_type is None:
            continue
        repeated = getattr(field, "is_repeated", None)  # protobuf >= 5; older releases have ``label``
        if repeated is None:
            repeated = field.label == field.LABEL_REPEATED
        if repeated:
            yield from getattr(message, field.name)
        elif message.HasField(field.name):
            yield getattr(message, field.name)


def onnx_messages(model: Any) -> Iterator[Any]:
    """Every protobuf message in ``model``, itself included, found by walking every message-typed field: the graph,
    nodes, attributes, dense and sparse tensors, subgraphs, functions, training graphs and whatever a later ONNX
    release adds."""
    stack = [model]
    while stack:
        message = stack.pop()
        yield message
        stack.extend(_protobuf_children(message))


def _onnx_structure_problems(model, onnx):
    """What in ``model`` reaches beyond embedded tensors and the allowed standard operators, in a few words each."""
    external, problems = {}, {}  # external data first: it is named whatever else is wrong
    for m in onnx_messages(model):
        if isinstance(m, onnx.TensorProto) and (m.data_location == onnx.TensorProto.EXTERNAL or len(m.external_data)):
            external.setdefault(f"tensor '{m.name}' stored in an external file")
        elif isinstance(m, onnx.SparseTensorProto):  # densified on load to its declared dims, whatever it holds
            problems.setdefault(f"sparse tensor '{m.values.name}'")
        elif isinstance(m, onnx.NodeProto):
            if m.domain not in ONNX_DOMAINS:
                problems.setdefault(f"operator {m.domain}::{m.op_type}")
            elif m.op_type not in ONNX_OPS:
                kind = "control flow " if m.op_type in CONTROL_FLOW_OPS else ""
                problems.setdefault(f"{kind}operator {m.op_type}")
        elif isinstance(m, onnx.AttributeProto) and (m.HasField("g") or len(m.graphs)):
            problems.setdefault(f"a subgraph in attribute '{m.name}'")
    problems.update(dict.fromkeys(f"local function {f.domain}::{f.name}" for f in model.functions))
    return list(external) + list(problems)


def _fix_input_shapes(graph, imgsz):
    """Give every graph input concrete sizes: declared ones kept, a symbolic batch 1, symbolic image sides
    ``imgsz``; returns the number of input elements."""
    weights = {t.name for t in graph.initializer}
    elements = 0
    for value in graph.input:
        if value.name in weights:
            continue
        dims = value.type.tensor_type.shape.dim
        fill = (1, 3, *imgsz) if len(dims) == 4 else (1,) * len(dims)
        for d, default in zip(dims, fill):
            if not d.HasField("dim_value") or d.dim_value < 1:
                d.dim_value = default
        elements += math.prod(d.dim_value for d in dims)
    return elements


def _folded_size(node, values):
    """Elements that ``node`` would produce from the constant ``values`` of its inputs, worked out without running
    it; None when that is not clear (the node is then left unevaluated)."""
    op = node.op_type
    try:
        if op == "ConstantOfShape":
            return math.prod(int(x) for x in values[0].reshape(-1))
        if op == "Range":
            start, limit, delta = (float(v) for v in values)
            return max(0, math.ceil((limit - start) / delta))
        if op == "Expand":
            return math.prod(np.broadcast_shapes(values[0].shape, tuple(int(x) for x in values[1].reshape(-1))))
        if op == "Pad":
            rank, pads = values[0].ndim, [int(x) for x in values[1].reshape(-1)]
            if len(values) > 3 or len(pads) != 2 * rank:
                return None
            return math.prod(values[0].shape[i] + pads[i] + pads[i + rank] for i in range(rank))
        if op == "Gather":
            data, indices = values[0], values[1]
            axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
            return data.size // max(data.shape[axis], 1) * indices.size
        if op in BROADCASTING_OPS:
            return math.prod(np.broadcast_shapes(*(v.shape for v in values)))
    except (ValueError, TypeError, IndexError, ZeroDivisionError, OverflowError):
        return None
    return sum(v.size for v in values)  # the remaining ops only select, reorder or convert their inputs


def _shape_value(node, shape):
    """The value of a Shape node over a tensor of known ``shape`` (its start and end attributes applied)."""
    attrs = {a.name: a.i for a in node.attribute}
    return np.array(shape[attrs.get("start", 0):attrs.get("end", len(shape))], dtype=np.int64)


def _fold_shape_arithmetic(graph, limit, shapes, onnx):
    """Replace each node computing a small tensor from constants and known shapes alone (the shape arithmetic that
    exporters leave, e.g. ZeroPad2d's pads or Detect's grid sizes) by a Constant holding its result, so that shape
    inference sees the sizes it sets. Returns (nodes folded, problems): a size-setting op whose inputs ask for more
    than ``limit`` elements is a problem, never evaluated."""
    from onnx import numpy_helper
    from onnx.reference import ReferenceEvaluator

    values = {t.name: numpy_helper.to_array(t) for t in graph.initializer if math.prod(t.dims) <= MAX_FOLDED_ELEMENTS}
    folded, problems = 0, []
    for node in graph.node:
        if node.op_type == "Constant":
            attr = {a.name: a for a in node.attribute}
            if "value" in attr and math.prod(attr["value"].t.dims) <= MAX_FOLDED_ELEMENTS:
                values[node.output[0]] = numpy_helper.to_array(attr["value"].t)
            continue
        inputs = [x for x in node.input if x]
        if node.op_type == "Shape" and shapes.get(node.input[0]) is not None:
            result = _shape_value(node, shapes[node.input[0]])
        elif node.op_type in FOLDABLE_OPS and len(node.output) == 1 and all(x in values for x in inputs):
            size = _folded_size(node, [values[x] for x in inputs])
            if size is not None and size > limit:
                problems.append(f"{node.op_type} '{node.output[0]}' of {size:,} elements (limit {limit:,})")
                continue
            if size is None or size > MAX_FOLDED_ELEMENTS:
                continue  # left to shape inference
            try:
                result = ReferenceEvaluator(node).run(None, {x: values[x] for x in inputs})[0]
            except Exception:  # malformed arithmetic: left to shape inference, which then cannot size it
                continue
        else:
            continue
        if result.size <= MAX_FOLDED_ELEMENTS:
            values[node.output[0]] = result
            node.CopyFrom(onnx.helper.make_node("Constant", [], [node.output[0]], name=node.name,
                                                value=numpy_helper.from_array(result, node.output[0])))
            folded += 1
    return folded, problems


def _inferred_shapes(model, onnx):
    """{tensor name: dims, or None where a dim is unknown} from ONNX shape inference with data propagation."""
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    shapes = {}
    for value in list(inferred.graph.input) + list(inferred.graph.value_info) + list(inferred.graph.output):
        tensor_type = value.type.tensor_type
        if tensor_type.HasField("shape"):
            dims = tensor_type.shape.dim
            shapes[value.name] = None if any(not d.HasField("dim_value") for d in dims) else [d.dim_value for d in dims]
    return shapes


def _onnx_size_problems(model, imgsz, onnx):
    """Tensors of ``model`` (run on one image of ``imgsz`` where its input sizes are symbolic) over the element limit,
    and tensors whose size cannot be worked out before running. Changes ``model``."""
    graph = model.graph
    limit = max(MIN_ELEMENT_LIMIT, ELEMENTS_PER_INPUT_ELEMENT * _fix_input_shapes(graph, imgsz))
    for t in graph.initializer:  # from here on only the dims of large weights matter: inference need not copy them
        if math.prod(t.dims) > MAX_FOLDED_ELEMENTS:
            for field in ("raw_data", "float_data", "int32_data", "int64_data", "double_data", "uint64_data"):
                t.ClearField(field)
    shapes = None
    for _ in range(MAX_FOLD_ROUNDS):  # known sizes let Shape nodes fold, which can make more sizes known
        folded, problems = _fold_shape_arithmetic(graph, limit, shapes or {}, onnx)
        if problems:
            return problems
        if shapes is not None and not folded:
            break
        try:
            shapes = _inferred_shapes(model, onnx)
        except Exception as e:  # inference errors have no common base class
            return [f"tensor sizes that cannot be worked out ({str(e).splitlines()[0][:120]})"]
    problems = []
    partial = None  # per-dim sizes (None where unknown), fetched only for a graph with value-dependent sizes
    # the largest any one dim of each tensor can be (its largest dim where the shape is known)
    dim_bounds = {t.name: max(t.dims, default=1) for t in graph.initializer}
    dim_bounds.update({v.name: max((d.dim_value for d in v.type.tensor_type.shape.dim), default=1)
                       for v in graph.input})
    for node in graph.node:
        for out in node.output:
            dims = shapes.get(out)
            if dims is not None:
                dim_bounds[out] = max(dims, default=1)
                if math.prod(dims) > limit:
                    problems.append(f"{node.op_type} '{out}' of {math.prod(dims):,} elements (limit {limit:,} for "
                                    f"this input)")
                continue
            if partial is None:
                partial = _partial_shapes(model, onnx)
            bound, out_dims = _dim_bound(node, dim_bounds, partial), partial.get(out)
            if bound is None or out_dims is None:
                problems.append(f"{node.op_type} '{out}' whose size cannot be worked out before running")
                continue
            dim_bounds[out] = max([bound] + [d for d in out_dims if d is not None])
            size = math.prod(d if d is not None else bound for d in out_dims)
            if size > limit:
                problems.append(f"{node.op_type} '{out}' of up to {size:,} elements (limit {limit:,} for this input)")
    return problems


def _partial_shapes(model, onnx):
    """{tensor name: [dim or None]} from shape inference, unknown dims as None."""
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    shapes = {}
    for value in list(inferred.graph.input) + list(inferred.graph.value_info) + list(inferred.graph.output):
        if value.type.tensor_type.HasField("shape"):
            shapes[value.name] = [d.dim_value if d.HasField("dim_value") else None
                                  for d in value.type.tensor_type.shape.dim]
    return shapes


def _size_bound(name, dim_bounds, partial):
    """Most elements tensor ``name`` can have: its known dims times the dim bound for each unknown one."""
    dims = partial.get(name)
    if dims is None:
        return None
    return math.prod(d if d is not None else dim_bounds[name] for d in dims)


def _dim_bound(node, dim_bounds, partial):
    """The largest an unknown dim of ``node``'s outputs can be, for the operators whose output sizes only values
    decide; None for any other operator, or an input without a bound. The rules hold for every input value:
    NonMaxSuppression keeps at most one box per score; NonZero finds at most every element; a reshape or a
    flatten cannot outgrow its input, a concatenation the sum of its inputs; every other operator listed takes
    each output dim from an input's dims (selecting, gathering, sorting, broadcasting, scattering into its data)."""
    op = node.op_type
    inputs = [x for x in node.input if x]
    if not inputs or any(x not in dim_bounds for x in inputs):
        return None
    if op == "NonMaxSuppression":
        return _size_bound(inputs[1], dim_bounds, partial)
    if op == "NonZero":
        return _size_bound(inputs[0], dim_bounds, partial)
    if op in ("Reshape", "Flatten"):  # the elements stay: one unknown dim holds what the known ones do not
        size, out = _size_bound(inputs[0], dim_bounds, partial), partial.get(node.output[0])
        if size is None or out is None or out.count(None) != 1:
            return size
        return size // max(math.prod(d for d in out if d is not None), 1)
    if op == "Concat":
        return sum(dim_bounds[x] for x in inputs)
    if (op in SAME_SIZE_OPS or op in SELECTING_OPS or op in BROADCASTING_OPS
            or op in ("Gather", "GatherND", "GatherElements", "And", "Or", "LessOrEqual", "GreaterOrEqual")):
        return max(dim_bounds[x] for x in inputs)
    if op == "Shape":  # the input's rank
        return max(dim_bounds[inputs[0]], 64)
    return None


def check_onnx_file(path: str | Path, imgsz: tuple[int, int] = (CHECK_IMGSZ, CHECK_IMGSZ)) -> None:
    """Refuse, before ONNX Runtime sees it, an .onnx file that would read other files, run operators outside the
    standard set this project's exports use (control flow included), or make tensors larger than its input
    justifies; ``imgsz`` is the (h, w) at which a model with symbolic image sides is sized."""
    onnx = require("onnx", "checking .onnx weights before they run")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # protobuf decode errors have no common base class
        raise UserError(f"{path} is not a readable ONNX model (re-export it with export.py): {str(e)[:200]}") from e
    problems = _onnx_structure_problems(model, onnx)
    if problems:
        raise UserError(f"{path} is refused: ONNX files are programs, and this one has {', '.join(problems[:3])}; "
                        f"only standard ONNX operators with embedded weights are run")
    problems = _onnx_size_problems(model, imgsz, onnx)
    if problems:
        raise UserError(f"{path} is refused: ONNX files are programs, and this one has {', '.join(problems[:2])}; "
                        f"every tensor must be bounded by the input's size before anything runs")


def _ir_problem(path, why):
    return UserError(f"{path} is refused: {why}. Only OpenVINO IR folders as export.py writes them are run")


def check_openvino_ir(xml: str | Path, weights: str | Path) -> None:
    """Refuse an OpenVINO model (``xml`` and its ``weights`` .bin) before OpenVINO reads it unless both are regular
    files directly in the folder of ``xml`` (no links out of it), the xml is a small IR ``<net>`` without DOCTYPE or
    entities whose every layer is a standard opset operator in OPENVINO_LAYER_TYPES (no extension libraries, no
    custom ops), and the .bin holds exactly the bytes its Const layers address."""
    xml, weights = Path(xml), Path(weights)
    folder = os.path.realpath(xml.parent)
    for f in (xml, weights):
        if f.is_symlink() or not f.is_file() or os.path.dirname(os.path.realpath(f)) != folder:
            raise _ir_problem(f, f"it must be a regular file inside {xml.parent}, not a link, folder or device")
    if xml.stat().st_size > MAX_IR_XML_BYTES:
        raise _ir_problem(xml, f"{xml.stat().st_size / 1e6:.0f} MB is far more than an IR graph needs "
                               f"(limit {MAX_IR_XML_BYTES / 1e6:.0f} MB)")
    text = xml.read_bytes()
    if not text.lstrip().startswith(b"<"):
        raise _ir_problem(xml, "it is not an XML file (an ONNX or other binary model renamed .xml?)")
    if re.search(rb"<!(DOCTYPE|ENTITY)", text, re.IGNORECASE):
        raise _ir_problem(xml, "it declares a DOCTYPE or entities, which an IR never needs")
    try:
        root = ElementTree.fromstring(text)
    except ElementTree.ParseError as e:
        raise _ir_problem(xml, f"it is not well-formed XML ({e})") from None
    if root.tag != "net":
        raise _ir_problem(xml, f"its root element is <{root.tag}>, not an OpenVINO IR <net>")
    unknown, ends = {}, [0]
    for element in root.iter():
        if element.tag.lower() in ("extension", "extensions", "custom_layers") or any(
                SHARED_LIBRARY.search(v) for v in element.attrib.values()):
            raise _ir_problem(xml, f"it refers to an extension library (<{element.tag}>)")
    for layer in root.iter("layer"):
        kind, version = layer.get("type", ""), layer.get("version", "")
        if kind not in OPENVINO_LAYER_TYPES or not re.fullmatch(r"opset\d+", version):
            unknown.setdefault(f"{kind or '?'} ({version or 'no version'})", layer.get("name", ""))
        elif kind == "Const":
            data = layer.find("data")
            try:
                offset, size = int(data.get("offset")), int(data.get("size"))
            except (AttributeError, TypeError, ValueError):
                raise _ir_problem(xml, f"Const layer '{layer.get('name')}' has no readable offset and size") from None
            if offset < 0 or size < 0:
                raise _ir_problem(xml, f"Const layer '{layer.get('name')}' has a negative offset or size")
            ends.append(offset + size)
    if unknown:
        listed = ", ".join(f"{k} (layer '{v}')" for k, v in list(unknown.items())[:3])
        raise _ir_problem(xml, f"it uses {listed}, outside the standard operators of this project's exports")
    if weights.stat().st_size != max(ends):
        raise _ir_problem(weights, f"it holds {weights.stat().st_size:,} bytes but {xml.name} addresses "
                                   f"{max(ends):,}")
