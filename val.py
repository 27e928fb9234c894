"""Validate a detection model on a dataset split: the P / R / mAP table, speeds, plots, optional txt and COCO json.

Usage:
    python val.py --weights runs/train/exp/weights/best.pt --data data/coco8.yaml --imgsz 640
    python val.py --weights yolov5n.pt yolov5s.pt --data coco128.yaml   # ensemble
    python val.py --weights best.pt --data coco8.yaml --task speed       # timing only
    python val.py --weights best.pt --data coco8.yaml --task study       # mAP and speed against image size

Weights: .pt (this project's checkpoints or official YOLOv5 v6.0-v7.0), .torchscript or .onnx from export.py.
Without --weights the newest runs/train/*/weights/best.pt is used. train.py calls ``run(model=..., dataloader=...)``.
"""

import argparse
import json
import sys
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from utils.boxes import MAX_NMS, non_max_suppression, scale_boxes, xywh2xyxy, xyxy2xywh
from utils.general import LOGGER, ROOT, UserError, check_img_size, colorstr, increment_path, print_args, exit_code
from utils.general import safe_filename
from utils.metrics import IOU_THRESHOLDS, ConfusionMatrix, ap_per_class, match_predictions
from utils.torch_utils import select_device, time_sync

STUDY_SIZES = list(range(256, 1536 + 128, 128))  # --task study image sizes
TABLE_HEADER = ("%22s" + "%11s" * 6) % ("Class", "Images", "Instances", "P", "R", "mAP50", "mAP50-95")
TABLE_ROW = "%22s" + "%11i" * 2 + "%11.3g" * 4


def coco80_to_coco91_class():
    """Official COCO category ids (1..90 with gaps) of the 80 YOLO class indices."""
    missing = {12, 26, 29, 30, 45, 66, 68, 69, 71, 83}
    return [i for i in range(1, 91) if i not in missing]


def coco_image_id(path):
    """COCO image id of an image file: the number for COCO-style names (000000139.jpg -> 139), else the stem."""
    stem = Path(path).stem
    return int(stem) if stem.isnumeric() else stem


def output_to_target(output, max_det=300):
    """NMS output (list of (n, 6) [x1, y1, x2, y2, conf, cls]) -> (m, 7) [batch_idx, cls, x, y, w, h, conf]."""
    rows = []
    for i, o in enumerate(output):
        o = o[:max_det].detach().cpu().float()
        idx = torch.full((o.shape[0], 1), float(i))
        rows.append(torch.cat((idx, o[:, 5:6], xyxy2xywh(o[:, :4]), o[:, 4:5]), 1))
    return torch.cat(rows, 0) if rows else torch.zeros((0, 7))


def save_one_txt(predn, save_conf, shape, file):
    """Append detections (n, 6) in original-image pixels to a YOLO label file: cls x y w h [conf], normalised."""
    gain = torch.tensor(shape, dtype=torch.float32)[[1, 0, 1, 0]]
    xywhn = xyxy2xywh(predn[:, :4].float().cpu()) / gain
    cols = [predn[:, 5:6].cpu(), xywhn] + ([predn[:, 4:5].cpu()] if save_conf else [])
    with open(file, "a") as f:
        for row in torch.cat(cols, 1).tolist():
            f.write(("%g " * len(row)).rstrip() % tuple(row) + "\n")


def save_one_json(predn, jdict, path, class_map):
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


def coco_ground_truth(dataset, names, class_map):
    """A COCO-format ground-truth dict from a dataset's YOLO labels (normalised xywh) and image sizes."""
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


def coco_evaluate(anno_json, pred_json, image_ids):
    """Evaluate a predictions json with pycocotools; returns (mAP50-95, mAP50) or None when it is not installed."""
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
        evaluator = COCOeval(anno, pred, "bbox")
        evaluator.params.imgIds = list(image_ids)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
        return float(evaluator.stats[0]), float(evaluator.stats[1])
    except Exception as e:  # pycocotools raises bare Exceptions (e.g. on an empty results list)
        LOGGER.warning(f"WARNING: pycocotools evaluation failed: {e}")
        return None


