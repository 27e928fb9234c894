"""Dataset yamls: resolve paths, check names/nc, generate the built-in synthetic data, explain missing data."""

import importlib
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from utils.general import LOGGER, ROOT, UserError, colorstr, yaml_load

DOWNLOAD_TIMEOUT_S = 30  # per network operation: an offline machine fails fast with a clear message
SPLITS = ("train", "val", "test")


def find_dataset_yaml(data):
    """A yaml name or path -> an existing file: as given, then under ROOT, then under ROOT/data."""
    path = Path(data)
    for candidate in (path, ROOT / path, ROOT / "data" / path, ROOT / "data" / path.name):
        if candidate.is_file():
            return candidate.resolve()
    raise UserError(f"dataset yaml '{data}' not found (looked in ., {ROOT} and {ROOT / 'data'}); "
                    f"pass an existing file, e.g. --data coco8.yaml")


def _normalise_names(names, nc, source):
    """names as a list or {id: name} -> {int: str} with ids 0..n-1; checks nc when both are given."""
    if nc is not None and (isinstance(nc, bool) or not isinstance(nc, int) or nc < 1):
        raise UserError(f"{source}: 'nc' must be a positive integer (the number of classes), got {nc!r}")
    if names is None:
        if nc is None:
            raise UserError(f"{source}: give 'names' (a list or {{id: name}}) or at least 'nc'")
        names = {i: f"class{i}" for i in range(int(nc))}
    elif isinstance(names, (list, tuple)):
        names = dict(enumerate(names))
    elif isinstance(names, dict):
        try:
            names = {int(k): v for k, v in names.items()}
        except (TypeError, ValueError) as e:
            raise UserError(f"{source}: 'names' keys must be integer class ids, got {list(names)[:5]}") from e
    else:
        raise UserError(f"{source}: 'names' must be a list or a mapping {{id: name}}, got {type(names).__name__}")
    if sorted(names) != list(range(len(names))):
        raise UserError(f"{source}: 'names' ids must be 0..{len(names) - 1} without gaps, got {sorted(names)}")
    names = {i: str(names[i]) for i in range(len(names))}
    if nc is not None and int(nc) != len(names):
        raise UserError(f"{source}: nc={nc} but {len(names)} names are listed; make them agree")
    return names


def _resolve_split(value, root):
    """A split entry (str or list) -> absolute path string(s), relative entries taken relative to ``root``."""
    if value is None or value == "":
        return None
    if isinstance(value, (list, tuple)):
        return [str((root / v).resolve()) if not Path(v).is_absolute() else str(v) for v in value]
    return str((root / value).resolve()) if not Path(value).is_absolute() else str(value)


def _missing_paths(split_value):
    paths = split_value if isinstance(split_value, list) else [split_value]
    return [p for p in paths if not Path(p).exists()]


def _run_generator(spec, path):
    """Call the generator named by the yaml ('data.<module>.<function>') to build the dataset at ``path``."""
    module_name, _, func_name = str(spec).rpartition(".")
    if not module_name.startswith("data."):
        raise UserError(f"generator '{spec}' must name a function in the project's data/ package, "
                        f"e.g. data.synthetic.generate_shapes")
    try:
        func = getattr(importlib.import_module(module_name), func_name)
    except (ImportError, AttributeError) as e:
        raise UserError(f"generator '{spec}' could not be found: {e}") from e
    LOGGER.info(f"{colorstr('dataset: ')}generating {path} with {spec} ...")
    func(path)


def _download_file(url, file, timeout=DOWNLOAD_TIMEOUT_S):
    """Fetch one dataset archive; reached only through train.py --download (never implicitly)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(file, "wb") as f:
            shutil.copyfileobj(response, f)
    except (urllib.error.URLError, TimeoutError, OSError) as e:
        raise UserError(f"download of {url} failed ({e}); this machine may be offline. Download it elsewhere "
                        f"and unzip it as described in the dataset yaml") from e


def download_dataset(download, path):
    """Fetch and unzip the ``download`` entries of a dataset yaml.

    Each entry is a URL (unzipped into the parent of ``path``) or {url, dir} with ``dir`` relative to ``path``.
    """
    entries = download if isinstance(download, list) else [download]
    for entry in entries:
        url, rel_dir = (entry["url"], entry.get("dir", "..")) if isinstance(entry, dict) else (entry, "..")
        target = (path / rel_dir).resolve()
        target.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target) as tmp:
            file = Path(tmp) / Path(url).name
            LOGGER.info(f"{colorstr('dataset: ')}downloading {url} to {target} ...")
            _download_file(url, file)
            if zipfile.is_zipfile(file):
                with zipfile.ZipFile(file) as z:
                    z.extractall(target)
            else:
                shutil.move(str(file), target / file.name)


def check_dataset(data, autodownload=False):
    """Resolve a dataset yaml (path or dict) into a dict with absolute split paths, names {int: str} and nc.

    Relative ``path`` is taken relative to the yaml's folder (the current directory for a dict). The built-in
    synthetic dataset (a ``generator`` key) is made on first use. Missing data stop with a UserError that says
    where to put them; a ``download`` entry is fetched only when ``autodownload`` is True.
    """
    if isinstance(data, dict):
        data, yaml_dir, source = dict(data), Path.cwd(), "dataset dict"
    else:
        yaml_file = find_dataset_yaml(data)
        data, yaml_dir, source = yaml_load(yaml_file), yaml_file.parent, str(yaml_file)
        data["yaml_file"] = str(yaml_file)
    for key in ("train", "val"):
        if not data.get(key):
            raise UserError(f"{source}: '{key}' is missing; give a folder, a .txt list of images or a list of those")

    path = Path(data.get("path") or "")
    path = (path if path.is_absolute() else yaml_dir / path).resolve()
    data["path"] = str(path)
    for key in SPLITS:
        data[key] = _resolve_split(data.get(key), path)
    data["names"] = _normalise_names(data.get("names"), data.get("nc"), source)
    data["nc"] = len(data["names"])

    missing = sorted({p for key in ("train", "val") for p in _missing_paths(data[key])})
    if missing and data.get("generator"):
        _run_generator(data["generator"], path)
        missing = sorted({p for key in ("train", "val") for p in _missing_paths(data[key])})
    if missing and data.get("download") and autodownload:
        download_dataset(data["download"], path)
        missing = sorted({p for key in ("train", "val") for p in _missing_paths(data[key])})
    if missing:
        hint = (" Or pass --download to train.py to fetch it (needs internet; nothing is downloaded otherwise)."
                if data.get("download") else "")
        raise UserError(f"{source}: dataset not found, missing {missing[:3]}. Put the images and YOLO-format "
                        f"labels under {path} (images/<split>/*.jpg with matching labels/<split>/*.txt), or edit "
                        f"'path' in the yaml.{hint}")
    return data
