"""Small shared helpers: logging, paths, yaml files, seeding, rounding to strides; and, at the end, the names that
official YOLOv5 v7.0 scripts import from ``utils.general``."""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import errno
import gc
import glob
import importlib
import inspect
import io
import itertools
import logging
import math
import os
import random
import re
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]  # repository root
NUM_THREADS = min(8, max(1, os.cpu_count() or 1))


def _make_logger(name: str = "yolov5") -> logging.Logger:
    logger = logging.getLogger(name)
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    return logger


LOGGER = _make_logger()
_WARNED: set[str] = set()


def warn_once(message: str) -> None:
    """Log a warning the first time this exact message comes up in the process (e.g. once per run, not per epoch)."""
    if message not in _WARNED:
        _WARNED.add(message)
        LOGGER.warning(message)


class UserError(Exception):
    """A problem with the user's input (files, yamls, flags) whose message says what to do."""


def colorstr(*args: object) -> str:
    """Wrap a string in ANSI colours: colorstr('blue', 'bold', 'text'); plain when the log is not a terminal."""
    *styles, text = args if len(args) > 1 else ("blue", "bold", args[0])
    if os.environ.get("NO_COLOR") or os.environ.get("CI") or not sys.stderr.isatty():
        return str(text)
    codes = {
        "black": "\033[30m", "red": "\033[31m", "green": "\033[32m", "yellow": "\033[33m", "blue": "\033[34m",
        "magenta": "\033[35m", "cyan": "\033[36m", "white": "\033[37m", "bold": "\033[1m",
        "underline": "\033[4m", "end": "\033[0m",
    }
    return "".join(codes[s] for s in styles) + f"{text}" + codes["end"]


MAX_YAML_BYTES = 16 * 2**20  # yamls here are configs: a few KB; a bigger file is not one
MAX_YAML_ALIAS_NODES = 10_000  # nodes that aliases may add when expanded (a billion-laughs yaml adds billions)


class _YamlLoader(yaml.SafeLoader):
    """PyYAML's safe loader that also reads '1e-3' (no dot, YAML 1.2 style) as a float, as YOLOv5 users write."""


_YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9][0-9_]*(\.[0-9_]*)?[eE][-+]?[0-9]+$"), list("-+0123456789")
)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [x for pair in node.value for x in pair]
    return node.value if isinstance(node, yaml.SequenceNode) else []


def _expanded_size(node: yaml.Node, sizes: dict[int, int], open_nodes: set[int]) -> int:
    """Nodes in ``node`` with every alias expanded (each distinct node computed once); a cycle is an error."""
    if id(node) in sizes:
        return sizes[id(node)]
    if id(node) in open_nodes:
        raise ValueError("an alias refers to a node that contains it (a recursive structure)")
    open_nodes.add(id(node))
    sizes[id(node)] = 1 + sum(_expanded_size(c, sizes, open_nodes) for c in _children(node))
    open_nodes.discard(id(node))
    return sizes[id(node)]


def _distinct_nodes(node: yaml.Node, seen: set[int]) -> int:
    if id(node) not in seen:
        seen.add(id(node))
        for c in _children(node):
            _distinct_nodes(c, seen)
    return len(seen)


def yaml_text_load(text: str, source: str = "yaml") -> Any:
    """Parse yaml text safely: no tags that build objects, '1e-3' is a number, and aliases may add at most
    MAX_YAML_ALIAS_NODES nodes when expanded (no cycles), so a small file cannot expand to gigabytes."""
    loader = _YamlLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        added = _expanded_size(node, {}, set()) - _distinct_nodes(node, set())
        if added > MAX_YAML_ALIAS_NODES:
            raise UserError(f"{source}: its aliases (*name) expand to {added} more nodes, over the limit of "
                            f"{MAX_YAML_ALIAS_NODES}; refused")
        return loader.construct_document(node)
    except (yaml.YAMLError, ValueError, RecursionError) as e:
        raise UserError(f"{source} is not valid yaml: {str(e)[:300]}") from e
    finally:
        loader.dispose()


