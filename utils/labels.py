"""YOLO label files: verification of each image/label pair and the label cache of a split.

Each image has one label file (the last ``/images/`` folder of its path becomes ``/labels/``, the suffix ``.txt``)
with one row ``class x_center y_center width height`` (normalised 0..1) per object; a polygon row
``class x1 y1 x2 y2 ...`` (instance segmentation, at least 3 points) is turned into its bounding box and the
polygon is kept as the row's segment (a box row's segment is empty). A bad polygon (an odd number of coordinates,
fewer than 3 points, NaN/inf, or points outside the image) is skipped with a warning, the file's other rows kept.
Verification skips unusable images and malformed label files, clips boxes to the image and drops duplicates, with
one message per file. Its results are kept in
``<labels folder>.cache`` (an .npz beside the label folder, e.g. ``labels/train.cache``) under a hash of every
image and label path, size and modification time, so a changed, added or removed file rebuilds the cache.
"""

import hashlib
import os
from collections.abc import Iterable
from itertools import repeat
from multiprocessing.pool import ThreadPool
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from utils.boxes import xywh2xyxy, xyxy2xywh
from utils.cache_files import warn_not_saved, write_atomic
from utils.general import LOGGER, NUM_THREADS, UserError
from utils.sources import IMG_FORMATS

CACHE_VERSION = 3  # bump when the label cache layout or the verification rules change
OUTSIDE_TOL = 1e-3  # normalised coordinates this far outside 0..1 are reported, closer ones are just clipped
MAX_LISTED_WARNINGS = 5  # the summary names this many problem files, then counts the rest
MIN_POLYGON_POINTS = 3
NO_SEGMENT = np.zeros((0, 2), dtype=np.float32)  # the segment of a box row


def img2label_paths(img_paths: Iterable[str | Path]) -> list[str]:
    """Label file of each image: the last /images/ folder becomes /labels/ and the suffix becomes .txt."""
    sa, sb = f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"
    return [sb.join(str(p).rsplit(sa, 1)).rsplit(".", 1)[0] + ".txt" for p in img_paths]


def get_hash(paths: Iterable[str | Path]) -> str:
    """Hash of file paths, sizes and modification times (ns): changes when a file is added, removed, renamed or
    rewritten, also when an edit keeps its length (class 45 -> 75)."""
    h = hashlib.sha256()
    for p in paths:
        try:
            st = os.stat(p)
            signature = f"{st.st_size}\0{st.st_mtime_ns}"
        except OSError:  # missing file
            signature = "-1"
        h.update(f"{p}\0{signature}\0".encode())
    return h.hexdigest()


def exif_size(img: Image.Image) -> tuple[int, int]:
    """(width, height) of a PIL image as displayed, i.e. after its EXIF orientation is applied."""
    w, h = img.size
    if img.getexif().get(0x0112) in (5, 6, 7, 8):  # orientations that rotate by 90 degrees
        return h, w
    return w, h


def _check_image(im_file: str) -> tuple[tuple[int, int], str]:
    """(width, height) of a usable image and a warning ('' if none); raises ValueError for an unusable one."""
    with Image.open(im_file) as im:
        im.verify()  # catches most corrupt files without decoding all pixels
    with Image.open(im_file) as im:  # verify() leaves the object unusable, reopen
        shape, fmt = exif_size(im), (im.format or "").lower()
    if fmt not in IMG_FORMATS:
        raise ValueError(f"unsupported image format '{fmt}'")
    if shape[0] < 10 or shape[1] < 10:
        raise ValueError(f"image is {shape[0]}x{shape[1]}, smaller than 10 pixels")
    if fmt in ("jpeg", "mpo"):
        with open(im_file, "rb") as f:
            f.seek(-2, 2)
            truncated = f.read() != b"\xff\xd9"  # no end-of-image marker
        if truncated:
            if cv2.imread(im_file) is None:
                raise ValueError("truncated JPEG that cannot be decoded")
            return shape, "truncated JPEG, kept (the missing part decodes as grey)"
    return shape, ""


