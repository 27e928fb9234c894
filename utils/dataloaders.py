"""YOLO-format detection datasets and their loaders: the image files of a split, image caching (RAM or .npy files
on disk), letterbox, mosaic and the other train-time augmentations, collation, and the epoch-aware samplers and
loaders that make every item a function of (seed, epoch, position).

The labels of a split are verified and cached by utils/labels.py (which also describes the label format).
"""

import math
import os
import random
import shutil
import stat
from collections.abc import Iterator
from multiprocessing.pool import ThreadPool
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import BatchSampler, DataLoader, Dataset, distributed

from utils.augmentations import augment_hsv, copy_paste, letterbox, mixup, random_perspective
from utils.boxes import xywhn2xyxy, xyxy2xywhn
from utils.cache_files import warn_not_saved, write_atomic
from utils.general import LOGGER, NUM_THREADS, ROOT, UserError, yaml_load
from utils.labels import img2label_paths, load_verified_segments
from utils.sources import IMG_FORMATS
from utils.torch_utils import RANK, torch_distributed_zero_first

# Compatibility: official YOLOv5 scripts import these names from utils.dataloaders, but they live in the modules
# below (as do img2label_paths and IMG_FORMATS, imported above for this module's own use and importable from here).
# utils/labels.py and utils/sources.py never import this module, so the re-export makes no import cycle.
# isort: split
from utils.labels import exif_size, verify_image_label  # noqa: F401
from utils.sources import VID_FORMATS, LoadImages, LoadStreams  # noqa: F401

PIN_MEMORY = torch.cuda.is_available()
AUTO_RAM_FRACTION = 0.1  # cache="auto" keeps decoded images in RAM when they take at most this share of free memory
cv2.setNumThreads(0)  # OpenCV's own thread pool fights the loader workers for the cores
DEFAULT_HYP_FILE = ROOT / "data" / "hyps" / "hyp.scratch-low.yaml"  # augmentation values when no hyp is given


def list_image_files(path: str | Path | list | tuple, prefix: str = "") -> list[str]:
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


def _not_a_regular_file(file: str) -> bool:
    """True for an existing entry that is not a regular file; one stat, nothing is opened."""
    try:
        return not stat.S_ISREG(os.stat(file).st_mode)
    except OSError:  # missing: the verification step reports it
        return False


