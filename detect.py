"""Run YOLOv5 detection on images, folders, globs, videos, .txt lists, webcams and streams.

Usage:
    python detect.py --weights runs/train/exp/weights/best.pt --source data/images
    python detect.py --weights yolov5s.pt --source video.mp4 --save-txt --save-conf --save-crop
    python detect.py --weights best.onnx --source 0          # webcam; also rtsp://, http:// stream URLs
    python detect.py --weights best.pt --backend openvino    # converted once (cached under --project), then run there
    python detect.py --weights best.pt --source big.jpg --slice 640 --slice-overlap 0.2  # small objects, large images

Weights: .pt (project or official YOLOv5 checkpoints), .torchscript, .onnx, OpenVINO folders and TensorRT .engine
files from export.py.
--slice N: sliced inference (utils/slicing.py): N px tiles overlapping by --slice-overlap plus the whole image, each
at --imgsz, boxes merged (--slice-merge greedy or nms).
Results go to runs/detect/exp{N}: annotated images and videos, labels/*.txt (class x y w h [conf], normalised)
and crops/<class>/*.jpg.
"""

import argparse
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

import numpy as np
import torch

from engine.prediction import (
    feature_map_dir,
    image_of_batch,
    load_model,
    log_summary,
    model_input,
    open_source,
    strip_weights,
)
from models.backends import DetectMultiBackend, default_dataset, fetch_weights, newest_trained_weights
from utils.allocator import keep_freed_memory
from utils.boxes import filter_detections, non_max_suppression, scale_boxes
from utils.dataloaders import LoadScreenshots
from utils.detection_output import DetectionWriter, count_string
from utils.general import (
    LOGGER,
    ROOT,
    UserError,
    end_process,
    exit_code,
    increment_path,
    print_args,
)
from utils.slicing import MERGES, Slicer, check_slice_settings
from utils.sources import LoadImages, LoadStreams, is_stream_source, list_source_files
from utils.torch_utils import time_sync


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
    project: str | Path = ROOT / "runs/detect",
    name: str = "exp",
    exist_ok: bool = False,
    line_thickness: int = 3,
    hide_labels: bool = False,
    hide_conf: bool = False,
    half: bool = False,
    dnn: bool = False,
    vid_stride: int = 1,
    backend: str | None = None,
    update: bool = False,
    slice_size: int | None = None,
    slice_overlap: float = 0.2,
    slice_merge: str = MERGES[0],
) -> Path:
    """Detect objects in ``source`` with ``weights``; returns the results folder (runs/detect/exp{N}). ``update``
    strips the optimizer from the .pt weights afterwards (utils.checkpoints.strip_optimizer), as official.
    ``slice_size``: sliced inference with tiles of that many pixels overlapping by ``slice_overlap``, merged by
    ``slice_merge`` (utils.slicing.Slicer)."""
    keep_freed_memory()  # no page faults for activation maps allocated anew at every pass (utils/allocator.py)
    weights = weights or newest_trained_weights()
    if isinstance(weights, (list, tuple)) and len(weights) == 1:
        weights = weights[0]
    source = str(source)
    if source.lower().startswith("screen"):
        LoadScreenshots(source)  # official's screen capture: a UserError saying it is not supported
    if not isinstance(imgsz, int) and len(imgsz) not in (1, 2):
        raise UserError(f"--imgsz {' '.join(map(str, imgsz))}: give one size (square) or two (height width)")
    if slice_size:
        check_slice_settings(slice_size, slice_overlap, slice_merge)
    stream = is_stream_source(source)
    files = None if stream else list_source_files(source)  # a bad source fails before the model loads
    fetch_weights(weights)  # a missing release name (yolov5s.pt) is downloaded, as official
    data = data or default_dataset(weights, fallback=None)  # class names: the dataset the weights were trained on

    model, imgsz = load_model(weights, imgsz, device, half=half, dnn=dnn, data=data, backend=backend, project=project)
    if model.segmentation:
        raise UserError(f"--weights {weights}: a segmentation model; run it with segment/predict.py")
    if not (0 <= conf_thres <= 1 and 0 <= iou_thres <= 1):
        raise UserError(f"--conf-thres {conf_thres} and --iou-thres {iou_thres} must both be between 0 and 1")
    if classes is not None:
        bad = [c for c in classes if not 0 <= int(c) < model.nc]
        if bad:
            raise UserError(f"--classes {bad}: the model has classes 0-{model.nc - 1}")
    dataset = open_source(source, files, model, imgsz, vid_stride)
    save_dir = increment_path(Path(project) / name, exist_ok=exist_ok, mkdir=True)
    if model.nms_in_graph:  # exported with --nms: the file made the detections; only the filters are left here
        LOGGER.info(f"NMS runs inside the model ({model.nms_in_graph}); --iou-thres and --agnostic-nms are its own")
        nms = partial(filter_detections, conf_thres=conf_thres, classes=classes, max_det=max_det)
    else:
        nms = partial(non_max_suppression, conf_thres=conf_thres, iou_thres=iou_thres, classes=classes,
                      agnostic=agnostic_nms, max_det=max_det)
    writer = DetectionWriter(save_dir, model.names, save_img=not nosave, save_txt=save_txt, save_conf=save_conf,
                             save_crop=save_crop, view_img=view_img, line_thickness=line_thickness,
                             hide_labels=hide_labels, hide_conf=hide_conf)
    slicer = None
    if slice_size:
        slicer = Slicer(partial(model, augment=augment), nms, imgsz, slice_size, slice_overlap, slice_merge,
                        iou_thres=iou_thres, agnostic=agnostic_nms, max_det=max_det, batch_size=16 if model.pt else 1,
                        device=model.device, half=model.fp16)
        LOGGER.info(f"Sliced inference: {slicer.describe()}, each at {imgsz[0]}x{imgsz[1]}")
    with writer:
        seen, dt = detect_all(model, dataset, nms, writer, augment=augment,
                              visualize_dir=save_dir if visualize else None, slicer=slicer)
    log_summary(source, dataset, seen, dt, imgsz, save_dir, writer.labels_saved if save_txt else None)
    if update:
        strip_weights(weights)
    return save_dir


