"""Validate a detection model on a dataset split: the P / R / mAP table, speeds, plots, optional txt and COCO json.

Usage:
    python val.py --weights runs/train/exp/weights/best.pt --data data/coco8.yaml --imgsz 640
    python val.py --weights yolov5n.pt yolov5s.pt --data coco128.yaml   # ensemble
    python val.py --weights best.pt --data coco8.yaml --task speed       # timing only
    python val.py --weights best.pt --data coco8.yaml --task study       # mAP and speed against image size
    python val.py --weights best.pt --data shapes_large.yaml --slice 640 # sliced inference (utils/slicing.py)

Weights: .pt (this project's checkpoints or official YOLOv5 v6.0-v7.0), .torchscript or .onnx from export.py.
Without --weights the newest runs/train/*/weights/best.pt is used. ``run(model=..., dataloader=...)`` validates a
model already in memory; the evaluation itself (shared with train.py) is utils/evaluation.py.
"""

import argparse
import json
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader

from models.backends import DetectMultiBackend, default_dataset, fetch_weights, newest_trained_weights
from models.export import backend_weights
from utils.allocator import keep_freed_memory
from utils.boxes import non_max_suppression
from utils.dataloaders import create_dataloader
from utils.dataset_yaml import check_dataset
from utils.evaluation import (
    ValOutput,
    coco80_to_coco91_class,
    coco_evaluate,
    coco_ground_truth,
    coco_image_id,
    evaluate,
    report_nms_candidates,
)
from utils.general import (
    LOGGER,
    ROOT,
    UserError,
    check_img_size,
    colorstr,
    end_process,
    exit_code,
    increment_path,
    names_dict,
    print_args,
    safe_filename,
)
from utils.plots import plot_study
from utils.slicing import MERGES, Slicer, check_slice_settings
from utils.torch_utils import select_device

STUDY_SIZES = list(range(256, 1536 + 128, 128))  # --task study image sizes
Weights = str | Path | list[str | Path]  # one weights file, or several .pt for an ensemble


@torch.no_grad()
def run(
    data: str | dict | None = None,
    weights: Weights | None = None,
    batch_size: int = 32,
    imgsz: int = 640,
    conf_thres: float = 0.001,
    iou_thres: float = 0.6,
    max_det: int = 300,
    task: str = "val",
    device: str | torch.device = "",
    workers: int = 8,
    single_cls: bool = False,
    augment: bool = False,
    verbose: bool = False,
    save_txt: bool = False,
    save_hybrid: bool = False,
    save_conf: bool = False,
    save_json: bool = False,
    project: str | Path = ROOT / "runs/val",
    name: str = "exp",
    exist_ok: bool = False,
    half: bool = True,
    dnn: bool = False,
    model: nn.Module | None = None,
    dataloader: DataLoader | None = None,
    save_dir: str | Path = Path(""),
    plots: bool = True,
    compute_loss: Callable | None = None,
    backend: str | None = None,
    slice_size: int | None = None,
    slice_overlap: float = 0.2,
    slice_merge: str = MERGES[0],
) -> ValOutput:
    """Validate ``weights`` on the ``task`` split of ``data`` (the command line: load the model, build the
    dataloader, evaluate, report speeds), or an in-memory ``model`` on its ``dataloader`` (nothing loaded or built).
    Both save the COCO json and score it with pycocotools when ``save_json``. ``slice_size`` (command-line path
    only): sliced inference on each original image, ``slice_size`` px tiles overlapping by ``slice_overlap`` plus
    the whole image, each at ``imgsz``, merged by ``slice_merge`` (utils.slicing.Slicer).

    Returns a ValOutput (results, maps, times; AP and AR by object size as ``.by_size``), see
    utils.evaluation.evaluate.
    """
    scoring = dict(conf_thres=conf_thres, iou_thres=iou_thres, max_det=max_det, single_cls=single_cls,
                   augment=augment, compute_loss=compute_loss, plots=plots, save_txt=save_txt,
                   save_hybrid=save_hybrid, save_conf=save_conf)
    if model is not None:
        return _run_in_memory(model, dataloader, data, weights, task, half, verbose, save_json, save_dir, scoring)
    _check_flags(batch_size, conf_thres, iou_thres)
    keep_freed_memory()  # no page faults for activation maps allocated anew at every pass (utils/allocator.py)
    if slice_size:
        check_slice_settings(slice_size, slice_overlap, slice_merge)
    weights = fetch_weights(_given_weights(weights))  # a release name (yolov5s.pt) is downloaded first, as official
    data = data or default_dataset(weights, fallback=ROOT / "data/coco8.yaml")  # official CI: val.py without --data
    data, split = _load_split(data, task)
    device = select_device(device, batch_size=batch_size)
    weights = _convert_weights(weights, backend, imgsz, project)
    save_dir = increment_path(Path(project) / name, exist_ok=exist_ok, mkdir=True)
    model, imgsz, batch_size = _load_model(weights, data, device, imgsz, batch_size, half, dnn, single_cls)
    names, nc = names_dict(model.names), 1 if single_cls else int(data["nc"])
    _prepare_save_dir(save_dir, save_txt)
    dataloader = _build_dataloader(data, split, task, model, imgsz, batch_size, nc, single_cls, workers)
    if slice_size:
        scoring["slicer"] = _slicer(model, imgsz, batch_size, slice_size, slice_overlap, slice_merge, scoring)
    output, jdict, class_map, nms_stats = _evaluate_split(model, dataloader, data, names, device, nc, save_dir,
                                                         verbose or nc < 50, save_json, half=model.fp16, **scoring)
    _report_speed(output, nms_stats, (batch_size, 3, imgsz, imgsz))
    _save_coco_json(jdict, save_json, weights, dataloader, task, names, class_map, save_dir, output, max_det)
    model.float()
    _report_saved(save_dir, save_txt)
    return output


