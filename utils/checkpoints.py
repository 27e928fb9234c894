"""Checkpoints: the project's own format, official YOLOv5 pickles, atomic saving and weight transfer.

The project writes plain dicts of tensors and built-in types, so ``torch.load(..., weights_only=True)`` reads
them. Official YOLOv5 v6.0-v7.0 files pickle whole modules; they are read with the same ``weights_only``
unpickler, which only admits the globals listed in ``OFFICIAL_GLOBALS``: each is mapped to an inert record
(``PickledObject``) that keeps the pickled attributes and never runs code. The model is then rebuilt from the
record's ``yaml`` and its tensors.
"""

import os
import pickle
import zipfile
from collections import OrderedDict
from datetime import datetime
from pathlib import Path

import torch

from utils.general import LOGGER, UserError

FORMAT = "yolov5-plugins"
VERSION = 1


class PickledObject:
    """Inert stand-in for a pickled module: holds the attributes the pickle restores, runs nothing."""

    def __setstate__(self, state):
        self.__dict__.update(state if isinstance(state, dict) else {"state": state})


_OFFICIAL_CLASSES = [
    "models.yolo.Model",
    "models.yolo.DetectionModel",
    "models.yolo.Detect",
    "models.common.Conv",
    "models.common.C3",
    "models.common.Bottleneck",
    "models.common.SPPF",
    "models.common.SPP",
    "models.common.Focus",
    "models.common.Concat",
    "models.common.DWConv",
    "torch.nn.modules.conv.Conv2d",
    "torch.nn.modules.batchnorm.BatchNorm2d",
    "torch.nn.modules.activation.SiLU",
    "torch.nn.modules.pooling.MaxPool2d",
    "torch.nn.modules.upsampling.Upsample",
    "torch.nn.modules.container.Sequential",
    "torch.nn.modules.container.ModuleList",
    "torch.nn.modules.linear.Identity",
]
# (stand-in, name in the pickle): every official class maps to its own subclass, so messages can name it
OFFICIAL_GLOBALS = [
    (type(name.rsplit(".", 1)[1], (PickledObject,), {"qualname": name}), name) for name in _OFFICIAL_CLASSES
]


def _numpy_globals():
    """numpy scalars appear in unstripped official checkpoints (best_fitness)."""
    try:
        import numpy as np

        multiarray = np._core.multiarray if hasattr(np, "_core") else np.core.multiarray
        scalar = (multiarray.scalar, "numpy.core.multiarray.scalar")
        return [scalar, (multiarray.scalar, "numpy._core.multiarray.scalar"), np.dtype, type(np.dtype("float64"))]
    except Exception:  # numpy internals move between versions; without them such files give the clear error
        return []


def load_checkpoint(path):
    """Read a checkpoint file (project or official format) into a dict, admitting only known globals."""
    path = Path(path)
    if not path.is_file():
        raise UserError(
            f"weights file not found: '{path}'. Train one with `python train.py`, or pass the path of a YOLOv5 "
            f"v6.0-v7.0 checkpoint (nothing is downloaded)"
        )
    if not zipfile.is_zipfile(path):
        raise UserError(f"'{path}' is not a PyTorch checkpoint (expected a torch.save zip archive)")
    try:
        with torch.serialization.safe_globals(OFFICIAL_GLOBALS + _numpy_globals()):
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        msg = str(e)
        hint = msg.split("WeightsUnpickler error:")[-1].strip().splitlines()[0] if msg else "unknown"
        raise UserError(
            f"'{path}' names objects this loader does not admit ({hint}). Only project checkpoints and official "
            f"YOLOv5 v6.0-v7.0 detection checkpoints are supported"
        ) from e
    except (RuntimeError, EOFError, zipfile.BadZipFile) as e:
        raise UserError(f"'{path}' is corrupt or truncated: {e}") from e
    if not isinstance(ckpt, dict) or not ({"model", "ema"} & set(ckpt)):
        raise UserError(f"'{path}' is not a YOLOv5 checkpoint (no 'model' or 'ema' entry)")
    return ckpt