def detect_all(model: DetectMultiBackend, dataset: LoadImages | LoadStreams, nms: Callable, writer: DetectionWriter,
               augment: bool = False, visualize_dir: Path | None = None,
               slicer: Slicer | None = None) -> tuple[int, list[float]]:
    """Run ``model`` and ``nms`` over ``dataset``, hand each image's detections to ``writer`` and log a line per
    batch. ``visualize_dir``: save feature maps there (not for streams). ``slicer``: detect on each original frame
    with sliced inference instead (its time, merging included, counts as inference). Returns (images seen,
    seconds spent [pre-processing, inference, NMS])."""
    stream = isinstance(dataset, LoadStreams)
    seen, dt = 0, [0.0, 0.0, 0.0]
    for path, im, im0s, vid_cap, s in dataset:
        t0 = time_sync()
        im = model_input(im, model)
        t1 = time_sync()
        vis_dir = feature_map_dir(visualize_dir, path, stream)
        with torch.inference_mode():
            if slicer is None:
                pred = model(im, augment=augment, visualize=vis_dir)
            else:  # the original BGR frames, in the RGB order the model takes; boxes come in their pixels
                pred = [slicer(np.ascontiguousarray(x[..., ::-1])) for x in (im0s if stream else [im0s])]
        t2 = time_sync()
        pred = nms(pred) if slicer is None else [p.clone() for p in pred]  # clones may be edited in place
        t3 = time_sync()
        dt = [dt[0] + t1 - t0, dt[1] + t2 - t1, dt[2] + t3 - t2]

        for i, det in enumerate(pred):
            seen += 1
            p, im0, frame, fps = image_of_batch(dataset, path, im0s, vid_cap, i)
            s += f"{i}: " if stream else ""
            s += "{:g}x{:g} ".format(*im.shape[2:]) if slicer is None else "{:g}x{:g} sliced ".format(*im0.shape[:2])
            if len(det):
                if slicer is None:
                    det[:, :4] = scale_boxes(im.shape[2:], det[:, :4], im0.shape)
                det[:, :4] = det[:, :4].round()
                s += count_string(det, model.names)
            else:
                s += "(no detections), "
            writer.write(p, im0, det, frame=frame, fps=fps, stream=i if stream else None)
        LOGGER.info(f"{s}{(t2 - t1) * 1e3:.1f}ms")
    return seen, dt