def yaml_load(path: str | Path) -> dict:
    """Read a yaml file into a dict (see ``yaml_text_load``); a missing, oversized or malformed file is a
    UserError naming it."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"yaml file not found: {path}")
    if path.stat().st_size > MAX_YAML_BYTES:
        raise UserError(f"{path} is {path.stat().st_size / 2**20:.0f} MB, over the {MAX_YAML_BYTES // 2**20} MB "
                        f"limit for a yaml config")
    data = yaml_text_load(path.read_text(encoding="utf-8-sig", errors="replace"), str(path))
    if not isinstance(data, dict):
        raise UserError(f"{path} must hold a mapping at the top level, found {type(data).__name__}")
    return data


def yaml_save(path: str | Path, data: dict) -> None:
    """Write a dict as yaml, turning Paths into strings."""
    with open(path, "w") as f:
        yaml.safe_dump({k: str(v) if isinstance(v, Path) else v for k, v in data.items()}, f, sort_keys=False)


def increment_path(path: str | Path, exist_ok: bool = False, sep: str = "", mkdir: bool = False) -> Path:
    """runs/exp -> runs/exp2, runs/exp3 ... the first free name (or ``path`` itself with exist_ok). With ``mkdir``
    the folder is taken atomically (mkdir without exist_ok, on to the next number when it exists), so two runs
    started at the same moment never share a folder. A parent that is a file is a UserError."""
    path = Path(path)
    if mkdir:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:  # FileExistsError / NotADirectoryError: a parent is a file
            raise _folder_error(path.parent, e) from e
    if exist_ok:
        if mkdir:
            try:
                path.mkdir(exist_ok=True)
            except FileExistsError:
                raise UserError(f"{path} exists and is not a folder; choose another --name") from None
            except OSError as e:
                raise _folder_error(path, e) from None
        return path
    stem, suffix = (path.with_suffix(""), path.suffix) if path.is_file() and not mkdir else (path, "")
    for n in itertools.count(1):
        candidate = path if n == 1 else Path(f"{stem}{sep}{n}{suffix}")
        if not mkdir:
            if not candidate.exists():
                return candidate
            continue
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:  # taken, possibly a moment ago by another run
            continue
        except OSError as e:
            raise _folder_error(candidate, e) from e


def _folder_error(folder: Path, error: OSError) -> UserError:
    """The UserError for a run folder that cannot be made: a read-only or forbidden place, or a part that is a file."""
    if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return UserError(f"cannot create the folder {folder}: {error.strerror}; choose a writable --project")
    return UserError(f"cannot create the folder {folder}: {error.strerror or error} (is a part of it a file?)")


def init_seeds(seed: int = 0, deterministic: bool = False) -> None:
    """Seed python, numpy and torch; ``deterministic`` also asks torch for deterministic kernels."""
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = ":4096:8"
        os.environ["PYTHONHASHSEED"] = str(seed)


def names_dict(names: list | tuple | dict | None) -> dict[int, str] | None:
    """Class names as {int id: str name} from a list, a dict with int or numeric-string keys, or None (-> None)."""
    if names is None:
        return None
    if isinstance(names, (list, tuple)):
        return dict(enumerate(map(str, names)))
    return {int(k): str(v) for k, v in names.items()}


def make_divisible(x: float, divisor: float) -> int:
    """Smallest multiple of ``divisor`` that is >= x."""
    return math.ceil(x / int(divisor)) * int(divisor)


def check_img_size(imgsz: int | list[int] | tuple[int, ...], s: int = 32, floor: int = 0) -> int | list[int]:
    """Round image size(s) up to a multiple of stride ``s``, warning when it changes; sizes below 1 are a UserError."""
    if min([imgsz] if isinstance(imgsz, int) else imgsz) < 1:
        raise UserError(f"--img-size {imgsz} must be a positive number of pixels, e.g. --imgsz 640")
    if isinstance(imgsz, int):
        new_size = max(make_divisible(imgsz, s), floor)
    else:
        imgsz = list(imgsz)
        new_size = [max(make_divisible(x, s), floor) for x in imgsz]
    if new_size != imgsz:
        LOGGER.warning(f"WARNING: --img-size {imgsz} must be a multiple of max stride {s}, updating to {new_size}")
    return new_size


def clean_str(s: str) -> str:
    """Replace characters that are awkward in file names with '_'."""
    return re.sub(r"[|@#!¡·$€%&()=?¿^*;:,¨´><+]", "_", s)


_UNSAFE_IN_NAME = re.compile(r'[\x00-\x1f\x7f/\\:*?"<>|]')  # separators, control and Windows-reserved characters
MAX_NAME_CHARS = 100


def safe_filename(name: object, default: str = "_") -> str:
    """``name`` (a class name, a stem: anything a model or dataset says) as one plain file name: separators and
    awkward characters become '_', and '', '.' and '..' become ``default``, so that ``folder / safe_filename(x)``
    always stays directly inside ``folder``."""
    name = _UNSAFE_IN_NAME.sub("_", str(name)).strip()[:MAX_NAME_CHARS]
    return default if name.strip(".") == "" else name


def print_args(args: dict, name: str = "") -> None:
    """Log a dict of arguments on one line."""
    LOGGER.info(colorstr(f"{name}: " if name else "") + ", ".join(f"{k}={v}" for k, v in args.items()))


def exit_code(call: Callable[[], object]) -> int:
    """Run a script's entry point: 0 on success; a UserError is logged as one clear line and gives 1."""
    try:
        call()
    except UserError as e:
        LOGGER.error(f"ERROR: {e}")
        return 1
    return 0


