"""Detection metrics: matching predictions to labels, average precision, confusion matrix, fitness, curve plots.

AP is COCO's 101-point interpolated AP: the precision envelope (precision made non-increasing in recall) sampled
at recall 0, 0.01, ..., 1 and averaged. mAP50-95 averages it over the IoU thresholds 0.50, 0.55, ..., 0.95.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np
import torch
from numpy.typing import ArrayLike

from utils.boxes import bbox_iou, box_iou  # noqa: F401 (bbox_iou: official import path)

if TYPE_CHECKING:  # matplotlib is imported when a plot is made
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

IOU_THRESHOLDS = torch.linspace(0.5, 0.95, 10)  # COCO's mAP@0.5:0.95


def fitness(x: ArrayLike) -> np.ndarray:
    """Model fitness: 0.1 * mAP50 + 0.9 * mAP50-95 of rows [P, R, mAP50, mAP50-95, ...] (n, >=4) -> (n,)."""
    w = np.array([0.0, 0.0, 0.1, 0.9])
    return (np.asarray(x)[:, :4] * w).sum(1)


def smooth(y: np.ndarray, f: float = 0.05) -> np.ndarray:
    """Box-filter ``y`` with a window of about ``2 * f * len(y)`` points (odd), edges padded with the end values."""
    nf = round(len(y) * f * 2) // 2 + 1
    p = np.ones(nf // 2)
    yp = np.concatenate((p * y[0], y, p * y[-1]), 0)
    return np.convolve(yp, np.ones(nf) / nf, mode="valid")


def greedy_match(iou: np.ndarray, iou_thres: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One-to-one matching of rows (labels) to columns (predictions), highest IoU first (confusion matrix).

    iou (m, n) array; pairs with IoU >= iou_thres are taken in descending IoU order (ties: lower prediction index,
    then lower label index first) and accepted when neither side is matched yet.
    Returns (label_idx, pred_idx, iou) arrays of the accepted pairs, in acceptance order.
    """
    li, pi = np.nonzero(iou >= iou_thres)
    if li.size == 0:
        return li, pi, np.zeros(0)
    values = iou[li, pi]
    order = np.lexsort((li, pi, -values))
    used_l, used_p, keep = set(), set(), []
    for k in order:
        a, b = li[k], pi[k]
        if a not in used_l and b not in used_p:
            used_l.add(a)
            used_p.add(b)
            keep.append(k)
    keep = np.array(keep, dtype=int)
    return li[keep], pi[keep], values[keep]


def match_predictions(
    detections: torch.Tensor, labels: torch.Tensor, iouv: torch.Tensor | ArrayLike = IOU_THRESHOLDS,
    iou: torch.Tensor | np.ndarray | None = None,
) -> torch.Tensor:
    """Which detections are true positives at each IoU threshold (COCO's matching rule).

    detections (n, 6) [x1, y1, x2, y2, conf, cls]; labels (m, 5) [cls, x1, y1, x2, y2] in the same pixels;
    iouv (t,) thresholds; ``iou`` (m, n): the label-detection overlap to match on instead of box IoU (mask IoU for
    instance segmentation), still only between equal classes. At each threshold, detections in descending
    confidence each take the still unmatched label of their class with the highest IoU (>= the threshold): one label
    per detection, one detection per label.
    A duplicate therefore counts as a false positive when a more confident detection already took its label, as in
    pycocotools, which makes the resulting mAP equal pycocotools' on the same detections.
    Returns correct (n, t) bool tensor on the detections' device.
    """
    iouv = torch.as_tensor(iouv).cpu().numpy()
    n, m = detections.shape[0], labels.shape[0]
    correct = np.zeros((n, iouv.size), dtype=bool)
    if n and m:
        correct = _match(_class_iou(detections, labels, iou), detections[:, 4].float().cpu().numpy(), iouv)[0]
    return torch.tensor(correct, dtype=torch.bool, device=detections.device)


def _class_iou(detections: torch.Tensor, labels: torch.Tensor,
               iou: torch.Tensor | np.ndarray | None = None) -> np.ndarray:
    """(m, n) IoU of labels with detections (box IoU unless ``iou`` is given), 0 between different classes."""
    iou = box_iou(labels[:, 1:].float(), detections[:, :4].float()) if iou is None else torch.as_tensor(iou)
    same_class = (labels[:, 0:1] == detections[:, 5]).to(device=iou.device, dtype=iou.dtype)
    return (iou.float() * same_class.float()).cpu().numpy()