def _record_state_dict(record, prefix=""):
    """State dict (parameters and persistent buffers, official key names) of a pickled module record."""
    sd = OrderedDict()
    d = record.__dict__
    non_persistent = d.get("_non_persistent_buffers_set", set())
    for name, p in (d.get("_parameters") or {}).items():
        if p is not None:
            sd[prefix + name] = p.detach() if isinstance(p, torch.Tensor) else p
    for name, b in (d.get("_buffers") or {}).items():
        if b is not None and name not in non_persistent:
            sd[prefix + name] = b
    for name, child in (d.get("_modules") or {}).items():
        if child is not None:
            sd.update(_record_state_dict(child, f"{prefix}{name}."))
    return sd


def checkpoint_model_parts(ckpt):
    """(yaml dict, names {i: name}, state dict) of a checkpoint dict, preferring EMA weights like YOLOv5."""
    if ckpt.get("format") == FORMAT:
        if ckpt.get("version", VERSION) > VERSION:
            LOGGER.warning(f"WARNING: checkpoint format version {ckpt['version']} is newer than this code's "
                           f"({VERSION}); loading what matches")
        sd = ckpt.get("ema") or ckpt["model"]
        return ckpt["yaml"], _names_dict(ckpt.get("names"), ckpt["yaml"].get("nc")), sd
    record = ckpt.get("ema") or ckpt.get("model")
    if not isinstance(record, PickledObject) or not isinstance(getattr(record, "yaml", None), dict):
        raise UserError("checkpoint holds no model with a 'yaml' description; cannot rebuild it")
    yaml = dict(record.yaml)
    nc = getattr(record, "nc", None) or yaml.get("nc")
    yaml["nc"] = nc
    return yaml, _names_dict(getattr(record, "names", None), nc), _record_state_dict(record)


def _names_dict(names, nc):
    if isinstance(names, dict):
        return {int(k): str(v) for k, v in names.items()}
    if isinstance(names, (list, tuple)):
        return dict(enumerate(map(str, names)))
    return {i: f"class{i}" for i in range(nc or 0)}


def model_from_checkpoint(ckpt):
    """Rebuild a float Model from a checkpoint dict; the state dict must match the yaml exactly."""
    from models.yolo import Model

    yaml, names, sd = checkpoint_model_parts(ckpt)
    model = Model(yaml, ch=yaml.get("ch", 3))
    model_sd = model.state_dict()
    missing = [k for k in model_sd if k not in sd]
    unexpected = [k for k in sd if k not in model_sd]
    mismatched = [k for k in sd if k in model_sd and sd[k].shape != model_sd[k].shape]
    if missing or unexpected or mismatched:
        raise UserError(
            f"checkpoint weights do not fit its own model description ({len(missing)} missing keys, e.g. "
            f"{missing[:3]}; {len(unexpected)} unexpected, e.g. {unexpected[:3]}; {len(mismatched)} of another "
            f"shape, e.g. {mismatched[:3]}): the file is from another version or was modified"
        )
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in sd.items()})
    model.names = names
    return model


def nonfinite_weights(ckpt):
    """Names ('model/key', 'ema/key') of the floating-point tensors in ``ckpt['model']`` and ``ckpt['ema']``
    (state dicts) that hold a NaN or inf; empty when every weight is finite."""
    bad = []
    for part in ("model", "ema"):
        state = ckpt.get(part)
        if isinstance(state, dict):
            bad += [f"{part}/{k}" for k, v in state.items()
                    if isinstance(v, torch.Tensor) and v.is_floating_point() and not torch.isfinite(v).all()]
    return bad


def save_checkpoint(ckpt, path):
    """Write ``ckpt`` atomically and durably: a temporary file in the same folder, fsynced, then renamed over
    ``path`` and the folder fsynced, so a kill or power cut at any moment leaves the old or the new file whole.
    Refuses weights holding NaN/inf; a failed write (full disk) is a UserError saying the old file is intact.
    Temporary files left by dead processes in the folder are removed first."""
    path = Path(path)
    bad = nonfinite_weights(ckpt)
    if bad:
        raise UserError(f"refusing to write {path}: {len(bad)} weight tensors hold NaN/inf (e.g. {bad[:3]})")
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_tmp_files(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(ckpt, f)
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


def remove_stale_tmp_files(folder):
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


def make_checkpoint(model, names=None, ema=None, optimizer=None, epoch=-1, best_fitness=None, opt=None, hyp=None,
                    half=True, train_state=None):
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


def transfer_weights(model, state_dict, exclude=()):
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


def strip_optimizer(path, out=None):
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
