"""Run YOLOv5 v7.0 instance segmentation on images, folders, globs, videos, .txt lists, webcams and streams.

Usage:
    python segment/predict.py --weights yolov5s-seg.pt --source data/images
    python segment/predict.py --weights best.onnx --source video.mp4 --save-txt --retina-masks

Weights: -seg .pt checkpoints (project or official v7.0), and their .torchscript, .onnx and OpenVINO exports.
Results go to runs/predict-seg/exp{N}: images and videos with masks and boxes drawn, labels/*.txt (one polygon per
instance: ``cls x1 y1 x2 y2 ... [conf]``, normalised, as official) and crops/<class>/*.jpg. The loading, sources,
output names and closing log are detect.py's (models/prediction.py, utils/detection_output.py).
"""

import argparse
import sys
from collections.abc import Sequence
from functools import partial
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.prediction import load_model, log_summary, open_source, segment_all, strip_weights  # noqa: E402
from models.backends import newest_trained_weights  # noqa: E402
from utils.allocator import keep_freed_memory  # noqa: E402
from utils.boxes import non_max_suppression  # noqa: E402
from utils.general import ROOT, UserError, end_process, exit_code, increment_path, print_args  # noqa: E402
from utils.segment_output import SegmentationWriter  # noqa: E402
from utils.sources import is_stream_source, list_source_files  # noqa: E402


def run(
    weights: str | Path | Sequence[str | Path] | None = None,
    source: str | Path = ROOT / "data/images",
    data: str | Path | None = None,
    imgsz: int | Sequence[int] = (640, 640),
    conf_thres: float = 0.25,
    iou_thres: float = 0.45,
    max_det: int = 1000,
    device: str = "",
    view_img: bool = False,
    save_txt: bool = False,
    save_conf: bool = False,
    save_crop: bool = False,
    nosave: bool = False,
    classes: Sequence[int] | None = None,
    agnostic_nms: bool = False,
    augment: bool = False,
    visualize: bool = False,
    update: bool = False,
    project: str | Path = ROOT / "runs/predict-seg",
    name: str = "exp",
    exist_ok: bool = False,
    line_thickness: int = 3,
    hide_labels: bool = False,
    hide_conf: bool = False,
    half: bool = False,
    dnn: bool = False,
    vid_stride: int = 1,
    retina_masks: bool = False,
) -> Path:
    """Segment the instances in ``source`` with segmentation ``weights``; returns the results folder. ``update``
    strips the optimizer from the .pt weights afterwards, as official."""
    keep_freed_memory()  # no page faults for activation maps allocated anew at every pass (utils/allocator.py)
    weights = weights or newest_trained_weights(ROOT / "runs" / "train-seg")
    if isinstance(weights, (list, tuple)) and len(weights) == 1:
        weights = weights[0]
    source = str(source)
    if not isinstance(imgsz, int) and len(imgsz) not in (1, 2):
        raise UserError(f"--imgsz {' '.join(map(str, imgsz))}: give one size (square) or two (height width)")
    files = None if is_stream_source(source) else list_source_files(source)  # a bad source fails before loading
    model, imgsz = load_model(weights, imgsz, device, half=half, dnn=dnn, data=data)
    if not (0 <= conf_thres <= 1 and 0 <= iou_thres <= 1):
        raise UserError(f"--conf-thres {conf_thres} and --iou-thres {iou_thres} must both be between 0 and 1")
    if classes is not None:
        bad = [c for c in classes if not 0 <= int(c) < model.nc]
        if bad:
            raise UserError(f"--classes {bad}: the model has classes 0-{model.nc - 1}")
    if not model.segmentation:
        raise UserError(f"--weights {weights}: a detection model (no mask prototypes); run it with detect.py")
    if augment:
        raise UserError("--augment merges boxes of several scales, which have no prototypes in common: not "
                        "supported for segmentation")
    dataset = open_source(source, files, model, imgsz, vid_stride)
    save_dir = increment_path(Path(project) / name, exist_ok=exist_ok, mkdir=True)
    nms = partial(non_max_suppression, conf_thres=conf_thres, iou_thres=iou_thres, classes=classes,
                  agnostic=agnostic_nms, max_det=max_det)
    writer = SegmentationWriter(save_dir, model.names, save_img=not nosave, save_txt=save_txt, save_conf=save_conf,
                                save_crop=save_crop, view_img=view_img, line_thickness=line_thickness,
                                hide_labels=hide_labels, hide_conf=hide_conf)
    with writer:
        seen, dt = segment_all(model, dataset, nms, writer, retina_masks=retina_masks, augment=augment,
                               visualize_dir=save_dir if visualize else None)
    log_summary(source, dataset, seen, dt, imgsz, save_dir, writer.labels_saved if save_txt else None)
    if update:
        strip_weights(weights)
    return save_dir


