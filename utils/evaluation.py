"""Evaluation of a detection model on a dataset split: the metrics (ValResults) and the column names they have in
results.csv and evolve.csv, the scoring loop shared by train.py and val.py (``evaluate``), the txt / COCO json
writers of its detections, and the COCO ground truth and pycocotools scoring of those json files."""

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from utils.boxes import MAX_NMS, non_max_suppression, scale_boxes, xywh2xyxy, xyxy2xywh
from utils.dataloaders import LoadImagesAndLabels
from utils.general import LOGGER
from utils.metrics import (
    AREA_RANGES,
    IOU_THRESHOLDS,
    ConfusionMatrix,
    ap_ar_by_area,
    ap_per_class,
    match_predictions,
    match_predictions_by_area,
)
from utils.plots import output_to_target, plot_images
from utils.torch_utils import time_sync

TABLE_HEADER = ("%22s" + "%11s" * 6) % ("Class", "Images", "Instances", "P", "R", "mAP50", "mAP50-95")
TABLE_ROW = "%22s" + "%11i" * 2 + "%11.3g" * 4
PLOTTED_VAL_BATCHES = 3  # val_batch0 .. val_batch2 label and prediction mosaics


class ValResults(NamedTuple):
    """Validation metrics: mean precision and recall over classes, mAP at IoU 0.5 and 0.5:0.95, and the mean
    validation losses (0 without a loss function). A tuple, so ``p, r, *_ = results`` works."""

    precision: float
    recall: float
    map50: float
    map50_95: float
    box_loss: float
    obj_loss: float
    cls_loss: float


# ValResults field -> its column in results.csv and evolve.csv, in field order; YOLOv5's names, which its tools read
VAL_COLUMNS = dict(zip(ValResults._fields, (
    "metrics/precision", "metrics/recall", "metrics/mAP_0.5", "metrics/mAP_0.5:0.95",
    "val/box_loss", "val/obj_loss", "val/cls_loss",
), strict=True))
VAL_LOSS_COLUMNS = {field: column for field, column in VAL_COLUMNS.items() if column.startswith("val/")}  # losses


class SizeMetrics(NamedTuple):
    """COCO's AP (IoU 0.50:0.95) and AR by object size: small (box area < 32^2 original-image pixels), medium
    (32^2 to 96^2) and large (> 96^2); -1 for a size without labels, as in pycocotools."""

    ap_small: float
    ap_medium: float
    ap_large: float
    ar_small: float
    ar_medium: float
    ar_large: float

    def describe(self) -> str:
        """'AP small/medium/large 0.123/0.456/0.789, AR 0.2/0.5/0.8' (n/a for a size without labels)."""
        def cells(values):
            return "/".join("n/a" if v < 0 else f"{v:.3f}" for v in values)
        return f"AP small/medium/large {cells(self[:3])}, AR {cells(self[3:])}"


class _ValOutputFields(NamedTuple):
    results: ValResults
    maps: np.ndarray
    times: tuple[float, float, float]


class ValOutput(_ValOutputFields):
    """What ``evaluate`` (and val.run) returns: ValResults, mAP50-95 per class (nc,) (the mean for classes
    without labels), and (pre-process, inference, NMS) milliseconds per image; a 3-tuple, so
    ``results, maps, times = output`` works. ``by_size`` (SizeMetrics, or None where not computed) is an
    attribute beside the tuple."""

    by_size: SizeMetrics | None = None

    def __new__(cls, results: ValResults, maps: np.ndarray, times: tuple[float, float, float],
                by_size: SizeMetrics | None = None) -> "ValOutput":
        output = super().__new__(cls, results, maps, times)
        output.by_size = by_size
        return output


def coco80_to_coco91_class() -> list[int]:
    """Official COCO category ids (1..90 with gaps) of the 80 YOLO class indices."""
    missing = {12, 26, 29, 30, 45, 66, 68, 69, 71, 83}
    return [i for i in range(1, 91) if i not in missing]


def coco_image_id(path: str | Path) -> int | str:
    """COCO image id of an image file: the number for COCO-style names (000000139.jpg -> 139), else the stem."""
    stem = Path(path).stem
    return int(stem) if stem.isnumeric() else stem