def _run_in_memory(model: nn.Module, dataloader: DataLoader, data: dict | str, weights: Weights | None, task: str,
                   half: bool, verbose: bool, save_json: bool, save_dir: str | Path, scoring: dict) -> ValOutput:
    """``run`` on a model already in memory and its dataloader: fp16 only on CUDA, no speed report, the model left
    in fp32. ``scoring``: the options ``evaluate`` takes as they are."""
    device = next(model.parameters()).device
    half &= device.type != "cpu"  # half precision only on CUDA
    model = model.half() if half else model.float()
    names = names_dict(model.names if hasattr(model, "names") else model.module.names)
    data = data if isinstance(data, dict) else check_dataset(data)
    save_dir = _prepare_save_dir(save_dir, scoring["save_txt"])
    nc = 1 if scoring["single_cls"] else int(data["nc"])
    output, jdict, class_map, _ = _evaluate_split(model, dataloader, data, names, device, nc, save_dir, verbose,
                                                  save_json, half=half, **scoring)
    _save_coco_json(jdict, save_json, weights, dataloader, task, names, class_map, save_dir, output,
                    scoring["max_det"])
    model.float()
    return output


def _check_flags(batch_size: int, conf_thres: float, iou_thres: float) -> None:
    """Refuse a batch size below 1 and thresholds outside [0, 1] with a UserError."""
    if batch_size < 1:
        raise UserError(f"--batch-size {batch_size} must be at least 1")
    if not (0 <= conf_thres <= 1 and 0 <= iou_thres <= 1):
        raise UserError(f"--conf-thres {conf_thres} and --iou-thres {iou_thres} must both be between 0 and 1")


def _given_weights(weights: Weights | None) -> Weights:
    """``weights``, or the newest trained best.pt when none is given (--weights '' is none, as in detect.py)."""
    if isinstance(weights, (list, tuple)):
        weights = [w for w in weights if w]
    return weights or newest_trained_weights()


def _load_split(data: str | dict, task: str) -> tuple[dict, str]:
    """The checked dataset dict and the split that ``task`` validates (val for speed and study)."""
    data = check_dataset(data)
    split = task if task in ("train", "val", "test") else "val"
    if not data.get(split):
        raise UserError(f"--task {task}: the dataset yaml has no '{split}' split; add it or use --task val")
    return data, split


def _convert_weights(weights: Weights, backend: str | None, imgsz: int, project: str | Path) -> Weights:
    """The weights to run: ``weights`` as they are, or their --backend conversion (cached in ``project``)."""
    return backend_weights(weights, backend, check_img_size(imgsz), project=project)


