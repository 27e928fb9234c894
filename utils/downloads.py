"""Official YOLOv5 release weights, fetched by name on first use.

Only the v7.0 release assets named in :data:`RELEASE_ASSETS` are fetched, only from :data:`RELEASE_URL` (https;
plain http only to a loopback host, for tests), never from a URL found in a file. A download goes to a temporary
file beside the target and is renamed into place only once complete and plausible (size, zip archive), so a kill
or a full disk never leaves a partial ``yolov5s.pt``. ``YOLOV5_OFFLINE=1`` turns fetching off. The file is then
read like any other: official checkpoints go through the restricted unpickler (utils/checkpoints.py).
``download_file`` is the one place this project fetches a URL: release weights here, and the dataset archives
that ``--download`` asks for (utils/dataset_yaml.py).
"""

from __future__ import annotations

import os
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable
from pathlib import Path

from tqdm import tqdm

from utils.general import LOGGER, UserError

RELEASE_URL = "https://github.com/ultralytics/yolov5/releases/download/v7.0"
RELEASE_ASSETS = frozenset(f"yolov5{s}{p6}.pt" for s in "nsmlx" for p6 in ("", "6", "-seg"))  # -seg: v7.0
ASSET_BYTES = (1 << 20, 512 << 20)  # the v7.0 files are 4 MB (yolov5n) to 270 MB (yolov5x6)
TIMEOUT_S = 30  # per connect or read: a stalled server ends the download instead of hanging it
OFFLINE_ENV = "YOLOV5_OFFLINE"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def is_offline() -> bool:
    """True when the user turned fetching off (``YOLOV5_OFFLINE`` set to anything but '', '0' or 'false')."""
    return os.environ.get(OFFLINE_ENV, "").strip().lower() not in ("", "0", "false")


def is_release_asset(file: str | os.PathLike) -> bool:
    """Whether ``file`` names an official release asset that may be fetched (``yolov5s.pt``, ``dir/yolov5n6.pt``)."""
    return Path(file).name in RELEASE_ASSETS


def _asset_url(name: str) -> str:
    url = f"{RELEASE_URL.rstrip('/')}/{name}"
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "https" and not (parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS):
        raise UserError(f"release URL {RELEASE_URL!r} is refused: weights are fetched over https only")
    return url


def attempt_download(file: str | os.PathLike) -> Path:
    """``file`` if it exists; else, for an official release asset name, the file fetched to that path.

    Anything else that is missing, an offline machine (or ``YOLOV5_OFFLINE=1``) and a failed or implausible
    download raise ``UserError`` naming the file and where to get it; nothing is left behind in those cases.
    """
    path = Path(str(file).strip().strip("'\""))
    if path.exists():
        return path
    if not is_release_asset(path):
        raise UserError(f"weights file not found: '{path}'. Train one with `python train.py`, or pass the path of a "
                        f"YOLOv5 v6.0-v7.0 checkpoint (official release names such as yolov5s.pt are downloaded)")
    url = _asset_url(path.name)
    manual = f"download {url} yourself and put it at {path.resolve()}"
    if is_offline():
        raise UserError(f"weights file not found: '{path}' ({OFFLINE_ENV} is set, so it is not downloaded); {manual}")
    LOGGER.info(f"Downloading {url} to {path} ...")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        download_file(url, path, max_bytes=ASSET_BYTES[1], check=_check_release_file)
    except UserError as e:
        raise UserError(f"{e}; {manual}") from None
    except (urllib.error.URLError, OSError, TimeoutError) as e:
        reason = getattr(e, "reason", None) or e
        raise UserError(f"download of {path.name} failed ({reason}); this machine may be offline: {manual}") from None
    return path


def download_file(url: str, path: Path, max_bytes: int | None = None,
                  check: Callable[[str, int], None] | None = None) -> None:
    """Stream ``url`` into a temporary file in ``path``'s folder and rename it to ``path`` once complete, so a kill
    or a full disk never leaves a partial file. ``check(tmp_file, n_bytes)`` may refuse the finished download
    before the rename; a body over ``max_bytes`` or shorter than the announced length is a UserError. Network
    errors (URLError, OSError, TimeoutError) are left to the caller, who knows what to advise."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f, urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
            expected = int(response.headers.get("Content-Length") or 0) or None
            if max_bytes is not None and expected is not None and expected > max_bytes:
                raise UserError(f"the server announced {expected} bytes for {path.name}, over {max_bytes >> 20} MB")
            received = 0
            with tqdm(total=expected, unit="B", unit_scale=True, desc=path.name, disable=None) as bar:
                while chunk := response.read(1 << 20):
                    received += len(chunk)
                    if max_bytes is not None and received > max_bytes:
                        raise UserError(f"{path.name} exceeds {max_bytes >> 20} MB")
                    f.write(chunk)
                    bar.update(len(chunk))
        if expected is not None and received != expected:
            raise UserError(f"download of {path.name} ended after {received} of {expected} bytes")
        if check is not None:
            check(tmp, received)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _check_release_file(tmp: str, n_bytes: int) -> None:
    """A release asset is a torch.save zip of 4-270 MB; an HTML error page or a truncated file is not."""
    if n_bytes < ASSET_BYTES[0] or not zipfile.is_zipfile(tmp):
        raise UserError(f"the download is not a PyTorch checkpoint ({n_bytes} bytes)")


# Official YOLOv5 v7.0 name (its train.py imports it from here).
def is_url(url: str | os.PathLike, check: bool = True) -> bool:
    """Whether ``url`` is an http(s)/ftp URL with a host. No request is made (``check`` is accepted for official
    callers; this project reaches the network only for the release weights)."""
    parts = urllib.parse.urlsplit(str(url))
    return parts.scheme in ("http", "https", "ftp") and bool(parts.netloc)