def save_one_txt(predn: torch.Tensor, save_conf: bool, shape: Sequence[int], file: str | Path) -> None:
    """Append detections (n, 6) in original-image pixels to a YOLO label file: cls x y w h [conf], normalised."""
    gain = torch.tensor(shape, dtype=torch.float32)[[1, 0, 1, 0]]
    xywhn = xyxy2xywh(predn[:, :4].float().cpu()) / gain
    cols = [predn[:, 5:6].cpu(), xywhn] + ([predn[:, 4:5].cpu()] if save_conf else [])
    with open(file, "a") as f:
        for row in torch.cat(cols, 1).tolist():
            f.write(("%g " * len(row)).rstrip() % tuple(row) + "\n")


def save_one_json(predn: torch.Tensor, jdict: list[dict], path: str | Path, class_map: Sequence[int]) -> None:
    """Append detections (n, 6) in original-image pixels to ``jdict`` as COCO results (bbox = top-left x, y, w, h)."""
    image_id = coco_image_id(path)
    box = xyxy2xywh(predn[:, :4].float().cpu())
    box[:, :2] -= box[:, 2:] / 2
    for p, b in zip(predn.tolist(), box.tolist()):
        jdict.append({
            "image_id": image_id,
            "category_id": class_map[int(p[5])],
            "bbox": [round(x, 3) for x in b],
            "score": round(p[4], 5),
        })


def coco_ground_truth(dataset: LoadImagesAndLabels, names: dict[int, str], class_map: Sequence[int]) -> dict:
    """A COCO-format ground-truth dict from a dataset's YOLO labels (normalised xywh) and image sizes (a
    utils.dataloaders dataset: ``im_files``, ``shapes`` (w, h) and ``labels``)."""
    gt = {
        "info": {"description": "written by val.py from YOLO labels"},
        "images": [],
        "annotations": [],
        "categories": [{"id": class_map[i], "name": str(n)} for i, n in names.items()],
    }
    for file, (w, h), labels in zip(dataset.im_files, dataset.shapes.tolist(), dataset.labels):
        image_id = coco_image_id(file)
        gt["images"].append({"id": image_id, "file_name": Path(file).name, "width": int(w), "height": int(h)})
        for c, x, y, bw, bh in np.asarray(labels, dtype=np.float64).reshape(-1, 5).tolist():
            box = [(x - bw / 2) * w, (y - bh / 2) * h, bw * w, bh * h]
            gt["annotations"].append({
                "id": len(gt["annotations"]) + 1,
                "image_id": image_id,
                "category_id": class_map[int(c)],
                "bbox": [round(v, 3) for v in box],
                "area": box[2] * box[3],
                "iscrowd": 0,
            })
    return gt


def coco_evaluate(anno_json: str | Path, pred_json: str | Path, image_ids: Iterable[int | str],
                  iou_type: str = "bbox") -> tuple[float, float] | None:
    """Evaluate a predictions json with pycocotools, on boxes or (``iou_type`` 'segm') on masks; returns
    (mAP50-95, mAP50) or None when it is not installed."""
    try:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError:
        LOGGER.info("pycocotools not installed: skipping the COCO evaluation (optional; the pycocotools package "
                    "enables it)")
        return None
    try:
        anno = COCO(str(anno_json))
        pred = anno.loadRes(str(pred_json))
        evaluator = COCOeval(anno, pred, iou_type)
        evaluator.params.imgIds = list(image_ids)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
        return float(evaluator.stats[0]), float(evaluator.stats[1])
    except Exception as e:  # pycocotools raises bare Exceptions (e.g. on an empty results list)
        LOGGER.warning(f"WARNING: pycocotools evaluation failed: {e}")
        return None


