"""Export a trained YOLOv5 model to TorchScript and ONNX, and check the exported outputs against PyTorch's.

Usage:
    python export.py --weights runs/train/exp/weights/best.pt --include torchscript onnx --imgsz 640
    python export.py --weights yolov5s.pt --include onnx --dynamic

The exported files sit next to the weights (best.torchscript, best.onnx) and carry the stride, class names and
input size, so ``python detect.py --weights best.onnx`` and ``python val.py --weights best.onnx`` work directly.
"""

import argparse
import json
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path

import torch

from models.backends import EXPORT_METADATA_KEY, export_metadata, newest_trained_weights
from models.experimental import attempt_load
from models.yolo import Detect, Model
from utils.general import LOGGER, UserError, check_img_size, colorstr, print_args, exit_code
from utils.torch_utils import select_device

FORMATS = ("torchscript", "onnx")
DEFAULT_OPSET = 17
BASE_OPSET = 11  # enough for the plain convolutional network; a module class may need more (its ``onnx_opset``)
MAX_BATCH_SIZE = 1024  # the export input is a real tensor: batch 0 crashes the tracer (SIGFPE), huge ones the RAM
CHECK_ATOL = 1e-3  # outputs are in pixels; float32 rounding keeps exported models well inside this


def module_opsets(model):
    """Class name -> ``onnx_opset`` of each module class in ``model`` that declares one."""
    return {type(m).__name__: type(m).onnx_opset for m in model.modules() if hasattr(type(m), "onnx_opset")}


def required_opset(model):
    """The lowest ONNX opset able to express every module in ``model``."""
    return max([BASE_OPSET, *module_opsets(model).values()])


def prepare_model(model, inplace=False):
    """Fuse, switch to eval, freeze and make Detect return only the decoded predictions, as exporters need."""
    model = model.float().eval()
    if isinstance(model, Model):
        model.fuse(verbose=False)
    for p in model.parameters():
        p.requires_grad_(False)
    for m in model.modules():
        if isinstance(m, Detect):
            m.inplace = inplace
            m.export = True
    return model


