"""Check a TorchScript file before anything in it runs.

A .torchscript file is a program: its methods can call any TorchScript operator, including ones that map files
into memory (``aten::from_file(..., shared=True)`` writes to disk), print, or reseed the random generators, and
``torch.jit.load`` itself runs a module's ``__setstate__``. So before loading, the archive's code must define no
``__setstate__`` (and its members must not unpack to more than ``MAX_UNPACKED_BYTES``); after loading, and before
any call, every method of every submodule (its inlined graph, nested blocks included) may use only the operators
in ``ALLOWED_OPS``, and no module may carry forward hooks. The list holds the tensor operators that this project's
own exports contain (every model yaml, traced at n scale, collected by walking the saved files), plus the
activations and layers the official model yamls may name. Anything else is refused with a UserError naming it.

An .onnx file is a program too, but a declarative one that ONNX Runtime interprets with its own operator set.
``check_onnx_file`` refuses, before a session is made, the two ways one reaches beyond that: operators from a
custom domain (only the standard ONNX domains run) and tensors stored in external files (a data location such as
'../../secret' would be read into the model).
"""

import zipfile

import torch

from utils.general import UserError

ONNX_DOMAINS = ("", "ai.onnx")  # the standard operator set; exports of this project and of YOLOv5 use only it
MAX_UNPACKED_BYTES = 4 * 2**30  # far above any YOLOv5 export (yolov5x6 is about 0.6 GB in fp32)

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
    "aten::reciprocal", "aten::clamp", "aten::gt", "aten::where", "aten::mean", "aten::sum",
    # shapes, and new tensors shaped like others
    "aten::cat", "aten::stack", "aten::chunk", "aten::split_with_sizes", "aten::view", "aten::reshape",
    "aten::flatten", "aten::unflatten", "aten::permute", "aten::transpose", "aten::contiguous", "aten::expand",
    "aten::squeeze", "aten::unsqueeze", "aten::select", "aten::slice", "aten::meshgrid", "aten::arange",
    "aten::to", "aten::zeros_like", "aten::ones_like",
})


def check_torchscript_archive(path):
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


def script_module_ops(module):
    """{op kind: first 'module.method' using it} over every method of every submodule, calls inlined."""
    ops = {}
    for name, sub in module.named_modules():
        if sub._c._get_forward_hooks() or sub._c._get_forward_pre_hooks():
            ops.setdefault("forward hooks", name or "model")
        for method in sub._c._method_names():
            for kind in _ops(sub._c._get_method(method).inlined_graph, set()):
                ops.setdefault(kind, f"{name or 'model'}.{method}")
    return ops


def check_script_module(module, source):
    """UserError naming the first ops of ``module`` outside ALLOWED_OPS (and where they are used)."""
    refused = {k: v for k, v in script_module_ops(module).items() if k not in ALLOWED_OPS}
    if refused:
        listed = ", ".join(f"{k} (in {v})" for k, v in sorted(refused.items())[:5])
        raise UserError(f"{source} is refused: TorchScript files are programs, and this one uses {listed}, outside "
                        f"the tensor operations of this project's exports. Re-export it with export.py, or use the "
                        f".pt weights")


def load_torchscript(path, **load_kwargs):
    """``torch.jit.load`` guarded by the checks above: nothing in the file runs unless it passes them."""
    check_torchscript_archive(path)
    module = torch.jit.load(path, **load_kwargs)
    check_script_module(module, path)
    return module


def _onnx_graph_problems(graph, found):
    """Custom-domain ops and external tensors of ``graph`` and of the subgraphs in its nodes' attributes."""
    import onnx

    for tensor in list(graph.initializer) + [a.t for n in graph.node for a in n.attribute if a.HasField("t")]:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            found.setdefault(f"tensor '{tensor.name}' stored in an external file", True)
    for node in graph.node:
        if node.domain not in ONNX_DOMAINS:
            found.setdefault(f"operator {node.domain}::{node.op_type}", True)
        for attr in node.attribute:
            for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                _onnx_graph_problems(sub, found)
    return found


def check_onnx_file(path):
    """Refuse an .onnx file with custom-domain operators, local functions or external tensor data."""
    try:
        import onnx
    except ImportError:  # onnxruntime alone still refuses unknown custom ops; the external-data check needs onnx
        return
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # protobuf decode errors have no common base class
        raise UserError(f"{path} is not a readable ONNX model (re-export it with export.py): {str(e)[:200]}") from e
    problems = list(_onnx_graph_problems(model.graph, {}))
    problems += [f"local function {f.domain}::{f.name}" for f in model.functions]
    if problems:
        raise UserError(f"{path} is refused: ONNX files are programs, and this one has {', '.join(problems[:3])}; "
                        f"only standard ONNX operators with embedded weights are run")