def _names_dict(names):
    return dict(enumerate(names)) if isinstance(names, (list, tuple)) else {int(k): v for k, v in names.items()}


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


class ValOutput(NamedTuple):
    """What ``run`` and ``evaluate`` return: ValResults, mAP50-95 per class (nc,) (the mean for classes without
    labels), and (pre-process, inference, NMS) milliseconds per image."""

    results: ValResults
    maps: np.ndarray
    times: tuple


@torch.no_grad()
def evaluate(model, dataloader, nc, names, device, conf_thres=0.001, iou_thres=0.6, max_det=300, single_cls=False,
             augment=False, half=False, compute_loss=None, verbose=False, save_dir=Path(""), plots=True,
             save_txt=False, save_hybrid=False, save_conf=False, jdict=None, class_map=None, nms_stats=None):
    """Run ``model`` over ``dataloader`` and score its detections; the part that train.py and ``run`` share.

    ``model`` returns (inference output, training output) in eval mode; a training model or a DetectMultiBackend,
    already in the precision ``half`` asks for (the images are cast to it). With ``compute_loss`` the validation
    losses are computed from the training output. Detections are appended to ``jdict`` (COCO json records,
    category ids from ``class_map``) when it is a list, and written as label files under save_dir/labels with
    ``save_txt``; ``nms_stats`` (a dict) collects NMS candidate counts. Logs the metrics table; returns a
    ValOutput.
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
    from tqdm import tqdm

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
            if npr == 0:
                if nl:
                    stats.append((correct, *torch.zeros((2, 0), device=device), labels[:, 0]))
                    if plots:
                        confusion_matrix.process_batch(detections=None, labels=labels)
                continue
            if single_cls:
                pred[:, 5] = 0
            predn = pred.clone()
            scale_boxes(im[si].shape[1:], predn[:, :4], shape, shapes[si][1])  # to original-image pixels
            if nl:
                tbox = scale_boxes(im[si].shape[1:], xywh2xyxy(labels[:, 1:5]), shape, shapes[si][1])
                labelsn = torch.cat((labels[:, 0:1], tbox), 1)
                correct = match_predictions(predn, labelsn, iouv)
                if plots:
                    confusion_matrix.process_batch(predn, labelsn)
            stats.append((correct, pred[:, 4], pred[:, 5], labels[:, 0]))
            if save_txt:
                save_one_txt(predn, save_conf, shape, file=save_dir / "labels" / f"{path.stem}.txt")
            if jdict is not None:
                save_one_json(predn, jdict, path, class_map)

        if plots and batch_i < 3:
            from utils.plots import plot_images

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
    _warn_capped_nms(nms_stats)
    if plots:
        confusion_matrix.plot(save_dir=save_dir, names=names)

    maps = np.zeros(nc) + map5095
    for i, c in enumerate(ap_class):
        maps[c] = ap[i]
    losses = (loss.cpu() / max(len(dataloader), 1)).tolist()
    times = tuple(x / max(seen, 1) * 1e3 for x in dt)
    return ValOutput(ValResults(float(mp), float(mr), float(map50), float(map5095), *losses), maps, times)


@torch.no_grad()
def run(
    data,
    weights=None,
    batch_size=32,
    imgsz=640,
    conf_thres=0.001,
    iou_thres=0.6,
    max_det=300,
    task="val",
    device="",
    workers=8,
    single_cls=False,
    augment=False,
    verbose=False,
    save_txt=False,
    save_hybrid=False,
    save_conf=False,
    save_json=False,
    project=ROOT / "runs/val",
    name="exp",
    exist_ok=False,
    half=True,
    dnn=False,
    model=None,
    dataloader=None,
    save_dir=Path(""),
    plots=True,
    compute_loss=None,
    backend=None,
):
    """Validate ``weights`` (or an in-memory ``model`` with its ``dataloader``) on the ``task`` split of ``data``:
    set up the model, data and output folder, ``evaluate``, then report (speeds, COCO json and pycocotools).

    Returns a ValOutput (results, maps, times), see ``evaluate``.
    """
    training = model is not None
    if training:
        device = next(model.parameters()).device
        half &= device.type != "cpu"  # half precision only on CUDA
        model = model.half() if half else model.float()
        names = _names_dict(model.names if hasattr(model, "names") else model.module.names)
        data = data if isinstance(data, dict) else _check_dataset(data)
    else:
        from models.export import backend_weights
        from models.backends import DetectMultiBackend, newest_trained_weights

        if batch_size < 1:
            raise UserError(f"--batch-size {batch_size} must be at least 1")
        if not (0 <= conf_thres <= 1 and 0 <= iou_thres <= 1):
            raise UserError(f"--conf-thres {conf_thres} and --iou-thres {iou_thres} must both be between 0 and 1")
        if isinstance(weights, (list, tuple)):
            weights = [w for w in weights if w]  # --weights '' means "not given", as in detect.py
        weights = weights or newest_trained_weights()
        data = _check_dataset(data)
        split = task if task in ("train", "val", "test") else "val"
        if not data.get(split):
            raise UserError(f"--task {task}: the dataset yaml has no '{split}' split; add it or use --task val")
        device = select_device(device, batch_size=batch_size)
        weights = backend_weights(weights, backend, check_img_size(imgsz))
        save_dir = increment_path(Path(project) / name, exist_ok=exist_ok, mkdir=True)
        model = DetectMultiBackend(weights, device=device, dnn=dnn, data=data.get("yaml_file"), fp16=half)
        stride, pt = model.stride, model.pt
        imgsz = check_img_size(imgsz, s=stride)
        half = model.fp16
        if not pt:
            batch_size = 1
            LOGGER.info(f"Forcing --batch-size 1 square inference (1,3,{imgsz},{imgsz}) for exported models")
        names = _names_dict(model.names)
        if not single_cls and model.nc != data["nc"]:
            raise UserError(
                f"{weights} has {model.nc} classes but --data {data.get('yaml_file', '')} has {data['nc']}; pass "
                f"--weights and --data that belong together (or --single-cls for a one-class evaluation)"
            )
    save_dir = Path(save_dir)
    (save_dir / "labels" if save_txt else save_dir).mkdir(parents=True, exist_ok=True)

    nc = 1 if single_cls else int(data["nc"])
    if not training:
        model.warmup(imgsz=(1 if pt else batch_size, 3, imgsz, imgsz))
        pad, rect = (0.0, False) if task == "speed" else (0.5, pt)
        from utils.dataloaders import create_dataloader

        dataloader, dataset = create_dataloader(data[split], imgsz, batch_size, stride, single_cls, pad=pad,
                                                rect=rect, workers=workers, prefix=colorstr(f"{split}: "))
        max_class = max((int(x[:, 0].max()) for x in dataset.labels if len(x)), default=-1)
        if max_class >= nc:
            raise UserError(f"label class {max_class} exceeds nc={nc} in {data.get('yaml_file', 'the dataset')}; "
                            f"possible class labels are 0-{nc - 1}")

    is_coco = isinstance(data.get("val"), str) and data["val"].replace("\\", "/").endswith("coco/val2017.txt")
    class_map = coco80_to_coco91_class() if is_coco else list(range(max(1000, nc)))
    jdict = [] if save_json else None
    nms_stats = {}
    output = evaluate(model, dataloader, nc, names, device, conf_thres=conf_thres, iou_thres=iou_thres,
                      max_det=max_det, single_cls=single_cls, augment=augment, half=half, compute_loss=compute_loss,
                      verbose=verbose or (nc < 50 and not training), save_dir=save_dir, plots=plots,
                      save_txt=save_txt, save_hybrid=save_hybrid, save_conf=save_conf, jdict=jdict,
                      class_map=class_map, nms_stats=nms_stats)
    if not training:
        shape = (batch_size, 3, imgsz, imgsz)
        LOGGER.info(f"Speed: %.1fms pre-process, %.1fms inference, %.1fms NMS per image at shape {shape}"
                    % output.times)
        _report_nms(nms_stats)

    if save_json and not jdict:
        LOGGER.info("--save-json: no detections to save")
    if save_json and jdict:
        w = Path(weights[0] if isinstance(weights, (list, tuple)) else weights).stem if weights else "model"
        pred_json = save_dir / safe_filename(f"{w}_predictions.json")
        with open(pred_json, "w") as f:
            json.dump(jdict, f)
        LOGGER.info(f"COCO-format predictions saved to {pred_json}")
        dataset = getattr(dataloader, "dataset", None)
        if dataset is not None and hasattr(dataset, "labels"):
            anno_json = save_dir / safe_filename(f"{task}_ground_truth.json")
            with open(anno_json, "w") as f:
                json.dump(coco_ground_truth(dataset, names, class_map), f)
            LOGGER.info(f"\nEvaluating pycocotools mAP against {anno_json}...")
            result = coco_evaluate(anno_json, pred_json, [coco_image_id(x) for x in dataset.im_files])
            if result is not None:
                LOGGER.info(f"pycocotools: mAP50 {result[1]:.3f}, mAP50-95 {result[0]:.3f} (at most 100 detections "
                            f"per image); this project: mAP50 {output.results.map50:.3f}, mAP50-95 "
                            f"{output.results.map50_95:.3f} (at most {max_det})")

    model.float()
    if not training:
        n_txt = len(list(save_dir.glob("labels/*.txt")))
        saved = f"\n{n_txt} labels saved to {save_dir / 'labels'}" if save_txt else ""
        LOGGER.info(f"Results saved to {colorstr('bold', save_dir)}{saved}")
    return output


def _warn_capped_nms(nms_stats):
    """Say loudly how many images had more than max_nms NMS candidates."""
    capped = nms_stats.get("capped", 0)
    if capped:
        LOGGER.warning(f"WARNING: NMS: {capped} of {nms_stats['images']} images had more than {MAX_NMS} candidates "
                       f"above --conf-thres; only their {MAX_NMS} most confident entered NMS")


def _report_nms(nms_stats):
    """Say how many candidates NMS saw per image (when none was capped; otherwise _warn_capped_nms spoke)."""
    images = nms_stats.get("images", 0)
    if images and not nms_stats.get("capped", 0):
        LOGGER.info(f"NMS: {nms_stats['candidates'] / images:.0f} candidates per image on average, none capped "
                    f"(cap {MAX_NMS}), no time limit")


def _check_dataset(data):
    from utils.dataset_yaml import check_dataset

    return check_dataset(data)


def parse_opt(argv=None):
    parser = argparse.ArgumentParser(description="Validate a YOLOv5 detection model on a dataset.")
    parser.add_argument("--data", type=str, default=str(ROOT / "data/coco8.yaml"), help="dataset.yaml path")
    parser.add_argument("--weights", nargs="+", type=str, default=None,
                        help="model path(s) (.pt, .torchscript, .onnx, *_openvino_model, .engine); several .pt make an ensemble; default: the "
                             "newest runs/train/*/weights/best.pt")
    parser.add_argument("--batch-size", type=int, default=32, help="batch size")
    parser.add_argument("--imgsz", "--img", "--img-size", type=int, default=640, help="inference size (pixels)")
    parser.add_argument("--conf-thres", type=float, default=0.001, help="confidence threshold")
    parser.add_argument("--iou-thres", type=float, default=0.6, help="NMS IoU threshold")
    parser.add_argument("--max-det", type=int, default=300, help="maximum detections per image")
    parser.add_argument("--task", default="val", choices=("train", "val", "test", "speed", "study"),
                        help="train, val, test, speed or study")
    parser.add_argument("--device", default="", help="cuda device, i.e. 0 or 0,1,2,3 or cpu")
    parser.add_argument("--workers", type=int, default=8, help="max dataloader workers")
    parser.add_argument("--single-cls", action="store_true", help="treat as single-class dataset")
    parser.add_argument("--augment", action="store_true", help="augmented inference (TTA)")
    parser.add_argument("--verbose", action="store_true", help="report mAP by class")
    parser.add_argument("--save-txt", action="store_true", help="save results to *.txt")
    parser.add_argument("--save-hybrid", action="store_true", help="save label+prediction hybrid results to *.txt")
    parser.add_argument("--save-conf", action="store_true", help="save confidences in --save-txt labels")
    parser.add_argument("--save-json", action="store_true", help="save a COCO-JSON results file (and evaluate it)")
    parser.add_argument("--project", default=ROOT / "runs/val", help="save to project/name")
    parser.add_argument("--name", default="exp", help="save to project/name")
    parser.add_argument("--exist-ok", action="store_true", help="existing project/name ok, do not increment")
    parser.add_argument("--half", action="store_true", help="use FP16 half-precision inference (CUDA only)")
    parser.add_argument("--dnn", action="store_true", help="use OpenCV DNN for ONNX inference (not supported)")
    parser.add_argument("--backend", choices=("pytorch", "onnx", "openvino"), default=None,
                        help=".pt weights: convert once (cached by content hash in runs/backend-cache) and run there")
    opt = parser.parse_args(argv)
    opt.save_json |= opt.data.endswith("coco.yaml")
    opt.save_txt |= opt.save_hybrid
    return opt


def main(opt):
    print_args(vars(opt), "val")
    if opt.task in ("train", "val", "test"):
        if opt.conf_thres > 0.001:
            LOGGER.warning(f"WARNING: confidence threshold {opt.conf_thres} > 0.001 gives invalid results")
        if opt.save_hybrid:
            LOGGER.warning("WARNING: --save-hybrid returns high mAP from hybrid labels, not from predictions alone")
        return run(**vars(opt))

    from models.backends import newest_trained_weights

    weights = opt.weights or [str(newest_trained_weights())]
    opt.half = torch.cuda.is_available() and opt.device != "cpu"
    if opt.task == "speed":  # speed benchmarks at the usual detection settings
        opt.conf_thres, opt.iou_thres, opt.save_json = 0.25, 0.45, False
        for w in weights:
            run(**{**vars(opt), "weights": w, "plots": False})
        return None
    # study: mAP and speed against image size, one table (and plot) per weights file
    for w in weights:
        rows = []
        out = Path(f"study_{Path(opt.data).stem}_{Path(w).stem}.txt")
        for size in STUDY_SIZES:
            LOGGER.info(f"\nRunning {out} --imgsz {size}...")
            results, _, times = run(**{**vars(opt), "weights": w, "imgsz": size, "plots": False})
            rows.append([size, *results, *times])
        np.savetxt(out, rows, fmt="%10.4g")
        plot_study(out)
    return None


def plot_study(file):
    """Plot a --task study table (size, P, R, mAP50, mAP50-95, losses, times) as study.png next to it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    y = np.loadtxt(file, ndmin=2)
    fig, ax = plt.subplots(1, 2, figsize=(10, 4), tight_layout=True)
    ax[0].plot(y[:, 0], y[:, 4], ".-", label="mAP50-95")
    ax[0].plot(y[:, 0], y[:, 3], ".-", label="mAP50")
    ax[0].set_xlabel("image size (pixels)")
    ax[0].legend()
    ax[1].plot(y[:, 9], y[:, 4], ".-")
    ax[1].set_xlabel("inference time per image (ms)")
    ax[1].set_ylabel("mAP50-95")
    fig.savefig(Path(file).with_name("study.png"), dpi=200)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(exit_code(lambda: main(parse_opt())))