def parse_opt(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="YOLOv5 instance segmentation on images, videos and streams")
    parser.add_argument("--weights", nargs="+", type=str, default=None,
                        help="model path(s): -seg .pt, .torchscript, .onnx, *_openvino_model (default: newest "
                             "runs/train-seg/*/weights/best.pt)")
    parser.add_argument("--source", type=str, default=ROOT / "data/images",
                        help="file/dir/glob/.txt list/URL/webcam index (0)")
    parser.add_argument("--data", type=str, default=None, help="(optional) dataset.yaml for class names")
    parser.add_argument("--imgsz", "--img", "--img-size", nargs="+", type=int, default=[640], help="inference size h,w")
    parser.add_argument("--conf-thres", type=float, default=0.25, help="confidence threshold")
    parser.add_argument("--iou-thres", type=float, default=0.45, help="NMS IoU threshold")
    parser.add_argument("--max-det", type=int, default=1000, help="maximum detections per image")
    parser.add_argument("--device", default="", help="cuda device, i.e. 0 or 0,1,2,3 or cpu")
    parser.add_argument("--view-img", action="store_true", help="show results")
    parser.add_argument("--save-txt", action="store_true", help="save polygons to *.txt")
    parser.add_argument("--save-conf", action="store_true", help="save confidences in --save-txt labels")
    parser.add_argument("--save-crop", action="store_true", help="save cropped prediction boxes")
    parser.add_argument("--nosave", action="store_true", help="do not save images/videos")
    parser.add_argument("--classes", nargs="+", type=int, help="filter by class: --classes 0, or --classes 0 2 3")
    parser.add_argument("--agnostic-nms", action="store_true", help="class-agnostic NMS")
    parser.add_argument("--augment", action="store_true", help="augmented inference (boxes only: masks need the "
                                                              "single-scale prototypes, so it is refused)")
    parser.add_argument("--visualize", action="store_true", help="visualize features")
    parser.add_argument("--update", action="store_true", help="strip the optimizer from the .pt weights afterwards")
    parser.add_argument("--project", default=ROOT / "runs/predict-seg", help="save results to project/name")
    parser.add_argument("--name", default="exp", help="save results to project/name")
    parser.add_argument("--exist-ok", action="store_true", help="existing project/name ok, do not increment")
    parser.add_argument("--line-thickness", default=3, type=int, help="bounding box thickness (pixels)")
    parser.add_argument("--hide-labels", action="store_true", help="hide labels")
    parser.add_argument("--hide-conf", action="store_true", help="hide confidences")
    parser.add_argument("--half", action="store_true", help="use FP16 half-precision inference (CUDA)")
    parser.add_argument("--dnn", action="store_true", help="use OpenCV DNN for ONNX inference (not supported)")
    parser.add_argument("--vid-stride", type=int, default=1, help="video frame-rate stride")
    parser.add_argument("--retina-masks", action="store_true", help="whether to plot masks in native resolution")
    opt = parser.parse_args(argv)
    opt.imgsz = opt.imgsz * 2 if len(opt.imgsz) == 1 else opt.imgsz
    print_args(vars(opt), "segment/predict")
    return opt


def main(argv: list[str] | None = None) -> int:
    return exit_code(lambda: run(**vars(parse_opt(argv))))


if __name__ == "__main__":
    end_process(main())
