"""AutoAnchor: check how well a model's anchors fit a dataset's boxes and evolve better ones when they do not."""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch

from utils.general import LOGGER, colorstr
from utils.torch_utils import de_parallel

PREFIX = colorstr("AutoAnchor: ")
BPR_THRESHOLD = 0.98  # best possible recall below which new anchors are evolved


class LabelledShapes(Protocol):
    """What AutoAnchor reads of a dataset (LoadImagesAndLabels has both): image sizes and normalised labels."""

    shapes: np.ndarray  # (N, 2) [w, h] pixels
    labels: list[np.ndarray]  # per image (n, 5) [cls, x, y, w, h] normalised


def anchor_metrics(anchors: torch.Tensor, wh: torch.Tensor, thr: float = 4.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Best possible recall and anchors above threshold per box.

    anchors (k, 2) and wh (n, 2) in pixels. A box fits an anchor when both side ratios are within ``thr``.
    Returns (bpr, aat): the fraction of boxes that fit at least one anchor, and the mean number of fitting
    anchors per box.
    """
    ratio = wh[:, None] / anchors[None]  # (n, k, 2)
    closeness = torch.min(ratio, 1 / ratio).min(2)[0]  # (n, k): worse side ratio, 1 = perfect fit
    best = closeness.max(1)[0]
    bpr = (best > 1 / thr).float().mean()
    aat = (closeness > 1 / thr).float().sum(1).mean()
    return bpr, aat


def dataset_wh(
    dataset: LabelledShapes, img_size: int = 640, augment_scale: float = 0.0, rng: np.random.Generator | None = None
) -> np.ndarray:
    """Label widths and heights (n, 2) in pixels after letterboxing each image to ``img_size``.

    ``augment_scale`` > 0 multiplies each image's boxes by a random factor in [1 - s, 1 + s], like scale
    augmentation.
    """
    shapes = img_size * dataset.shapes / dataset.shapes.max(1, keepdims=True)  # (N, 2) letterboxed w, h
    if augment_scale:
        rng = rng or np.random.default_rng(0)
        shapes = shapes * rng.uniform(1 - augment_scale, 1 + augment_scale, size=(shapes.shape[0], 1))
    parts = [labels[:, 3:5] * s for s, labels in zip(shapes, dataset.labels) if len(labels)]
    return np.concatenate(parts, 0).astype(np.float64) if parts else np.zeros((0, 2))


def check_anchor_order(m: torch.nn.Module) -> None:
    """Reverse the anchors when their order (small to large) disagrees with the order of the strides."""
    a = m.anchors.prod(-1).mean(-1).view(-1)
    da, ds = a[-1] - a[0], m.stride[-1] - m.stride[0]
    if da and da.sign() != ds.sign():
        LOGGER.info("AutoAnchor: reversing anchor order")
        m.anchors[:] = m.anchors.flip(0)


def check_anchors(dataset: LabelledShapes, model: torch.nn.Module, thr: float = 4.0, imgsz: int = 640) -> bool:
    """Log the anchors' best possible recall on ``dataset``; below 0.98 evolve new anchors and write them into
    ``model`` (in grid units) if they recall more. Returns True when the model's anchors were replaced.

    ``dataset`` needs ``.shapes`` (N, 2) [w, h] and ``.labels`` (list of (n, 5) [cls, x, y, w, h] normalised).
    """
    m = de_parallel(model).model[-1]
    wh = torch.tensor(dataset_wh(dataset, imgsz, augment_scale=0.1), dtype=torch.float32)
    if not len(wh):
        LOGGER.warning(f"{PREFIX}WARNING: no labels found, anchors left unchanged")
        return False
    stride = m.stride.view(-1, 1, 1)
    anchors = (m.anchors.clone() * stride).cpu().view(-1, 2)  # pixels
    bpr, aat = anchor_metrics(anchors, wh, thr)
    msg = f"{aat:.2f} anchors/target, {bpr:.3f} Best Possible Recall (BPR). "
    if bpr > BPR_THRESHOLD:
        LOGGER.info(f"{PREFIX}{msg}Current anchors are a good fit to dataset")
        return False
    LOGGER.info(f"{PREFIX}{msg}Anchors are a poor fit to dataset, attempting to improve...")
    na = m.anchors.numel() // 2
    new = torch.tensor(kmean_anchors(dataset, n=na, img_size=imgsz, thr=thr, gen=1000, verbose=False))
    new_bpr = anchor_metrics(new.float(), wh, thr)[0]
    if new_bpr <= bpr:
        LOGGER.info(f"{PREFIX}Existing anchors kept (new anchors BPR {new_bpr:.3f} is not better)")
        return False
    m.anchors[:] = new.to(m.anchors).view_as(m.anchors)
    check_anchor_order(m)  # pixels, small to large like the strides
    m.anchors /= stride.to(m.anchors)
    LOGGER.info(f"{PREFIX}Done: new anchors (BPR {new_bpr:.3f}) saved to model; update the model yaml to reuse them")
    return True


def kmeans(points: np.ndarray, k: int, iters: int = 30, rng: np.random.Generator | None = None) -> np.ndarray:
    """Plain k-means (k-means++ seeding, Lloyd iterations). points (n, d). Returns (k, d) centroids."""
    rng = rng or np.random.default_rng(0)
    n = len(points)
    centroids = [points[rng.integers(n)]]
    for _ in range(1, k):
        d2 = ((points[:, None] - np.array(centroids)[None]) ** 2).sum(-1).min(1)
        prob = d2 / d2.sum() if d2.sum() > 0 else np.full(n, 1 / n)
        centroids.append(points[rng.choice(n, p=prob)])
    centroids = np.array(centroids, dtype=np.float64)
    for _ in range(iters):
        assign = ((points[:, None] - centroids[None]) ** 2).sum(-1).argmin(1)
        moved = centroids.copy()
        for j in range(k):
            members = points[assign == j]
            if len(members):
                moved[j] = members.mean(0)
        if np.allclose(moved, centroids):
            break
        centroids = moved
    return centroids


def kmean_anchors(
    dataset: LabelledShapes,
    n: int = 9,
    img_size: int = 640,
    thr: float = 4.0,
    gen: int = 1000,
    verbose: bool = True,
    seed: int = 0,
) -> np.ndarray:
    """Anchors (n, 2) in pixels, sorted small to large, evolved for ``dataset`` at ``img_size``.

    K-means on whitened label sizes, then a genetic search (``gen`` generations of random multiplicative
    mutations) that keeps a mutation when it raises the fitness: the mean of each box's best closeness to an
    anchor, counting boxes that fit no anchor within ``thr`` as 0.
    """
    rng = np.random.default_rng(seed)
    inv_thr = 1 / thr

    wh0 = dataset_wh(dataset, img_size)
    tiny = (wh0 < 3.0).any(1).sum()
    if tiny:
        LOGGER.warning(f"{PREFIX}WARNING: extremely small objects found: {tiny} of {len(wh0)} labels are < 3 pixels")
    wh = wh0[(wh0 >= 2.0).any(1)]  # boxes under 2 pixels on both sides carry no size information

    def closeness(k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ratio = wh[:, None] / k[None]
        x = np.minimum(ratio, 1 / ratio).min(2)  # (n, k)
        return x, x.max(1)

    def fitness(k: np.ndarray) -> float:
        best = closeness(k)[1]
        return (best * (best > inv_thr)).mean()

    if len(wh) >= n:
        scale = wh.std(0)
        scale[scale == 0] = 1.0
        k = kmeans(wh / scale, n, rng=rng) * scale
    else:
        LOGGER.warning(f"{PREFIX}WARNING: only {len(wh)} usable labels for {n} anchors, starting from random sizes")
        k = np.sort(rng.random((n, 2)) * img_size, 0)
    k = np.clip(k, 2.0, None)
    f = fitness(k)

    mutation_prob, sigma = 0.9, 0.1
    for _ in range(gen):
        v = np.ones(k.shape)
        while (v == 1).all():  # at least one anchor must change
            mask = rng.random(k.shape) < mutation_prob
            v = (mask * rng.random() * rng.standard_normal(k.shape) * sigma + 1).clip(0.3, 3.0)
        kg = (k * v).clip(min=2.0)
        fg = fitness(kg)
        if fg > f:
            f, k = fg, kg

    k = k[np.argsort(k.prod(1))]
    if verbose:
        x, best = closeness(k)
        bpr, aat = (best > inv_thr).mean(), (x > inv_thr).sum(1).mean()
        LOGGER.info(
            f"{PREFIX}thr={inv_thr:.2f}: {bpr:.4f} best possible recall, {aat:.2f} anchors past thr, "
            f"fitness {f:.4f}; anchors: " + ", ".join(f"{w:.0f},{h:.0f}" for w, h in k)
        )
    return k
