"""Plots: boxes on images (OpenCV, no font files), batch mosaics, label statistics, training curves, feature maps,
val.py --task study tables; and, at the end, the names that official YOLOv5 v7.0 scripts import from here."""

from __future__ import annotations

import colorsys
import importlib
import math
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import cv2
import numpy as np
import torch

from utils.boxes import clip_boxes, xywh2xyxy, xyxy2xywh
from utils.general import LOGGER, UserError, increment_path

Color = tuple[int, int, int]  # (R, G, B) or (B, G, R), 0..255


def pyplot() -> ModuleType:
    """matplotlib.pyplot on the file-only Agg backend, imported when a figure is first made (as utils/metrics.py
    does): the import costs about 1 s that detect.py, which draws with OpenCV only, would pay at every start."""
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    return plt

RESULTS_PANELS = (  # results.csv column -> panel title, in plot order (2 rows x 5)
    ("train/box_loss", "train box loss"), ("train/obj_loss", "train obj loss"), ("train/cls_loss", "train cls loss"),
    ("metrics/precision", "precision"), ("metrics/recall", "recall"),
    ("val/box_loss", "val box loss"), ("val/obj_loss", "val obj loss"), ("val/cls_loss", "val cls loss"),
    ("metrics/mAP_0.5", "mAP@0.5"), ("metrics/mAP_0.5:0.95", "mAP@0.5:0.95"),
)


def _make_palette(n: int = 20) -> list[Color]:
    """n well separated RGB colours: hues stepped by the golden ratio, alternating brightness."""
    palette = []
    for i in range(n):
        r, g, b = colorsys.hsv_to_rgb((i * 0.618034) % 1.0, 0.85, 1.0 if i % 2 == 0 else 0.75)
        palette.append((int(r * 255), int(g * 255), int(b * 255)))
    return palette


PALETTE = _make_palette()


def colors(i: int | float, bgr: bool = False) -> Color:
    """Colour of class ``i`` as an (R, G, B) tuple, or (B, G, R) for OpenCV drawing."""
    c = PALETTE[int(i) % len(PALETTE)]
    return c[::-1] if bgr else c


class Annotator:
    """Draws labelled boxes on a HWC uint8 image with OpenCV's built-in font (no font downloads)."""

    def __init__(self, im: np.ndarray, line_width: int | None = None) -> None:
        self.im = np.ascontiguousarray(im)
        self.lw = line_width or max(round(sum(self.im.shape[:2]) / 2 * 0.003), 2)

    def box_label(
        self,
        box: Sequence[float] | np.ndarray | torch.Tensor,
        label: str = "",
        color: Color = (128, 128, 128),
        txt_color: Color = (255, 255, 255),
    ) -> None:
        """Rectangle ``box`` (x1, y1, x2, y2) with ``label`` on a filled tag above it (below when at the top)."""
        p1 = (int(box[0]), int(box[1]))
        p2 = (int(box[2]), int(box[3]))
        cv2.rectangle(self.im, p1, p2, color, thickness=self.lw, lineType=cv2.LINE_AA)
        if label:
            font_thickness = max(self.lw - 1, 1)
            font_scale = self.lw / 3
            w, h = cv2.getTextSize(label, 0, fontScale=font_scale, thickness=font_thickness)[0]
            outside = p1[1] - h >= 3
            p2 = p1[0] + w, p1[1] - h - 3 if outside else p1[1] + h + 3
            cv2.rectangle(self.im, p1, p2, color, -1, cv2.LINE_AA)
            text_org = (p1[0], p1[1] - 2 if outside else p1[1] + h + 2)
            cv2.putText(self.im, label, text_org, 0, font_scale, txt_color, thickness=font_thickness,
                        lineType=cv2.LINE_AA)

    def text(
        self, xy: Sequence[float], text: str, txt_color: Color = (255, 255, 255), scale: float | None = None
    ) -> None:
        """Plain text with its top-left corner at ``xy``."""
        scale = scale or self.lw / 3
        h = cv2.getTextSize(text, 0, fontScale=scale, thickness=1)[0][1]
        cv2.putText(self.im, text, (int(xy[0]), int(xy[1]) + h), 0, scale, txt_color, 1, cv2.LINE_AA)

    def rectangle(
        self, xy: Sequence[float], fill: Color | None = None, outline: Color | None = None, width: int = 1
    ) -> None:
        """Rectangle (x1, y1, x2, y2), filled when ``fill`` is given."""
        p1, p2 = (int(xy[0]), int(xy[1])), (int(xy[2]), int(xy[3]))
        if fill is not None:
            cv2.rectangle(self.im, p1, p2, fill, -1)
        if outline is not None:
            cv2.rectangle(self.im, p1, p2, outline, width)

    def result(self) -> np.ndarray:
        """The annotated image (HWC uint8)."""
        return self.im


