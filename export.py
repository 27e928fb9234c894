"""Export a trained YOLOv5 model to TorchScript, ONNX, OpenVINO or TensorRT, and check the exported outputs against
PyTorch's.

Usage:
    python export.py --weights runs/train/exp/weights/best.pt --include torchscript onnx --imgsz 640
    python export.py --weights yolov5s.pt --include onnx --dynamic
    python export.py --weights best.pt --include openvino [--half]             # bf16 execution where the CPU has it
    python export.py --weights best.pt --include openvino onnx --int8 --data data/shapes.yaml [--calib 300]
    python export.py --weights best.pt --include engine --device 0 [--half]    # needs CUDA and tensorrt

The exported files sit next to the weights (best.torchscript, best.onnx, best_int8.onnx, best_openvino_model/,
best_int8_openvino_model/, best.engine) and carry the stride, class names, input size and precision, so
``python detect.py --weights best_openvino_model`` and ``python val.py --weights best.onnx`` work directly.
INT8 uses post-training quantization (NNCF for OpenVINO, ONNX Runtime's static QDQ for ONNX) calibrated on
``--calib`` images of the dataset's train split, letterboxed as at inference; no labels are needed.
"""

import argparse
import hashlib
import json
import shutil
import sys
import tempfile
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
import yaml

from models.backends import (EXPORT_METADATA_KEY, OPENVINO_METADATA, DetectMultiBackend, export_metadata,
                             newest_trained_weights, weights_format)
from models.experimental import attempt_load
from models.yolo import Detect, Model
from utils.dataset_yaml import check_dataset
from utils.dataloaders import list_image_files
from utils.general import LOGGER, ROOT, UserError, check_img_size, colorstr, print_args, exit_code
from utils.optional import import_nncf, import_openvino, require
from utils.sources import LoadImages
from utils.torch_utils import select_device

FORMATS = ("torchscript", "onnx", "openvino", "engine")
BACKEND_CACHE = ROOT / "runs" / "backend-cache"  # detect/val --backend conversions of .pt weights (content-hashed)
DEFAULT_CALIB = 300  # INT8 calibration images from the train split
DEFAULT_OPSET = 17
BASE_OPSET = 11  # enough for the plain convolutional network; a module class may need more (its ``onnx_opset``)
MAX_BATCH_SIZE = 1024  # the export input is a real tensor: batch 0 crashes the tracer (SIGFPE), huge ones the RAM
CHECK_ATOL = 1e-3  # outputs are in pixels; float32 rounding keeps exported models well inside this
# max abs output difference (pixels) above which the post-export check warns, by precision; INT8 is only reported
# (its accuracy is what val.py / benchmarks/formats.py measure)
PRECISION_ATOL = {"fp32": CHECK_ATOL, "fp16": 1.0, "bf16": 8.0, "int8": None}


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
    """Outputs of an exported file on ``im``, through the backend detect.py and val.py use."""
    with torch.no_grad():
        return DetectMultiBackend(file, device=im.device)(im).cpu()


def check_export(model, file, im, atol=CHECK_ATOL):
    """Max abs difference between PyTorch's and the exported file's outputs on ``im``; logs it, warns above atol
    (atol None: report only)."""
    with torch.no_grad():
        expected = model(im)
    expected = (expected[0] if isinstance(expected, (list, tuple)) else expected).float().cpu()
    try:
        got = run_exported(file, im).float()
    except UserError as e:
        if "package" not in str(e):
            raise
        LOGGER.warning(f"WARNING: {file} not checked against PyTorch: {e}")
        return None
    except Exception as e:  # ONNX Runtime's CPU provider lacks some float16 kernels; float32 failures stay loud
        if im.dtype != torch.float16:
            raise
        LOGGER.warning(f"WARNING: {file} (float16) could not be run for the check: {e}")
        return None
    if got.shape != expected.shape:
        raise RuntimeError(f"{file}: output shape {tuple(got.shape)} differs from PyTorch's {tuple(expected.shape)}")
    diff = (got - expected).abs().max().item()
    msg = f"{Path(file).name}: max abs difference to PyTorch {diff:.2e} on input {tuple(im.shape)}"
    if atol is not None and diff > atol:
        LOGGER.warning(f"WARNING: {msg} exceeds {atol:g}")
    else:
        LOGGER.info(f"check OK, {msg}")
    return diff


