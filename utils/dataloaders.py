"""YOLO-format detection datasets: verification with a label cache, image caching, augmentation, data loaders.

A dataset is a set of images plus one label file per image (``/images/`` -> ``/labels/``, suffix ``.txt``) with
one row ``class x_center y_center width height`` (normalised 0..1) per object; a polygon row
``class x1 y1 x2 y2 ...`` is turned into its bounding box.
"""

import hashlib
import math
import os
import random
import shutil
import stat
from itertools import repeat
from multiprocessing.pool import ThreadPool
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, distributed

from utils.augmentations import augment_hsv, copy_paste, letterbox, mixup, random_perspective
from utils.boxes import xywh2xyxy, xywhn2xyxy, xyxy2xywh, xyxy2xywhn
from utils.general import LOGGER, NUM_THREADS, ROOT, UserError, yaml_load
from utils.sources import IMG_FORMATS
from utils.torch_utils import RANK, torch_distributed_zero_first

CACHE_VERSION = 2  # bump when the label cache layout or the verification rules change
OUTSIDE_TOL = 1e-3  # normalised coordinates this far outside 0..1 are reported, closer ones are just clipped
MAX_LISTED_WARNINGS = 5  # the summary names this many problem files, then counts the rest
PIN_MEMORY = torch.cuda.is_available()
AUTO_RAM_FRACTION = 0.1  # cache="auto" keeps decoded images in RAM when they take at most this share of free memory
cv2.setNumThreads(0)  # OpenCV's own thread pool fights the loader workers for the cores
DEFAULT_HYP_FILE = ROOT / "data" / "hyps" / "hyp.scratch-low.yaml"  # augmentation values when no hyp is given


def img2label_paths(img_paths):
    """Label file of each image: the last /images/ folder becomes /labels/ and the suffix becomes .txt."""
    sa, sb = f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"
    return [sb.join(str(p).rsplit(sa, 1)).rsplit(".", 1)[0] + ".txt" for p in img_paths]


def list_image_files(path, prefix=""):
    """Image files of a split: a folder (searched recursively), a .txt list of paths, one image, or a list of those.

    Relative entries of a .txt list are relative to the list's folder. Entries that are not regular files (a FIFO
    or device named x.jpg would block the scan forever) are skipped with a warning, never opened.
    """
    files = []
    for p in path if isinstance(path, (list, tuple)) else [path]:
        p = Path(p)
        if p.is_dir():
            files += [str(f) for f in p.rglob("*.*")]
        elif p.is_file() and p.suffix == ".txt":
            lines = [x.strip() for x in p.read_text(encoding="utf-8-sig").splitlines() if x.strip()]
            files += [str(x if Path(x).is_absolute() else (p.parent / x).resolve()) for x in lines]
        elif p.is_file() and p.suffix[1:].lower() in IMG_FORMATS:
            files.append(str(p))
        elif p.exists():
            raise UserError(f"{prefix}{p} is neither a folder, a .txt list of images nor an image "
                            f"({', '.join(IMG_FORMATS)})")
        else:
            raise UserError(f"{prefix}{p} does not exist; give an image folder, a .txt list of images or a list")
    im_files = sorted(f for f in files if f.rsplit(".", 1)[-1].lower() in IMG_FORMATS)
    special = {f for f in im_files if _not_a_regular_file(f)}
    if special:
        LOGGER.warning(f"{prefix}WARNING: skipped {len(special)} entries that are not regular files (FIFOs, devices, "
                       f"folders), e.g. {min(special)}")
        im_files = [f for f in im_files if f not in special]
    if not im_files:
        raise UserError(f"{prefix}no images found in {path}; supported formats: {', '.join(IMG_FORMATS)}")
    return im_files


def _not_a_regular_file(file):
    """True for an existing entry that is not a regular file; one stat, nothing is opened."""
    try:
        return not stat.S_ISREG(os.stat(file).st_mode)
    except OSError:  # missing: the verification step reports it
        return False


def get_hash(paths):
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


_warned_unwritable = set()  # kinds of cache already reported as not saved in this process


def _warn_not_saved(kind, path, error):
    """Warn once per process and kind of cache that it cannot be written (read-only dataset, full disk)."""
    if kind not in _warned_unwritable:
        _warned_unwritable.add(kind)
        LOGGER.warning(f"WARNING: {kind} not saved to {path} ({getattr(error, 'strerror', None) or error}); "
                       f"going on without it (further {kind} files of this run are not reported)")