def _parse_label_rows(text: str) -> tuple[np.ndarray, list[np.ndarray], list[str]]:
    """Label text -> (labels (n, 5) float32 [cls, x, y, w, h], segments (one (k, 2) float32 normalised polygon
    per row, empty for a box row), notes on skipped polygons); raises ValueError for a malformed file."""
    rows, segments, skipped = [], [], []
    for k, line in enumerate(text.splitlines(), 1):
        values = line.split()
        if not values:
            continue
        try:
            numbers = [float(v) for v in values]
        except ValueError:
            raise ValueError(f"line {k} is not numeric: '{line.strip()[:60]}'") from None
        if len(numbers) == 5:
            rows.append(numbers)
            segments.append(NO_SEGMENT)
        elif len(numbers) > 5:  # polygon: class + (x, y) pairs -> bounding box, the polygon kept as the segment
            problem = _polygon_problem(numbers[1:])
            if problem:
                skipped.append(f"line {k} ({problem})")
                continue
            xy = np.array(numbers[1:], dtype=np.float32).reshape(-1, 2).clip(0, 1)  # overshoot within tolerance
            (x1, y1), (x2, y2) = xy.min(0), xy.max(0)
            rows.append([numbers[0], (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1])
            segments.append(xy)
        else:
            raise ValueError(f"line {k} has {len(numbers)} columns, expected 5 (class x y w h) or a polygon")
    labels = np.array(rows, dtype=np.float32).reshape(-1, 5)
    if not np.isfinite(labels).all():
        raise ValueError("labels contain nan or inf")
    cls = labels[:, 0]
    bad = (cls < 0) | (cls != np.round(cls))
    if bad.any():
        raise ValueError(f"class ids must be non-negative integers, found {sorted(set(cls[bad].tolist()))[:5]}")
    notes = [f"skipped {len(skipped)} bad polygon(s): {', '.join(skipped[:3])}"] if skipped else []
    return labels, segments, notes


def _polygon_problem(coords: list[float]) -> str:
    """Why the coordinates of a polygon row are unusable ('' when they are fine)."""
    if len(coords) % 2:
        return f"odd number of coordinates, {len(coords)}"
    if len(coords) < 2 * MIN_POLYGON_POINTS:
        return f"{len(coords) // 2} points, a polygon needs {MIN_POLYGON_POINTS}"
    xy = np.array(coords, dtype=np.float64)
    if not np.isfinite(xy).all():
        return "nan or inf coordinates"
    if (xy < -OUTSIDE_TOL).any() or (xy > 1 + OUTSIDE_TOL).any():
        return "points outside the image (coordinates must be normalised 0..1)"
    return ""


def _repair_labels(labels: np.ndarray, segments: list[np.ndarray] | None = None) -> tuple[
        np.ndarray, list[np.ndarray], list[str]]:
    """Clip boxes to the image, drop boxes with no area inside it and duplicate rows (a row's segment goes with
    it); returns (labels, segments, notes)."""
    notes = []
    segments = list(segments) if segments is not None else [NO_SEGMENT] * len(labels)
    if not len(labels):
        return labels, segments, notes
    xyxy = xywh2xyxy(labels[:, 1:5])
    beyond = ((xyxy < 0) | (xyxy > 1)).any(1)
    outside = ((xyxy < -OUTSIDE_TOL) | (xyxy > 1 + OUTSIDE_TOL)).any(1)  # rounding overshoot is clipped silently
    xyxy = xyxy.clip(0, 1)
    no_area = (xyxy[:, 2] <= xyxy[:, 0]) | (xyxy[:, 3] <= xyxy[:, 1])
    if no_area.any():
        notes.append(f"dropped {int(no_area.sum())} box(es) with no area inside the image")
    if (outside & ~no_area).any():
        notes.append(f"clipped {int((outside & ~no_area).sum())} box(es) reaching outside the image")
    labels = labels.copy()
    labels[beyond, 1:5] = xyxy2xywh(xyxy[beyond])  # rows inside the image keep their exact values
    labels = labels[~no_area]
    segments = [sg for sg, dropped in zip(segments, no_area) if not dropped]
    # a duplicate is the same class, box and polygon
    keys = [row.tobytes() + sg.tobytes() for row, sg in zip(labels, segments)]
    first = sorted({key: i for i, key in reversed(list(enumerate(keys)))}.values())
    if len(first) < len(labels):
        notes.append(f"removed {len(labels) - len(first)} duplicate row(s)")
        labels, segments = labels[first], [segments[i] for i in first]
    return labels, segments, notes


def verify_image_label(args: tuple[str, str, str]) -> tuple:
    """Check one image and its label file.

    ``args`` is (image file, label file, message prefix). Returns (im_file, labels (n, 5) or None when the image
    must be skipped, (w, h) or None, segments (one (k, 2) normalised polygon per label, empty for box rows),
    missing, found, empty, corrupt, message), official YOLOv5's order.
    """
    im_file, lb_file, prefix = args
    try:
        shape, note = _check_image(im_file)
    except Exception as e:  # any decoder failure means the image is unusable; report it and go on
        found = int(os.path.isfile(lb_file))
        return im_file, None, None, [], 1 - found, found, 0, 1, f"{prefix}{im_file}: corrupt image skipped: {e}"
    notes = [note] if note else []
    if not os.path.isfile(lb_file):
        labels, segments, missing, found = np.zeros((0, 5), dtype=np.float32), [], 1, 0
    else:
        missing, found = 0, 1
        try:
            labels, segments, skipped = _parse_label_rows(Path(lb_file).read_text(encoding="utf-8-sig"))  # BOM ok
        except (OSError, UnicodeDecodeError, ValueError) as e:
            return im_file, None, None, [], 0, 1, 0, 1, f"{prefix}{im_file}: corrupt label {lb_file} skipped: {e}"
        labels, segments, repairs = _repair_labels(labels, segments)
        notes += skipped + repairs
    empty = int(found and not len(labels))
    message = f"{prefix}{im_file}: " + "; ".join(notes) if notes else ""
    return im_file, labels, shape, segments, missing, found, empty, 0, message


def _save_label_cache(path: Path, cache: dict[str, np.ndarray]) -> bool:
    """Write the cache next to the labels atomically (safe with concurrent processes); on a read-only dataset
    warn once and go on (the labels are verified again next time)."""
    error = write_atomic(path, lambda f: np.savez(f, **cache))
    if error:
        warn_not_saved("label cache", path, error)
    return error is None


def _load_label_cache(path: Path, expected_hash: str) -> dict[str, np.ndarray] | None:
    """The cache dict if ``path`` holds a readable cache of this version and hash, else None."""
    try:
        with np.load(path, allow_pickle=False) as z:
            cache = {k: z[k] for k in z.files}
        if int(cache["version"]) == CACHE_VERSION and str(cache["hash"]) == expected_hash:
            return cache
    except Exception:  # missing, truncated or foreign file: rebuild it
        return None
    return None


def _build_label_cache(im_files: list[str], label_files: list[str]) -> dict[str, np.ndarray]:
    """Verify every image/label pair in parallel; returns the arrays stored in the label cache."""
    files, labels, shapes, segments, messages = [], [], [], [], []
    stats = np.zeros(5, dtype=np.int64)  # missing, found, empty, corrupt, total
    with ThreadPool(NUM_THREADS) as pool:
        results = pool.imap(verify_image_label, zip(im_files, label_files, repeat("")))
        for im_file, lb, shape, segs, nm, nf, ne, nc, msg in results:
            stats += (nm, nf, ne, nc, 1)
            if msg:
                messages.append(msg)
            if lb is not None:
                files.append(im_file)
                labels.append(lb)
                shapes.append(shape)
                segments += segs
    counts = np.array([len(lb) for lb in labels], dtype=np.int64)
    return {
        "version": np.array(CACHE_VERSION),
        "im_files": np.array(files, dtype=str),
        "labels": np.concatenate(labels, 0) if labels else np.zeros((0, 5), dtype=np.float32),
        "label_counts": counts,
        "shapes": np.array(shapes, dtype=np.int64).reshape(-1, 2),
        # all polygons' points in one array (no pickles in the cache), split again by each label's point count
        "segment_points": np.concatenate(segments, 0) if segments else NO_SEGMENT,
        "segment_counts": np.array([len(sg) for sg in segments], dtype=np.int64),
        "stats": stats,
        "messages": np.array(messages, dtype=str),
    }


def load_verified_labels(path: str | Path | list, im_files: list[str],
                         prefix: str = "") -> tuple[list[str], list[np.ndarray], np.ndarray]:
    """Verify all images and labels of a split (or reuse a valid cache), log the summary and the problems.

    ``path`` is the split as given (only named in messages), ``im_files`` its image files. Returns the usable
    image files, their labels (n, 5) float32 [cls, x, y, w, h] and their (w, h) as displayed (int64 (N, 2)).
    """
    label_files = img2label_paths(im_files)
    cache_path = Path(label_files[0]).parent.with_suffix(".cache")
    expected_hash = get_hash(label_files + im_files)
    cache = _load_label_cache(cache_path, expected_hash)
    if cache is None:
        cache = _build_label_cache(im_files, label_files)
        cache["hash"] = np.array(expected_hash)
        _save_label_cache(cache_path, cache)
    missing, found, empty, corrupt, total = (int(x) for x in cache["stats"])
    messages = [str(m) for m in cache["messages"]]
    LOGGER.info(f"{prefix}{path}: {total} images, {found} label files found, {missing} missing, "
                f"{empty} empty, {corrupt} corrupt")
    for message in messages[:MAX_LISTED_WARNINGS]:
        LOGGER.warning(f"WARNING: {prefix}{message}")
    if len(messages) > MAX_LISTED_WARNINGS:
        LOGGER.warning(f"WARNING: ... and {len(messages) - MAX_LISTED_WARNINGS} more files with problems")
    files = [str(f) for f in cache["im_files"]]
    if not files:
        raise UserError(f"{prefix}no usable images in {path}: all {total} are corrupt "
                        f"({messages[0] if messages else ''}); fix or replace them")
    if not found:
        LOGGER.warning(f"WARNING: {prefix}no label files found for {path} (expected them in "
                       f"{Path(label_files[0]).parent}); training will learn nothing")
    labels = np.split(cache["labels"], np.cumsum(cache["label_counts"])[:-1])
    return files, [lb.astype(np.float32) for lb in labels], cache["shapes"]


def load_verified_segments(path: str | Path | list, im_files: list[str],
                           prefix: str = "") -> tuple[list[str], list[np.ndarray], np.ndarray, list[list[np.ndarray]]]:
    """load_verified_labels plus each image's segments: per label a (k, 2) float32 normalised polygon (empty for
    a box row). Both read the same cache."""
    files, labels, shapes = load_verified_labels(path, im_files, prefix)
    label_files = img2label_paths(im_files)
    cache = _load_label_cache(Path(label_files[0]).parent.with_suffix(".cache"), get_hash(label_files + im_files))
    if cache is None:  # the cache could not be written (read-only dataset): verify again, keeping the polygons
        cache = _build_label_cache(im_files, label_files)
    points = np.split(cache["segment_points"].astype(np.float32), np.cumsum(cache["segment_counts"])[:-1])
    if not len(cache["segment_counts"]):
        points = []
    bounds = np.cumsum([0, *[len(lb) for lb in labels]])
    segments = [points[bounds[i]:bounds[i + 1]] for i in range(len(labels))]
    return files, labels, shapes, segments
