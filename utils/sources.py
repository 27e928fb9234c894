"""Inference inputs for detect.py: image files, folders, globs, videos, .txt lists, webcams and network streams.

Both loaders yield ``(path, im, im0, vid_cap, s)``: ``im`` the letterboxed network input (CHW RGB uint8, or
BCHW for streams), ``im0`` the original BGR frame (a list for streams), ``vid_cap`` the cv2.VideoCapture of a
video (None for images), ``s`` a log prefix such as ``image 1/2 data/images/bus.jpg: ``.
"""

from __future__ import annotations

import math
import os
import threading
import time
import warnings
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from utils.augmentations import letterbox
from utils.general import LOGGER, UserError, clean_str

IMG_FORMATS = ("bmp", "dng", "jpeg", "jpg", "mpo", "png", "tif", "tiff", "webp", "pfm")
VID_FORMATS = ("asf", "avi", "gif", "m4v", "mkv", "mov", "mp4", "mpeg", "mpg", "ts", "wmv")
STREAM_PREFIXES = ("rtsp://", "rtmp://", "http://", "https://")
MAX_SOURCE_MATCHES = 1_000_000  # paths a --source glob may match (a million images is days of inference)
DEFAULT_MAX_PIXELS = 100_000_000  # 10000 x 10000; larger images are skipped unless YOLOV5_MAX_PIXELS allows them


def max_image_pixels() -> int:
    """The pixel limit for an input image: YOLOV5_MAX_PIXELS from the environment, else DEFAULT_MAX_PIXELS."""
    value = os.environ.get("YOLOV5_MAX_PIXELS", "")
    try:
        return int(float(value)) if value else DEFAULT_MAX_PIXELS
    except ValueError:
        raise UserError(f"YOLOV5_MAX_PIXELS={value!r} must be a number of pixels, e.g. 2e8") from None


