"""``--backend onnx|openvino`` for .pt weights in detect.py and val.py: the weights are exported once and the
conversion is cached in ``<project>/backend-cache``, keyed by the weights' content hash and the input size.

The cache is a folder the user's runs write, so an entry is checked before it is reused (a regular file or folder
of this user, not a link; an OpenVINO folder a plain IR), and it is built so that nothing half-made is ever seen:
the weights are copied into a private folder while they are hashed (the conversion reads exactly the bytes that
named it), converted there and renamed into place. Two runs converting the same new weights at once both succeed:
the one that renames second uses the first one's entry.
"""

import hashlib
import importlib.util
import os
import shutil
import tempfile
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path

import torch

from models.backends import OPENVINO_METADATA, fetch_weights, weights_format
from models.export.core import report_unwritable
from models.export.pipeline import export_weights
from utils.general import LOGGER, ROOT, UserError
from utils.script_check import check_openvino_ir

BACKEND_CACHE = ROOT / "runs" / "backend-cache"  # the cache of callers that name no project
CACHE_FOLDER = "backend-cache"  # the cache's folder inside a run's --project


# --backend auto: the exact (fp32) runtimes fastest first, per the CPU kind torch reports (its vector ISA, which
# ATEN_CPU_CAPABILITY caps). Measured with benchmarks/bench_cpu.py / formats.py, yolov5s 640 batch 1, 2 threads:
# AVX2-only EPYC: ONNX Runtime 102 ms, OpenVINO FP32 109 ms (issue 25); AVX-512 (+bf16) EPYC: ONNX Runtime 59.0 ms,
# OpenVINO FP32 60.2 ms (README formats table). README "CPU speed without bf16" has the numbers.
AUTO_BACKENDS = {"AVX512": ("onnx", "openvino"), "AVX2": ("onnx", "openvino")}
AUTO_DEFAULT = ("onnx", "openvino")  # other CPU kinds: not measured, the AVX2 order
AUTO_PACKAGES = {"onnx": ("onnx", "onnxruntime"), "openvino": ("openvino",)}


def auto_backend(device_type: str = "cpu", capability: str | None = None) -> str:
    """``--backend auto``: the fastest exact runtime installed for this CPU ('onnx', 'openvino'), or 'pytorch' on
    another device or when neither is installed; logs the choice in one line. ``capability`` overrides torch's CPU
    kind ('AVX512', 'AVX2', ...)."""
    if device_type != "cpu":
        LOGGER.info(f"--backend auto: PyTorch on the {device_type.upper()} device")
        return "pytorch"
    capability = capability or torch.backends.cpu.get_cpu_capability()
    order = AUTO_BACKENDS.get(capability, AUTO_DEFAULT)
    for backend in order:
        if all(importlib.util.find_spec(m) is not None for m in AUTO_PACKAGES[backend]):
            LOGGER.info(f"--backend auto: {backend} (fastest exact fp32 runtime installed for this {capability} CPU)")
            return backend
    LOGGER.info(f"--backend auto: PyTorch (neither onnxruntime nor openvino is installed; {order[0]} is faster on this "
                f"{capability} CPU)")
    return "pytorch"


def file_hash(path: str | Path, chunk: int = 1 << 20, copy_to: str | Path | None = None) -> str:
    """sha256 hex digest of a file's content; with ``copy_to``, the bytes hashed are also written there."""
    h = hashlib.sha256()
    with open(path, "rb") as f, open(copy_to, "wb") if copy_to else nullcontext() as out:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
            if out:
                out.write(block)
    return h.hexdigest()