@torch.no_grad()
def evaluate(model: nn.Module, dataloader: DataLoader, nc: int, names: dict[int, str], device: torch.device,
             conf_thres: float = 0.001, iou_thres: float = 0.6, max_det: int = 300, single_cls: bool = False,
             augment: bool = False, half: bool = False, compute_loss: Callable | None = None, verbose: bool = False,
             save_dir: str | Path = Path(""), plots: bool = True, save_txt: bool = False, save_hybrid: bool = False,
             save_conf: bool = False, jdict: list[dict] | None = None, class_map: Sequence[int] | None = None,
             nms_stats: dict | None = None, by_size: bool = True) -> ValOutput:
    """Run ``model`` over ``dataloader`` and score its detections; the part that train.py and val.py share.

    ``model`` returns (inference output, training output) in eval mode; a training model or a DetectMultiBackend,
    already in the precision ``half`` asks for (the images are cast to it). With ``compute_loss`` (a
    utils.loss.ComputeLoss) the validation losses are computed from the training output. Detections are appended
    to ``jdict`` (COCO json records, category ids from ``class_map``) when it is a list, and written as label files
    under save_dir/labels with ``save_txt``; ``nms_stats`` (a dict) collects NMS candidate counts. With ``by_size``
    (the default) COCO's AP and AR by object size come back as ``output.by_size``; training's per-epoch checks skip
    them. Logs the metrics table; returns a ValOutput.
    """
    model.eval()
    save_dir = Path(save_dir)
    names = {0: names.get(0, "item")} if single_cls else names
    class_map = class_map or list(range(max(1000, nc)))
    iouv = IOU_THRESHOLDS.to(device)
    niou = iouv.numel()
    confusion_matrix = ConfusionMatrix(nc=nc)
    seen = 0
    dt = [0.0, 0.0, 0.0]  # pre-process, inference, NMS seconds
    loss = torch.zeros(3, device=device)
    nms_stats = {} if nms_stats is None else nms_stats
    stats = []
    size_stats = {name: [] for name in AREA_RANGES} if by_size else None  # per image: see ap_ar_by_area

    pbar = tqdm(dataloader, desc=TABLE_HEADER, bar_format="{l_bar}{bar:10}{r_bar}")
    for batch_i, (im, targets, paths, shapes) in enumerate(pbar):
        t0 = time_sync()
        im = im.to(device, non_blocking=True)
        targets = targets.to(device)
        im = (im.half() if half else im.float()) / 255
        nb, _, height, width = im.shape
        t1 = time_sync()
        dt[0] += t1 - t0

        if compute_loss:
            preds, train_out = model(im)
            loss += compute_loss(train_out, targets)[1]
        else:
            preds = model(im, augment=augment)
        if isinstance(preds, (list, tuple)):
            preds = preds[0]
        t2 = time_sync()
        dt[1] += t2 - t1

        targets[:, 2:] *= torch.tensor((width, height, width, height), device=device)  # to batch pixels
        hybrid = [targets[targets[:, 0] == i, 1:] for i in range(nb)] if save_hybrid else []
        preds = non_max_suppression(preds, conf_thres, iou_thres, labels=hybrid, multi_label=True,
                                    agnostic=single_cls, max_det=max_det, stats=nms_stats)
        dt[2] += time_sync() - t2

        for si, pred in enumerate(preds):
            labels = targets[targets[:, 0] == si, 1:]
            nl, npr = labels.shape[0], pred.shape[0]
            path, shape = Path(paths[si]), shapes[si][0]
            correct = torch.zeros(npr, niou, dtype=torch.bool, device=device)
            seen += 1
            tbox = scale_boxes(im[si].shape[1:], xywh2xyxy(labels[:, 1:5]), shape, shapes[si][1])
            labelsn = torch.cat((labels[:, 0:1], tbox), 1)  # original-image pixels
            if npr == 0:
                if nl:
                    stats.append((correct, *torch.zeros((2, 0), device=device), labels[:, 0]))
                    if by_size:
                        _append_size_stats(size_stats, pred, labelsn, iouv)
                    if plots:
                        confusion_matrix.process_batch(detections=None, labels=labels)
                continue
            if single_cls:
                pred[:, 5] = 0
            predn = pred.clone()
            scale_boxes(im[si].shape[1:], predn[:, :4], shape, shapes[si][1])  # to original-image pixels
            if by_size:
                _append_size_stats(size_stats, predn, labelsn, iouv)
            if nl:
                correct = match_predictions(predn, labelsn, iouv)
                if plots:
                    confusion_matrix.process_batch(predn, labelsn)
            stats.append((correct, pred[:, 4], pred[:, 5], labels[:, 0]))
            if save_txt:
                save_one_txt(predn, save_conf, shape, file=save_dir / "labels" / f"{path.stem}.txt")
            if jdict is not None:
                save_one_json(predn, jdict, path, class_map)

        if plots and batch_i < PLOTTED_VAL_BATCHES:
            plot_images(im, targets, paths, save_dir / f"val_batch{batch_i}_labels.jpg", names)
            plot_images(im, output_to_target(preds, max_det=max_det), paths,
                        save_dir / f"val_batch{batch_i}_pred.jpg", names)

    # metrics over the whole split
    stats = [torch.cat(x, 0).cpu().numpy() for x in zip(*stats)]
    mp = mr = map50 = map5095 = 0.0
    ap_class, ap50, ap = np.zeros(0, dtype=int), np.zeros(0), np.zeros(0)
    p = r = np.zeros(0)
    if len(stats) and stats[3].size:
        _, _, p, r, _, ap, ap_class = ap_per_class(*stats, plot=plots, save_dir=save_dir, names=names)
        ap50, ap = ap[:, 0], ap.mean(1)
        mp, mr, map50, map5095 = p.mean(), r.mean(), ap50.mean(), ap.mean()
    nt = np.bincount(stats[3].astype(int), minlength=nc) if len(stats) else np.zeros(nc, dtype=int)

    LOGGER.info(TABLE_ROW % ("all", seen, nt.sum(), mp, mr, map50, map5095))
    if nt.sum() == 0:
        LOGGER.warning("WARNING: no labels found in the validated split; metrics need labels")
    if verbose and nc > 1 and len(ap_class):
        for i, c in enumerate(ap_class):
            LOGGER.info(TABLE_ROW % (names.get(int(c), str(c)), seen, nt[c], p[i], r[i], ap50[i], ap[i]))
    warn_capped_nms(nms_stats)
    if plots:
        confusion_matrix.plot(save_dir=save_dir, names=names)

    maps = np.zeros(nc) + map5095
    for i, c in enumerate(ap_class):
        maps[c] = ap[i]
    losses = (loss.cpu() / max(len(dataloader), 1)).tolist()
    times = tuple(x / max(seen, 1) * 1e3 for x in dt)
    sizes = (SizeMetrics(*np.array([ap_ar_by_area(size_stats[name]) for name in AREA_RANGES]).T.ravel().tolist())
             if by_size else None)
    return ValOutput(ValResults(float(mp), float(mr), float(map50), float(map5095), *losses), maps, times, sizes)