def calibration_images(data, imgsz, stride=32, n=DEFAULT_CALIB):
    """Up to ``n`` images (1, 3, h, w) float32 in 0-1 from the train split of ``data``, letterboxed to ``imgsz`` as
    detect.py letterboxes for a fixed-size model, spread evenly over the split. Labels are not read."""
    if n < 1:
        raise UserError(f"--calib {n}: give at least 1 calibration image")
    files = list_image_files(check_dataset(data)["train"], prefix="--int8 calibration: ")
    picked = [files[i] for i in np.linspace(0, len(files) - 1, min(n, len(files))).round().astype(int)]
    images = [im for _, im, *_ in LoadImages(picked, img_size=list(imgsz), stride=stride, auto=False)]
    LOGGER.info(f"{colorstr('INT8:')} {len(images)} calibration images from {data} (train split, {len(files)} images)")
    return [(im[None].astype(np.float32) / 255.0) for im in images]


def export_onnx_int8(onnx_file, calib):
    """Static INT8 quantization (QDQ, per-channel int8 weights, uint8 activations) of an exported float ONNX file;
    the Detect decoding (sigmoid, grid and anchor arithmetic) stays float. Writes <stem>_int8.onnx."""
    quantization = require("onnxruntime.quantization", "ONNX --int8 export", package="onnxruntime")
    onnx = require("onnx", "ONNX --int8 export")
    prefix = colorstr("ONNX INT8:")
    onnx_file = Path(onnx_file)
    file = onnx_file.with_name(f"{onnx_file.stem}_int8.onnx")
    LOGGER.info(f"\n{prefix} starting static quantization with {len(calib)} calibration images...")
    graph = onnx.load(str(onnx_file))
    conv_ops = [n.name for n in graph.graph.node if n.op_type == "Conv"]
    input_name = graph.graph.input[0].name

    class Reader(quantization.CalibrationDataReader):
        def __init__(self):
            self.batches = iter(calib)

        def get_next(self):
            x = next(self.batches, None)
            return None if x is None else {input_name: x}

    prepared = file.with_suffix(".prep.onnx")  # shape inference and graph clean-up, as ORT recommends first
    quantization.shape_inference.quant_pre_process(str(onnx_file), str(prepared))
    quantization.quantize_static(
        str(prepared), str(file), Reader(),
        quant_format=quantization.QuantFormat.QDQ,
        activation_type=quantization.QuantType.QUInt8,
        weight_type=quantization.QuantType.QInt8,
        per_channel=True,
        nodes_to_quantize=conv_ops,  # the convolutions carry the compute; the box decoding stays float
        calibrate_method=quantization.CalibrationMethod.MinMax,
        extra_options={"CalibMaxIntermediateOutputs": 32},  # bounds calibration memory at 640 px
    )
    prepared.unlink()
    quantized = onnx.load(str(file))
    del quantized.metadata_props[:]
    for entry in graph.metadata_props:
        value = json.dumps("int8") if entry.key == "precision" else entry.value
        quantized.metadata_props.add(key=entry.key, value=value)
    onnx.save(quantized, str(file))
    LOGGER.info(f"{prefix} export success, saved as {file} ({file.stat().st_size / 1e6:.1f} MB)")
    return file


def _detect_head_ops(ov_model, model):
    """Names of the OpenVINO ops of the Detect layer other than its convolutions: the box decoding arithmetic, which
    INT8 would coarsen to a few pixels, is kept out of quantization."""
    idx = len(model.model) - 1
    keys = (f"model.{idx}/", f"model.{idx}.")
    return [op.get_friendly_name() for op in ov_model.get_ops()
            if any(k in op.get_friendly_name() for k in keys)
            and op.get_type_name() not in ("Convolution", "Constant", "Parameter", "Result", "FakeQuantize")]