def _write_atomic(path, write):
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


def exif_size(img):
    """(width, height) of a PIL image as displayed, i.e. after its EXIF orientation is applied."""
    w, h = img.size
    if img.getexif().get(0x0112) in (5, 6, 7, 8):  # orientations that rotate by 90 degrees
        return h, w
    return w, h


def _check_image(im_file):
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


def _parse_label_rows(text):
    """Label text -> (n, 5) float32 [cls, x, y, w, h]; raises ValueError for a malformed file."""
    rows = []
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
        elif len(numbers) >= 7 and len(numbers) % 2 == 1:  # polygon: class + (x, y) pairs -> bounding box
            xy = np.array(numbers[1:]).reshape(-1, 2)
            (x1, y1), (x2, y2) = xy.min(0), xy.max(0)
            rows.append([numbers[0], (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1])
        else:
            raise ValueError(f"line {k} has {len(numbers)} columns, expected 5 (class x y w h) or a polygon")
    labels = np.array(rows, dtype=np.float32).reshape(-1, 5)
    if not np.isfinite(labels).all():
        raise ValueError("labels contain nan or inf")
    cls = labels[:, 0]
    bad = (cls < 0) | (cls != np.round(cls))
    if bad.any():
        raise ValueError(f"class ids must be non-negative integers, found {sorted(set(cls[bad].tolist()))[:5]}")
    return labels


def _repair_labels(labels):
    """Clip boxes to the image, drop boxes with no area inside it and duplicate rows; returns (labels, notes)."""
    notes = []
    if not len(labels):
        return labels, notes
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
    _, first = np.unique(labels, axis=0, return_index=True)
    if len(first) < len(labels):
        notes.append(f"removed {len(labels) - len(first)} duplicate row(s)")
        labels = labels[np.sort(first)]
    return labels, notes


def verify_image_label(args):
    """Check one image and its label file.

    Returns (im_file, labels (n, 5) or None when the image must be skipped, (w, h), missing, found, empty,
    corrupt, message).
    """
    im_file, lb_file, prefix = args
    try:
        shape, note = _check_image(im_file)
    except Exception as e:  # any decoder failure means the image is unusable; report it and go on
        found = int(os.path.isfile(lb_file))
        return im_file, None, None, 1 - found, found, 0, 1, f"{prefix}{im_file}: corrupt image skipped: {e}"
    notes = [note] if note else []
    if not os.path.isfile(lb_file):
        labels, missing, found = np.zeros((0, 5), dtype=np.float32), 1, 0
    else:
        missing, found = 0, 1
        try:
            labels = _parse_label_rows(Path(lb_file).read_text(encoding="utf-8-sig"))  # a BOM is not a digit
        except (OSError, UnicodeDecodeError, ValueError) as e:
            return im_file, None, None, 0, 1, 0, 1, f"{prefix}{im_file}: corrupt label {lb_file} skipped: {e}"
        labels, repairs = _repair_labels(labels)
        notes += repairs
    empty = int(found and not len(labels))
    message = f"{prefix}{im_file}: " + "; ".join(notes) if notes else ""
    return im_file, labels, shape, missing, found, empty, 0, message


def _save_label_cache(path, cache):
    """Write the cache next to the labels atomically (safe with concurrent processes); on a read-only dataset
    warn once and go on (the labels are verified again next time)."""
    error = _write_atomic(path, lambda f: np.savez(f, **cache))
    if error:
        _warn_not_saved("label cache", path, error)
    return error is None


def _load_label_cache(path, expected_hash):
    """The cache dict if ``path`` holds a readable cache of this version and hash, else None."""
    try:
        with np.load(path, allow_pickle=False) as z:
            cache = {k: z[k] for k in z.files}
        if int(cache["version"]) == CACHE_VERSION and str(cache["hash"]) == expected_hash:
            return cache
    except Exception:  # missing, truncated or foreign file: rebuild it
        return None
    return None


class LoadImagesAndLabels(Dataset):
    """Images and YOLO labels of one split, with letterbox, mosaic and the other train-time augmentations.

    Items: (image uint8 tensor (3, H, W) RGB, targets (n, 6) [0, cls, x, y, w, h] normalised, path,
    shapes ((h0, w0), ((h / h0, w / w0), (padw, padh))) or None for mosaics). ``dataset[i]`` is item i of epoch
    0; ``dataset[(epoch, i)]`` (what EpochSampler yields) is item i of that epoch. All random choices of an item
    come from a generator seeded with (seed, epoch, i), so items do not depend on the worker that loads them, on
    the items loaded before them or on where an interrupted run was resumed.
    """

    def __init__(self, path, img_size=640, batch_size=16, augment=False, hyp=None, rect=False, image_weights=False,
                 cache_images=False, single_cls=False, stride=32, pad=0.0, prefix="", seed=0):
        self.img_size, self.augment, self.rect, self.stride = img_size, augment, rect, stride
        self.hyp = {**yaml_load(DEFAULT_HYP_FILE), **(hyp or {})}
        self.image_weights = image_weights
        self.mosaic = augment and not rect  # rect batches keep each image's own shape, a mosaic cannot
        self.mosaic_border = (-img_size // 2, -img_size // 2)
        self.seed = seed % 2**64  # numpy seed sequences take non-negative integers
        self.prefix = prefix

        im_files = list_image_files(path, prefix)
        self.im_files, self.labels, shapes = self._verify(path, im_files)
        self.label_files = img2label_paths(self.im_files)
        self.shapes = np.array(shapes, dtype=np.int64).reshape(-1, 2)  # (w, h) as displayed
        self.n = len(self.im_files)
        if single_cls:
            for lb in self.labels:
                lb[:, 0] = 0
        self.indices = list(range(self.n))

        if rect:
            self._sort_for_rect(batch_size, pad)
        self.ims = [None] * self.n  # images cached in RAM
        # --cache disk: the decoded full-resolution image beside the original, named after all of it (a.jpg.npy)
        self.npy_files = [Path(f"{f}.npy") for f in self.im_files]
        if cache_images not in (None, False, True, "ram", "disk", "val", "auto"):
            raise UserError(f"--cache {cache_images}: choose ram, disk, val or off")
        if cache_images == "auto":
            cache_images = "ram" if self._small_enough_for_ram() else None
        self.cache = "disk" if cache_images == "disk" else "ram" if cache_images else None
        if self.cache:
            self.cache_images(self.cache)

    def _verify(self, path, im_files):
        """Verify all images and labels (or reuse a valid cache); returns the usable files, labels, shapes."""
        label_files = img2label_paths(im_files)
        cache_path = Path(label_files[0]).parent.with_suffix(".cache")
        expected_hash = get_hash(label_files + im_files)
        cache = _load_label_cache(cache_path, expected_hash)
        if cache is None:
            cache = self._build_cache(im_files, label_files)
            cache["hash"] = np.array(expected_hash)
            _save_label_cache(cache_path, cache)
        missing, found, empty, corrupt, total = (int(x) for x in cache["stats"])
        messages = [str(m) for m in cache["messages"]]
        LOGGER.info(f"{self.prefix}{path}: {total} images, {found} label files found, {missing} missing, "
                    f"{empty} empty, {corrupt} corrupt")
        for message in messages[:MAX_LISTED_WARNINGS]:
            LOGGER.warning(f"WARNING: {self.prefix}{message}")
        if len(messages) > MAX_LISTED_WARNINGS:
            LOGGER.warning(f"WARNING: ... and {len(messages) - MAX_LISTED_WARNINGS} more files with problems")
        files = [str(f) for f in cache["im_files"]]
        if not files:
            raise UserError(f"{self.prefix}no usable images in {path}: all {total} are corrupt "
                            f"({messages[0] if messages else ''}); fix or replace them")
        if not found:
            LOGGER.warning(f"WARNING: {self.prefix}no label files found for {path} (expected them in "
                           f"{Path(label_files[0]).parent}); training will learn nothing")
        labels = np.split(cache["labels"], np.cumsum(cache["label_counts"])[:-1])
        return files, [lb.astype(np.float32) for lb in labels], cache["shapes"]

    def _build_cache(self, im_files, label_files):
        """Verify every image/label pair in parallel; returns the arrays stored in the label cache."""
        files, labels, shapes, messages = [], [], [], []
        stats = np.zeros(5, dtype=np.int64)  # missing, found, empty, corrupt, total
        with ThreadPool(NUM_THREADS) as pool:
            results = pool.imap(verify_image_label, zip(im_files, label_files, repeat("")))
            for im_file, lb, shape, nm, nf, ne, nc, msg in results:
                stats += (nm, nf, ne, nc, 1)
                if msg:
                    messages.append(msg)
                if lb is not None:
                    files.append(im_file)
                    labels.append(lb)
                    shapes.append(shape)
        counts = np.array([len(lb) for lb in labels], dtype=np.int64)
        return {
            "version": np.array(CACHE_VERSION),
            "im_files": np.array(files, dtype=str),
            "labels": np.concatenate(labels, 0) if labels else np.zeros((0, 5), dtype=np.float32),
            "label_counts": counts,
            "shapes": np.array(shapes, dtype=np.int64).reshape(-1, 2),
            "stats": stats,
            "messages": np.array(messages, dtype=str),
        }

    def _sort_for_rect(self, batch_size, pad):
        """Order images by aspect ratio and give each batch the smallest stride-multiple shape that fits it."""
        batch_index = np.floor(np.arange(self.n) / batch_size).astype(int)
        n_batches = batch_index[-1] + 1
        aspect = self.shapes[:, 1] / self.shapes[:, 0]  # h / w
        order = aspect.argsort()
        self.im_files = [self.im_files[i] for i in order]
        self.label_files = [self.label_files[i] for i in order]
        self.labels = [self.labels[i] for i in order]
        self.shapes = self.shapes[order]
        aspect = aspect[order]
        shapes = np.ones((n_batches, 2))  # (h, w) relative to img_size
        for b in range(n_batches):
            ar = aspect[batch_index == b]
            lo, hi = ar.min(), ar.max()
            if hi < 1:
                shapes[b] = hi, 1
            elif lo > 1:
                shapes[b] = 1, 1 / lo
        self.batch = batch_index
        self.batch_shapes = np.ceil(shapes * self.img_size / self.stride + pad).astype(int) * self.stride

    def _image_bytes(self, resized=True):
        """Bytes all images take decoded, resized to img_size (long side) or at full resolution, from the
        verified shapes."""
        r = self.img_size / self.shapes.max(1) if resized else np.ones(self.n)
        return int((np.ceil(self.shapes[:, 0] * r) * np.ceil(self.shapes[:, 1] * r) * 3).sum())

    def _small_enough_for_ram(self):
        """cache="auto" (training on the CPU without --cache): True when the decoded, resized images take at most
        AUTO_RAM_FRACTION of the free memory. There, decoding the four images of every mosaic runs on the cores the
        model trains on; cached, a bf16 yolov5n epoch at 256 px on 2 cores is about 7% shorter."""
        need, available = self._image_bytes(resized=True), free_memory()
        if available is None or need > AUTO_RAM_FRACTION * available:
            return False
        LOGGER.info(f"{self.prefix}caching the decoded images in RAM ({need / 1e6:.0f} MB): training on the CPU, "
                    f"where decoding competes with the model for the cores; --cache off turns this off")
        return True

    def cache_images(self, where="ram"):
        """Cache resized images in RAM (when they fit with room to spare) or the decoded full-resolution images
        as .npy files next to the originals (valid at any --imgsz)."""
        need = self._image_bytes(resized=where == "ram")
        if where == "ram":
            available = free_memory()
            if available is not None and need * 1.5 > available:  # leave room for the model, workers, the rest
                LOGGER.warning(f"WARNING: {self.prefix}not caching images in RAM: need {need / 1e9:.1f} GB, "
                               f"{available / 1e9:.1f} GB available; use --cache disk or no cache")
                return False
        else:
            free = shutil.disk_usage(Path(self.im_files[0]).parent).free
            if need * 1.2 > free:
                LOGGER.warning(f"WARNING: {self.prefix}not caching images on disk: need {need / 1e9:.1f} GB, "
                               f"{free / 1e9:.1f} GB free")
                return False
        store = self._cache_in_ram if where == "ram" else self._cache_on_disk
        with ThreadPool(NUM_THREADS) as pool:
            for _ in pool.imap(store, range(self.n)):
                pass
        LOGGER.info(f"{self.prefix}cached {self.n} images ({need / 1e9:.2f} GB, {where})")
        return True

    def _cache_in_ram(self, i):
        self.ims[i] = self.load_image(i)[0]

    def _cache_on_disk(self, i):
        """Write image ``i``'s .npy unless a valid one exists (one that is unreadable, truncated, of another
        shape or older than the image is rebuilt)."""
        if self._read_npy(i, mmap_mode="r") is None:
            error = _write_atomic(self.npy_files[i], lambda f: np.save(f, self._read_image(i)))
            if error:
                _warn_not_saved("image cache", self.npy_files[i], error)

    def _read_npy(self, i, mmap_mode=None):
        """Image ``i`` from its --cache disk .npy file, or None when that is missing, unreadable, of another shape
        than the image or older than it."""
        npy, w0, h0 = self.npy_files[i], *self.shapes[i]
        try:
            if npy.stat().st_mtime_ns < os.stat(self.im_files[i]).st_mtime_ns:
                return None
            im = np.load(npy, mmap_mode=mmap_mode, allow_pickle=False)
        except (OSError, ValueError, EOFError):
            return None
        return im if im.dtype == np.uint8 and im.shape == (h0, w0, 3) else None

    def _read_image(self, i):
        """Read image ``i`` at full resolution (BGR, EXIF orientation applied)."""
        im = cv2.imread(self.im_files[i])  # IMREAD_COLOR honours EXIF orientation
        if im is None:
            raise UserError(f"{self.im_files[i]} could not be read (was it removed after the dataset was scanned?)")
        return im

    def _resize(self, im):
        """Resize the long side of a full-resolution image to img_size."""
        h0, w0 = im.shape[:2]
        r = self.img_size / max(h0, w0)
        if r != 1:
            interp = cv2.INTER_LINEAR if (self.augment or r > 1) else cv2.INTER_AREA
            im = cv2.resize(im, (math.ceil(w0 * r), math.ceil(h0 * r)), interpolation=interp)
        return im

    def load_image(self, i):
        """(image BGR resized to img_size, original (h0, w0), resized (h, w)). The .npy files are read only with
        --cache disk; a missing or broken one falls back to the image file."""
        w0, h0 = self.shapes[i]
        im = self.ims[i]
        if im is None:
            full = self._read_npy(i) if self.cache == "disk" else None
            im = self._resize(full if full is not None else self._read_image(i))
        return im, (int(h0), int(w0)), im.shape[:2]

    def __len__(self):
        return len(self.im_files)

    def load_mosaic(self, index, rng):
        """Four images (``index`` and three drawn by numpy Generator ``rng``) around a random centre of a 2s x 2s
        canvas, then a random perspective crop to s x s.

        Returns (image (s, s, 3), labels (n, 5) [cls, x1, y1, x2, y2] pixels).
        """
        s = self.img_size
        yc, xc = (int(rng.uniform(-b, 2 * s + b)) for b in self.mosaic_border)
        indices = [index] + [int(i) for i in rng.choice(self.indices, 3)]
        canvas = np.full((2 * s, 2 * s, 3), 114, dtype=np.uint8)
        all_labels = []
        for k, i in enumerate(indices):
            im, _, (h, w) = self.load_image(i)
            # corner (x1a, y1a, x2a, y2a) on the canvas and the matching crop of the image
            x1a, x2a = (max(xc - w, 0), xc) if k in (0, 2) else (xc, min(xc + w, 2 * s))
            y1a, y2a = (max(yc - h, 0), yc) if k in (0, 1) else (yc, min(yc + h, 2 * s))
            x1b = w - (x2a - x1a) if k in (0, 2) else 0
            y1b = h - (y2a - y1a) if k in (0, 1) else 0
            canvas[y1a:y2a, x1a:x2a] = im[y1b:y1b + (y2a - y1a), x1b:x1b + (x2a - x1a)]
            labels = self.labels[i].copy()
            if len(labels):
                labels[:, 1:] = xywhn2xyxy(labels[:, 1:], w, h, padw=x1a - x1b, padh=y1a - y1b)
            all_labels.append(labels)
        labels = np.concatenate(all_labels, 0)
        labels[:, 1:] = labels[:, 1:].clip(0, 2 * s)
        hyp = self.hyp
        canvas, labels = copy_paste(canvas, labels, p=hyp["copy_paste"], rng=rng)
        return random_perspective(canvas, labels, degrees=hyp["degrees"], translate=hyp["translate"],
                                  scale=hyp["scale"], shear=hyp["shear"], perspective=hyp["perspective"],
                                  border=self.mosaic_border, rng=rng)

    def _load_letterboxed(self, index, rng):
        """One image letterboxed to its (rect) batch shape; labels as pixel xyxy; shapes for rescaling."""
        im, (h0, w0), (h, w) = self.load_image(index)
        shape = self.batch_shapes[self.batch[index]] if self.rect else self.img_size
        im, ratio, pad = letterbox(im, shape, auto=False, scaleup=self.augment)
        shapes = (h0, w0), ((h / h0, w / w0), pad)
        labels = self.labels[index].copy()
        if len(labels):
            labels[:, 1:] = xywhn2xyxy(labels[:, 1:], ratio[0] * w, ratio[1] * h, padw=pad[0], padh=pad[1])
        if self.augment:
            hyp = self.hyp
            im, labels = random_perspective(im, labels, degrees=hyp["degrees"], translate=hyp["translate"],
                                            scale=hyp["scale"], shear=hyp["shear"], perspective=hyp["perspective"],
                                            rng=rng)
        return im, labels, shapes

    def __getitem__(self, index):
        epoch, position = index if isinstance(index, tuple) else (0, index)
        position = range(len(self.indices))[position]  # negative positions count from the end, IndexError past it
        rng = np.random.default_rng([self.seed, epoch, position])
        index = self.indices[position]  # --image-weights resamples this list
        hyp = self.hyp
        if self.mosaic and rng.random() < hyp["mosaic"]:
            im, labels = self.load_mosaic(index, rng)
            shapes = None
            if rng.random() < hyp["mixup"]:
                im, labels = mixup(im, labels, *self.load_mosaic(int(rng.choice(self.indices)), rng), rng=rng)
        else:
            im, labels, shapes = self._load_letterboxed(index, rng)

        labels = np.asarray(labels, dtype=np.float32).reshape(-1, 5)
        if len(labels):
            labels[:, 1:5] = xyxy2xywhn(labels[:, 1:5], w=im.shape[1], h=im.shape[0], clip=True, eps=1e-3)
        if self.augment:
            augment_hsv(im, hgain=hyp["hsv_h"], sgain=hyp["hsv_s"], vgain=hyp["hsv_v"], rng=rng)
            if rng.random() < hyp["flipud"]:
                im = np.flipud(im)
                labels[:, 2] = 1 - labels[:, 2]
            if rng.random() < hyp["fliplr"]:
                im = np.fliplr(im)
                labels[:, 1] = 1 - labels[:, 1]

        targets = torch.zeros((len(labels), 6))
        targets[:, 1:] = torch.from_numpy(labels)
        im = np.ascontiguousarray(im.transpose((2, 0, 1))[::-1])  # HWC BGR -> CHW RGB
        return torch.from_numpy(im), targets, self.im_files[index], shapes

    @staticmethod
    def collate_fn(batch):
        """Stack images and concatenate targets, writing each target's image index into column 0."""
        ims, targets, paths, shapes = zip(*batch)
        for i, t in enumerate(targets):
            t[:, 0] = i
        return torch.stack(ims, 0), torch.cat(targets, 0), paths, shapes


class EpochSampler(distributed.DistributedSampler):
    """Dataset positions of one epoch as (epoch, position) pairs, for LoadImagesAndLabels.__getitem__.

    The order is a function of (seed, epoch) only (set_epoch; shuffled like DistributedSampler, which also shards
    it between DDP processes when ``shard``). The epoch travels with every position because worker
    processes hold their own copy of the dataset and cannot see the main process's epoch.
    """

    def __init__(self, dataset, shuffle=False, seed=0, shard=False):
        single = {} if shard else {"num_replicas": 1, "rank": 0}
        super().__init__(dataset, shuffle=shuffle, seed=seed, **single)

    def __iter__(self):
        epoch = self.epoch  # fixed when the pass starts, like the order
        return iter([(epoch, i) for i in super().__iter__()])


class EpochDataLoader(DataLoader):
    """A DataLoader (new workers every pass) whose ``set_epoch`` selects the EpochSampler's epoch."""

    def set_epoch(self, epoch):
        self.sampler.set_epoch(epoch)


class _RepeatSampler:
    """Yields the batches of ``batch_sampler`` forever, one pass per epoch from ``start_epoch`` on.

    The epoch is set here, before each pass starts, because the workers already prefetch the next epoch's first
    batches while the training loop is still finishing the current one.
    """

    def __init__(self, batch_sampler):
        self.batch_sampler = batch_sampler
        self.start_epoch = 0

    def __iter__(self):
        epoch = self.start_epoch
        while True:
            self.batch_sampler.sampler.set_epoch(epoch)
            yield from self.batch_sampler
            epoch += 1


class InfiniteDataLoader(DataLoader):
    """A DataLoader whose workers live for the whole run: one endless iterator, cut into epochs of len(self).

    Saves restarting the workers every epoch and keeps them prefetching across the epoch boundary. Each pass is
    the next epoch of its EpochSampler (0, 1, ...); ``set_epoch`` jumps elsewhere (e.g. the first epoch of a
    resumed run), restarting the workers when the stream is not already there.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        object.__setattr__(self, "batch_sampler", _RepeatSampler(self.batch_sampler))
        self._endless = None  # started by the first pass, at the epoch set_epoch chose
        self._epoch = 0  # epoch of the next pass

    def __len__(self):
        return len(self.batch_sampler.batch_sampler)

    def set_epoch(self, epoch):
        if epoch != self._epoch:
            self._endless = None
            self._epoch = epoch

    def __iter__(self):
        if self._endless is None:
            self.batch_sampler.start_epoch = self._epoch
            self._endless = super().__iter__()
        complete = False
        try:
            for _ in range(len(self)):
                yield next(self._endless)
            complete = True
        finally:
            self._epoch += 1
            if not complete:  # an abandoned pass leaves the stream mid-epoch: the next pass starts afresh
                self._endless = None


def free_memory():
    """Free physical memory in bytes, or None where the system does not report it (e.g. macOS lacks
    SC_AVPHYS_PAGES)."""
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # AttributeError: Windows has no os.sysconf
        return None


def seed_worker(worker_id):
    """Seed each worker's global random modules (the dataset itself seeds every item, see __getitem__)."""
    worker_seed = torch.initial_seed() % 2**32
    np.random.seed(worker_seed)
    random.seed(worker_seed)


def create_dataloader(path, imgsz, batch_size, stride, single_cls=False, hyp=None, augment=False, cache=False,
                      pad=0.0, rect=False, rank=-1, workers=8, image_weights=False, prefix="", shuffle=False, seed=0):
    """A (loader, dataset) pair for one split; batches are (imgs uint8 (B, 3, H, W), targets (n, 6), paths, shapes).

    Positions come from an EpochSampler (rank != -1 shards them between DDP processes); the loader's
    ``set_epoch(epoch)`` selects the epoch, which fixes the shuffle and every augmentation. Without
    --image-weights the loader keeps its workers alive across epochs.
    """
    if rect and shuffle:
        LOGGER.warning("WARNING: --rect is incompatible with shuffle, setting shuffle=False")
        shuffle = False
    with torch_distributed_zero_first(rank):  # rank 0 builds the label cache, the others then read it
        dataset = LoadImagesAndLabels(path, imgsz, batch_size, augment=augment, hyp=hyp, rect=rect,
                                      image_weights=image_weights, cache_images=cache, single_cls=single_cls,
                                      stride=int(stride), pad=pad, prefix=prefix, seed=seed)
    batch_size = min(batch_size, len(dataset))
    n_devices = max(torch.cuda.device_count(), 1)
    n_workers = min((os.cpu_count() or 1) // n_devices, batch_size if batch_size > 1 else 0, workers)
    sampler = EpochSampler(dataset, shuffle=shuffle, seed=seed, shard=rank != -1)
    loader_class = EpochDataLoader if image_weights else InfiniteDataLoader  # image weights change indices per epoch
    generator = torch.Generator()
    generator.manual_seed(6148914691236517205 + seed + max(RANK, 0))
    loader = loader_class(dataset, batch_size=batch_size, num_workers=n_workers, sampler=sampler,
                          pin_memory=PIN_MEMORY, collate_fn=LoadImagesAndLabels.collate_fn, worker_init_fn=seed_worker,
                          generator=generator)
    return loader, dataset
