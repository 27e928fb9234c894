"""Checkpoints: the project's own format, official YOLOv5 pickles, atomic saving and weight transfer.

The project writes plain dicts of tensors and built-in types, so ``torch.load(..., weights_only=True)`` reads
them. Official YOLOv5 v6.0-v7.0 files pickle whole modules; they are read with the same ``weights_only``
unpickler, which only admits the globals listed in ``OFFICIAL_GLOBALS``: each is mapped to an inert record
(``PickledObject``) that keeps the pickled attributes and never runs code. The model is then rebuilt from the
record's ``yaml`` and its tensors.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from collections import OrderedDict
from datetime import datetime
from pathlib import Path
from typing import Any

import torch

from utils.downloads import attempt_download
from utils.general import LOGGER, UserError, names_dict

FORMAT = "yolov5-plugins"
VERSION = 1


class PickledObject:
    """Inert stand-in for a pickled module: holds the attributes the pickle restores, runs nothing."""

    def __setstate__(self, state: object) -> None:
        self.__dict__.update(state if isinstance(state, dict) else {"state": state})


_OFFICIAL_CLASSES = [
    "models.yolo.Model",
    "models.yolo.DetectionModel",
    "models.yolo.Detect",
    "models.yolo.SegmentationModel",  # v7.0 -seg checkpoints
    "models.yolo.Segment",
    "models.common.Proto",
    "models.common.Conv",
    "models.common.C3",
    "models.common.Bottleneck",
    "models.common.SPPF",
    "models.common.SPP",
    "models.common.Focus",
    "models.common.Concat",
    "models.common.DWConv",
    "models.common.GhostConv",
    "models.common.GhostBottleneck",
    "models.common.C3Ghost",
    "models.common.C3TR",
    "models.common.TransformerLayer",
    "models.common.TransformerBlock",
    "models.common.C3x",
    "models.common.C3SPP",
    "models.common.BottleneckCSP",
    "models.common.CrossConv",
    "models.common.Contract",
    "models.common.Expand",
    "models.common.DWConvTranspose2d",
    "models.experimental.MixConv2d",  # official MixConv2d lives in experimental.py, and CrossConv did up to v6.0
    "models.experimental.CrossConv",
    "torch.nn.modules.conv.Conv2d",
    "torch.nn.modules.batchnorm.BatchNorm2d",
    "torch.nn.modules.activation.SiLU",
    "torch.nn.modules.pooling.MaxPool2d",
    "torch.nn.modules.upsampling.Upsample",
    "torch.nn.modules.container.Sequential",
    "torch.nn.modules.container.ModuleList",
    "torch.nn.modules.linear.Identity",
    "torch.nn.modules.linear.Linear",
    "torch.nn.modules.linear.NonDynamicallyQuantizableLinear",  # MultiheadAttention's out_proj
    "torch.nn.modules.activation.MultiheadAttention",
    "torch.nn.modules.activation.LeakyReLU",
    "torch.nn.modules.conv.ConvTranspose2d",
    "torch.nn.modules.padding.ZeroPad2d",
]
# (stand-in, name in the pickle): every official class maps to its own subclass, so messages can name it
OFFICIAL_GLOBALS = [
    (type(name.rsplit(".", 1)[1], (PickledObject,), {"qualname": name}), name) for name in _OFFICIAL_CLASSES
]
_STAND_INS = {name: cls for cls, name in OFFICIAL_GLOBALS}
# attributes an official pickle may look up with getattr: v7.0 Segment keeps ``self.detect = Detect.forward``, which
# pickles as getattr(models.yolo.Detect, 'forward')
_OFFICIAL_ATTRIBUTES = {("models.yolo.Detect", "forward")}


def _official_getattr(owner: object, name: object) -> str:
    """Stands in for ``getattr`` in official pickles: only the attributes in _OFFICIAL_ATTRIBUTES, answered with
    their dotted name (an inert string); anything else is refused (a real getattr would reach any attribute of the
    admitted classes, e.g. a function's module globals)."""
    qualname = getattr(owner, "qualname", None) if isinstance(owner, type) and issubclass(owner, PickledObject) \
        else None
    if (qualname, name) not in _OFFICIAL_ATTRIBUTES:
        raise pickle.UnpicklingError(f"getattr of {name!r:.40} on {owner!r:.60} is not admitted")
    return f"{qualname}.{name}"


OFFICIAL_GLOBALS.append((_official_getattr, "builtins.getattr"))


def _numpy_globals():
    """numpy scalars appear in unstripped official checkpoints (best_fitness)."""
    try:
        import numpy as np

        multiarray = np._core.multiarray if hasattr(np, "_core") else np.core.multiarray
        scalar = (multiarray.scalar, "numpy.core.multiarray.scalar")
        return [scalar, (multiarray.scalar, "numpy._core.multiarray.scalar"), np.dtype, type(np.dtype("float64"))]
    except Exception:  # numpy internals move between versions; without them such files give the clear error
        return []


MAX_PICKLE_BYTES = 64 * 2**20  # the pickled structure of a checkpoint (tensors are stored beside it): ~100 KB
MAX_UNPACKED_BYTES = 16 * 2**30  # everything in the archive: yolov5x6 with optimizer state is under 2 GB
# torch writes members uncompressed; tensors of real weights compress to ~90% at best. A compressed member is
# refused when it would inflate more than this (a zip bomb), once it unpacks to over MAX_INFLATED_MEMBER bytes.
MAX_COMPRESSION_RATIO = 10
MAX_INFLATED_MEMBER = 2**20


def _check_archive_sizes(path: str | Path) -> None:
    """Refuse, before anything is unpacked, an archive whose declared sizes are beyond any YOLOv5 checkpoint
    (a zip bomb, or a pickle carrying a huge bytes object)."""
    with zipfile.ZipFile(path) as z:
        members = z.infolist()
    total = sum(m.file_size for m in members)
    pickles = [m for m in members if m.filename.endswith(".pkl") and m.file_size > MAX_PICKLE_BYTES]
    if pickles:
        raise UserError(f"'{path}' holds a {pickles[0].file_size / 2**20:.0f} MB pickle ({pickles[0].filename}), "
                        f"over the {MAX_PICKLE_BYTES // 2**20} MB limit; not a YOLOv5 checkpoint")
    inflating = [m for m in members if m.compress_type != zipfile.ZIP_STORED and m.file_size > MAX_INFLATED_MEMBER
                 and m.file_size > MAX_COMPRESSION_RATIO * m.compress_size]
    if inflating:
        m = inflating[0]
        raise UserError(f"'{path}' holds a member ({m.filename!s:.80}) that inflates {m.compress_size:,} bytes to "
                        f"{m.file_size:,}, over {MAX_COMPRESSION_RATIO}x; torch stores tensors uncompressed, so this "
                        f"is not a YOLOv5 checkpoint")
    if total > MAX_UNPACKED_BYTES:
        raise UserError(f"'{path}' would unpack to {total / 2**30:.1f} GB, over the {MAX_UNPACKED_BYTES // 2**30} GB "
                        f"limit; not a YOLOv5 checkpoint")


def _plain_number(value):
    """A numpy scalar (unstripped official files store best_fitness so) as a float; None if it is not one."""
    try:
        return float(value)
    except Exception:  # a hostile dtype state can make any conversion fail
        return None


def load_checkpoint(path: str | Path) -> dict:
    """Read a checkpoint file (project or official format) into a dict, admitting only known globals."""
    path = attempt_download(path)  # an official release name (yolov5s.pt) is fetched when missing
    if not path.is_file():
        raise UserError(f"weights '{path}' is not a file")
    if not zipfile.is_zipfile(path):
        raise UserError(f"'{path}' is not a PyTorch checkpoint (expected a torch.save zip archive)")
    try:
        _check_archive_sizes(path)
        with torch.serialization.safe_globals(OFFICIAL_GLOBALS + _numpy_globals()):
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except UserError:
        raise
    except pickle.UnpicklingError as e:
        msg = str(e)
        hint = msg.split("WeightsUnpickler error:")[-1].strip().splitlines()[0] if msg else "unknown"
        raise UserError(
            f"'{path}' names objects this loader does not admit ({hint}). Only project checkpoints and official "
            f"YOLOv5 v6.0-v7.0 detection checkpoints are supported"
        ) from e
    except (RuntimeError, EOFError, zipfile.BadZipFile) as e:
        raise UserError(f"'{path}' is corrupt or truncated: {e}") from e
    except Exception as e:  # e.g. numpy refusing a crafted dtype state: the file is not a sound checkpoint
        raise UserError(f"'{path}' could not be read: {type(e).__name__}: {str(e)[:200]}") from e
    if not isinstance(ckpt, dict) or not ({"model", "ema"} & set(ckpt)):
        raise UserError(f"'{path}' is not a YOLOv5 checkpoint (no 'model' or 'ema' entry)")
    for key, value in ckpt.items():
        if type(value).__module__ == "numpy":
            ckpt[key] = _plain_number(value)
    return ckpt


MAX_MODULE_DEPTH = 64  # official models nest 4 deep (Model > Sequential > C3 > Sequential > Bottleneck > Conv)
MAX_MODULE_VISITS = 100_000  # yolov5x6 has about 1,000 modules; shared ones (the SiLU) are visited once per user


def _record_state_dict(record, prefix="", walk=None):
    """State dict (parameters and persistent buffers, official key names) of a pickled module record. A record
    inside itself (a cycle), or a tree that takes more than MAX_MODULE_VISITS visits (children shared so that
    the walk grows exponentially), is refused."""
    walk = {"open": set(), "visits": 0} if walk is None else walk
    walk["visits"] += 1
    where = prefix.rstrip(".") or "model"
    if id(record) in walk["open"] or prefix.count(".") > MAX_MODULE_DEPTH:
        raise UserError(f"checkpoint module tree is malformed at '{where}': a module refers back to itself (or "
                        f"nests beyond {MAX_MODULE_DEPTH} levels); refused")
    if walk["visits"] > MAX_MODULE_VISITS:
        raise UserError(f"checkpoint module tree is malformed: over {MAX_MODULE_VISITS} modules to walk (at "
                        f"'{where}'); refused")
    walk["open"].add(id(record))
    sd = OrderedDict()
    d = record.__dict__
    non_persistent = d.get("_non_persistent_buffers_set") or set()
    for kind in ("_parameters", "_buffers", "_modules"):
        if not isinstance(d.get(kind) or {}, dict):
            raise UserError(f"checkpoint module '{where}' has a malformed {kind} entry")
    if not isinstance(non_persistent, (set, frozenset)):
        raise UserError(f"checkpoint module '{where}' has a malformed _non_persistent_buffers_set entry")
    for name, p in (d.get("_parameters") or {}).items():
        if p is not None:
            sd[prefix + str(name)] = p.detach() if isinstance(p, torch.Tensor) else p
    for name, b in (d.get("_buffers") or {}).items():
        if b is not None and name not in non_persistent:
            sd[prefix + str(name)] = b
    for name, child in (d.get("_modules") or {}).items():
        if isinstance(child, PickledObject):
            sd.update(_record_state_dict(child, f"{prefix}{name}.", walk))
        elif child is not None:
            raise UserError(f"checkpoint module '{prefix}{name}' is not a module record")
    walk["open"].discard(id(record))
    return sd


def _check_state_dict(sd, source):
    """Every entry a tensor, and the anchors finite and positive."""
    if not isinstance(sd, dict) or not sd:
        raise UserError(f"{source}: the checkpoint holds no weights (a mapping of tensors)")
    bad = [k for k, v in sd.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise UserError(f"{source}: checkpoint weight entries {bad[:3]} are not tensors")
    anchors = [k for k, v in sd.items() if k.endswith("anchors") and not (v.isfinite().all() and (v > 0).all())]
    if anchors:
        raise UserError(f"{source}: checkpoint anchors '{anchors[0]}' are not finite positive numbers")
    return sd


def checkpoint_model_parts(ckpt: dict, source: str | Path = "checkpoint") -> tuple[dict, dict, dict]:
    """(yaml dict, names {i: name} with one name per class, state dict) of a checkpoint dict, preferring EMA
    weights like YOLOv5; a malformed entry is a UserError naming it."""
    if ckpt.get("format") == FORMAT:
        version = ckpt.get("version", VERSION)
        if isinstance(version, bool) or not isinstance(version, int):
            raise UserError(f"{source}: malformed checkpoint 'version' {version!r:.40}; expected an integer")
        if version > VERSION:
            LOGGER.warning(f"WARNING: checkpoint format version {version} is newer than this code's "
                           f"({VERSION}); loading what matches")
        yaml = ckpt.get("yaml")
        if not isinstance(yaml, dict):
            raise UserError(f"{source}: the checkpoint's 'yaml' (its model description) is not a mapping")
        sd = _check_state_dict(ckpt.get("ema") or ckpt.get("model"), source)
        return yaml, _checkpoint_names(ckpt.get("names"), yaml.get("nc"), source), sd
    record = ckpt.get("ema") or ckpt.get("model")
    if not isinstance(record, PickledObject) or not isinstance(getattr(record, "yaml", None), dict):
        raise UserError("checkpoint holds no model with a 'yaml' description; cannot rebuild it")
    yaml = dict(record.yaml)
    nc = getattr(record, "nc", None) or yaml.get("nc")
    yaml["nc"] = nc
    sd = _check_state_dict(_record_state_dict(record), source)
    return yaml, _checkpoint_names(getattr(record, "names", None), nc, source), sd


def _checkpoint_names(names, nc, source="checkpoint"):
    """{i: name} for classes 0..nc-1: ids from a list or mapping; classes without a name are called 'class{i}'
    (with a warning), names beyond nc are dropped."""
    if names is not None and not isinstance(names, (dict, list, tuple)):
        raise UserError(f"{source}: checkpoint 'names' must be a list or a mapping, got {type(names).__name__}")
    try:
        out = names_dict(names) or {}
    except (TypeError, ValueError, OverflowError) as e:
        raise UserError(f"{source}: checkpoint 'names' keys must be class ids, got {list(names)[:5]!r:.80}") from e
    if isinstance(nc, bool) or not isinstance(nc, int) or nc < 1:
        return out
    unnamed = [i for i in range(nc) if i not in out]
    if unnamed and out:
        LOGGER.warning(f"WARNING: {source}: {len(unnamed)} of {nc} classes have no name (e.g. {unnamed[:3]}); "
                       f"called 'class<i>'")
    return {i: out.get(i, f"class{i}") for i in range(nc)}


def nonfinite_weights(ckpt: dict) -> list[str]:
    """Names ('model/key', 'ema/key') of the floating-point tensors in ``ckpt['model']`` and ``ckpt['ema']``
    (state dicts) that hold a NaN or inf; empty when every weight is finite."""
    bad = []
    for part in ("model", "ema"):
        state = ckpt.get(part)
        if isinstance(state, dict):
            bad += [f"{part}/{k}" for k, v in state.items()
                    if isinstance(v, torch.Tensor) and v.is_floating_point() and not torch.isfinite(v).all()]
    return bad


def save_checkpoint(ckpt: dict, path: str | Path, pickle_module: Any = None) -> Path:
    """Write ``ckpt`` atomically and durably: a temporary file in the same folder, fsynced, then renamed over
    ``path`` and the folder fsynced, so a kill or power cut at any moment leaves the old or the new file whole.
    Refuses weights holding NaN/inf; a failed write (full disk) is a UserError saying the old file is intact.
    Temporary files left by dead processes in the folder are removed first. ``pickle_module``: another pickler for
    torch.save (models/export/official.py writes official class names with one)."""
    path = Path(path)
    bad = nonfinite_weights(ckpt)
    if bad:
        raise UserError(f"refusing to write {path}: {len(bad)} weight tensors hold NaN/inf (e.g. {bad[:3]})")
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_tmp_files(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(ckpt, f, **({"pickle_module": pickle_module} if pickle_module else {}))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as e:  # torch's zip writer reports a failed write (ENOSPC) as RuntimeError
        kept = f"the previous {path.name} is intact" if path.exists() else f"no {path.name} was written"
        raise UserError(f"could not write {path} ({e}); {kept}") from e
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)
    return path


def _fsync_dir(folder):
    """Make a rename in ``folder`` durable (POSIX; folders cannot be opened for fsync on Windows)."""
    if os.name == "nt":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_stale_tmp_files(folder: str | Path) -> None:
    """Delete ``.<name>.<pid>.tmp`` files of :func:`save_checkpoint` in ``folder`` whose writer process is gone
    (killed mid-write). Files of live processes, and all of them on Windows (no cheap liveness test), stay."""
    if os.name == "nt":
        return
    for f in Path(folder).glob(".*.tmp"):
        pid = f.name[:-len(".tmp")].rsplit(".", 1)[-1]
        if pid.isdigit() and int(pid) != os.getpid() and not _process_alive(int(pid)):
            f.unlink(missing_ok=True)
            LOGGER.info(f"removed {f}, left by an interrupted checkpoint write")


def _process_alive(pid):
    try:
        os.kill(pid, 0)  # signal 0: existence check only
    except (ProcessLookupError, OverflowError):  # no such process, or not a pid at all
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def make_checkpoint(model: torch.nn.Module, names: dict | None = None, ema: object | None = None,
                    optimizer: torch.optim.Optimizer | None = None, epoch: int = -1,
                    best_fitness: float | None = None, opt: dict | None = None, hyp: dict | None = None,
                    half: bool = True, train_state: dict | None = None) -> dict:
    """The project's checkpoint dict (see module docstring), plain types only. Weights are fp16 when ``half``
    (released files); training keeps fp32 (``half=False``) so that a resumed run continues exactly.
    ``train_state`` holds the rest of the training loop's state (a dict of plain types) for --resume."""
    from utils.torch_utils import de_parallel

    model = de_parallel(model)

    def state_dict(m):
        return {k: v.detach().half() if half and v.is_floating_point() else v.detach().clone()
                for k, v in m.state_dict().items()}

    return {
        "format": FORMAT,
        "version": VERSION,
        "epoch": epoch,
        "best_fitness": None if best_fitness is None else float(best_fitness),
        "model": state_dict(model),
        "ema": state_dict(ema.ema) if ema is not None else None,
        "updates": ema.updates if ema is not None else 0,
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "yaml": model.yaml,
        "names": dict(names if names is not None else model.names),
        "opt": _plain(opt or {}),
        "hyp": _plain(hyp or {}),
        "train_state": _plain(train_state) if train_state else None,
        "date": datetime.now().isoformat(),
    }


def _plain(d):
    """Dict with values the weights-only unpickler accepts (Paths and other objects become strings)."""
    out = {}
    for k, v in d.items():
        if isinstance(v, (str, int, float, bool, type(None))):
            out[k] = v
        elif isinstance(v, (list, tuple)) and all(isinstance(x, (str, int, float, bool)) for x in v):
            out[k] = list(v)
        elif isinstance(v, dict):
            out[k] = _plain(v)
        else:
            out[k] = str(v)
    return out


def transfer_weights(model: torch.nn.Module, state_dict: dict, exclude: tuple[str, ...] = ()) -> tuple[int, int]:
    """Copy every entry of ``state_dict`` whose key and shape match ``model`` (and whose key contains none of
    ``exclude``); log and return (transferred, total entries of the model)."""
    own = model.state_dict()
    matched = {
        k: v.to(own[k].dtype)
        for k, v in state_dict.items()
        if k in own and v.shape == own[k].shape and not any(x in k for x in exclude)
    }
    model.load_state_dict(matched, strict=False)
    LOGGER.info(f"Transferred {len(matched)}/{len(own)} items from pretrained weights")
    return len(matched), len(own)


def strip_optimizer(path: str | Path, out: str | Path | None = None) -> dict:
    """Shrink a finished checkpoint: drop the optimizer and training state, keep only the EMA weights (as
    'model'), in fp16 like released YOLOv5 files (fp32 when a weight exceeds the fp16 range)."""
    ckpt = load_checkpoint(path)
    if ckpt.get("format") != FORMAT:
        raise UserError(f"'{path}' is not a checkpoint of this project; nothing to strip")
    weights = ckpt.get("ema") or ckpt["model"]
    half = {k: v.half() if v.is_floating_point() else v for k, v in weights.items()}
    overflow = nonfinite_weights({"model": half})
    if overflow and not nonfinite_weights({"model": weights}):
        LOGGER.warning(f"WARNING: {len(overflow)} weight tensors of {path} exceed the fp16 range (e.g. "
                       f"{overflow[:2]}); stripped weights stay fp32")
        half = weights
    ckpt["model"] = half
    ckpt.update(ema=None, optimizer=None, updates=0, epoch=-1, train_state=None)
    save_checkpoint(ckpt, out or path)
    size = Path(out or path).stat().st_size / 1e6
    LOGGER.info(f"Optimizer stripped from {path}{f', saved as {out}' if out else ''}, {size:.1f}MB")
    return ckpt
