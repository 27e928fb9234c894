"""Validate an instance-segmentation model (YOLOv5 v7.0 -seg) on a dataset split: the Box and Mask P / R / mAP
table, speeds, curves and confusion matrices for both, optional txt labels and COCO json with RLE masks.

Usage:
    python segment/val.py --weights runs/train-seg/exp/weights/best.pt --data data/shapes-seg.yaml --imgsz 320
    python segment/val.py --weights yolov5s-seg.pt --data coco8-seg.yaml --save-json   # + pycocotools bbox/segm

Weights: a -seg .pt (this project's checkpoints or official YOLOv5 v7.0 *-seg.pt), or its .torchscript, .onnx or
OpenVINO export from export.py (batch size 1, square). Without --weights the newest
runs/train-seg/*/weights/best.pt is used; without --data the dataset it was trained on, else coco8-seg.yaml.
The scoring itself (shared with segment/train.py) is utils/segment_evaluation.evaluate_segmentation.
"""

import argparse
import sys
from pathlib import Path

import torch

if __package__ in (None, ""):  # run as a script (python segment/val.py): the repository root on the path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.backends import DetectMultiBackend, default_dataset, newest_trained_weights  # noqa: E402
from utils.allocator import keep_freed_memory  # noqa: E402
from utils.dataset_yaml import check_dataset  # noqa: E402
from utils.evaluation import coco80_to_coco91_class  # noqa: E402
from utils.general import (  # noqa: E402
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
)
from utils.segment_data import create_segment_dataloader  # noqa: E402
from utils.segment_evaluation import SegValOutput, evaluate_segmentation, save_coco_json_segm  # noqa: E402
from utils.torch_utils import select_device  # noqa: E402


@torch.no_grad()
def run(
    data: str | dict | None = None,
    weights: str | Path | list | None = None,
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
    project: str | Path = ROOT / "runs/val-seg",
    name: str = "exp",
    exist_ok: bool = False,
    half: bool = True,
    dnn: bool = False,
    plots: bool = True,
    overlap: bool = False,
    mask_ratio: int = 1,
) -> SegValOutput:
    """Validate -seg ``weights`` on the ``task`` split of ``data``: load the model, build the mask dataloader
    (ground-truth masks at imgsz / ``mask_ratio``, one per instance unless ``overlap``, official's val defaults),
    evaluate boxes and masks, report speeds, and with ``save_json`` write and score the COCO json (masks then at
    the input resolution, official's choice). Returns a SegValOutput (see utils.segment_evaluation)."""
    if batch_size < 1 or not (0 <= conf_thres <= 1 and 0 <= iou_thres <= 1):
        raise UserError(f"--batch-size {batch_size} must be >= 1 and --conf-thres {conf_thres}, --iou-thres "
                        f"{iou_thres} between 0 and 1")
    keep_freed_memory()  # no page faults for activation maps allocated anew at every pass (utils/allocator.py)
    weights = _one_weights(weights)
    data = check_dataset(data or default_dataset(weights, fallback=ROOT / "data/coco8-seg.yaml"))
    split = task if task in ("train", "val", "test") else "val"
    if not data.get(split):
        raise UserError(f"--task {task}: the dataset yaml has no '{split}' split; add it or use --task val")
    device = select_device(device, batch_size=batch_size)
    save_dir = increment_path(Path(project) / name, exist_ok=exist_ok, mkdir=True)
    (save_dir / "labels" if save_txt else save_dir).mkdir(parents=True, exist_ok=True)
    model, imgsz, batch_size = _load_segmentation_model(weights, data, device, imgsz, batch_size, half, dnn)
    nc = 1 if single_cls else int(data["nc"])
    if not single_cls and model.nc != nc:
        raise UserError(f"{weights} has {model.nc} classes but --data has {nc}; pass --weights and --data that "
                        f"belong together (or --single-cls)")
    pad, rect = (0.0, False) if task == "speed" else (0.5, model.pt)
    dataloader, dataset = create_segment_dataloader(
        data[split], imgsz, batch_size, model.stride, mask_ratio=mask_ratio, overlap=overlap,
        single_cls=single_cls, pad=pad, rect=rect, workers=workers, prefix=colorstr(f"{split}: "))
    max_class = max((int(x[:, 0].max()) for x in dataset.labels if len(x)), default=-1)
    if max_class >= nc:
        raise UserError(f"label class {max_class} exceeds nc={nc} in {data.get('yaml_file', 'the dataset')}; "
                        f"possible class labels are 0-{nc - 1}")
    is_coco = isinstance(data.get("val"), str) and data["val"].replace("\\", "/").endswith("coco/val2017.txt")
    class_map = coco80_to_coco91_class() if is_coco else list(range(max(1000, nc)))
    names = names_dict(model.names)
    jdict = [] if save_json else None
    output = evaluate_segmentation(
        model, dataloader, nc, names, device, conf_thres=conf_thres, iou_thres=iou_thres, max_det=max_det,
        single_cls=single_cls, augment=augment, half=model.fp16, verbose=verbose or nc < 50, save_dir=save_dir,
        plots=plots, save_txt=save_txt, save_hybrid=save_hybrid, save_conf=save_conf, jdict=jdict,
        class_map=class_map, overlap=overlap, retina_masks=save_json, by_size=True)
    LOGGER.info(f"Speed: %.1fms pre-process, %.1fms inference, %.1fms NMS per image at shape "
                f"{(batch_size, 3, imgsz, imgsz)}" % output.times)
    if save_json:
        scores = save_coco_json_segm(jdict, dataset, names, class_map, save_dir, Path(weights).stem, split)
        if scores:
            r = output.results
            LOGGER.info(f"pycocotools: box mAP50 {scores['bbox'][1]:.3f} mAP50-95 {scores['bbox'][0]:.3f}, mask "
                        f"mAP50 {scores['segm'][1]:.3f} mAP50-95 {scores['segm'][0]:.3f} (at most 100 per image); "
                        f"this project: box {r.map50_bbox:.3f} {r.map_bbox:.3f}, mask {r.map50_mask:.3f} "
                        f"{r.map_mask:.3f} (at most {max_det})")
    model.float()
    n_txt = len(list(save_dir.glob("labels/*.txt")))
    saved = f"\n{n_txt} labels saved to {save_dir / 'labels'}" if save_txt else ""
    LOGGER.info(f"Results saved to {colorstr('bold', save_dir)}{saved}")
    return output