def _match(iou: np.ndarray, conf: np.ndarray, iouv: np.ndarray,
           label_ignored: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """COCO's greedy matching on an (m, n) label-detection IoU matrix: detections in descending confidence each take
    the free label with the highest IoU (>= the threshold), a label not ignored before any ignored one.

    Returns (matched (n, t), matched to an ignored label (n, t)) bool arrays.
    """
    m, n, t = iou.shape[0], iou.shape[1], iouv.size
    matched, to_ignored = np.zeros((n, t), dtype=bool), np.zeros((n, t), dtype=bool)
    ignored = np.zeros(m, dtype=bool) if label_ignored is None else label_ignored
    priority = np.where(ignored, 0.0, 2.0)[:, None]  # IoU <= 1: any label in range outranks every ignored one
    order = np.argsort(-conf, kind="stable")
    taken = np.zeros((m, t), dtype=bool)  # label already matched, per threshold
    columns = np.arange(t)
    for j in order[iou[:, order].max(0) >= iouv.min()]:  # only detections that can match at all
        ok = (iou[:, j : j + 1] >= iouv[None]) & ~taken  # (m, t) labels this detection may take
        best = np.where(ok, iou[:, j : j + 1] + priority, -1.0).argmax(0)  # (t,) label taken per threshold
        hit = ok[best, columns]
        taken[best[hit], columns[hit]] = True
        matched[j] = hit
        to_ignored[j] = hit & ignored[best]
    return matched, to_ignored


# COCO's object sizes: box area in original-image pixels (bounds inclusive on both sides, as in pycocotools)
AREA_RANGES = {"small": (0.0, 32.0**2), "medium": (32.0**2, 96.0**2), "large": (96.0**2, 1e10)}


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    """Areas (n,) of xyxy boxes (n, >=4)."""
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def match_predictions_by_area(
    detections: torch.Tensor, labels: torch.Tensor, iouv: torch.Tensor | ArrayLike = IOU_THRESHOLDS,
    area_ranges: dict[str, tuple[float, float]] = AREA_RANGES, iou: torch.Tensor | np.ndarray | None = None,
    label_area: ArrayLike | None = None, det_area: ArrayLike | None = None,
) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``match_predictions`` restricted to each object-size range, by COCO's rule: labels whose box area is outside
    the range are ignored; a detection matched to an ignored label, or unmatched with its own area outside the
    range, is ignored (neither true nor false positive). Labels in range are preferred to ignored ones.

    detections (n, 6) [x1, y1, x2, y2, conf, cls]; labels (m, 5) [cls, x1, y1, x2, y2], original-image pixels.
    Instance segmentation passes the mask IoU ``iou`` (m, n) and the mask areas ``label_area`` (m,) and ``det_area``
    (n,) (COCO's segm sizes), which replace the box IoU and box areas.
    Returns {range name: (true positive (n, t), counted (n, t) = not ignored, label in range (m,))} bool arrays.
    """
    iouv = torch.as_tensor(iouv).cpu().numpy()
    n, m, t = detections.shape[0], labels.shape[0], iouv.size
    label_area = (box_area(labels[:, 1:].float()).cpu().numpy() if label_area is None
                  else np.asarray(torch.as_tensor(label_area).cpu(), dtype=np.float64))
    det_area = (box_area(detections.float()).cpu().numpy() if det_area is None
                else np.asarray(torch.as_tensor(det_area).cpu(), dtype=np.float64))
    iou = _class_iou(detections, labels, iou) if n and m else np.zeros((m, n))
    conf = detections[:, 4].float().cpu().numpy()
    out = {}
    for name, (lo, hi) in area_ranges.items():
        label_ignored = (label_area < lo) | (label_area > hi)
        matched, to_ignored = _match(iou, conf, iouv, label_ignored) if n and m else (np.zeros((n, t), bool),) * 2
        det_outside = ((det_area < lo) | (det_area > hi))[:, None]
        counted = ~to_ignored & (matched | ~det_outside)
        out[name] = (matched & ~to_ignored, counted, ~label_ignored)
    return out


def _class_then_confidence_order(pred_cls: np.ndarray, conf: np.ndarray) -> np.ndarray:
    """Order that groups detections by class, each class in descending confidence (ties keep their input order).

    Each class is then one contiguous slice, so the per-class loops of ap_per_class and ap_ar_by_area cost
    O(n log n) in all instead of scanning all n detections once per class (O(classes x n): 300 classes x 1.5M
    detections of a 5,000-image val).
    """
    by_conf = np.argsort(-conf, kind="stable")
    return by_conf[np.argsort(pred_cls[by_conf], kind="stable")]


def ap_ar_by_area(
    stats: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]],
) -> tuple[float, float]:
    """COCO's AP (101-point, averaged over IoU thresholds and classes) and AR (the recall reached by all counted
    detections, averaged likewise) of one size range, from per-image tuples (true positive (n, t), counted (n, t),
    confidence (n,), detection class (n,), classes of the labels in range (k,)). Only classes with labels in range
    enter the means; (-1, -1) when there are none, as in pycocotools.
    """
    if not stats:
        return -1.0, -1.0
    tp, counted, conf, pred_cls, target_cls = (np.concatenate(x, 0) for x in zip(*stats))
    classes, n_labels = np.unique(target_cls, return_counts=True)
    if not classes.size:
        return -1.0, -1.0
    order = _class_then_confidence_order(pred_cls, conf)
    tp, counted, pred_cls = tp[order], counted[order], pred_cls[order]
    starts, ends = np.searchsorted(pred_cls, classes, "left"), np.searchsorted(pred_cls, classes, "right")
    t = tp.shape[1]
    ap, ar = np.zeros((classes.size, t)), np.zeros((classes.size, t))
    for ci in range(classes.size):
        tp_c, counted_c = tp[starts[ci]:ends[ci]], counted[starts[ci]:ends[ci]]  # descending confidence
        for j in range(t):
            tpc = np.cumsum(tp_c[counted_c[:, j], j])  # ignored detections add neither a true nor a false positive
            if tpc.size:
                recall, precision = tpc / n_labels[ci], tpc / np.arange(1, tpc.size + 1)
                ap[ci, j], ar[ci, j] = compute_ap(recall, precision)[0], recall[-1]
    return float(ap.mean()), float(ar.mean())


def compute_ap(recall: ArrayLike, precision: ArrayLike) -> tuple[float, np.ndarray, np.ndarray]:
    """101-point interpolated AP of one recall/precision curve (points in descending-confidence order).

    Returns (ap, mpre, mrec): mrec/mpre are the curve with end points (0, 1) and (1, 0) added and mpre replaced by
    its envelope max(precision at recall >= r).
    """
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mpre = np.concatenate(([1.0], precision, [0.0]))
    mpre = np.flip(np.maximum.accumulate(np.flip(mpre)))
    # envelope at each recall threshold r: precision at the first curve point whose recall reaches r
    thresholds = np.linspace(0, 1, 101)
    q = np.zeros_like(thresholds)
    recall = np.asarray(recall)
    if recall.size:
        env = mpre[1:-1]  # envelope at the real curve points
        idx = np.searchsorted(recall, thresholds, side="left")
        ok = idx < recall.size
        q[ok] = env[idx[ok]]
    return float(q.mean()), mpre, mrec


def ap_per_class(
    tp: ArrayLike,
    conf: ArrayLike,
    pred_cls: ArrayLike,
    target_cls: ArrayLike,
    plot: bool = False,
    save_dir: str | Path = ".",
    names: dict[int, str] | Sequence[str] = (),
    eps: float = 1e-16,
    prefix: str = "",
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Average precision per class, and precision / recall / F1 at the confidence that maximises the mean F1.

    Args:
        tp: (n, t) bool, true positive at each of t IoU thresholds; conf: (n,) confidences; pred_cls: (n,)
            predicted classes; target_cls: (m,) classes of all labels.
        plot: save {prefix}PR_curve.png, F1_curve.png, P_curve.png, R_curve.png to save_dir; names: {id: name}.
    Returns:
        tp, fp (c,) counts at that confidence, p, r, f1 (c,), ap (c, t), unique_classes (c,) int, for the c classes
        that have labels (predicted classes without labels have no AP).
    """
    tp, conf, pred_cls, target_cls = (np.asarray(a) for a in (tp, conf, pred_cls, target_cls))
    tp = tp.reshape(-1, 1) if tp.ndim == 1 else tp
    order = _class_then_confidence_order(pred_cls, conf)
    tp, conf, pred_cls = tp[order], conf[order], pred_cls[order]

    unique_classes, nt = np.unique(target_cls, return_counts=True)
    starts, ends = np.searchsorted(pred_cls, unique_classes, "left"), np.searchsorted(pred_cls, unique_classes, "right")
    nc = unique_classes.shape[0]
    px = np.linspace(0, 1, 1000)  # confidence axis of the P, R, F1 curves
    pr_curves = []  # envelope precision on the px recall axis, per class, at IoU 0.5
    ap = np.zeros((nc, tp.shape[1]))
    p, r = np.zeros((nc, 1000)), np.zeros((nc, 1000))
    for ci in range(nc):
        i = slice(starts[ci], ends[ci])  # this class's detections, in descending confidence
        n_l, n_p = nt[ci], int(ends[ci] - starts[ci])
        if n_p == 0 or n_l == 0:
            if plot:
                pr_curves.append(np.zeros(1000))
            continue
        tpc = tp[i].cumsum(0)
        fpc = (1 - tp[i]).cumsum(0)
        recall = tpc / (n_l + eps)
        precision = tpc / (tpc + fpc)
        # curves against confidence (conf is decreasing, so interpolate on its negative)
        r[ci] = np.interp(-px, -conf[i], recall[:, 0], left=0)
        p[ci] = np.interp(-px, -conf[i], precision[:, 0], left=1)
        for j in range(tp.shape[1]):
            ap[ci, j], mpre, mrec = compute_ap(recall[:, j], precision[:, j])
            if plot and j == 0:
                pr_curves.append(np.interp(px, mrec, mpre))
    f1 = 2 * p * r / (p + r + eps)

    if plot:
        names = names if isinstance(names, dict) else dict(enumerate(names))
        label_names = {k: names.get(int(c), str(int(c))) for k, c in enumerate(unique_classes)}
        save_dir = Path(save_dir)
        plot_pr_curve(px, np.stack(pr_curves, 1) if pr_curves else np.zeros((1000, 0)), ap,
                      save_dir / f"{prefix}PR_curve.png", label_names)
        plot_mc_curve(px, f1, save_dir / f"{prefix}F1_curve.png", label_names, ylabel="F1")
        plot_mc_curve(px, p, save_dir / f"{prefix}P_curve.png", label_names, ylabel="Precision")
        plot_mc_curve(px, r, save_dir / f"{prefix}R_curve.png", label_names, ylabel="Recall")

    i = int(smooth(f1.mean(0), 0.1).argmax()) if nc else 0  # confidence of the best mean F1
    p, r, f1 = p[:, i], r[:, i], f1[:, i]
    tp_count = (r * nt).round()
    fp_count = (tp_count / (p + eps) - tp_count).round()
    return tp_count, fp_count, p, r, f1, ap, unique_classes.astype(int)


class ConfusionMatrix:
    """Counts of (predicted class, true class) with an extra 'background' row and column (index nc).

    matrix[pred, true]: a label matched (IoU >= iou_thres, one-to-one, highest IoU first, any class) to a detection
    of confidence > conf adds at [det class, label class]; an unmatched label adds at [nc, label class] (missed);
    an unmatched detection at [det class, nc] (false alarm).
    """

    def __init__(self, nc: int, conf: float = 0.25, iou_thres: float = 0.45) -> None:
        self.matrix = np.zeros((nc + 1, nc + 1))
        self.nc = nc
        self.conf = conf
        self.iou_thres = iou_thres

    def process_batch(self, detections: torch.Tensor | None, labels: torch.Tensor,
                      iou: torch.Tensor | np.ndarray | None = None) -> None:
        """detections (n, 6) [x1, y1, x2, y2, conf, cls] or None; labels (m, 5) [cls, x1, y1, x2, y2]; ``iou``
        (m, n): the label-detection overlap to match on instead of box IoU (mask IoU for instance segmentation)."""
        gt_classes = labels[:, 0].int().tolist()
        if detections is None:
            for gc in gt_classes:
                self.matrix[self.nc, gc] += 1
            return
        confident = detections[:, 4] > self.conf
        detections = detections[confident]
        det_classes = detections[:, 5].int().tolist()
        matched_det = set()
        label_to_det = {}
        if len(gt_classes) and len(det_classes):
            if iou is None:
                iou = box_iou(labels[:, 1:].float(), detections[:, :4].float())
            else:
                iou = torch.as_tensor(iou)
                iou = iou[:, confident.to(iou.device)]
            iou = iou.float().cpu().numpy()
            li, pi, _ = greedy_match(iou, self.iou_thres)
            label_to_det = dict(zip(li.tolist(), pi.tolist()))
            matched_det = set(pi.tolist())
        for i, gc in enumerate(gt_classes):
            if i in label_to_det:
                self.matrix[det_classes[label_to_det[i]], gc] += 1
            else:
                self.matrix[self.nc, gc] += 1
        for i, dc in enumerate(det_classes):
            if i not in matched_det:
                self.matrix[dc, self.nc] += 1

    def tp_fp(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-class true positives (diagonal) and false positives (row sum minus diagonal), background excluded."""
        tp = self.matrix.diagonal()
        fp = self.matrix.sum(1) - tp
        return tp[:-1], fp[:-1]

    def plot(
        self, normalize: bool = True, save_dir: str | Path = "", names: dict[int, str] | Sequence[str] = (),
        file_name: str = "confusion_matrix.png", title: str = "Confusion Matrix",
    ) -> None:
        """Save ``file_name`` (confusion_matrix.png) in save_dir, columns normalised to sum 1 with ``normalize``."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        names = list(names.values()) if isinstance(names, dict) else list(names)
        m = self.matrix / ((self.matrix.sum(0).reshape(1, -1) + 1e-9) if normalize else 1)
        m[m < 0.005] = np.nan  # leave near-empty cells blank
        n = self.nc + 1
        labelled = 0 < len(names) < 99 and len(names) == self.nc
        ticks = names + ["background"] if labelled else None
        fig, ax = plt.subplots(1, 1, figsize=(12, 9), tight_layout=True)
        im = ax.imshow(m, cmap="Blues", vmin=0.0, vmax=1.0 if normalize else None)
        fig.colorbar(im, ax=ax)
        if n < 30:
            for (row, col), v in np.ndenumerate(m):
                if not np.isnan(v):
                    ax.text(col, row, f"{v:.2f}" if normalize else f"{v:.0f}", ha="center", va="center", fontsize=8)
        if ticks:
            ax.set_xticks(range(n), ticks, rotation=90, fontsize=8)
            ax.set_yticks(range(n), ticks, fontsize=8)
        ax.set_xlabel("True")
        ax.set_ylabel("Predicted")
        ax.set_title(title)
        fig.savefig(Path(save_dir) / file_name, dpi=250)
        plt.close(fig)

    def print(self) -> None:
        for row in self.matrix:
            print(" ".join(f"{int(v):d}" for v in row))


def _figure() -> tuple[ModuleType, Figure, Axes]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 1, figsize=(9, 6), tight_layout=True)
    return plt, fig, ax


def plot_pr_curve(
    px: np.ndarray,
    py: np.ndarray,
    ap: np.ndarray,
    save_file: str | Path = "pr_curve.png",
    names: dict[int, str] | None = None,
) -> None:
    """Precision-recall curves: py (1000, c) per class on recall axis px, ap (c, t); legend per class if c < 21."""
    plt, fig, ax = _figure()
    names = names or {}
    if 0 < py.shape[1] < 21:
        for i, y in enumerate(py.T):
            ax.plot(px, y, linewidth=1, label=f"{names.get(i, i)} {ap[i, 0]:.3f}")
    else:
        ax.plot(px, py, linewidth=1, color="grey")
    if py.shape[1]:
        ax.plot(px, py.mean(1), linewidth=3, color="blue", label=f"all classes {ap[:, 0].mean():.3f} mAP@0.5")
    ax.set_xlabel("Recall")
    ax.set_ylabel("Precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(bbox_to_anchor=(1.04, 1), loc="upper left")
    ax.set_title("Precision-Recall Curve")
    fig.savefig(save_file, dpi=250)
    plt.close(fig)


def plot_mc_curve(
    px: np.ndarray,
    py: np.ndarray,
    save_file: str | Path = "mc_curve.png",
    names: dict[int, str] | None = None,
    xlabel: str = "Confidence",
    ylabel: str = "Metric",
) -> None:
    """Metric-confidence curves: py (c, 1000) per class on confidence axis px, plus the smoothed class mean."""
    plt, fig, ax = _figure()
    names = names or {}
    if 0 < len(py) < 21:
        for i, y in enumerate(py):
            ax.plot(px, y, linewidth=1, label=f"{names.get(i, i)}")
    else:
        ax.plot(px, py.T, linewidth=1, color="grey")
    if len(py):
        y = smooth(py.mean(0), 0.05)
        ax.plot(px, y, linewidth=3, color="blue", label=f"all classes {y.max():.2f} at {px[y.argmax()]:.3f}")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(bbox_to_anchor=(1.04, 1), loc="upper left")
    ax.set_title(f"{ylabel}-Confidence Curve")
    fig.savefig(save_file, dpi=250)
    plt.close(fig)
