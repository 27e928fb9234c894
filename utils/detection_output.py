"""What detect.py writes for each image or video frame: the annotated image (or the frame into its video), the YOLO
label file, the crops of the boxes, the per-image log counts, and the live view with ``--view-img``.

``DetectionWriter`` owns those outputs for one run folder; ``OutputNames`` gives each source a file stem unique
within the run, and ``VideoSaver`` keeps one video writer per output video.
"""

from collections import Counter
from pathlib import Path
from types import TracebackType

import cv2
import numpy as np
import torch

from utils.boxes import xyxy2xywh
from utils.general import LOGGER, safe_filename
from utils.plots import Annotator, colors, save_one_box


def label_lines(det: torch.Tensor, im0_shape: tuple[int, int], save_conf: bool = False) -> list[str]:
    """YOLO label lines 'cls x y w h [conf]' (normalised xywh) for detections det (n, 6) in original pixels."""
    gn = torch.tensor(im0_shape)[[1, 0, 1, 0]]  # w, h, w, h
    lines = []
    for *xyxy, conf, cls in det.tolist():
        xywh = (xyxy2xywh(torch.tensor(xyxy).view(1, 4)) / gn).view(-1).tolist()
        values = (int(cls), *xywh, conf) if save_conf else (int(cls), *xywh)
        lines.append(" ".join(f"{v:g}" for v in values))
    return lines


def count_string(det: torch.Tensor, names: dict[int, str]) -> str:
    """'2 persons, 1 bus, ' from detections (n, 6)."""
    counts = Counter(int(c) for c in det[:, 5].tolist())
    return "".join(f"{n} {names[c]}{'s' * (n > 1)}, " for c, n in sorted(counts.items()))


def show_frame(name: str, im: np.ndarray) -> bool:
    """Show a frame in a window; returns False (stop trying) where OpenCV has no GUI support."""
    try:
        cv2.imshow(name, im)
        cv2.waitKey(1)
        return True
    except cv2.error:
        LOGGER.warning("WARNING: --view-img needs an OpenCV build with GUI support; not showing results")
        return False


class OutputNames:
    """Output stem of each source file, a plain file name unique within a run: the first a.jpg writes a.jpg /
    labels/a.txt, a later source with the same stem (other/a.jpg, a.png) writes a_2.*, so no result overwrites
    another's."""

    def __init__(self) -> None:
        self.stems, self.taken = {}, set()

    def __call__(self, path: str | Path) -> str:
        key = str(path)
        if key not in self.stems:
            base = stem = safe_filename(Path(key).stem)  # nothing a source names leaves the run folder
            n = 2
            while stem in self.taken:
                stem, n = f"{base}_{n}", n + 1
            self.taken.add(stem)
            self.stems[key] = stem
        return self.stems[key]


class VideoSaver:
    """One cv2.VideoWriter per output path (mp4v), opened on the first frame and released by ``close``."""

    def __init__(self) -> None:
        self.writers = {}

    def write(self, path: str | Path, frame: np.ndarray, fps: float) -> None:
        path = str(Path(path).with_suffix(".mp4"))
        if path not in self.writers:
            h, w = frame.shape[:2]
            self.writers[path] = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
        self.writers[path].write(frame)

    def close(self) -> None:
        for writer in self.writers.values():
            writer.release()
        self.writers = {}


class DetectionWriter:
    """The outputs of one detect run in ``save_dir``, image by image: <stem>.jpg (or the frame appended to
    <stem>.mp4), labels/<stem>[_<frame>].txt with ``save_txt``, crops/<class>/<stem>[_<frame>].jpg with
    ``save_crop``, and a window with ``view_img``. Use it as a context manager (or call ``close``) so that videos
    are finalised."""

    def __init__(self, save_dir: str | Path, names: dict[int, str], save_img: bool = True, save_txt: bool = False,
                 save_conf: bool = False, save_crop: bool = False, view_img: bool = False, line_thickness: int = 3,
                 hide_labels: bool = False, hide_conf: bool = False) -> None:
        self.save_dir, self.names = Path(save_dir), names
        self.save_img, self.save_txt, self.save_conf, self.save_crop = save_img, save_txt, save_conf, save_crop
        self.view_img, self.line_thickness = view_img, line_thickness
        self.hide_labels, self.hide_conf = hide_labels, hide_conf
        self.output_stem = OutputNames()
        self.videos = VideoSaver()
        self.labels_saved = 0  # label files written (images and frames with at least one detection)
        if save_txt:
            (self.save_dir / "labels").mkdir(exist_ok=True)

    def write(self, path: str | Path, im0: np.ndarray, det: torch.Tensor, frame: int | None = None,
              fps: float = 30.0, stream: int | None = None) -> None:
        """Outputs of image ``im0`` (HWC BGR, left unchanged) from source ``path`` with detections ``det`` (n, 6:
        xyxy in im0's pixels, conf, cls). ``frame``: the frame number within a video or stream, None for a still
        image; ``fps``: the video's frame rate; ``stream``: the index of the live source the frame comes from, whose
        frames go to <source stem>_<index>.mp4."""
        p = Path(path)
        out_stem = self.output_stem(p)  # unique within the run and a plain file name
        stem = out_stem if frame is None else f"{out_stem}_{frame}"
        im0 = im0.copy()  # the annotator draws in place
        imc = im0.copy() if self.save_crop else im0  # crops without the drawn boxes
        if self.save_img or self.view_img:
            self.draw_under_boxes(im0, det)
        annotator = Annotator(im0, line_width=self.line_thickness)
        if len(det) and self.save_txt:
            lines = self.label_lines(det, im0.shape[:2])
            if lines:  # (a segmentation writer has no line for an instance whose mask is empty)
                (self.save_dir / "labels" / f"{stem}.txt").write_text("\n".join(lines) + "\n")
                self.labels_saved += 1
        for *xyxy, conf, cls in reversed(det.tolist()):
            c = int(cls)
            if self.save_img or self.view_img:
                label = "" if self.hide_labels else self.names[c] if self.hide_conf else f"{self.names[c]} {conf:.2f}"
                annotator.box_label(xyxy, label, color=colors(c, True))
            if self.save_crop:
                crop_dir = self.save_dir / "crops" / safe_filename(self.names[c], default=str(c))
                save_one_box(xyxy, imc, file=crop_dir / f"{stem}.jpg", BGR=True)
        im0 = annotator.result()
        if self.view_img:
            self.view_img = show_frame(str(p), im0)
        if not self.save_img:
            return
        if frame is None:
            cv2.imwrite(str(self.save_dir / safe_filename(f"{out_stem}{p.suffix}")), im0)
        elif stream is None:
            self.videos.write(self.save_dir / safe_filename(f"{out_stem}{p.suffix}"), im0, fps)
        else:
            self.videos.write(self.save_dir / safe_filename(f"{p.stem or 'stream'}_{stream}"), im0, fps)

    def draw_under_boxes(self, im0: np.ndarray, det: torch.Tensor) -> None:
        """Hook for subclasses: draw into ``im0`` (BGR, in place) before the boxes; detection draws nothing."""

    def label_lines(self, det: torch.Tensor, im0_shape: tuple[int, int]) -> list[str]:
        """The lines of an image's label file (subclasses write other formats)."""
        return label_lines(det, im0_shape, self.save_conf)

    def close(self) -> None:
        """Finalise the videos written so far."""
        self.videos.close()

    def __enter__(self) -> "DetectionWriter":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