def _load_model(weights: Weights, data: dict, device: torch.device, imgsz: int, batch_size: int, half: bool,
                dnn: bool, single_cls: bool) -> tuple[DetectMultiBackend, int, int]:
    """The warmed-up DetectMultiBackend of ``weights`` with the image size rounded to its stride and the batch size
    it runs (1 for exported models); a UserError when its class count does not match the dataset's."""
    model = DetectMultiBackend(weights, device=device, dnn=dnn, data=data.get("yaml_file"), fp16=half)
    imgsz = check_img_size(imgsz, s=model.stride)
    if not model.pt:
        batch_size = 1
        LOGGER.info(f"Forcing --batch-size 1 square inference (1,3,{imgsz},{imgsz}) for exported models")
    if not single_cls and model.nc != data["nc"]:
        raise UserError(
            f"{weights} has {model.nc} classes but --data {data.get('yaml_file', '')} has {data['nc']}; pass "
            f"--weights and --data that belong together (or --single-cls for a one-class evaluation)"
        )
    model.warmup(imgsz=(1 if model.pt else batch_size, 3, imgsz, imgsz))
    return model, imgsz, batch_size


def _slicer(model: DetectMultiBackend, imgsz: int, batch_size: int, size: int, overlap: float, merge: str,
            scoring: dict) -> Slicer:
    """The Slicer that detects with ``model`` at val's NMS settings (``scoring``): tiles batched ``batch_size`` at a
    time, each and the whole image at ``imgsz``."""
    nms = partial(non_max_suppression, conf_thres=scoring["conf_thres"], iou_thres=scoring["iou_thres"],
                  multi_label=True, agnostic=scoring["single_cls"], max_det=scoring["max_det"])
    slicer = Slicer(partial(model, augment=scoring["augment"]), nms, imgsz, size, overlap, merge,
                    iou_thres=scoring["iou_thres"], agnostic=scoring["single_cls"], max_det=scoring["max_det"],
                    batch_size=batch_size, device=model.device, half=model.fp16)
    LOGGER.info(f"Sliced inference: {slicer.describe()}, each at {imgsz}x{imgsz}")
    return slicer


def _prepare_save_dir(save_dir: str | Path, save_txt: bool) -> Path:
    """Make the output folder (and its labels/ for --save-txt)."""
    save_dir = Path(save_dir)
    (save_dir / "labels" if save_txt else save_dir).mkdir(parents=True, exist_ok=True)
    return save_dir


def _build_dataloader(data: dict, split: str, task: str, model: DetectMultiBackend, imgsz: int, batch_size: int,
                      nc: int, single_cls: bool, workers: int) -> DataLoader:
    """The dataloader of ``split``: rectangular batches for .pt models, square unpadded ones for --task speed; a
    UserError when a label's class is not below ``nc``."""
    pad, rect = (0.0, False) if task == "speed" else (0.5, model.pt)
    dataloader, dataset = create_dataloader(data[split], imgsz, batch_size, model.stride, single_cls, pad=pad,
                                            rect=rect, workers=workers, prefix=colorstr(f"{split}: "))
    max_class = max((int(x[:, 0].max()) for x in dataset.labels if len(x)), default=-1)
    if max_class >= nc:
        raise UserError(f"label class {max_class} exceeds nc={nc} in {data.get('yaml_file', 'the dataset')}; "
                        f"possible class labels are 0-{nc - 1}")
    return dataloader


def _evaluate_split(model: nn.Module, dataloader: DataLoader, data: dict, names: dict[int, str],
                    device: torch.device, nc: int, save_dir: Path, verbose: bool, save_json: bool,
                    **scoring) -> tuple[ValOutput, list[dict] | None, list[int], dict]:
    """``evaluate`` with COCO category ids for COCO val2017; returns its output, the COCO json records (None
    without ``save_json``), the category ids and the NMS statistics."""
    is_coco = isinstance(data.get("val"), str) and data["val"].replace("\\", "/").endswith("coco/val2017.txt")
    class_map = coco80_to_coco91_class() if is_coco else list(range(max(1000, nc)))
    jdict = [] if save_json else None
    nms_stats = {}
    output = evaluate(model, dataloader, nc, names, device, verbose=verbose, save_dir=save_dir, jdict=jdict,
                      class_map=class_map, nms_stats=nms_stats, **scoring)
    if output.by_size is not None:
        LOGGER.info(f"{'by object size (COCO)':>22}  {output.by_size.describe()}")
    return output, jdict, class_map, nms_stats


def _report_speed(output: ValOutput, nms_stats: dict, shape: tuple[int, int, int, int]) -> None:
    """Log the milliseconds per image of each stage and the NMS candidate counts."""
    LOGGER.info(f"Speed: %.1fms pre-process, %.1fms inference, %.1fms NMS per image at shape {shape}" % output.times)
    report_nms_candidates(nms_stats)


