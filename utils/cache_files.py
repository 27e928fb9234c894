"""Cache files written beside a dataset (the label cache, --cache disk images): atomic writes, and one warning per
kind of cache when the dataset cannot be written (read-only mount, full disk), after which training goes on
without that cache.
"""

import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from utils.general import LOGGER

_warned_unwritable = set()  # kinds of cache already reported as not saved in this process


def warn_not_saved(kind: str, path: str | Path, error: OSError) -> None:
    """Warn once per process and kind of cache that it cannot be written (read-only dataset, full disk)."""
    if kind not in _warned_unwritable:
        _warned_unwritable.add(kind)
        LOGGER.warning(f"WARNING: {kind} not saved to {path} ({getattr(error, 'strerror', None) or error}); "
                       f"going on without it (further {kind} files of this run are not reported)")


def write_atomic(path: str | Path, write: Callable[[BinaryIO], object]) -> OSError | None:
    """Call ``write(file)`` on a temporary file beside ``path``, then rename it over ``path``: readers see the
    old file or the whole new one, never a partial write. Returns the OSError instead of raising it."""
    tmp = Path(f"{path}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
        os.replace(tmp, path)
        return None
    except OSError as e:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:  # read-only file system: even the clean-up of a file never made fails
            pass
        return e