def _to_numpy(x: torch.Tensor | np.ndarray | Sequence) -> np.ndarray:
    return x.detach().cpu().float().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float64)


def output_to_target(output: list[torch.Tensor], max_det: int = 300) -> torch.Tensor:
    """NMS output (list of (n, 6) [x1, y1, x2, y2, conf, cls]) -> plot_images targets (m, 7) [batch_idx, cls, x, y,
    w, h, conf]."""
    rows = []
    for i, o in enumerate(output):
        o = o[:max_det].detach().cpu().float()
        idx = torch.full((o.shape[0], 1), float(i))
        rows.append(torch.cat((idx, o[:, 5:6], xyxy2xywh(o[:, :4]), o[:, 4:5]), 1))
    return torch.cat(rows, 0) if rows else torch.zeros((0, 7))


def plot_images(
    images: torch.Tensor | np.ndarray,
    targets: torch.Tensor | np.ndarray,
    paths: Sequence[str | Path] | None = None,
    fname: str | Path = "images.jpg",
    names: dict[int, str] | Sequence[str] | None = None,
    max_size: int = 1920,
    max_subplots: int = 16,
) -> np.ndarray:
    """Save a grid of up to 16 batch images (B, 3, H, W) RGB with their boxes.

    targets: (n, 6) [batch_idx, cls, x, y, w, h] labels or (n, 7) [..., conf] predictions (shown when conf > 0.25);
    boxes normalised (<= 1) or in pixels of the batch images. Returns the grid (HWC RGB uint8).
    """
    images = _to_numpy(images)
    targets = _to_numpy(targets)
    targets = targets.reshape(-1, targets.shape[-1] if targets.size else 6)
    if images.max(initial=0) <= 1:
        images = images * 255
    bs, _, h, w = images.shape
    bs = min(bs, max_subplots)
    ns = math.ceil(bs ** 0.5)  # grid side
    scale = min(1.0, max_size / (ns * max(h, w)))
    h, w = math.ceil(scale * h), math.ceil(scale * w)
    grid = np.full((ns * h, ns * w, 3), 255, dtype=np.uint8)
    for i in range(bs):
        x0, y0 = w * (i % ns), h * (i // ns)
        im = images[i].transpose(1, 2, 0).clip(0, 255).astype(np.uint8)
        grid[y0:y0 + h, x0:x0 + w] = cv2.resize(im, (w, h)) if scale < 1 else im
    annotator = Annotator(grid, line_width=max(round(max(h, w) / 250), 1))
    for i in range(bs):
        x0, y0 = w * (i % ns), h * (i // ns)
        annotator.rectangle((x0, y0, x0 + w, y0 + h), outline=(255, 255, 255), width=2)
        if paths is not None and i < len(paths):
            annotator.text((x0 + 5, y0 + 5), Path(paths[i]).name[:40], txt_color=(220, 220, 220), scale=0.4)
        ti = targets[targets[:, 0] == i]
        if not len(ti):
            continue
        boxes = xywh2xyxy(ti[:, 2:6])
        is_label = ti.shape[1] == 6
        if boxes.max(initial=0) <= 1.01:  # normalised
            boxes[:, [0, 2]] *= w
            boxes[:, [1, 3]] *= h
        elif scale < 1:
            boxes *= scale
        boxes[:, [0, 2]] += x0
        boxes[:, [1, 3]] += y0
        for j, box in enumerate(boxes):
            cls = int(ti[j, 1])
            conf = None if is_label else ti[j, 6]
            if conf is not None and conf <= 0.25:
                continue
            name = str(names[cls]) if names is not None and cls < len(names) else str(cls)
            label = name if conf is None else f"{name} {conf:.1f}"
            annotator.box_label(box, label, color=colors(cls))
    result = annotator.result()
    cv2.imwrite(str(fname), result[..., ::-1])
    return result


def plot_labels(
    labels: torch.Tensor | np.ndarray, names: dict[int, str] | Sequence[str] = (), save_dir: str | Path = Path("")
) -> Path:
    """Save labels.jpg: class counts, the first 1000 boxes drawn centred, and x/y and w/h density plots.

    labels: (n, 5) [cls, x, y, w, h] normalised.
    """
    labels = _to_numpy(labels).reshape(-1, 5)
    cls, boxes = labels[:, 0].astype(int), labels[:, 1:]
    nc = int(cls.max()) + 1 if len(cls) else 0
    nc = max(nc, len(names))
    plt = pyplot()
    fig, ax = plt.subplots(2, 2, figsize=(8, 8), tight_layout=True)
    counts = np.bincount(cls, minlength=nc)
    bars = ax[0, 0].bar(range(nc), counts)
    for i, bar in enumerate(bars):
        bar.set_color(np.array(colors(i)) / 255)
    ax[0, 0].set_ylabel("instances")
    names_list = [names[i] for i in range(len(names))] if len(names) else []
    if 0 < len(names_list) < 30:
        ax[0, 0].set_xticks(range(len(names_list)))
        ax[0, 0].set_xticklabels(names_list, rotation=90, fontsize=8)
    else:
        ax[0, 0].set_xlabel("classes")
    canvas = np.full((1000, 1000, 3), 255, dtype=np.uint8)
    centred = boxes[:1000].copy()
    centred[:, :2] = 0.5
    for c, box in zip(cls[:1000], xywh2xyxy(centred) * 1000):
        cv2.rectangle(canvas, (int(box[0]), int(box[1])), (int(box[2]), int(box[3])), colors(c), 1)
    ax[0, 1].imshow(canvas)
    ax[0, 1].axis("off")
    for a, (i, j, xl, yl) in zip((ax[1, 0], ax[1, 1]), ((0, 1, "x", "y"), (2, 3, "width", "height"))):
        a.hist2d(boxes[:, i], boxes[:, j], bins=50, range=((0, 1), (0, 1)), cmap="Blues")
        a.set_xlabel(xl)
        a.set_ylabel(yl)
    fname = Path(save_dir) / "labels.jpg"
    fig.savefig(fname, dpi=200)
    plt.close(fig)
    return fname


def plot_results(file: str | Path = "path/to/results.csv") -> Path | None:
    """Save results.png next to a YOLOv5-style results.csv: losses and metrics per epoch, raw and smoothed."""
    import pandas as pd

    file = Path(file)
    if not file.is_file():
        LOGGER.warning(f"WARNING: plot_results: {file} not found, nothing plotted")
        return None
    data = pd.read_csv(file)
    data.columns = [c.strip() for c in data.columns]
    x = data["epoch"].to_numpy() if "epoch" in data else np.arange(len(data))
    plt = pyplot()
    fig, ax = plt.subplots(2, 5, figsize=(12, 6), tight_layout=True)
    for a, (column, title) in zip(ax.ravel(), RESULTS_PANELS):
        a.set_title(title, fontsize=10)
        if column not in data:
            continue
        y = data[column].to_numpy(dtype=float)
        a.plot(x, y, marker=".", linewidth=2, markersize=6, label="results")
        if len(y) >= 3:  # a light moving average shows the trend through noisy epochs
            k = 3
            smooth = np.convolve(np.pad(y, k // 2, mode="edge"), np.ones(k) / k, mode="valid")
            a.plot(x, smooth, ":", linewidth=2, label="smooth")
    ax[0, 0].legend()
    fname = file.with_name("results.png")
    fig.savefig(fname, dpi=200)
    plt.close(fig)
    return fname


def feature_visualization(
    x: torch.Tensor | list | tuple,
    module_type: str,
    stage: int,
    n: int = 32,
    save_dir: str | Path = Path("runs/detect/exp"),
    tile: int = 256,
) -> Path | None:
    """Save the first ``n`` channels of the feature map x (B, C, H, W) of layer ``stage`` as a png grid, 8 maps a
    row, each scaled to its own range, coloured with viridis and enlarged (pixels kept square) to ``tile`` px on its
    longer side, and the whole map of the first image (C, H, W) next to it as .npy, as official does. Drawn with
    OpenCV: a matplotlib figure of subplots took about 0.6 s per layer."""
    if "Detect" in module_type or not isinstance(x, torch.Tensor) or x.ndim != 4:
        return None
    _, channels, height, width = x.shape
    if height <= 1 or width <= 1:
        return None
    save_dir = Path(save_dir)
    save_dir.mkdir(parents=True, exist_ok=True)
    fname = save_dir / f"stage{stage}_{module_type.split('.')[-1]}_features.png"
    whole = x[0].detach().cpu().float().numpy()
    maps = whole[: min(n, channels)]
    low, high = maps.min(axis=(1, 2), keepdims=True), maps.max(axis=(1, 2), keepdims=True)
    maps = np.nan_to_num((maps - low) / np.where(high > low, high - low, 1) * 255).clip(0, 255).astype(np.uint8)
    scale = max(tile // max(height, width), 1)
    th, tw, gap, cols = height * scale, width * scale, 4, 8
    rows = math.ceil(len(maps) / cols)
    grid = np.full((rows * (th + gap) - gap, cols * (tw + gap) - gap, 3), 255, np.uint8)
    for i, m in enumerate(maps):
        r, c = divmod(i, cols)
        cell = cv2.resize(m, (tw, th), interpolation=cv2.INTER_NEAREST)
        grid[r * (th + gap):r * (th + gap) + th, c * (tw + gap):c * (tw + gap) + tw] = \
            cv2.applyColorMap(cell, cv2.COLORMAP_VIRIDIS)
    LOGGER.info(f"Saving {fname}... ({len(maps)}/{channels})")
    cv2.imwrite(str(fname), grid)
    np.save(fname.with_suffix(".npy"), whole)
    return fname


def save_one_box(
    xyxy: Sequence[float] | np.ndarray | torch.Tensor,
    im: np.ndarray,
    file: str | Path = Path("im.jpg"),
    gain: float = 1.02,
    pad: float = 10,
    square: bool = False,
    BGR: bool = False,
    save: bool = True,
) -> np.ndarray:
    """Crop box ``xyxy`` from image ``im`` (HWC BGR), enlarged by ``gain`` and ``pad`` pixels, optionally square.

    Returns the crop (BGR when ``BGR`` else RGB); ``save`` writes it to ``file`` (incremented if it exists).
    """
    box = xyxy2xywh(torch.as_tensor(xyxy, dtype=torch.float32).view(-1, 4))
    if square:
        box[:, 2:] = box[:, 2:].max(1, keepdim=True)[0]
    box[:, 2:] = box[:, 2:] * gain + pad
    box = xywh2xyxy(box).long()
    clip_boxes(box, im.shape)
    x1, y1, x2, y2 = (int(v) for v in box[0])
    crop = im[y1:y2, x1:x2, :: (1 if BGR else -1)]
    if save:
        file = Path(file)
        file.parent.mkdir(parents=True, exist_ok=True)
        fname = increment_path(file).with_suffix(".jpg")
        cv2.imwrite(str(fname), crop if BGR else crop[..., ::-1])
    return crop


def plot_study(file: str | Path) -> Path:
    """Plot a val.py --task study table (size, P, R, mAP50, mAP50-95, losses, times) as study.png next to it."""
    y = np.loadtxt(file, ndmin=2)
    plt = pyplot()
    fig, ax = plt.subplots(1, 2, figsize=(10, 4), tight_layout=True)
    ax[0].plot(y[:, 0], y[:, 4], ".-", label="mAP50-95")
    ax[0].plot(y[:, 0], y[:, 3], ".-", label="mAP50")
    ax[0].set_xlabel("image size (pixels)")
    ax[0].legend()
    ax[1].plot(y[:, 9], y[:, 4], ".-")
    ax[1].set_xlabel("inference time per image (ms)")
    ax[1].set_ylabel("mAP50-95")
    out = Path(file).with_name("study.png")
    fig.savefig(out, dpi=200)
    plt.close(fig)
    return out


# ---------------------------------------------------------------------------------------------------------------
# Official YOLOv5 v7.0 names (its val.py and train.py import them from here).
# ---------------------------------------------------------------------------------------------------------------
def plot_val_study(file: str | Path = "", dir: str | Path = "", x: object = None) -> Path:
    """study.png of a --task study table: ``file``, else the first study*.txt in ``dir``. ``x`` is accepted for
    official callers and unused (the sizes are the table's first column)."""
    if not file:
        tables = sorted(Path(dir or ".").glob("study*.txt"))
        if not tables:
            raise UserError(f"no study*.txt table in {Path(dir or '.').resolve()}; run val.py --task study first")
        file = tables[0]
    return plot_study(file)


def __getattr__(name: str) -> Any:
    """``from utils.plots import plot_evolve`` (official import path): utils/evolve.py builds on the evaluation,
    which builds on this module, so it is imported on first access."""
    if name == "plot_evolve":
        return importlib.import_module("utils.evolve").plot_evolve
    raise AttributeError(f"module 'utils.plots' has no attribute '{name}'")