def _save_coco_json(jdict: list[dict] | None, save_json: bool, weights: Weights | None, dataloader: DataLoader,
                    task: str, names: dict[int, str], class_map: list[int], save_dir: Path, output: ValOutput,
                    max_det: int) -> None:
    """--save-json: write the predictions and the split's ground truth as COCO json and score them with
    pycocotools (when installed), next to this project's mAPs."""
    if save_json and not jdict:
        LOGGER.info("--save-json: no detections to save")
    if not (save_json and jdict):
        return
    w = Path(weights[0] if isinstance(weights, (list, tuple)) else weights).stem if weights else "model"
    pred_json = save_dir / safe_filename(f"{w}_predictions.json")
    with open(pred_json, "w") as f:
        json.dump(jdict, f)
    LOGGER.info(f"COCO-format predictions saved to {pred_json}")
    dataset = getattr(dataloader, "dataset", None)
    if dataset is None or not hasattr(dataset, "labels"):
        return
    anno_json = save_dir / safe_filename(f"{task}_ground_truth.json")
    with open(anno_json, "w") as f:
        json.dump(coco_ground_truth(dataset, names, class_map), f)
    LOGGER.info(f"\nEvaluating pycocotools mAP against {anno_json}...")
    result = coco_evaluate(anno_json, pred_json, [coco_image_id(x) for x in dataset.im_files])
    if result is not None:
        LOGGER.info(f"pycocotools: mAP50 {result[1]:.3f}, mAP50-95 {result[0]:.3f} (at most 100 detections "
                    f"per image); this project: mAP50 {output.results.map50:.3f}, mAP50-95 "
                    f"{output.results.map50_95:.3f} (at most {max_det})")


def _report_saved(save_dir: Path, save_txt: bool) -> None:
    """Log where the results went (and how many label files --save-txt wrote)."""
    n_txt = len(list(save_dir.glob("labels/*.txt")))
    saved = f"\n{n_txt} labels saved to {save_dir / 'labels'}" if save_txt else ""
    LOGGER.info(f"Results saved to {colorstr('bold', save_dir)}{saved}")


def parse_opt(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Validate a YOLOv5 detection model on a dataset.")
    parser.add_argument("--data", type=str, default=None,
                        help="dataset.yaml path (default: the one the .pt weights were trained on, else coco8.yaml)")
    parser.add_argument("--weights", nargs="+", type=str, default=None,
                        help="model path(s) (.pt, .torchscript, .onnx, *_openvino_model, .engine); several .pt make "
                             "an ensemble; default: the newest runs/train/*/weights/best.pt")
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
    parser.add_argument("--backend", choices=("auto", "pytorch", "onnx", "openvino"), default=None,
                        help=".pt weights: convert once (cached by content hash under --project) and run there; "
                             "auto: the fastest exact runtime installed for this CPU")
    parser.add_argument("--slice", dest="slice_size", type=int, default=None,
                        help="sliced inference: tile size in pixels (tiles plus the whole image, boxes merged)")
    parser.add_argument("--slice-overlap", type=float, default=0.2, help="overlap of neighbouring tiles (fraction)")
    parser.add_argument("--slice-merge", choices=MERGES, default=MERGES[0],
                        help="merge of the tiles' boxes: greedy (SAHI's, by IoS) or nms (class-wise, --iou-thres)")
    opt = parser.parse_args(argv)
    opt.save_json |= str(opt.data or "").endswith("coco.yaml")
    opt.save_txt |= opt.save_hybrid
    return opt


def main(opt: argparse.Namespace) -> ValOutput | None:
    print_args(vars(opt), "val")
    if opt.task in ("train", "val", "test"):
        if opt.conf_thres > 0.001:
            LOGGER.warning(f"WARNING: confidence threshold {opt.conf_thres} > 0.001 gives invalid results")
        if opt.save_hybrid:
            LOGGER.warning("WARNING: --save-hybrid returns high mAP from hybrid labels, not from predictions alone")
        return run(**vars(opt))

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
        data = opt.data or default_dataset(w, fallback=ROOT / "data/coco8.yaml")
        out = Path(f"study_{Path(data).stem}_{Path(w).stem}.txt")
        for size in STUDY_SIZES:
            LOGGER.info(f"\nRunning {out} --imgsz {size}...")
            results, _, times = run(**{**vars(opt), "weights": w, "imgsz": size, "plots": False})
            rows.append([size, *results, *times])
        np.savetxt(out, rows, fmt="%10.4g")
        plot_study(out)
    return None


if __name__ == "__main__":
    end_process(exit_code(lambda: main(parse_opt())))