def end_process(code: int) -> NoReturn:
    """End a script's process with exit status ``code``, skipping the interpreter's teardown where that is safe.

    Python's finalization frees every object one by one: ~0.3 s after ``import torch`` alone, ~0.8 s after
    detect.py's run, where the run on two images takes 0.5 s. What an exit must do is done first: the atexit
    handlers (logging's flush and close, temporary folders' removal, multiprocessing's children), the flush of every
    open Python file (normally flushed as it is freed; a scan of ~60 ms) and of C's output buffers; only the freeing
    is skipped, as the OS reclaims the memory. Objects that finish a file only in their destructor (an unclosed zip
    or video writer) are not finished: the scripts close what they write. Falls back to ``sys.exit`` while a
    non-daemon thread still runs (a normal exit waits for it) and where the C library cannot be reached."""
    run_exit_handlers = getattr(atexit, "_run_exitfuncs", None)  # CPython's; absent elsewhere
    busy = any(t is not threading.main_thread() and not t.daemon and t.is_alive() for t in threading.enumerate())
    libc = None
    if os.name == "posix" and run_exit_handlers is not None and not busy:
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None)
            libc.fflush.argtypes = [ctypes.c_void_p]
    if libc is None:
        sys.exit(code)
    run_exit_handlers()
    text, binary = (io.TextIOWrapper,), (io.BufferedWriter, io.BufferedRandom)
    files = [f for f in gc.get_objects() if type(f) in text + binary]  # exact types: fast, no ABC checks
    for f in sorted(files, key=lambda f: type(f) not in text):  # text first: it flushes into its binary buffer
        with contextlib.suppress(Exception):  # closed or read-only files have nothing to flush
            f.flush()
    libc.fflush(None)  # C libraries' printf output (OpenVINO, oneDNN verbose) when stdout is a pipe or file
    os._exit(code)


# ---------------------------------------------------------------------------------------------------------------
# Official YOLOv5 v7.0 names. Its scripts import these from utils.general; each is a thin name over this project's
# own code, with official's arguments. Names whose code lives in modules that build on this one are resolved on
# first access (module ``__getattr__``), so this file stays free of torch and of other project modules.
# ---------------------------------------------------------------------------------------------------------------
TQDM_BAR_FORMAT = "{l_bar}{bar:10}| {n_fmt}/{total_fmt} {elapsed}"  # official progress-bar layout

_LAZY = {  # name -> module that holds it ("cv2" is the module itself)
    "non_max_suppression": "utils.boxes", "scale_boxes": "utils.boxes", "xyxy2xywh": "utils.boxes",
    "xywh2xyxy": "utils.boxes", "strip_optimizer": "utils.checkpoints", "check_dataset": "utils.dataset_yaml",
    "coco80_to_coco91_class": "utils.evaluation", "labels_to_class_weights": "utils.training",
    "labels_to_image_weights": "utils.training", "check_amp": "utils.official", "get_latest_run": "utils.official",
    "print_mutation": "utils.official", "cv2": "cv2",
}


def __getattr__(name: str) -> Any:
    """Official YOLOv5 import paths (``from utils.general import non_max_suppression, strip_optimizer, cv2``)
    for names whose code lives elsewhere, imported on first access."""
    if name in _LAZY:
        module = importlib.import_module(_LAZY[name])
        return module if name == _LAZY[name] else getattr(module, name)
    raise AttributeError(f"module 'utils.general' has no attribute '{name}'")


class Profile(contextlib.ContextDecorator):
    """Time a block (``with Profile() as p``) or every call of a function (``@Profile()``): ``dt`` is the last
    duration and ``t`` the running total, in seconds. CUDA work queued before each end is waited for."""

    def __init__(self, t: float = 0.0) -> None:
        self.t = t
        self.dt = 0.0
        self.start = 0.0

    def __enter__(self) -> Profile:
        self.start = self.time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.dt = self.time() - self.start
        self.t += self.dt

    @staticmethod
    def time() -> float:
        torch = sys.modules.get("torch")  # only when torch is in use: this file does not import it
        if torch is not None and torch.cuda.is_available():
            torch.cuda.synchronize()
        return time.perf_counter()


def check_suffix(file: str | Path | list | tuple = "yolov5s.pt", suffix: str | tuple[str, ...] = (".pt",),
                 msg: str = "") -> None:
    """A UserError when a file (or any of a list) has a suffix outside ``suffix``; files without one pass."""
    allowed = [suffix] if isinstance(suffix, str) and suffix else list(suffix)
    if not file or not allowed:
        return
    for f in [file] if isinstance(file, (str, Path)) else file:
        found = Path(f).suffix.lower()
        if found and found not in allowed:
            raise UserError(f"{msg}{f}: acceptable suffix is {', '.join(allowed)}")