def parse_opt(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="YOLOv5 detection on images, videos and streams")
    parser.add_argument("--weights", nargs="+", type=str, default=None,
                        help="model path(s): .pt, .torchscript, .onnx, *_openvino_model, .engine (default: newest "
                             "runs/train/*/weights/best.pt)")
    parser.add_argument("--source", type=str, default=ROOT / "data/images",
                        help="file/dir/glob/.txt list/URL/webcam index (0)")
    parser.add_argument("--data", type=str, default=None, help="(optional) dataset.yaml for class names")
    parser.add_argument("--imgsz", "--img", "--img-size", nargs="+", type=int, default=[640], help="inference size h,w")
    parser.add_argument("--conf-thres", type=float, default=0.25, help="confidence threshold")
    parser.add_argument("--iou-thres", type=float, default=0.45, help="NMS IoU threshold")
    parser.add_argument("--max-det", type=int, default=1000, help="maximum detections per image")
    parser.add_argument("--device", default="", help="cuda device, i.e. 0 or 0,1,2,3 or cpu")
    parser.add_argument("--view-img", action="store_true", help="show results")
    parser.add_argument("--save-txt", action="store_true", help="save results to *.txt")
    parser.add_argument("--save-conf", action="store_true", help="save confidences in --save-txt labels")
    parser.add_argument("--save-crop", action="store_true", help="save cropped prediction boxes")
    parser.add_argument("--nosave", action="store_true", help="do not save images/videos")
    parser.add_argument("--classes", nargs="+", type=int, help="filter by class: --classes 0, or --classes 0 2 3")
    parser.add_argument("--agnostic-nms", action="store_true", help="class-agnostic NMS")
    parser.add_argument("--augment", action="store_true", help="augmented inference (flips and scales)")
    parser.add_argument("--visualize", action="store_true", help="visualize features")
    parser.add_argument("--update", action="store_true", help="strip the optimizer from the .pt weights afterwards")
    parser.add_argument("--project", default=ROOT / "runs/detect", help="save results to project/name")
    parser.add_argument("--name", default="exp", help="save results to project/name")
    parser.add_argument("--exist-ok", action="store_true", help="existing project/name ok, do not increment")
    parser.add_argument("--line-thickness", default=3, type=int, help="bounding box thickness (pixels)")
    parser.add_argument("--hide-labels", action="store_true", help="hide labels")
    parser.add_argument("--hide-conf", action="store_true", help="hide confidences")
    parser.add_argument("--half", action="store_true", help="use FP16 half-precision inference (CUDA)")
    parser.add_argument("--dnn", action="store_true", help="use OpenCV DNN for ONNX inference (not supported)")
    parser.add_argument("--vid-stride", type=int, default=1, help="video frame-rate stride")
    parser.add_argument("--backend", choices=("auto", "pytorch", "onnx", "openvino"), default=None,
                        help=".pt weights: convert once (cached by content hash under --project) and run there; "
                             "auto: the fastest exact runtime installed for this CPU")
    parser.add_argument("--slice", dest="slice_size", type=int, default=None,
                        help="sliced inference: tile size in pixels (tiles plus the whole image, boxes merged)")
    parser.add_argument("--slice-overlap", type=float, default=0.2, help="overlap of neighbouring tiles (fraction)")
    parser.add_argument("--slice-merge", choices=MERGES, default=MERGES[0],
                        help="merge of the tiles' boxes: greedy (SAHI's, by IoS) or nms (class-wise, --iou-thres)")
    opt = parser.parse_args(argv)
    opt.imgsz = opt.imgsz * 2 if len(opt.imgsz) == 1 else opt.imgsz
    print_args(vars(opt), "detect")
    return opt


def main(argv: list[str] | None = None) -> int:
    return exit_code(lambda: run(**vars(parse_opt(argv))))


if __name__ == "__main__":
    end_process(main())
