"""What segment/predict.py writes per image: DetectionWriter's outputs (annotated image or video frame, crops, live
view) with the instance masks blended under the boxes, and label files of polygons in official v7.0 ``--save-txt``
format: one line per instance, ``cls x1 y1 x2 y2 ... [conf]``, points normalised by the image width/height."""

from pathlib import Path

import numpy as np
import torch

from utils.detection_output import DetectionWriter
from utils.masks import overlay_masks
from utils.plots import colors


def polygon_lines(det: torch.Tensor, polygons: list[np.ndarray], save_conf: bool = False) -> list[str]:
    """'cls x1 y1 x2 y2 ... [conf]' per detection (n, 6) with its normalised polygon (k, 2), lowest confidence
    first as official writes them; an instance whose mask is empty (no polygon) gets no line."""
    lines = []
    for (*_, conf, cls), poly in zip(reversed(det.tolist()), reversed(polygons)):
        if len(poly) < 3:
            continue
        values = (int(cls), *np.asarray(poly, dtype=np.float64).reshape(-1).tolist())
        values = (*values, conf) if save_conf else values
        lines.append(" ".join(f"{v:g}" for v in values))
    return lines


class SegmentationWriter(DetectionWriter):
    """DetectionWriter for instance segmentation: call ``write_instances`` with each image's masks (n, H0, W0) in
    the original image's pixels and their normalised polygons."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self._masks: torch.Tensor | None = None
        self._polygons: list[np.ndarray] = []

    def write_instances(self, path: str | Path, im0: np.ndarray, det: torch.Tensor, masks: torch.Tensor,
                        polygons: list[np.ndarray], frame: int | None = None, fps: float = 30.0,
                        stream: int | None = None) -> None:
        """Outputs of ``im0`` (HWC BGR) with detections det (n, 6) in its pixels, their ``masks`` (n, H0, W0) and
        ``polygons`` (normalised (k, 2) each); the other arguments as ``DetectionWriter.write``."""
        self._masks, self._polygons = masks, polygons
        try:
            self.write(path, im0, det, frame=frame, fps=fps, stream=stream)
        finally:
            self._masks, self._polygons = None, []

    def draw_under_boxes(self, im0: np.ndarray, det: torch.Tensor) -> None:
        if self._masks is not None and len(det):
            overlay_masks(im0, self._masks, [colors(int(c), True) for c in det[:, 5].tolist()])

    def label_lines(self, det: torch.Tensor, im0_shape: tuple[int, int]) -> list[str]:
        return polygon_lines(det, self._polygons, self.save_conf)
