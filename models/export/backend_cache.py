"""``--backend onnx|openvino`` for .pt weights in detect.py and val.py: the weights are exported once and the
conversion is cached under runs/backend-cache, keyed by the weights' content hash and the input size."""

import hashlib
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from models.backends import OPENVINO_METADATA, weights_format
from models.export.pipeline import export_weights
from utils.general import LOGGER, ROOT, UserError

BACKEND_CACHE = ROOT / "runs" / "backend-cache"  # detect/val --backend conversions of .pt weights (content-hashed)


def file_hash(path: str | Path, chunk: int = 1 << 20) -> str:
    """sha256 hex digest of a file's content."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def backend_weights(weights: str | Path | Sequence[str | Path], backend: str | None, imgsz: int | Sequence[int],
                    cache: str | Path | None = None) -> str | Path | Sequence[str | Path]:
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
        exported = Path(export_weights(weights=copy, imgsz=(h, w), include=(backend,))[-1])
        folder.mkdir(exist_ok=True)
        exported.replace(target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target