class LoadImagesAndLabels(Dataset):
    """Images and YOLO labels of one split, with letterbox, mosaic and the other train-time augmentations.

    Items: (image uint8 tensor (3, H, W) RGB, targets (n, 6) [0, cls, x, y, w, h] normalised, path,
    shapes ((h0, w0), ((h / h0, w / w0), (padw, padh))) or None for mosaics). ``dataset[i]`` is item i of epoch
    0; ``dataset[(epoch, i)]`` (what EpochSampler yields) is item i of that epoch. All random choices of an item
    come from a generator seeded with (seed, epoch, i), so items do not depend on the worker that loads them, on
    the items loaded before them or on where an interrupted run was resumed.
    """

    def __init__(self, path: str | Path | list, img_size: int = 640, batch_size: int = 16, augment: bool = False,
                 hyp: dict | None = None, rect: bool = False, image_weights: bool = False,
                 cache_images: bool | str | None = False, single_cls: bool = False, stride: int = 32, pad: float = 0.0,
                 prefix: str = "", seed: int = 0) -> None:
        self.img_size, self.augment, self.rect, self.stride = img_size, augment, rect, stride
        self.hyp = {**yaml_load(DEFAULT_HYP_FILE), **(hyp or {})}
        self.image_weights = image_weights
        self.mosaic = augment and not rect  # rect batches keep each image's own shape, a mosaic cannot
        self.mosaic_border = (-img_size // 2, -img_size // 2)
        self.seed = seed % 2**64  # numpy seed sequences take non-negative integers
        self.prefix = prefix

        im_files = list_image_files(path, prefix)
        # segments: per label a (k, 2) normalised polygon, empty for box rows (used by the segmentation dataset)
        self.im_files, self.labels, shapes, self.segments = load_verified_segments(path, im_files, prefix)
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
        if self.cache and not self.cache_images(self.cache):  # it does not fit: stream from the image files
            self.cache = None

    def _sort_for_rect(self, batch_size: int, pad: float) -> None:
        """Order images by aspect ratio and give each batch the smallest stride-multiple shape that fits it."""
        batch_index = np.floor(np.arange(self.n) / batch_size).astype(int)
        n_batches = batch_index[-1] + 1
        aspect = self.shapes[:, 1] / self.shapes[:, 0]  # h / w
        order = aspect.argsort()
        self.im_files = [self.im_files[i] for i in order]
        self.label_files = [self.label_files[i] for i in order]
        self.labels = [self.labels[i] for i in order]
        self.segments = [self.segments[i] for i in order]
        self.shapes = self.shapes[order]
        aspect = aspect[order]
        # each batch is a contiguous run of batch_size images: its aspect range in one pass (a mask per batch
        # would cost images x batches, 10^10 for 100k images at batch size 1)
        starts = np.arange(0, self.n, batch_size)
        lo, hi = np.minimum.reduceat(aspect, starts), np.maximum.reduceat(aspect, starts)
        shapes = np.ones((n_batches, 2))  # (h, w) relative to img_size
        wide, tall = hi < 1, lo > 1
        shapes[wide, 0] = hi[wide]
        shapes[tall, 1] = 1 / lo[tall]
        self.batch = batch_index
        self.batch_shapes = np.ceil(shapes * self.img_size / self.stride + pad).astype(int) * self.stride

    def _image_bytes(self, resized: bool = True) -> int:
        """Bytes all images take decoded, resized to img_size (long side) or at full resolution, from the
        verified shapes."""
        r = self.img_size / self.shapes.max(1) if resized else np.ones(self.n)
        return int((np.ceil(self.shapes[:, 0] * r) * np.ceil(self.shapes[:, 1] * r) * 3).sum())

    def _small_enough_for_ram(self) -> bool:
        """cache="auto" (training on the CPU without --cache): True when the decoded, resized images take at most
        AUTO_RAM_FRACTION of the free memory. There, decoding the four images of every mosaic runs on the cores the
        model trains on; cached, a bf16 yolov5n epoch at 256 px on 2 cores is about 7% shorter."""
        need, available = self._image_bytes(resized=True), free_memory()
        if available is None or need > AUTO_RAM_FRACTION * available:
            return False
        LOGGER.info(f"{self.prefix}caching the decoded images in RAM ({need / 1e6:.0f} MB): training on the CPU, "
                    f"where decoding competes with the model for the cores; --cache off turns this off")
        return True

    def cache_images(self, where: str = "ram") -> bool:
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

    def _cache_in_ram(self, i: int) -> None:
        self.ims[i] = self.load_image(i)[0]

    def _cache_on_disk(self, i: int) -> None:
        """Write image ``i``'s .npy unless a valid one exists (one that is unreadable, truncated, of another
        shape or older than the image is rebuilt)."""
        if self._read_npy(i, mmap_mode="r") is None:
            error = write_atomic(self.npy_files[i], lambda f: np.save(f, self._read_image(i)))
            if error:
                warn_not_saved("image cache", self.npy_files[i], error)

    def _read_npy(self, i: int, mmap_mode: str | None = None) -> np.ndarray | None:
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

    def _read_image(self, i: int) -> np.ndarray:
        """Read image ``i`` at full resolution (BGR, EXIF orientation applied)."""
        im = cv2.imread(self.im_files[i])  # IMREAD_COLOR honours EXIF orientation
        if im is None:
            raise UserError(f"{self.im_files[i]} could not be read (was it removed after the dataset was scanned?)")
        return im

    def _resize(self, im: np.ndarray) -> np.ndarray:
        """Resize the long side of a full-resolution image to img_size."""
        h0, w0 = im.shape[:2]
        r = self.img_size / max(h0, w0)
        if r != 1:
            interp = cv2.INTER_LINEAR if (self.augment or r > 1) else cv2.INTER_AREA
            im = cv2.resize(im, (math.ceil(w0 * r), math.ceil(h0 * r)), interpolation=interp)
        return im

    def load_image(self, i: int) -> tuple[np.ndarray, tuple[int, int], tuple[int, int]]:
        """(image BGR resized to img_size, original (h0, w0), resized (h, w)). The .npy files are read only with
        --cache disk; a missing or broken one falls back to the image file."""
        w0, h0 = self.shapes[i]
        im = self.ims[i]
        if im is None:
            full = self._read_npy(i) if self.cache == "disk" else None
            im = self._resize(full if full is not None else self._read_image(i))
        return im, (int(h0), int(w0)), im.shape[:2]

    def __len__(self) -> int:
        return len(self.im_files)

    def load_mosaic(self, index: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Four images (``index`` and three drawn by numpy Generator ``rng``) around a random centre of a 2s x 2s
        canvas, then a random perspective crop to s x s.

        Returns (image (s, s, 3), labels (n, 5) [cls, x1, y1, x2, y2] pixels).
        """
        s = self.img_size
        canvas, tiles = self.mosaic_canvas(index, rng)
        all_labels = []
        for i, w, h, padw, padh in tiles:
            labels = self.labels[i].copy()
            if len(labels):
                labels[:, 1:] = xywhn2xyxy(labels[:, 1:], w, h, padw=padw, padh=padh)
            all_labels.append(labels)
        labels = np.concatenate(all_labels, 0)
        labels[:, 1:] = labels[:, 1:].clip(0, 2 * s)
        hyp = self.hyp
        canvas, labels = copy_paste(canvas, labels, p=hyp["copy_paste"], rng=rng)
        return random_perspective(canvas, labels, degrees=hyp["degrees"], translate=hyp["translate"],
                                  scale=hyp["scale"], shear=hyp["shear"], perspective=hyp["perspective"],
                                  border=self.mosaic_border, rng=rng)

    def mosaic_canvas(self, index: int, rng: np.random.Generator) -> tuple[np.ndarray, list[tuple]]:
        """The 2s x 2s mosaic canvas of image ``index`` and three drawn by ``rng`` around a random centre, in an
        order shuffled by ``rng`` (``index`` in any quadrant, as official v7.0), and per tile (image index, resized w,
        h, x offset, y offset) for moving its labels onto the canvas."""
        s = self.img_size
        yc, xc = (int(rng.uniform(-b, 2 * s + b)) for b in self.mosaic_border)
        indices = [index] + [int(i) for i in rng.choice(self.indices, 3)]
        rng.shuffle(indices)
        canvas = np.full((2 * s, 2 * s, 3), 114, dtype=np.uint8)
        tiles = []
        for k, i in enumerate(indices):
            im, _, (h, w) = self.load_image(i)
            # corner (x1a, y1a, x2a, y2a) on the canvas and the matching crop of the image
            x1a, x2a = (max(xc - w, 0), xc) if k in (0, 2) else (xc, min(xc + w, 2 * s))
            y1a, y2a = (max(yc - h, 0), yc) if k in (0, 1) else (yc, min(yc + h, 2 * s))
            x1b = w - (x2a - x1a) if k in (0, 2) else 0
            y1b = h - (y2a - y1a) if k in (0, 1) else 0
            canvas[y1a:y2a, x1a:x2a] = im[y1b:y1b + (y2a - y1a), x1b:x1b + (x2a - x1a)]
            tiles.append((i, w, h, x1a - x1b, y1a - y1b))
        return canvas, tiles

    def _load_letterboxed(self, index: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, tuple]:
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

    def __getitem__(self, index: int | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor, str, tuple | None]:
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
    def collate_fn(batch: list[tuple]) -> tuple[torch.Tensor, torch.Tensor, tuple, tuple]:
        """Stack images and concatenate targets, writing each target's image index into column 0."""
        ims, targets, paths, shapes = zip(*batch)
        for i, t in enumerate(targets):
            t[:, 0] = i
        return torch.stack(ims, 0), torch.cat(targets, 0), paths, shapes

    @staticmethod
    def collate_fn4(batch: list[tuple]) -> tuple[torch.Tensor, torch.Tensor, tuple, tuple]:
        """``--quad``: every 4 images of the batch become one at twice the size: with probability 0.5 the first
        of them upsampled 2x (its labels as they are), else the four tiled 2x2, left to right and top to bottom
        (labels moved into their quarter and halved). Images left over when the batch is not a multiple of 4 are
        dropped. The coin comes from torch's global generator, which the loader seeds in each worker and
        init_seeds in the main process."""
        ims, targets, paths, shapes = zip(*batch)
        right = torch.tensor([0.0, 0, 1, 0, 0, 0])  # normalised xywh shifted one image width / height
        down = torch.tensor([0.0, 0, 0, 1, 0, 0])
        half = torch.tensor([1.0, 1, 0.5, 0.5, 0.5, 0.5])  # class and image index kept, geometry halved
        ims4, targets4, paths4, shapes4 = [], [], [], []
        for q in range(len(batch) // 4):
            i = 4 * q
            if torch.rand(1).item() < 0.5:
                im = F.interpolate(ims[i][None].float(), scale_factor=2.0, mode="bilinear", align_corners=False)[0]
                im, t = im.round().clamp(0, 255).to(ims[i].dtype), targets[i].clone()
            else:
                im = torch.cat((torch.cat((ims[i], ims[i + 1]), 2), torch.cat((ims[i + 2], ims[i + 3]), 2)), 1)
                t = torch.cat((targets[i], targets[i + 1] + right, targets[i + 2] + down,
                               targets[i + 3] + right + down), 0) * half
            t[:, 0] = q
            ims4.append(im)
            targets4.append(t)
            paths4.append(paths[i])
            shapes4.append(shapes[i])
        return torch.stack(ims4, 0), torch.cat(targets4, 0), tuple(paths4), tuple(shapes4)


class EpochSampler(distributed.DistributedSampler):
    """Dataset positions of one epoch as (epoch, position) pairs, for LoadImagesAndLabels.__getitem__.

    The order is a function of (seed, epoch) only (set_epoch; shuffled like DistributedSampler, which also shards
    it between DDP processes when ``shard``). The epoch travels with every position because worker
    processes hold their own copy of the dataset and cannot see the main process's epoch.
    """

    def __init__(self, dataset: Dataset, shuffle: bool = False, seed: int = 0, shard: bool = False) -> None:
        single = {} if shard else {"num_replicas": 1, "rank": 0}
        super().__init__(dataset, shuffle=shuffle, seed=seed, **single)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.epoch  # fixed when the pass starts, like the order
        return iter([(epoch, i) for i in super().__iter__()])


class EpochDataLoader(DataLoader):
    """A DataLoader (new workers every pass) whose ``set_epoch`` selects the EpochSampler's epoch."""

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)


class _RepeatSampler:
    """Yields the batches of ``batch_sampler`` forever, one pass per epoch from ``start_epoch`` on.

    The epoch is set here, before each pass starts, because the workers already prefetch the next epoch's first
    batches while the training loop is still finishing the current one.
    """

    def __init__(self, batch_sampler: BatchSampler) -> None:
        self.batch_sampler = batch_sampler
        self.start_epoch = 0

    def __iter__(self) -> Iterator[list]:
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

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        object.__setattr__(self, "batch_sampler", _RepeatSampler(self.batch_sampler))
        self._endless = None  # started by the first pass, at the epoch set_epoch chose
        self._epoch = 0  # epoch of the next pass

    def __len__(self) -> int:
        return len(self.batch_sampler.batch_sampler)

    def set_epoch(self, epoch: int) -> None:
        if epoch != self._epoch:
            self._endless = None
            self._epoch = epoch

    def __iter__(self) -> Iterator[tuple]:
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


def free_memory() -> int | None:
    """Free physical memory in bytes, or None where the system does not report it (e.g. macOS lacks
    SC_AVPHYS_PAGES). Inside a container with a memory limit (cgroup v2 or v1) the room left under that limit
    counts when it is smaller: the host's free memory says nothing about when the container is killed."""
    try:
        free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # AttributeError: Windows has no os.sysconf
        return None
    room = cgroup_memory_room()
    return free if room is None else min(free, room)


def cgroup_memory_room(root: str | Path = "/sys/fs/cgroup") -> int | None:
    """Bytes left under this process's cgroup memory limit (limit - usage; v2 memory.max / memory.current, else
    v1 memory/memory.limit_in_bytes / memory.usage_in_bytes), or None without a limit or a readable cgroup."""
    root = Path(root)
    for limit_file, usage_file in (("memory.max", "memory.current"),
                                   ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes")):
        try:
            limit = (root / limit_file).read_text().strip()
            usage = int((root / usage_file).read_text().strip())
        except (OSError, ValueError):
            continue
        if limit.isdigit() and int(limit) < 1 << 60:  # "max" or v1's page-rounded 2^63 mean no limit
            return max(int(limit) - usage, 0)
        return None
    return None


def seed_worker(worker_id: int) -> None:
    """Seed each worker's global random modules (the dataset itself seeds every item, see __getitem__)."""
    worker_seed = torch.initial_seed() % 2**32
    np.random.seed(worker_seed)
    random.seed(worker_seed)


def create_dataloader(path: str | Path | list, imgsz: int, batch_size: int, stride: float,
                      single_cls: bool = False, hyp: dict | None = None, augment: bool = False,
                      cache: bool | str | None = False, pad: float = 0.0, rect: bool = False, rank: int = -1,
                      workers: int = 8, image_weights: bool = False, prefix: str = "", shuffle: bool = False,
                      seed: int = 0, quad: bool = False, dataset_class: type | None = None,
                      **dataset_options: Any) -> tuple[DataLoader, LoadImagesAndLabels]:
    """A (loader, dataset) pair for one split; batches are (imgs uint8 (B, 3, H, W), targets (n, 6), paths, shapes).

    Positions come from an EpochSampler (rank != -1 shards them between DDP processes); the loader's
    ``set_epoch(epoch)`` selects the epoch, which fixes the shuffle and every augmentation. Without
    --image-weights the loader keeps its workers alive across epochs. ``quad`` (train.py --quad) collates every
    4 images into one of twice the size (LoadImagesAndLabels.collate_fn4). ``dataset_class`` (a subclass, e.g.
    the segmentation dataset of utils/segment_data.py) replaces LoadImagesAndLabels, taking ``dataset_options``
    as extra arguments; its own ``collate_fn`` collates.
    """
    dataset_class = dataset_class or LoadImagesAndLabels
    if rect and shuffle:
        LOGGER.warning("WARNING: --rect is incompatible with shuffle, setting shuffle=False")
        shuffle = False
    with torch_distributed_zero_first(rank):  # rank 0 builds the label cache, the others then read it
        dataset = dataset_class(path, imgsz, batch_size, augment=augment, hyp=hyp, rect=rect,
                                image_weights=image_weights, cache_images=cache, single_cls=single_cls,
                                stride=int(stride), pad=pad, prefix=prefix, seed=seed, **dataset_options)
    batch_size = min(batch_size, len(dataset))
    n_devices = max(torch.cuda.device_count(), 1)
    n_workers = min((os.cpu_count() or 1) // n_devices, batch_size if batch_size > 1 else 0, workers)
    sampler = EpochSampler(dataset, shuffle=shuffle, seed=seed, shard=rank != -1)
    loader_class = EpochDataLoader if image_weights else InfiniteDataLoader  # image weights change indices per epoch
    generator = torch.Generator()
    generator.manual_seed(6148914691236517205 + seed + max(RANK, 0))
    loader = loader_class(dataset, batch_size=batch_size, num_workers=n_workers, sampler=sampler,
                          pin_memory=PIN_MEMORY, worker_init_fn=seed_worker,
                          collate_fn=dataset_class.collate_fn4 if quad else dataset_class.collate_fn,
                          generator=generator)
    return loader, dataset


# Official YOLOv5 v7.0 name (its detect.py imports it from here for ``--source screen``).
class LoadScreenshots:
    """Official's screen-capture source. Screen capture is not part of this project: creating one is a UserError
    that says so (detect.py ``--source screen`` ends here)."""

    def __init__(self, source: str = "screen", *args: Any, **kwargs: Any) -> None:
        raise UserError(f"--source {source}: screen capture is not supported by this project; save screenshots as "
                        f"image files and pass them (or their folder) as --source")