def _one_weights(weights: str | Path | list | None) -> Path:
    """The one weights file to validate (the newest runs/train-seg best.pt when none is given)."""
    if isinstance(weights, (list, tuple)):
        weights = [w for w in weights if w]
        if len(weights) > 1:
            raise UserError("segment/val.py validates one model at a time (no ensembles of -seg models)")
        weights = weights[0] if weights else None
    return Path(weights) if weights else newest_trained_weights(ROOT / "runs" / "train-seg")


def _load_segmentation_model(weights: Path, data: dict, device: torch.device, imgsz: int, batch_size: int,
                             half: bool, dnn: bool) -> tuple[DetectMultiBackend, int, int]:
    """The warmed-up backend of -seg ``weights`` (its call gives (pred, proto)), the image size rounded to its
    stride and the batch size it runs (1 for exported files); a UserError for detection weights."""
    model = DetectMultiBackend(weights, device=device, dnn=dnn, data=data.get("yaml_file"), fp16=half)
    imgsz = check_img_size(imgsz, s=model.stride)
    if not model.pt:
        batch_size = 1
        LOGGER.info(f"Forcing --batch-size 1 square inference (1,3,{imgsz},{imgsz}) for exported models")
    model.warmup(imgsz=(1 if model.pt else batch_size, 3, imgsz, imgsz))  # TorchScript: tells segmentation apart
    if not model.segmentation:
        raise UserError(f"{weights} is a detection model (no Segment head); validate it with val.py")
    return model, imgsz, batch_size


def parse_opt(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Validate a YOLOv5 instance-segmentation model on a dataset.")
    parser.add_argument("--data", type=str, default=None,
                        help="dataset.yaml path (default: the one the weights were trained on, else coco8-seg.yaml)")
    parser.add_argument("--weights", nargs="+", type=str, default=None,
                        help="-seg model .pt path; default: the newest runs/train-seg/*/weights/best.pt")
    parser.add_argument("--batch-size", type=int, default=32, help="batch size")
    parser.add_argument("--imgsz", "--img", "--img-size", type=int, default=640, help="inference size (pixels)")
    parser.add_argument("--conf-thres", type=float, default=0.001, help="confidence threshold")
    parser.add_argument("--iou-thres", type=float, default=0.6, help="NMS IoU threshold")
    parser.add_argument("--max-det", type=int, default=300, help="maximum detections per image")
    parser.add_argument("--task", default="val", choices=("train", "val", "test", "speed"),
                        help="train, val, test or speed")
    parser.add_argument("--device", default="", help="cuda device, i.e. 0 or 0,1,2,3 or cpu")
    parser.add_argument("--workers", type=int, default=8, help="max dataloader workers")
    parser.add_argument("--single-cls", action="store_true", help="treat as single-class dataset")
    parser.add_argument("--augment", action="store_true", help="augmented inference")
    parser.add_argument("--verbose", action="store_true", help="report mAP by class")
    parser.add_argument("--save-txt", action="store_true", help="save results to *.txt")
    parser.add_argument("--save-hybrid", action="store_true", help="save label+prediction hybrid results to *.txt")
    parser.add_argument("--save-conf", action="store_true", help="save confidences in --save-txt labels")
    parser.add_argument("--save-json", action="store_true", help="save a COCO-JSON results file with RLE masks "
                        "(and score it with pycocotools)")
    parser.add_argument("--project", default=ROOT / "runs/val-seg", help="save results to project/name")
    parser.add_argument("--name", default="exp", help="save to project/name")
    parser.add_argument("--exist-ok", action="store_true", help="existing project/name ok, do not increment")
    parser.add_argument("--half", action="store_true", help="use FP16 half-precision inference (CUDA only)")
    parser.add_argument("--dnn", action="store_true", help="use OpenCV DNN for ONNX inference (not supported)")
    opt = parser.parse_args(argv)
    opt.save_txt |= opt.save_hybrid
    return opt


def main(opt: argparse.Namespace) -> SegValOutput | None:
    print_args(vars(opt), "segment/val")
    if opt.conf_thres > 0.001 and opt.task != "speed":
        LOGGER.warning(f"WARNING: confidence threshold {opt.conf_thres} > 0.001 gives invalid results")
    if opt.save_hybrid:
        LOGGER.warning("WARNING: --save-hybrid returns high mAP from hybrid labels, not from predictions alone")
    if opt.task == "speed":  # speed benchmark at the usual detection settings
        opt.half = torch.cuda.is_available() and opt.device != "cpu"
        opt.conf_thres, opt.iou_thres, opt.save_json = 0.25, 0.45, False
        return run(**{**vars(opt), "plots": False})
    return run(**vars(opt))


if __name__ == "__main__":
    end_process(exit_code(lambda: main(parse_opt())))
