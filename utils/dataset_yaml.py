"""Dataset yamls: resolve paths, check names/nc, generate the built-in synthetic data, explain missing data."""

from __future__ import annotations

import importlib
import os
import shutil
import tempfile
import urllib.error
import urllib.parse
import zipfile
from pathlib import Path

from utils.downloads import download_file
from utils.general import LOGGER, ROOT, UserError, colorstr, safe_filename, yaml_load

SPLITS = ("train", "val", "test")


def find_dataset_yaml(data: str | Path) -> Path:
    """A yaml name or path -> an existing file: as given, then under ROOT, then under ROOT/data."""
    path = Path(data)
    for candidate in (path, ROOT / path, ROOT / "data" / path, ROOT / "data" / path.name):
        if candidate.is_file():
            return candidate.resolve()
    raise UserError(f"dataset yaml '{data}' not found (looked in ., {ROOT} and {ROOT / 'data'}); "
                    f"pass an existing file, e.g. --data coco8.yaml")


def _normalise_names(names: object, nc: object, source: str) -> dict[int, str]:
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


def _dataset_root(value: object, yaml_dir: Path, source: str) -> Path:
    """The dataset folder of a yaml's ``path`` ('~' expanded). A relative one is looked up beside the yaml first,
    then by the official YOLOv5 rule, relative to the repository root (``../datasets/coco128`` beside the repo);
    the log says which was used. When neither exists, the yaml's folder is where the data are expected."""
    if value is not None and not isinstance(value, str):
        raise UserError(f"{source}: 'path' must be a folder path, got {type(value).__name__}")
    path = Path(os.path.expanduser(value or ""))
    if path.is_absolute():
        return path.resolve()
    beside_yaml, official = (yaml_dir / path).resolve(), (ROOT / path).resolve()
    chosen, rule = ((official, "the repository root, the official YOLOv5 rule")
                    if not beside_yaml.exists() and official.exists() else (beside_yaml, "the yaml's folder"))
    if value and beside_yaml != official:
        LOGGER.info(f"{colorstr('dataset: ')}path '{value}' -> {chosen} (relative to {rule})")
    return chosen


def _resolve_split(value: object, root: Path) -> str | list | None:
    """A split entry (str or list) -> absolute path string(s), relative entries taken relative to ``root``."""
    if value is None or value == "":
        return None
    if isinstance(value, (list, tuple)):
        return [_resolve_split(v, root) for v in value]
    if not isinstance(value, str):
        raise UserError(f"split entry {value!r:.60} must be a path (a string)")
    value = Path(os.path.expanduser(value))
    return str(value if value.is_absolute() else (root / value).resolve())


def _missing_paths(split_value: str | list[str]) -> list[str]:
    paths = split_value if isinstance(split_value, list) else [split_value]
    return [p for p in paths if not Path(p).exists()]


def _run_generator(spec: object, path: Path) -> None:
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


def _download_file(url: str, file: Path) -> None:
    """Fetch one dataset archive; reached only through train.py --download (never implicitly)."""
    try:
        download_file(url, file)
    except (urllib.error.URLError, TimeoutError, OSError) as e:
        raise UserError(f"download of {url} failed ({e}); this machine may be offline. Download it elsewhere "
                        f"and unzip it as described in the dataset yaml") from e


def _download_entry(entry: str | dict, path: Path, source: str) -> tuple[str, Path, str]:
    """(url, target folder, archive member prefix or '') of one ``download`` entry, refusing anything that is not
    http(s) or that would write outside the dataset folder ``path``. The default target (``dir: ..``, the
    official layout) is the folder above ``path``; there only archive members under ``<path name>/`` are kept."""
    url, rel_dir = (entry.get("url"), entry.get("dir", "..")) if isinstance(entry, dict) else (entry, "..")
    if not isinstance(url, str) or urllib.parse.urlsplit(url).scheme.lower() not in ("http", "https"):
        raise UserError(f"{source}: download entry {url!r:.100} is refused: only http:// and https:// URLs are "
                        f"fetched")
    if not isinstance(rel_dir, str) or Path(rel_dir).is_absolute():
        raise UserError(f"{source}: download 'dir: {rel_dir!r:.100}' is refused: give a folder relative to the "
                        f"dataset path {path}")
    target = (path / rel_dir).resolve()
    if target == path.parent and path.name:
        return url, target, path.name + "/"
    if target != path and path not in target.parents:
        raise UserError(f"{source}: download 'dir: {rel_dir}' resolves to {target}, outside the dataset folder "
                        f"{path}; refused")
    return url, target, ""


def _extract(archive: Path, target: Path, member_prefix: str) -> None:
    """Unzip into ``target``; with ``member_prefix`` only the members under it (others are skipped, with a note).
    zipfile drops absolute paths and '..' from member names, so nothing lands outside ``target``."""
    with zipfile.ZipFile(archive) as z:
        members = [m for m in z.namelist() if m.startswith(member_prefix)]
        if len(members) < len(z.namelist()):
            LOGGER.warning(f"WARNING: {len(z.namelist()) - len(members)} archive member(s) outside "
                           f"'{member_prefix}' skipped")
        z.extractall(target, members=members)


def download_dataset(download: str | dict | list, path: str | Path, source: str = "dataset yaml") -> None:
    """Fetch and unzip the ``download`` entries of a dataset yaml (http/https only, see ``_download_entry``).

    Each entry is a URL (unzipped into the parent of ``path``) or {url, dir} with ``dir`` relative to ``path``.
    """
    path = Path(path).resolve()
    entries = [_download_entry(e, path, source) for e in (download if isinstance(download, list) else [download])]
    for url, target, member_prefix in entries:  # all entries are checked before anything is fetched
        target.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target) as tmp:
            file = Path(tmp) / safe_filename(Path(urllib.parse.urlsplit(url).path).name, default="download")
            LOGGER.info(f"{colorstr('dataset: ')}downloading {url} to {target} ...")
            _download_file(url, file)
            if zipfile.is_zipfile(file):
                _extract(file, target, member_prefix)
            elif not member_prefix:
                shutil.move(str(file), target / file.name)
            else:
                raise UserError(f"{source}: {url} is not a zip archive; only archives unzip beside {path}")


def check_dataset(data: str | Path | dict, autodownload: bool = False) -> dict:
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

    path = _dataset_root(data.get("path"), yaml_dir, source)
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
        download_dataset(data["download"], path, source)
        missing = sorted({p for key in ("train", "val") for p in _missing_paths(data[key])})
    if missing:
        hint = (" Or pass --download to train.py to fetch it (needs internet; nothing is downloaded otherwise)."
                if data.get("download") else "")
        raise UserError(f"{source}: dataset not found, missing {missing[:3]}. Put the images and YOLO-format "
                        f"labels under {path} (images/<split>/*.jpg with matching labels/<split>/*.txt), or edit "
                        f"'path' in the yaml.{hint}")
    return data