def _append_size_stats(size_stats: dict[str, list], predn: torch.Tensor, labelsn: torch.Tensor,
                       iouv: torch.Tensor) -> None:
    """One image's detections and labels (original-image pixels) matched within each COCO size range."""
    conf, cls = predn[:, 4].cpu().numpy(), predn[:, 5].cpu().numpy()
    label_cls = labelsn[:, 0].cpu().numpy()
    for name, (tp, counted, in_range) in match_predictions_by_area(predn, labelsn, iouv).items():
        size_stats[name].append((tp, counted, conf, cls, label_cls[in_range]))


def warn_capped_nms(nms_stats: dict) -> None:
    """Say loudly how many images had more than MAX_NMS NMS candidates (``nms_stats`` from non_max_suppression)."""
    capped = nms_stats.get("capped", 0)
    if capped:
        LOGGER.warning(f"WARNING: NMS: {capped} of {nms_stats['images']} images had more than {MAX_NMS} candidates "
                       f"above --conf-thres; only their {MAX_NMS} most confident entered NMS")


def report_nms_candidates(nms_stats: dict) -> None:
    """Say how many candidates NMS saw per image (when none was capped; otherwise warn_capped_nms spoke)."""
    images = nms_stats.get("images", 0)
    if images and not nms_stats.get("capped", 0):
        LOGGER.info(f"NMS: {nms_stats['candidates'] / images:.0f} candidates per image on average, none capped "
                    f"(cap {MAX_NMS}), no time limit")