def check_file(file: str | Path, suffix: str | tuple[str, ...] = "") -> str:
    """The path of ``file``: itself when it exists, else the one file of that name under data/, models/ or utils/
    of the repository. A URL is a UserError (this project downloads only the official release weights)."""
    check_suffix(file, suffix)
    file = str(file)
    if not file or os.path.isfile(file):
        return file
    if "://" in file:
        raise UserError(f"{file} is a URL; download it yourself and pass the local path")
    found = sorted({p for folder in ("data", "models", "utils")
                    for p in glob.glob(str(ROOT / folder / "**" / file), recursive=True)})
    if not found:
        raise UserError(f"file not found: {file}")
    if len(found) > 1:
        raise UserError(f"several files match {file}; pass one path: {found}")
    return found[0]


def check_yaml(file: str | Path, suffix: tuple[str, ...] = (".yaml", ".yml")) -> str:
    """check_file for a yaml file."""
    return check_file(file, suffix)


def check_imshow(warn: bool = False) -> bool:
    """Whether OpenCV can open windows here (a headless build or no display cannot)."""
    import cv2

    try:
        cv2.imshow("test", np.zeros((1, 1, 3), np.uint8))
        cv2.waitKey(1)
        cv2.destroyAllWindows()
        cv2.waitKey(1)
        return True
    except Exception as e:  # cv2.error on headless builds, others on broken displays
        if warn:
            LOGGER.warning(f"WARNING: this environment cannot show images with cv2.imshow(): {e}")
        return False


def check_requirements(requirements: str | Path | list | tuple = ROOT / "requirements.txt",
                       exclude: tuple = (), install: bool = True, cmds: str = "") -> None:
    """Nothing to do: this project installs nothing at run time (requirements.txt is installed beforehand)."""


def check_git_info(path: str | Path = ".") -> dict:
    """Official records the git remote, branch and commit of a run; this project records none: empty."""
    return {}


def check_git_status(repo: str = "ultralytics/yolov5", branch: str = "master") -> None:
    """Official asks GitHub whether the checkout is behind; this project makes no such request: nothing to do."""


def _version_numbers(version: str) -> tuple[int, ...]:
    """'2.13.0+cpu' -> (2, 13, 0): the leading dotted numbers, local build tags dropped."""
    return tuple(int(x) for x in re.findall(r"\d+", str(version).split("+")[0].split("-")[0]))


def check_version(current: str = "0.0.0", minimum: str = "0.0.0", name: str = "version ", pinned: bool = False,
                  hard: bool = False, verbose: bool = False) -> bool:
    """Whether ``current`` is at least ``minimum`` (exactly it when ``pinned``); ``hard`` makes a failure a
    UserError, ``verbose`` a warning."""
    ok = (_version_numbers(current) == _version_numbers(minimum) if pinned
          else _version_numbers(current) >= _version_numbers(minimum))
    message = f"{name}{minimum} is required, but {name}{current} is installed"
    if hard and not ok:
        raise UserError(message)
    if verbose and not ok:
        LOGGER.warning(f"WARNING: {message}")
    return ok


def intersect_dicts(da: dict, db: dict, exclude: tuple | list = ()) -> dict:
    """The items of ``da`` whose key is in ``db`` with a value of the same shape, skipping keys containing any
    string of ``exclude`` (state-dict transfer between models)."""
    return {k: v for k, v in da.items()
            if k in db and all(x not in k for x in exclude) and v.shape == db[k].shape}


def methods(instance: object) -> list[str]:
    """Names of the public methods of ``instance``."""
    return [f for f in dir(instance) if callable(getattr(instance, f)) and not f.startswith("__")]


def one_cycle(y1: float = 0.0, y2: float = 1.0, steps: int = 100) -> Callable[[float], float]:
    """A half-cosine ramp from ``y1`` at x=0 to ``y2`` at x=steps."""
    return lambda x: ((1 - math.cos(x * math.pi / steps)) / 2) * (y2 - y1) + y1


def file_size(path: str | Path) -> float:
    """Size of a file, or of all files in a folder, in MiB (0.0 when it does not exist)."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size / 2**20
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20
    return 0.0


def get_default_args(func: Callable) -> dict[str, Any]:
    """The parameters of ``func`` that have defaults, with those defaults."""
    return {k: v.default for k, v in inspect.signature(func).parameters.items() if v.default is not v.empty}


def url2file(url: str) -> str:
    """The file name a URL points at: 'https://host/a/b%20c.pt?x=1' -> 'b c.pt'."""
    return Path(urllib.parse.unquote(urllib.parse.urlsplit(str(url)).path)).name