def export_openvino(model, im, file, metadata, half=False, calib=None):
    """Convert ``model`` with OpenVINO into ``<stem>_openvino_model/`` (``<stem>_int8_openvino_model/`` with
    ``calib`` images: NNCF post-training quantization): <stem>.xml, <stem>.bin and metadata.yaml. ``half`` stores
    fp16 weights and asks for bf16 execution (fp16 on CPUs without bf16)."""
    ov = import_openvino("OpenVINO export")
    int8 = calib is not None
    prefix = colorstr("OpenVINO:")
    file = Path(file)
    folder = file.with_name(f"{file.stem}_{'int8_' if int8 else ''}openvino_model")
    LOGGER.info(f"\n{prefix} starting export with openvino {ov.__version__}...")
    with _quiet_tracer():
        ov_model = ov.convert_model(model, example_input=im, input=[tuple(im.shape)])
    precision = "int8" if int8 else "bf16" if half else "fp32"
    if int8:
        nncf = import_nncf()
        LOGGER.info(f"{prefix} NNCF post-training quantization with {len(calib)} calibration images...")
        ov_model = nncf.quantize(
            ov_model,
            nncf.Dataset(calib),
            preset=nncf.QuantizationPreset.MIXED,
            subset_size=len(calib),
            ignored_scope=nncf.IgnoredScope(names=_detect_head_ops(ov_model, model), validate=False),
        )
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    xml = folder / f"{file.stem}.xml"
    ov.save_model(ov_model, str(xml), compress_to_fp16=half)
    (folder / OPENVINO_METADATA).write_text(yaml.safe_dump({**metadata, "precision": precision}, sort_keys=False))
    size = sum(f.stat().st_size for f in folder.iterdir()) / 1e6
    LOGGER.info(f"{prefix} export success ({precision}), saved as {folder} ({size:.1f} MB)")
    return folder


