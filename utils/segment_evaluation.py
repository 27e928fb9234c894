"""Evaluation of an instance-segmentation model (YOLOv5 v7.0 ``-seg``) on a dataset split: box and mask P / R /
mAP50 / mAP50-95 side by side, the loop shared by segment/val.py and segment/train.py (``evaluate_segmentation``),
and COCO json with RLE masks scored by pycocotools ('bbox' and 'segm').

Mask metrics follow COCO's 'segm' evaluation: the same greedy matching and 101-point AP as boxes
(utils/metrics.py), with the IoU of two instances taken between their binary masks instead of their boxes. The
predicted mask of a detection is sigmoid(coefficients @ prototypes) cut to its box (YOLACT, Bolya et al. 2019;
utils/masks.process_mask); ground-truth masks come from the loader at 1/mask_ratio of the input and are resized
to the predicted masks' size before the IoU.

The entry point, for segment/val.py and segment/train.py's per-epoch validation::

    evaluate_segmentation(model, dataloader, nc, names, device, conf_thres=0.001, iou_thres=0.6, max_det=300,
                          single_cls=False, augment=False, half=False, compute_loss=None, verbose=False,
                          save_dir=Path(""), plots=True, save_txt=False, save_hybrid=False, save_conf=False,
                          jdict=None, class_map=None, nms_stats=None, overlap=False, retina_masks=False,
                          by_size=False) -> SegValOutput

- ``model(im)`` in eval mode returns (pred (B, N, 5 + nc + nm), proto (B, nm, H/4, W/4), training output) (a
  SegmentationModel, or a backend returning at least (pred, proto)); it must already be in the precision ``half``
  asks for. ``compute_loss((training output, proto), targets, masks)`` -> (loss, (4,) [box, seg, obj, cls]).
- ``dataloader`` yields (im uint8 (B, 3, H, W), targets (n, 6) [img, cls, x, y, w, h] normalised, paths, shapes,
  masks): masks (B, H/r, W/r) index maps (1..k per image, in the image's target order) with ``overlap``, else
  (n, H/r, W/r) binary masks in target order.
- Returns SegValOutput: ``results`` (SegValResults: mp_bbox, mr_bbox, map50_bbox, map_bbox, mp_mask, mr_mask,
  map50_mask, map_mask, box_loss, seg_loss, obj_loss, cls_loss, official order), ``maps`` (nc,) box + mask
  mAP50-95 per class (official ``Metrics.get_maps``), ``times`` ms per image (pre-process, inference, NMS);
  attributes ``box`` and ``mask`` (ClassMetrics per class) and ``by_size`` ({'box': SizeMetrics, 'mask':
  SizeMetrics} or None).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from numpy.typing import ArrayLike
from torch.utils.data import DataLoader
from tqdm import tqdm

from utils.boxes import non_max_suppression, scale_boxes, xywh2xyxy
from utils.evaluation import (
    SizeMetrics,
    coco_evaluate,
    coco_ground_truth,
    coco_image_id,
    save_one_json,
    save_one_txt,
    warn_capped_nms,
)
from utils.general import LOGGER, safe_filename
from utils.masks import mask_iou, overlay_masks, process_mask, scale_masks
from utils.metrics import (
    AREA_RANGES,
    IOU_THRESHOLDS,
    ConfusionMatrix,
    ap_ar_by_area,
    ap_per_class,
    match_predictions,
    match_predictions_by_area,
)
from utils.plots import colors, output_to_target, plot_images
from utils.torch_utils import time_sync

SEG_TABLE_HEADER = ("%22s" + "%11s" * 10) % (
    "Class", "Images", "Instances", "Box(P", "R", "mAP50", "mAP50-95)", "Mask(P", "R", "mAP50", "mAP50-95)")
SEG_TABLE_ROW = "%22s" + "%11i" * 2 + "%11.3g" * 8
PLOTTED_VAL_BATCHES = 3  # val_batch0 .. val_batch2 label and prediction mosaics


class SegValResults(NamedTuple):
    """Segmentation validation metrics in official v7.0 order: box then mask mean precision, recall, mAP50 and
    mAP50-95 over classes, then the mean validation losses (0 without a loss function)."""

    mp_bbox: float
    mr_bbox: float
    map50_bbox: float
    map_bbox: float
    mp_mask: float
    mr_mask: float
    map50_mask: float
    map_mask: float
    box_loss: float
    seg_loss: float
    obj_loss: float
    cls_loss: float


# SegValResults field -> its results.csv column, official v7.0 names (utils/segment/metrics.py KEYS)
SEG_VAL_COLUMNS = dict(zip(SegValResults._fields, (
    "metrics/precision(B)", "metrics/recall(B)", "metrics/mAP_0.5(B)", "metrics/mAP_0.5:0.95(B)",
    "metrics/precision(M)", "metrics/recall(M)", "metrics/mAP_0.5(M)", "metrics/mAP_0.5:0.95(M)",
    "val/box_loss", "val/seg_loss", "val/obj_loss", "val/cls_loss",
), strict=True))
SEG_VAL_LOSS_COLUMNS = {field: column for field, column in SEG_VAL_COLUMNS.items() if column.startswith("val/")}


def segment_fitness(x: ArrayLike) -> np.ndarray:
    """Fitness of rows of SegValResults (n, >=8): 0.1 * mAP50 + 0.9 * mAP50-95 of boxes plus the same of masks."""
    w = np.array([0.0, 0.0, 0.1, 0.9, 0.0, 0.0, 0.1, 0.9])
    return (np.asarray(x, dtype=np.float64)[:, :8] * w).sum(1)


class ClassMetrics(NamedTuple):
    """Per-class results of one kind (boxes or masks) for the c classes with labels: precision, recall and F1 at
    the confidence of the best mean F1, AP (c, 10) at IoU 0.50:0.95, and the class ids (c,)."""

    p: np.ndarray
    r: np.ndarray
    f1: np.ndarray
    ap: np.ndarray
    ap_class: np.ndarray

    @classmethod
    def empty(cls) -> ClassMetrics:
        return cls(np.zeros(0), np.zeros(0), np.zeros(0), np.zeros((0, IOU_THRESHOLDS.numel())),
                   np.zeros(0, dtype=int))

    def mean_results(self) -> tuple[float, float, float, float]:
        """(mean precision, mean recall, mAP50, mAP50-95) over the classes; zeros without classes."""
        if not len(self.ap_class):
            return 0.0, 0.0, 0.0, 0.0
        return float(self.p.mean()), float(self.r.mean()), float(self.ap[:, 0].mean()), float(self.ap.mean())

    def class_result(self, i: int) -> tuple[float, float, float, float]:
        """(P, R, AP50, AP50-95) of the i-th class with labels."""
        return float(self.p[i]), float(self.r[i]), float(self.ap[i, 0]), float(self.ap[i].mean())

    def maps(self, nc: int) -> np.ndarray:
        """mAP50-95 per class id (nc,), the mean for classes without labels."""
        maps = np.zeros(nc) + self.mean_results()[3]
        for i, c in enumerate(self.ap_class):
            maps[c] = self.ap[i].mean()
        return maps


def ap_per_class_box_and_mask(
    tp_m: ArrayLike, tp_b: ArrayLike, conf: ArrayLike, pred_cls: ArrayLike, target_cls: ArrayLike,
    plot: bool = False, save_dir: str | Path = ".", names: dict[int, str] | Sequence[str] = (),
) -> tuple[ClassMetrics, ClassMetrics]:
    """utils.metrics.ap_per_class on box and on mask true positives (n, t) of the same detections; with ``plot``
    the curves go to BoxPR_curve.png, BoxF1_curve.png, BoxP_curve.png, BoxR_curve.png and the Mask* ones."""
    out = []
    for tp, prefix in ((tp_b, "Box"), (tp_m, "Mask")):
        _, _, p, r, f1, ap, ap_class = ap_per_class(tp, conf, pred_cls, target_cls, plot=plot, save_dir=save_dir,
                                                    names=names, prefix=prefix)
        out.append(ClassMetrics(p, r, f1, ap, ap_class))
    return out[0], out[1]


def gt_instance_masks(masks: torch.Tensor, targets: torch.Tensor, si: int, overlap: bool) -> torch.Tensor:
    """Binary masks (k, h, w) float of image ``si``'s k targets, in target order, from the loader's ``masks``:
    (B, h, w) index maps (value j + 1 = the image's j-th target) with ``overlap``, else (n, h, w) one per target."""
    in_image = targets[:, 0] == si
    if not overlap:
        return masks[in_image].float()
    k = int(in_image.sum())
    index = torch.arange(1, k + 1, device=masks.device, dtype=masks.dtype).view(k, 1, 1)
    return (masks[si][None] == index).float()


def resize_masks(masks: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Binary masks (k, h, w) -> (k, H, W) by bilinear resizing and a 0.5 threshold (no copy when already H x W)."""
    if not len(masks):
        return masks.new_zeros((0, *size), dtype=torch.float32)
    if tuple(masks.shape[1:]) == tuple(size):
        return masks.float()
    return F.interpolate(masks[None].float(), tuple(size), mode="bilinear", align_corners=False)[0].gt_(0.5).float()


def masks_iou_matrix(gt_masks: torch.Tensor, pred_masks: torch.Tensor) -> torch.Tensor:
    """(k, n) mask IoU of ground-truth masks (k, h, w) with predicted masks (n, h, w) of the same size."""
    return mask_iou(gt_masks.flatten(1), pred_masks.flatten(1))


def mask_to_rle(mask: np.ndarray) -> dict:
    """COCO run-length encoding of a binary mask (h, w): pycocotools' compressed RLE (counts a string) where it is
    installed, else the uncompressed form {'size': [h, w], 'counts': [run lengths, column-major, zeros first]}."""
    mask = np.asarray(mask).astype(bool)
    try:
        from pycocotools import mask as mask_utils
    except ImportError:
        flat = mask.ravel(order="F")
        change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
        counts = np.diff(np.concatenate(([0], change, [flat.size]))).tolist()
        if flat.size and flat[0]:
            counts = [0, *counts]  # runs start with background
        return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": [int(c) for c in counts]}
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("utf-8")
    return rle


def save_one_json_segm(predn: torch.Tensor, masks: torch.Tensor | np.ndarray, jdict: list[dict], path: str | Path,
                       class_map: Sequence[int]) -> None:
    """Append detections (n, >=6) in original-image pixels with their binary masks (n, h0, w0) on the original
    image to ``jdict`` as COCO results: bbox and score as utils.evaluation.save_one_json plus an RLE
    'segmentation'."""
    start = len(jdict)
    save_one_json(predn[:, :6], jdict, path, class_map)
    masks = masks.detach().cpu().numpy() if isinstance(masks, torch.Tensor) else np.asarray(masks)
    for record, mask in zip(jdict[start:], masks):
        record["segmentation"] = mask_to_rle(mask)


def polygon_area(points: np.ndarray) -> float:
    """Area of a polygon (k, 2) by the shoelace formula."""
    x, y = points[:, 0], points[:, 1]
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2)


def coco_ground_truth_segm(dataset: object, names: dict[int, str], class_map: Sequence[int]) -> dict:
    """utils.evaluation.coco_ground_truth with each annotation's polygon as its 'segmentation' (original-image
    pixels) and the polygon's area, from the dataset's ``segments`` (per image, one normalised (k, 2) polygon per
    label row, official LoadImagesAndLabels). A label without a usable polygon (fewer than 3 points) gets its box."""
    gt = coco_ground_truth(dataset, names, class_map)
    segments = getattr(dataset, "segments", None)
    annotations = iter(gt["annotations"])
    for i, ((w, h), labels) in enumerate(zip(dataset.shapes.tolist(), dataset.labels)):
        polygons = segments[i] if segments is not None and i < len(segments) else []
        for j in range(len(np.asarray(labels).reshape(-1, 5))):
            ann = next(annotations)
            poly = np.asarray(polygons[j], dtype=np.float64).reshape(-1, 2) if j < len(polygons) else np.zeros((0, 2))
            if len(poly) >= 3:
                poly = poly * (w, h)
            else:  # the box as a 4-point polygon
                x, y, bw, bh = ann["bbox"]
                poly = np.array([[x, y], [x + bw, y], [x + bw, y + bh], [x, y + bh]])
            ann["segmentation"] = [[round(float(v), 2) for v in poly.reshape(-1)]]
            ann["area"] = polygon_area(poly)
    return gt


def save_coco_json_segm(jdict: list[dict], dataset: object, names: dict[int, str], class_map: Sequence[int],
                        save_dir: str | Path, stem: str, task: str = "val") -> dict[str, tuple[float, float]] | None:
    """--save-json: write the predictions (``jdict``, RLE masks) to save_dir/{stem}_predictions.json and the split's
    ground truth (coco_ground_truth_segm) to save_dir/{task}_ground_truth.json, then score them with pycocotools.
    Returns {'bbox': (mAP50-95, mAP50), 'segm': (...)} or None (nothing saved, no labels or no pycocotools)."""
    if not jdict:
        LOGGER.info("--save-json: no detections to save")
        return None
    save_dir = Path(save_dir)
    pred_json = save_dir / safe_filename(f"{stem}_predictions.json")
    pred_json.write_text(json.dumps(jdict))
    LOGGER.info(f"COCO-format predictions with RLE masks saved to {pred_json}")
    if not hasattr(dataset, "labels"):
        return None
    anno_json = save_dir / safe_filename(f"{task}_ground_truth.json")
    anno_json.write_text(json.dumps(coco_ground_truth_segm(dataset, names, class_map)))
    LOGGER.info(f"\nEvaluating pycocotools mAP (bbox and segm) against {anno_json}...")
    image_ids = [coco_image_id(x) for x in dataset.im_files]
    scores = {kind: coco_evaluate(anno_json, pred_json, image_ids, iou_type=kind) for kind in ("bbox", "segm")}
    return None if None in scores.values() else scores


class _SegValOutputFields(NamedTuple):
    results: SegValResults
    maps: np.ndarray
    times: tuple[float, float, float]


class SegValOutput(_SegValOutputFields):
    """What ``evaluate_segmentation`` returns: SegValResults, box + mask mAP50-95 per class (nc,) and
    (pre-process, inference, NMS) ms per image, a 3-tuple like official segment/val.run's; the per-class
    ClassMetrics ``box`` and ``mask`` and ``by_size`` ({'box': SizeMetrics, 'mask': SizeMetrics} or None) are
    attributes beside the tuple."""

    box: ClassMetrics
    mask: ClassMetrics
    by_size: dict[str, SizeMetrics] | None

    def __new__(cls, results: SegValResults, maps: np.ndarray, times: tuple[float, float, float],
                box: ClassMetrics | None = None, mask: ClassMetrics | None = None,
                by_size: dict[str, SizeMetrics] | None = None) -> SegValOutput:
        output = super().__new__(cls, results, maps, times)
        output.box = box if box is not None else ClassMetrics.empty()
        output.mask = mask if mask is not None else ClassMetrics.empty()
        output.by_size = by_size
        return output


def batch_with_masks(images: torch.Tensor, masks: Sequence[torch.Tensor], classes: Sequence[torch.Tensor],
                     alpha: float = 0.5) -> np.ndarray:
    """Batch ``images`` (B, 3, H, W) RGB in 0-1 as uint8 (B, 3, H, W) with image i's binary ``masks[i]`` (k, h, w)
    (any resolution, resized to H x W) blended in the colours of their ``classes[i]`` (k,) by
    utils.masks.overlay_masks (the first mask on top); for plot_images."""
    out = (images.detach().float().cpu().numpy() * 255).clip(0, 255).astype(np.uint8).transpose(0, 2, 3, 1).copy()
    height, width = out.shape[1:3]
    for i, (m, c) in enumerate(zip(masks, classes)):
        if i < len(out) and len(m):
            overlay_masks(out[i], resize_masks(m.cpu(), (height, width)), [colors(int(k)) for k in c.tolist()],
                          alpha=alpha)
    return out.transpose(0, 3, 1, 2)


def _model_outputs(model: nn.Module, im: torch.Tensor, augment: bool,
                   with_loss: bool) -> tuple[torch.Tensor, torch.Tensor, object]:
    """(pred, proto, training output or None) from the model's eval forward (pred, proto[, training output])."""
    out = model(im) if with_loss else model(im, augment=augment)
    if not isinstance(out, (list, tuple)) or len(out) < 2 or not isinstance(out[1], torch.Tensor) or out[1].ndim != 4:
        raise ValueError("a segmentation model's forward must return (pred, proto (B, nm, H/4, W/4), ...); this "
                         "model gave no prototypes (is it a detection model?)")
    return out[0], out[1], (out[2] if len(out) > 2 else None)


@torch.no_grad()
def evaluate_segmentation(
    model: nn.Module, dataloader: DataLoader, nc: int, names: dict[int, str], device: torch.device,
    conf_thres: float = 0.001, iou_thres: float = 0.6, max_det: int = 300, single_cls: bool = False,
    augment: bool = False, half: bool = False, compute_loss: Callable | None = None, verbose: bool = False,
    save_dir: str | Path = Path(""), plots: bool = True, save_txt: bool = False, save_hybrid: bool = False,
    save_conf: bool = False, jdict: list[dict] | None = None, class_map: Sequence[int] | None = None,
    nms_stats: dict | None = None, overlap: bool = False, retina_masks: bool = False, by_size: bool = False,
) -> SegValOutput:
    """Run a segmentation ``model`` over ``dataloader`` and score its boxes and masks (see the module docstring for
    what model, loader and loss must provide).

    Masks are compared at prototype resolution (H/4, W/4 of the input), or at the input resolution with
    ``retina_masks`` (official's process_mask_native choice for --save-json). Detections go to ``jdict`` as COCO
    records with RLE masks on the original image when it is a list, and as label files (boxes, as official) under
    save_dir/labels with ``save_txt``. ``plots``: BoxPR/F1/P/R and MaskPR/F1/P/R curves, confusion_matrix.png
    (boxes) and mask_confusion_matrix.png (masks), val_batch mosaics with the masks drawn in. ``by_size``: COCO
    AP/AR by object size for boxes (box areas) and masks (mask areas). Logs the Box / Mask table; returns a
    SegValOutput.
    """
    model.eval()
    save_dir = Path(save_dir)
    names = {0: names.get(0, "item")} if single_cls else names
    class_map = class_map or list(range(max(1000, nc)))
    iouv = IOU_THRESHOLDS.to(device)
    niou = iouv.numel()
    confusion = {"box": ConfusionMatrix(nc=nc), "mask": ConfusionMatrix(nc=nc)}
    seen = 0
    dt = [0.0, 0.0, 0.0]  # pre-process, inference, NMS seconds
    loss = torch.zeros(4, device=device)
    nms_stats = {} if nms_stats is None else nms_stats
    stats = []  # per image: (mask tp (n, t), box tp (n, t), conf (n,), class (n,), label classes (m,))
    size_stats = {kind: {name: [] for name in AREA_RANGES} for kind in ("box", "mask")} if by_size else None

    pbar = tqdm(dataloader, desc=SEG_TABLE_HEADER, bar_format="{l_bar}{bar:10}{r_bar}")
    for batch_i, (im, targets, paths, shapes, masks) in enumerate(pbar):
        t0 = time_sync()
        im = im.to(device, non_blocking=True)
        targets, masks = targets.to(device), masks.to(device)
        im = (im.half() if half else im.float()) / 255
        nb, _, height, width = im.shape
        t1 = time_sync()
        dt[0] += t1 - t0

        preds, protos, train_out = _model_outputs(model, im, augment, compute_loss is not None)
        if compute_loss:
            loss += compute_loss((train_out, protos), targets, masks)[1]
        t2 = time_sync()
        dt[1] += t2 - t1

        targets[:, 2:] *= torch.tensor((width, height, width, height), device=device)  # to batch pixels
        hybrid = [targets[targets[:, 0] == i, 1:] for i in range(nb)] if save_hybrid else []
        preds = non_max_suppression(preds, conf_thres, iou_thres, labels=hybrid, multi_label=True,
                                    agnostic=single_cls, max_det=max_det, stats=nms_stats, nm=protos.shape[1])
        dt[2] += time_sync() - t2

        drawn = {"labels": ([], []), "pred": ([], [])}  # per image (masks, classes) for the val_batch mosaics
        for si, (pred, proto) in enumerate(zip(preds, protos)):
            labels = targets[targets[:, 0] == si, 1:]
            nl, npr = labels.shape[0], pred.shape[0]
            path, shape, ratio_pad = Path(paths[si]), shapes[si][0], shapes[si][1]
            seen += 1
            tbox = scale_boxes(im[si].shape[1:], xywh2xyxy(labels[:, 1:5]), shape, ratio_pad)
            labelsn = torch.cat((labels[:, 0:1], tbox), 1)  # original-image pixels
            gt_masks = gt_instance_masks(masks, targets, si, overlap)
            if single_cls:
                pred[:, 5] = 0
            pred_masks = process_mask(proto, pred[:, 6:], pred[:, :4], shape=im[si].shape[1:], upsample=retina_masks)
            gt_masks = resize_masks(gt_masks, pred_masks.shape[1:])
            predn = pred[:, :6].clone()
            scale_boxes(im[si].shape[1:], predn[:, :4], shape, ratio_pad)  # to original-image pixels
            iou = masks_iou_matrix(gt_masks, pred_masks)  # (nl, npr)
            correct_b = correct_m = torch.zeros(npr, niou, dtype=torch.bool, device=device)
            if nl and npr:
                correct_b = match_predictions(predn, labelsn, iouv)
                correct_m = match_predictions(predn, labelsn, iouv, iou=iou)
            if plots and (nl or npr):
                confusion["box"].process_batch(predn if npr else None, labelsn)
                confusion["mask"].process_batch(predn if npr else None, labelsn, iou=iou)
            if plots and batch_i < PLOTTED_VAL_BATCHES:
                shown = pred[:, 4] > 0.25  # plot_images draws predictions above 0.25
                for key, (m, c) in (("labels", (gt_masks, labels[:, 0])), ("pred", (pred_masks[shown][:15],
                                                                                    pred[shown][:15, 5]))):
                    drawn[key][0].append(m)
                    drawn[key][1].append(c)
            if by_size:
                _append_size_stats(size_stats, predn, labelsn, iou, gt_masks, pred_masks, im[si].shape[1:],
                                   ratio_pad, iouv)
            if npr or nl:
                stats.append((correct_m, correct_b, pred[:, 4], pred[:, 5], labels[:, 0]))
            if save_txt and npr:
                save_one_txt(predn, save_conf, shape, file=save_dir / "labels" / f"{path.stem}.txt")
            if jdict is not None and npr:
                save_one_json_segm(predn, scale_masks(pred_masks, shape), jdict, path, class_map)

        if plots and batch_i < PLOTTED_VAL_BATCHES:
            plot_images(batch_with_masks(im, *drawn["labels"]), targets, paths,
                        save_dir / f"val_batch{batch_i}_labels.jpg", names)
            plot_images(batch_with_masks(im, *drawn["pred"]),
                        output_to_target([p[p[:, 4] > 0.25][:15, :6] for p in preds], max_det=15), paths,
                        save_dir / f"val_batch{batch_i}_pred.jpg", names)

    output = _summarise(stats, nc, names, seen, plots, save_dir, verbose, confusion, size_stats)
    losses = (loss.cpu() / max(len(dataloader), 1)).tolist()
    times = tuple(x / max(seen, 1) * 1e3 for x in dt)
    warn_capped_nms(nms_stats)
    results = SegValResults(*output[0].mean_results(), *output[1].mean_results(), *losses)
    maps = output[0].maps(nc) + output[1].maps(nc)
    return SegValOutput(results, maps, times, box=output[0], mask=output[1], by_size=output[2])


def _summarise(stats: list, nc: int, names: dict[int, str], seen: int, plots: bool, save_dir: Path, verbose: bool,
               confusion: dict[str, ConfusionMatrix],
               size_stats: dict | None) -> tuple[ClassMetrics, ClassMetrics, dict[str, SizeMetrics] | None]:
    """Metrics over the whole split from the per-image ``stats``: log the table, save curves and confusion
    matrices; returns (box ClassMetrics, mask ClassMetrics, by-size metrics or None)."""
    arrays = [torch.cat(x, 0).cpu().numpy() for x in zip(*stats)]
    box, mask = ClassMetrics.empty(), ClassMetrics.empty()
    if len(arrays) and arrays[4].size:
        box, mask = ap_per_class_box_and_mask(*arrays, plot=plots, save_dir=save_dir, names=names)
    nt = np.bincount(arrays[4].astype(int), minlength=nc) if len(arrays) else np.zeros(nc, dtype=int)
    LOGGER.info(SEG_TABLE_ROW % ("all", seen, nt.sum(), *box.mean_results(), *mask.mean_results()))
    if nt.sum() == 0:
        LOGGER.warning("WARNING: no labels found in the validated split; metrics need labels")
    if verbose and nc > 1:
        for i, c in enumerate(box.ap_class):
            LOGGER.info(SEG_TABLE_ROW % (names.get(int(c), str(c)), seen, nt[c], *box.class_result(i),
                                         *mask.class_result(i)))
    if plots:
        confusion["box"].plot(save_dir=save_dir, names=names)
        confusion["mask"].plot(save_dir=save_dir, names=names, file_name="mask_confusion_matrix.png",
                               title="Confusion Matrix (masks)")
    by_size = None
    if size_stats is not None:
        by_size = {kind: SizeMetrics(*np.array([ap_ar_by_area(size_stats[kind][name]) for name in AREA_RANGES])
                                     .T.ravel().tolist()) for kind in ("box", "mask")}
        for kind, sizes in by_size.items():
            LOGGER.info(f"{kind + ' by object size (COCO)':>22}  {sizes.describe()}")
    return box, mask, by_size


def _append_size_stats(size_stats: dict, predn: torch.Tensor, labelsn: torch.Tensor, iou: torch.Tensor,
                       gt_masks: torch.Tensor, pred_masks: torch.Tensor, input_shape: Sequence[int],
                       ratio_pad: Sequence, iouv: torch.Tensor) -> None:
    """One image's detections matched within each COCO size range: boxes by box IoU and box area, masks by mask
    IoU and mask area (mask pixels converted to original-image pixels)."""
    conf, cls = predn[:, 4].cpu().numpy(), predn[:, 5].cpu().numpy()
    label_cls = labelsn[:, 0].cpu().numpy()
    gain = float(ratio_pad[0][0]) * float(ratio_pad[0][1]) if ratio_pad is not None else 1.0
    mh, mw = pred_masks.shape[1:] if len(pred_masks) else gt_masks.shape[1:]
    pixel_area = (input_shape[0] / mh) * (input_shape[1] / mw) / gain  # original-image pixels per mask pixel
    areas = dict(label_area=gt_masks.flatten(1).sum(1) * pixel_area, det_area=pred_masks.flatten(1).sum(1) * pixel_area)
    for kind, extra in (("box", {}), ("mask", dict(iou=iou, **areas))):
        for name, (tp, counted, in_range) in match_predictions_by_area(predn, labelsn, iouv, **extra).items():
            size_stats[kind][name].append((tp, counted, conf, cls, label_cls[in_range]))