@contextmanager
def _quiet_tracer():
    """Silence the tracer's notes about Python-level branches (e.g. ``if augment``): they are constant here."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
        yield


def export_torchscript(model, im, file, metadata):
    """Trace ``model`` on ``im`` and save it with the json metadata as an extra file. Returns the path."""
    prefix = colorstr("TorchScript:")
    file = Path(file).with_suffix(".torchscript")
    LOGGER.info(f"\n{prefix} starting export with torch {torch.__version__}...")
    with _quiet_tracer():
        traced = torch.jit.trace(model, im, strict=False, check_trace=False)  # check_export compares outputs
    traced.save(str(file), _extra_files={EXPORT_METADATA_KEY: json.dumps(metadata)})
    LOGGER.info(f"{prefix} export success, saved as {file} ({file.stat().st_size / 1e6:.1f} MB)")
    return file


def export_onnx(model, im, file, metadata, opset=None, dynamic=False, simplify=False):
    """Export ``model`` to ONNX (input 'images', output 'output0') with metadata in metadata_props."""
    try:
        import onnx
    except ImportError as e:
        raise UserError("ONNX export needs the onnx and onnxruntime packages (listed in requirements.txt)") from e

    prefix = colorstr("ONNX:")
    file = Path(file).with_suffix(".onnx")
    need = required_opset(model)
    opset = opset or max(DEFAULT_OPSET, need)
    if opset < need:
        used = sorted(k for k, v in module_opsets(model).items() if v > opset)
        raise UserError(f"--opset {opset} cannot express {', '.join(used)}; use --opset {need} or higher")
    LOGGER.info(f"\n{prefix} starting export with onnx {onnx.__version__} opset {opset}...")
    dynamic_axes = None
    if dynamic:
        dynamic_axes = {"images": {0: "batch", 2: "height", 3: "width"}, "output0": {0: "batch", 1: "anchors"}}
    try:
        with _quiet_tracer():
            torch.onnx.export(
                model,
                (im,),
                str(file),
                dynamo=False,  # the tracing exporter: no onnxscript dependency, handles every module here
                opset_version=opset,
                do_constant_folding=True,
                input_names=["images"],
                output_names=["output0"],
                dynamic_axes=dynamic_axes,
            )
    except Exception as e:
        raise UserError(f"ONNX export failed at opset {opset}: {e}. Try a higher --opset (up to 20)") from e
    model_onnx = onnx.load(str(file))
    onnx.checker.check_model(model_onnx)
    if simplify:
        model_onnx = _simplify(model_onnx, prefix)
    for k, v in metadata.items():
        entry = model_onnx.metadata_props.add()
        entry.key, entry.value = k, json.dumps(v)
    onnx.save(model_onnx, str(file))
    LOGGER.info(f"{prefix} export success, saved as {file} ({file.stat().st_size / 1e6:.1f} MB)")
    return file


def _simplify(model_onnx, prefix):
    try:
        import onnxsim
    except ImportError:
        LOGGER.warning(f"{prefix} WARNING: --simplify needs the onnxsim package, which is not installed; skipped")
        return model_onnx
    simplified, ok = onnxsim.simplify(model_onnx)
    if not ok:
        LOGGER.warning(f"{prefix} WARNING: onnxsim could not verify the simplified model; keeping the original")
        return model_onnx
    return simplified


def run_exported(file, im):
    """Outputs of an exported file on ``im`` (ONNX Runtime for .onnx, torch.jit.load for .torchscript)."""
    file = Path(file)
    if file.suffix == ".onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(str(file), providers=["CPUExecutionProvider"])
        return torch.from_numpy(session.run(None, {session.get_inputs()[0].name: im.cpu().numpy()})[0])
    loaded = torch.jit.load(str(file), map_location=im.device)
    with torch.no_grad():
        return loaded(im).cpu()


def check_export(model, file, im, atol=CHECK_ATOL):
    """Max abs difference between PyTorch's and the exported file's outputs on ``im``; logs it, warns above atol."""
    with torch.no_grad():
        expected = model(im)
    expected = (expected[0] if isinstance(expected, (list, tuple)) else expected).float().cpu()
    try:
        got = run_exported(file, im).float()
    except ImportError:
        LOGGER.warning(f"WARNING: onnxruntime not installed: {file} not checked against PyTorch")
        return None
    except Exception as e:  # ONNX Runtime's CPU provider lacks some float16 kernels; float32 failures stay loud
        if im.dtype != torch.float16:
            raise
        LOGGER.warning(f"WARNING: {file} (float16) could not be run for the check: {e}")
        return None
    if got.shape != expected.shape:
        raise RuntimeError(f"{file}: output shape {tuple(got.shape)} differs from PyTorch's {tuple(expected.shape)}")
    diff = (got - expected).abs().max().item()
    msg = f"{file.name}: max abs difference to PyTorch {diff:.2e} on input {tuple(im.shape)}"
    if diff > atol:
        LOGGER.warning(f"WARNING: {msg} exceeds {atol:g}")
    else:
        LOGGER.info(f"check OK, {msg}")
    return diff


def check_formats(include):
    """Lower-cased ``include`` after checking every entry is a known format."""
    include = [x.lower() for x in include]
    unknown = [x for x in include if x not in FORMATS]
    if unknown:
        raise UserError(f"--include {unknown}: unknown format(s); choose from {list(FORMATS)}")
    return include


def export_model(model, im, file, include=FORMATS, opset=None, dynamic=False, simplify=False, inplace=False,
                 check=True):
    """Export a torch model (fused and prepared here) to each format in ``include`` next to ``file``.

    im is the example input (N, 3, H, W). Returns (list of exported paths, {path: max abs diff or None}).
    """
    include = check_formats(include)
    model = prepare_model(model, inplace=inplace)
    if im.dtype == torch.float16:
        model = model.half()
    with torch.no_grad():
        model(im)  # a dry run builds anything lazily initialised (Detect grids) before tracing
    names = getattr(model, "names", None) or {i: f"class{i}" for i in range(model.model[-1].nc)}
    model.names = names
    metadata = export_metadata(model, im.shape[2:], dynamic=dynamic)
    files, diffs = [], {}
    if "torchscript" in include:
        files.append(export_torchscript(model, im, file, metadata))
    if "onnx" in include:
        files.append(export_onnx(model, im, file, metadata, opset=opset, dynamic=dynamic, simplify=simplify))
    if check:
        atol = CHECK_ATOL if im.dtype == torch.float32 else 1.0  # float16 spacing is 0.25-0.5 px at 256-640 px
        for f in files:
            diffs[f] = check_export(model, f, im, atol=atol)
            if dynamic and f.suffix == ".onnx":  # a second batch size and shape exercises the dynamic axes
                h, w = im.shape[2:]
                other = torch.rand(im.shape[0] + 1, 3, h + 32, w + 64, dtype=im.dtype, device=im.device)
                diffs[f] = max(diffs[f] or 0.0, check_export(model, f, other, atol=atol) or 0.0)
    return files, diffs


def run(
    weights=None,
    imgsz=(640, 640),
    batch_size=1,
    device="cpu",
    include=("torchscript", "onnx"),
    half=False,
    inplace=False,
    dynamic=False,
    simplify=False,
    opset=None,
):
    """Export ``weights`` to the formats in ``include``; returns the list of exported files."""
    include = check_formats(include)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or not 1 <= batch_size <= MAX_BATCH_SIZE:
        raise UserError(f"--batch-size {batch_size}: must be a whole number from 1 to {MAX_BATCH_SIZE}")
    weights = Path(weights or newest_trained_weights())
    if not weights.is_file():
        raise UserError(f"--weights {weights}: file not found")
    imgsz = [imgsz] * 2 if isinstance(imgsz, int) else list(imgsz) * (2 if len(imgsz) == 1 else 1)
    device = select_device(device)
    if half and device.type != "cuda":
        raise UserError("--half export needs a CUDA device (--device 0); CPU exports are float32")
    if half and dynamic:
        raise UserError("--half and --dynamic cannot be combined; export one or the other")
    model = attempt_load(weights, device=device, inplace=True, fuse=True)
    gs = int(max(int(model.stride.max()), 32))
    imgsz = check_img_size(imgsz, s=gs)
    torch.manual_seed(0)
    im = torch.rand(batch_size, 3, *imgsz, device=device)  # random pixels exercise every output channel
    if half:
        im, model = im.half(), model.half()
    LOGGER.info(f"\n{colorstr('PyTorch:')} starting from {weights} with input {tuple(im.shape)}")
    files, _ = export_model(model, im, weights, include=include, opset=opset, dynamic=dynamic,
                            simplify=simplify, inplace=inplace)
    LOGGER.info(
        f"\nExport complete: {', '.join(str(f) for f in files)}\n"
        f"Detect:   python detect.py --weights {files[-1]}" + ("" if dynamic else f" --imgsz {imgsz[0]} {imgsz[1]}") +
        f"\nValidate: python val.py --weights {files[-1]}" + ("" if dynamic else f" --imgsz {max(imgsz)}")
    )
    return [str(f) for f in files]


def parse_opt(argv=None):
    parser = argparse.ArgumentParser(description="Export a YOLOv5 model to TorchScript / ONNX")
    parser.add_argument("--weights", type=str, default=None,
                        help="model.pt path (default: newest runs/train/*/weights/best.pt)")
    parser.add_argument("--imgsz", "--img", "--img-size", nargs="+", type=int, default=[640, 640], help="image (h, w)")
    parser.add_argument("--batch-size", type=int, default=1, help="batch size")
    parser.add_argument("--device", default="cpu", help="cuda device, i.e. 0 or 0,1,2,3 or cpu")
    parser.add_argument("--half", action="store_true", help="FP16 half-precision export (CUDA only)")
    parser.add_argument("--inplace", action="store_true", help="set YOLOv5 Detect() inplace=True")
    parser.add_argument("--dynamic", action="store_true", help="ONNX: dynamic batch and image size")
    parser.add_argument("--simplify", action="store_true", help="ONNX: simplify model (needs onnxsim)")
    parser.add_argument("--opset", type=int, default=None, help=f"ONNX: opset version (default {DEFAULT_OPSET})")
    parser.add_argument("--include", nargs="+", default=["torchscript", "onnx"], help=f"formats: {FORMATS}")
    opt = parser.parse_args(argv)
    print_args(vars(opt), "export")
    return opt


def main(argv=None):
    return exit_code(lambda: run(**vars(parse_opt(argv))))


if __name__ == "__main__":
    sys.exit(main())