def export_engine(model, im, file, metadata, half=False, workspace_gb=4):
    """Build a TensorRT engine (via a static ONNX export) into <stem>.engine: a 4-byte little-endian length and the
    json metadata, then the serialized engine. Needs CUDA and the tensorrt package."""
    if im.device.type != "cuda":
        raise UserError("TensorRT export needs a CUDA device: pass --device 0")
    trt = require("tensorrt", "TensorRT export")
    prefix = colorstr("TensorRT:")
    file = Path(file)
    onnx_file = export_onnx(model, im, file.with_name(f"{file.stem}_trt"), metadata)
    LOGGER.info(f"\n{prefix} starting export with tensorrt {trt.__version__}...")
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_file)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise UserError(f"TensorRT could not parse {onnx_file}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_gb << 30)
    if half and builder.platform_has_fast_fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    engine = builder.build_serialized_network(network, config)
    onnx_file.unlink()
    if engine is None:
        raise UserError("TensorRT could not build an engine for this model (see the TensorRT log above)")
    meta = json.dumps({**metadata, "precision": "fp16" if half else "fp32"}).encode()
    file = file.with_suffix(".engine")
    file.write_bytes(len(meta).to_bytes(4, byteorder="little") + meta + bytes(engine))
    LOGGER.info(f"{prefix} export success, saved as {file} ({file.stat().st_size / 1e6:.1f} MB)")
    return file


def check_formats(include):
    """Lower-cased ``include`` after checking every entry is a known format."""
    include = [x.lower() for x in include]
    unknown = [x for x in include if x not in FORMATS]
    if unknown:
        raise UserError(f"--include {unknown}: unknown format(s); choose from {list(FORMATS)}")
    return include


def export_model(model, im, file, include=FORMATS[:2], opset=None, dynamic=False, simplify=False, inplace=False,
                 check=True, half=False, calib=None):
    """Export a torch model (fused and prepared here) to each format in ``include`` next to ``file``.

    im is the example input (N, 3, H, W). ``half``: bf16 OpenVINO (float16 ``im`` makes float16 TorchScript/ONNX,
    and ``half`` an fp16 engine); ``calib``: INT8 calibration images, which add <stem>_int8.onnx and make the OpenVINO
    model INT8. Returns (list of exported paths, {path: max abs diff to PyTorch or None}).
    """
    include = check_formats(include)
    model = prepare_model(model, inplace=inplace)
    if im.dtype == torch.float16:
        model = model.half()
    with torch.no_grad():
        model(im)  # a dry run builds anything lazily initialised (Detect grids) before tracing
    names = getattr(model, "names", None) or {i: f"class{i}" for i in range(model.model[-1].nc)}
    model.names = names
    fp = "fp16" if im.dtype == torch.float16 else "fp32"
    metadata = export_metadata(model, im.shape[2:], dynamic=dynamic, precision=fp)
    exported = []  # (path, precision)
    if "torchscript" in include:
        exported.append((export_torchscript(model, im, file, metadata), fp))
    if "onnx" in include:
        onnx_file = export_onnx(model, im, file, metadata, opset=opset, dynamic=dynamic, simplify=simplify)
        exported.append((onnx_file, fp))
        if calib is not None:
            exported.append((export_onnx_int8(onnx_file, calib), "int8"))
    if "openvino" in include:
        folder = export_openvino(model, im.float(), file, metadata, half=half, calib=calib)
        exported.append((folder, "int8" if calib is not None else "bf16" if half else "fp32"))
    if "engine" in include:
        exported.append((export_engine(model, im, file, metadata, half=half), "fp16" if half else "fp32"))
    diffs = {}
    if check:
        for f, precision in exported:
            diffs[f] = check_export(model, f, im, atol=PRECISION_ATOL[precision])
            if dynamic and f.suffix == ".onnx":  # a second batch size and shape exercises the dynamic axes
                h, w = im.shape[2:]
                other = torch.rand(im.shape[0] + 1, 3, h + 32, w + 64, dtype=im.dtype, device=im.device)
                diffs[f] = max(diffs[f] or 0.0, check_export(model, f, other, atol=PRECISION_ATOL[precision]) or 0.0)
    return [f for f, _ in exported], diffs


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
    int8=False,
    data=None,
    calib=DEFAULT_CALIB,
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
    cuda_half = half and device.type == "cuda"
    if half and not cuda_half and set(include) - {"openvino"}:
        raise UserError("--half for torchscript, onnx and engine needs a CUDA device (--device 0); on CPU --half "
                        "applies to --include openvino only (bf16 execution)")
    if half and dynamic:
        raise UserError("--half and --dynamic cannot be combined; export one or the other")
    if int8 and not set(include) & {"onnx", "openvino"}:
        raise UserError("--int8 applies to --include onnx and openvino")
    if int8 and not data:
        raise UserError("--int8 needs --data dataset.yaml: calibration images come from its train split")
    if int8 and dynamic:
        raise UserError("--int8 and --dynamic cannot be combined; INT8 models are calibrated at one --imgsz")
    if "engine" in include and dynamic:
        raise UserError("--include engine builds a fixed-size engine; drop --dynamic")
    model = attempt_load(weights, device=device, inplace=True, fuse=True)
    gs = int(max(int(model.stride.max()), 32))
    imgsz = check_img_size(imgsz, s=gs)
    calib_images = calibration_images(data, imgsz, stride=gs, n=calib) if int8 else None
    torch.manual_seed(0)
    im = torch.rand(batch_size, 3, *imgsz, device=device)  # random pixels exercise every output channel
    if cuda_half and set(include) & {"torchscript", "onnx"}:
        im, model = im.half(), model.half()
    LOGGER.info(f"\n{colorstr('PyTorch:')} starting from {weights} with input {tuple(im.shape)}")
    files, _ = export_model(model, im, weights, include=include, opset=opset, dynamic=dynamic,
                            simplify=simplify, inplace=inplace, half=half, calib=calib_images)
    LOGGER.info(
        f"\nExport complete: {', '.join(str(f) for f in files)}\n"
        f"Detect:   python detect.py --weights {files[-1]}" + ("" if dynamic else f" --imgsz {imgsz[0]} {imgsz[1]}") +
        f"\nValidate: python val.py --weights {files[-1]}" + ("" if dynamic else f" --imgsz {max(imgsz)}")
    )
    return [str(f) for f in files]


def file_hash(path, chunk=1 << 20):
    """sha256 hex digest of a file's content."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def backend_weights(weights, backend, imgsz, cache=None):
    """The .onnx file or OpenVINO folder for ``--backend onnx|openvino`` with .pt weights, exported on first use.

    Conversions live in ``cache/<stem>-<sha256 of the weights, 16 hex>-<h>x<w>/`` (runs/backend-cache by default),
    so a retrained file gets a new entry and a renamed copy reuses the old one. Other weights pass through.
    """
    if backend in (None, "", "pytorch"):
        return weights
    if backend not in ("onnx", "openvino"):
        raise UserError(f"--backend {backend}: choose pytorch, onnx or openvino")
    if isinstance(weights, (list, tuple)):
        if len(weights) != 1:
            raise UserError(f"--backend {backend} takes one weights file, not an ensemble of {len(weights)}")
        weights = weights[0]
    weights = Path(weights)
    if weights_format(weights) != "pt":
        LOGGER.info(f"--backend {backend}: {weights} is already an exported model; running it as it is")
        return weights
    if not weights.is_file():
        raise UserError(f"--weights {weights}: file not found")
    h, w = (imgsz, imgsz) if isinstance(imgsz, int) else tuple(imgsz)
    cache = Path(cache or BACKEND_CACHE)
    folder = cache / f"{weights.stem}-{file_hash(weights)[:16]}-{h}x{w}"
    target = folder / (f"{weights.stem}.onnx" if backend == "onnx" else f"{weights.stem}_openvino_model")
    done = target.is_file() if backend == "onnx" else (target / OPENVINO_METADATA).is_file()
    if done:
        LOGGER.info(f"--backend {backend}: using the cached conversion {target}")
        return target
    LOGGER.info(f"--backend {backend}: converting {weights} once into {folder}")
    cache.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=cache, prefix=f"{folder.name}."))  # moved into place when complete
    try:
        copy = work / weights.name
        shutil.copyfile(weights, copy)  # the exporters write next to the weights they read
        exported = Path(run(weights=copy, imgsz=(h, w), include=(backend,))[-1])
        folder.mkdir(exist_ok=True)
        exported.replace(target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


def parse_opt(argv=None):
    parser = argparse.ArgumentParser(description="Export a YOLOv5 model to TorchScript / ONNX")
    parser.add_argument("--weights", type=str, default=None,
                        help="model.pt path (default: newest runs/train/*/weights/best.pt)")
    parser.add_argument("--imgsz", "--img", "--img-size", nargs="+", type=int, default=[640, 640], help="image (h, w)")
    parser.add_argument("--batch-size", type=int, default=1, help="batch size")
    parser.add_argument("--device", default="cpu", help="cuda device, i.e. 0 or 0,1,2,3 or cpu")
    parser.add_argument("--half", action="store_true",
                        help="FP16 export (CUDA); for OpenVINO on CPU: bf16 execution (fp16 where the CPU lacks bf16)")
    parser.add_argument("--inplace", action="store_true", help="set YOLOv5 Detect() inplace=True")
    parser.add_argument("--dynamic", action="store_true", help="ONNX: dynamic batch and image size")
    parser.add_argument("--simplify", action="store_true", help="ONNX: simplify model (needs onnxsim)")
    parser.add_argument("--opset", type=int, default=None, help=f"ONNX: opset version (default {DEFAULT_OPSET})")
    parser.add_argument("--include", nargs="+", default=["torchscript", "onnx"], help=f"formats: {FORMATS}")
    parser.add_argument("--int8", action="store_true", help="OpenVINO / ONNX: INT8 post-training quantization")
    parser.add_argument("--data", type=str, default=None, help="dataset.yaml whose train images calibrate --int8")
    parser.add_argument("--calib", type=int, default=DEFAULT_CALIB, help="--int8: number of calibration images")
    opt = parser.parse_args(argv)
    print_args(vars(opt), "export")
    return opt


def main(argv=None):
    return exit_code(lambda: run(**vars(parse_opt(argv))))


if __name__ == "__main__":
    sys.exit(main())