def oversized_image(path: str | Path, limit: int) -> str:
    """Why ``path`` is too large to decode ('' when it is not), read from its header only: cv2.imread would
    allocate the whole image first. Files PIL cannot identify are left to cv2."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the limit below is the one applied
            with Image.open(path) as im:
                w, h = im.size
    except Image.DecompressionBombError as e:  # PIL refuses beyond twice its own limit before reporting a size
        return f"{str(e).split(',')[0]}; refused before decoding (PIL's hard limit; ours is {limit:,})"
    except Exception:  # not an image PIL knows: cv2 decides whether it is readable
        return ""
    if w * h <= limit:
        return ""
    return f"{w}x{h} = {w * h:,} pixels, over the limit of {limit:,} (raise it with YOLOV5_MAX_PIXELS)"


def is_stream_source(source: str | int) -> bool:
    """True for a webcam index ('0'), a stream URL or a ``*.streams`` list; False for files, folders, globs."""
    source = str(source)
    if source.isnumeric() or source.endswith(".streams"):
        return True
    if source.lower().startswith(STREAM_PREFIXES):
        if Path(source.split("?")[0]).suffix[1:].lower() in IMG_FORMATS:
            raise UserError(f"--source {source}: images are not downloaded; save the image and pass its path")
        return True
    return False


def _media_kind(path):
    suffix = Path(path).suffix[1:].lower()
    return "image" if suffix in IMG_FORMATS else "video" if suffix in VID_FORMATS else None


def _glob_files(pattern: str) -> list[str]:
    """The sorted matches of a glob ('**' for any depth), without following linked folders (a link loop would give
    an endless walk) and without hidden names, as the glob module; more than MAX_SOURCE_MATCHES is refused."""
    parts = Path(pattern).parts
    fixed = next(i for i, part in enumerate(parts) if any(c in part for c in "*?["))
    root = Path(*parts[:fixed]) if fixed else Path(".")
    rest = "/".join(parts[fixed:])
    if rest.endswith("**"):  # the glob module's 'd/**' is everything below d
        rest += "/*"
    matches = []
    for match in root.glob(rest):  # pathlib's '**' does not descend into linked folders
        if any(part.startswith(".") for part in match.relative_to(root).parts):
            continue
        matches.append(str(match))
        if len(matches) > MAX_SOURCE_MATCHES:
            raise UserError(f"--source {pattern}: the pattern matches over {MAX_SOURCE_MATCHES:,} paths; "
                            f"narrow it or pass a folder or a .txt list")
    return sorted(matches)


def list_source_files(path: str | Path | list | tuple, _lists: tuple = ()) -> list[str]:
    """Expand a source (file, folder, glob, .txt list of paths, or a list of those) into media files.

    Files with other extensions inside folders and globs are ignored; a path that does not exist, an explicit file
    of an unknown type, a .txt list that names itself (directly or through other lists), or a source with no images
    or videos at all raises UserError. ``_lists``: the .txt lists being expanded, outermost first.
    """
    if isinstance(path, (list, tuple)):
        return [f for p in path for f in list_source_files(p, _lists)]
    path = str(path)
    p = Path(path)
    if p.suffix.lower() == ".txt" and p.is_file():  # one path per line, relative ones relative to the list
        if p.resolve() in _lists:
            chain = " -> ".join(str(x) for x in (*_lists, p.resolve()))
            raise UserError(f"--source {path}: the .txt list names itself ({chain})")
        lines = [x.strip() for x in p.read_text().splitlines() if x.strip()]
        paths = [x if Path(x).is_absolute() or Path(x).exists() else str(p.parent / x) for x in lines]
        return list_source_files(paths, (*_lists, p.resolve()))
    if any(c in path for c in "*?["):
        matches = _glob_files(path)
        if not matches:
            raise UserError(f"--source {path}: the pattern matches no files")
        candidates = [m for m in matches if Path(m).is_file()]
    elif p.is_dir():
        candidates = sorted(str(x) for x in p.iterdir() if x.is_file())
    elif p.is_file():
        if _media_kind(p) is None:
            raise UserError(
                f"--source {path}: unsupported file type '{p.suffix}'. Images: {', '.join(IMG_FORMATS)}; "
                f"videos: {', '.join(VID_FORMATS)}; or a .txt file listing paths"
            )
        candidates = [path]
    else:
        raise UserError(f"--source {path}: no such file or directory (give an image, video, folder, glob, .txt list, "
                        f"webcam index such as 0, or a stream URL)")
    files = [f for f in candidates if _media_kind(f)]
    if not files:
        raise UserError(f"--source {path}: no images or videos found. Supported: {IMG_FORMATS + VID_FORMATS}")
    if len(files) < len(candidates):
        LOGGER.info(f"{path}: ignored {len(candidates) - len(files)} file(s) that are neither images nor videos")
    return files


class LoadImages:
    """Iterate over the images and video frames of a source; unreadable files are skipped with a warning.

    Args: path (see ``list_source_files``), img_size int or (h, w), stride of the model, auto letterbox to the
    minimum stride-multiple rectangle (False for a fixed input size), vid_stride: use every n-th video frame.
    """

    def __init__(self, path: str | Path | list | tuple, img_size: int | tuple[int, int] = 640, stride: int = 32,
                 auto: bool = True, vid_stride: int = 1) -> None:
        files = list_source_files(path)
        images = [f for f in files if _media_kind(f) == "image"]
        videos = [f for f in files if _media_kind(f) == "video"]
        if not files:
            raise UserError("--source: no images or videos given")
        if vid_stride < 1:
            raise UserError(f"--vid-stride {vid_stride}: must be 1 or more")
        self.img_size = img_size
        self.stride = stride
        self.auto = auto
        self.vid_stride = vid_stride
        self.files = images + videos
        self.nf = len(self.files)
        self.video_flag = [False] * len(images) + [True] * len(videos)
        self.mode = "image"
        self.cap = None
        self.frame = self.frames = 0
        self.skipped = []  # files that could not be read
        self.max_pixels = max_image_pixels()

    def __len__(self):
        return self.nf

    def __iter__(self):
        self.count = 0
        return self

    def _open_video(self, path):
        self.cap = cv2.VideoCapture(path)
        self.frame = 0
        total = int(self.cap.get(cv2.CAP_PROP_FRAME_COUNT)) if self.cap.isOpened() else 0
        self.frames = total // self.vid_stride
        return self.cap.isOpened()

    def _skip(self, path, why):
        LOGGER.warning(f"WARNING: skipping {path}: {why}")
        self.skipped.append(path)
        self.count += 1
        if self.cap is not None:
            self.cap.release()
            self.cap = None

    def __next__(self):
        while self.count < self.nf:
            path = self.files[self.count]
            if self.video_flag[self.count]:
                if self.cap is None and not self._open_video(path):
                    self._skip(path, "cannot open the video")
                    continue
                self.mode = "video"
                for _ in range(self.vid_stride):  # grab without decoding the frames vid_stride skips
                    ok = self.cap.grab()
                    if not ok:
                        break
                ok, im0 = self.cap.retrieve() if ok else (False, None)
                if not ok:  # end of this video (or a broken tail): next file
                    if self.frame == 0:
                        self._skip(path, "no frame can be decoded")
                        continue
                    self.cap.release()
                    self.cap = None
                    self.count += 1
                    continue
                self.frame += 1
                s = f"video {self.count + 1}/{self.nf} ({self.frame}/{self.frames}) {path}: "
            else:
                self.mode = "image"
                too_large = oversized_image(path, self.max_pixels)
                if too_large:
                    self._skip(path, too_large)
                    continue
                im0 = cv2.imread(path)
                if im0 is None:
                    self._skip(path, "not a readable image")
                    continue
                self.count += 1
                s = f"image {self.count}/{self.nf} {path}: "
            return path, self._prepare(im0), im0, self.cap, s
        raise StopIteration

    def _prepare(self, im0):
        im = letterbox(im0, self.img_size, stride=self.stride, auto=self.auto)[0]
        return np.ascontiguousarray(im.transpose((2, 0, 1))[::-1])  # HWC BGR -> CHW RGB


class LoadStreams:
    """Frames from webcams (index) and network streams (rtsp/rtmp/http), each read by a background thread.

    ``sources`` is one source or a ``*.streams``/``.txt`` file with one per line. Each iteration returns the
    newest frame of every stream as a batch; iteration ends when every stream has ended.
    """

    def __init__(self, sources: str = "0", img_size: int | tuple[int, int] = 640, stride: int = 32, auto: bool = True,
                 vid_stride: int = 1) -> None:
        path = Path(str(sources))
        if path.suffix in (".streams", ".txt") and path.is_file():
            sources = [x.strip() for x in path.read_text().splitlines() if x.strip()]
        else:
            sources = [str(sources)]
        self.sources = [clean_str(x) for x in sources]
        self.img_size = img_size
        self.stride = stride
        self.vid_stride = max(int(vid_stride), 1)
        n = len(sources)
        self.imgs, self.fps, self.frames, self.threads = [None] * n, [0.0] * n, [0] * n, [None] * n
        self.frame_ids = [0] * n  # frames received per stream, to hand each frame on once
        self._seen = [0] * n
        self.caps = [None] * n
        for i, s in enumerate(sources):
            st = f"{i + 1}/{n}: {s}... "
            cap = cv2.VideoCapture(int(s) if s.isnumeric() else s)
            if not cap.isOpened():
                raise UserError(f"{st}failed to open the stream; check the webcam index or URL")
            ok, im = cap.read()
            if not ok or im is None:
                raise UserError(f"{st}the stream opened but returned no frame")
            w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
            fps = cap.get(cv2.CAP_PROP_FPS)
            self.fps[i] = fps if math.isfinite(fps) and fps > 0 else 30.0
            count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
            self.frames[i] = count if count > 0 else float("inf")  # live streams have no frame count
            self.imgs[i], self.frame_ids[i], self.caps[i] = im, 1, cap
            self.threads[i] = threading.Thread(target=self._update, args=(i, cap, s), daemon=True)
            LOGGER.info(f"{st}Success ({self.frames[i]} frames {w}x{h} at {self.fps[i]:.2f} FPS)")
            self.threads[i].start()
        # a common letterbox rectangle is only possible when every stream has the same frame size
        self.rect = len({x.shape for x in self.imgs}) == 1
        self.auto = auto and self.rect
        if not self.rect:
            LOGGER.warning("WARNING: streams differ in frame size; letterboxing all to the full --imgsz")

    def _update(self, i, cap, source):
        n = 0
        while cap.isOpened() and n < self.frames[i]:
            n += 1
            if not cap.grab():
                break
            if n % self.vid_stride == 0:
                ok, im = cap.retrieve()
                if not ok:
                    LOGGER.warning(f"WARNING: stream {source} unresponsive; stopping it")
                    break
                self.imgs[i] = im
                self.frame_ids[i] += 1
        cap.release()

    def __iter__(self):
        self.count = -1
        return self

    def __next__(self):
        while True:  # wait until some stream has a frame not handed on yet, or every stream has ended
            fresh = any(f > s for f, s in zip(self.frame_ids, self._seen))
            if fresh or not any(t.is_alive() for t in self.threads):
                break
            time.sleep(0.001)
        if not fresh:
            raise StopIteration
        self._seen = list(self.frame_ids)
        self.count += 1
        im0 = [x.copy() for x in self.imgs]
        im = np.stack([letterbox(x, self.img_size, stride=self.stride, auto=self.auto)[0] for x in im0])
        im = np.ascontiguousarray(im[..., ::-1].transpose((0, 3, 1, 2)))  # BHWC BGR -> BCHW RGB
        return self.sources, im, im0, None, ""

    def __len__(self):
        return len(self.sources)