def check_cached(target: Path, backend: str) -> None:
    """Refuse a cache entry that this user's conversion cannot have made: a link, a file or folder of another user,
    the wrong kind of file, or an OpenVINO folder that is not a plain IR (``check_openvino_ir``)."""
    for p in (target.parent, target):
        st = p.lstat()
        if p.is_symlink() or (hasattr(os, "getuid") and st.st_uid != os.getuid()):
            raise UserError(f"the cached conversion {p} is refused: it is a link or belongs to another user; "
                            f"delete {target.parent} to convert again")
    if backend == "onnx":
        if not target.is_file():
            raise UserError(f"the cached conversion {target} is not a file; delete {target.parent} to convert again")
        return  # DetectMultiBackend checks the ONNX graph itself before running it
    xml = target / f"{target.name.removesuffix('_openvino_model')}.xml"
    if not (target / OPENVINO_METADATA).is_file():
        raise UserError(f"the cached conversion {target} has no {OPENVINO_METADATA}; delete {target.parent} to "
                        f"convert again")
    check_openvino_ir(xml, xml.with_suffix(".bin"))


def backend_weights(weights: str | Path | Sequence[str | Path], backend: str | None, imgsz: int | Sequence[int],
                    cache: str | Path | None = None, project: str | Path | None = None,
                    device_type: str = "cpu") -> str | Path | Sequence[str | Path]:
    """The .onnx file or OpenVINO folder for ``--backend onnx|openvino`` with .pt weights, exported on first use.

    Conversions live in ``cache/<stem>-<sha256 of the weights, 16 hex>-<h>x<w>/``, so a retrained file gets a new
    entry and a renamed copy reuses the old one. ``cache`` defaults to ``project/backend-cache`` (the run's
    --project), else runs/backend-cache. Other weights pass through. ``auto``: ``auto_backend(device_type)``.
    """
    if backend == "auto":
        backend = auto_backend(device_type)
    if backend in (None, "", "pytorch"):
        return weights
    if backend not in ("onnx", "openvino"):
        raise UserError(f"--backend {backend}: choose pytorch, onnx or openvino, or auto")
    if isinstance(weights, (list, tuple)):
        if len(weights) != 1:
            raise UserError(f"--backend {backend} takes one weights file, not an ensemble of {len(weights)}")
        weights = weights[0]
    weights = Path(fetch_weights(weights))
    if weights_format(weights) != "pt":
        LOGGER.info(f"--backend {backend}: {weights} is already an exported model; running it as it is")
        return weights
    if not weights.is_file():
        raise UserError(f"--weights {weights}: file not found")
    h, w = (imgsz, imgsz) if isinstance(imgsz, int) else tuple(imgsz)
    cache = Path(cache or (Path(project) / CACHE_FOLDER if project else BACKEND_CACHE))
    name = f"{weights.stem}.onnx" if backend == "onnx" else f"{weights.stem}_openvino_model"

    def entry(digest: str) -> Path:
        return cache / f"{weights.stem}-{digest[:16]}-{h}x{w}" / name

    target = entry(file_hash(weights))
    if target.exists() or target.is_symlink():
        check_cached(target, backend)
        LOGGER.info(f"--backend {backend}: using the cached conversion {target}")
        return target
    LOGGER.info(f"--backend {backend}: converting {weights} once into {target.parent}")
    with report_unwritable(cache):
        cache.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(dir=cache, prefix=f".{target.parent.name}."))  # private: mode 0700
    try:
        with report_unwritable(target.parent):
            copy = work / weights.name  # the exporters write next to the weights they read
            target = entry(file_hash(weights, copy_to=copy))  # the key of exactly the bytes converted
            exported = Path(export_weights(weights=copy, imgsz=(h, w), include=(backend,))[-1])
            return _publish(exported, target, backend)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _publish(exported: Path, target: Path, backend: str) -> Path:
    """Rename a finished conversion to ``target``; where another run has just put its own there, use that one."""
    target.parent.mkdir(exist_ok=True)
    if backend == "onnx":
        os.replace(exported, target)  # a file: both runs' conversions are whole, the later one stays
        return target
    try:
        os.rename(exported, target)  # a folder is never renamed over a non-empty one
    except OSError:
        if not target.is_dir():
            raise
        LOGGER.info(f"--backend {backend}: another run converted the same weights first; using {target}")
    check_cached(target, backend)
    return target
