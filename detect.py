"""Run YOLOv5 detection on images, folders, globs, videos, .txt lists, webcams and streams.

Usage:
    python detect.py --weights runs/train/exp/weights/best.pt --source data/images
    python detect.py --weights yolov5s.pt --source video.mp4 --save-txt --save-conf --save-crop
    python detect.py --weights best.onnx --source 0          # webcam; also rtsp://, http:// stream URLs
    python detect.py --weights best.pt --backend openvino    # converted once (cached under --project), then run there

Weights: .pt (project or official YOLOv5 checkpoints), .torchscript, .onnx, OpenVINO folders and TensorRT .engine
files from export.py.
Results go to runs/detect/exp{N}: annotated images and videos, labels/*.txt (class x y w h [conf], normalised)
and crops/<class>/*.jpg.
"""

import argparse
import sys
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

import cv2
import torch

from models.backends import DetectMultiBackend, default_dataset, fetch_weights, newest_trained_weights
from models.export import backend_weights
from utils.boxes import filter_detections, non_max_suppression, scale_boxes
from utils.checkpoints import strip_optimizer
from utils.dataloaders import LoadScreenshots
from utils.detection_output import DetectionWriter, count_string
from utils.general import (
    LOGGER,
    ROOT,
    UserError,
    check_img_size,
    colorstr,
    exit_code,
    increment_path,
    print_args,
    safe_filename,
)
from utils.sources import LoadImages, LoadStreams, is_stream_source, list_source_files
from utils.torch_utils import select_device, time_sync


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
) -> Path:
    """Detect objects in ``source`` with ``weights``; returns the results folder (runs/detect/exp{N}). ``update``
    strips the optimizer from the .pt weights afterwards (utils.checkpoints.strip_optimizer), as official."""
    weights = weights or newest_trained_weights()
    if isinstance(weights, (list, tuple)) and len(weights) == 1:
        weights = weights[0]
    source = str(source)
    if source.lower().startswith("screen"):
        LoadScreenshots(source)  # official's screen capture: a UserError saying it is not supported
    if not isinstance(imgsz, int) and len(imgsz) not in (1, 2):
        raise UserError(f"--imgsz {' '.join(map(str, imgsz))}: give one size (square) or two (height width)")
    stream = is_stream_source(source)
    files = None if stream else list_source_files(source)  # a bad source fails before the model loads
    fetch_weights(weights)  # a missing release name (yolov5s.pt) is downloaded, as official
    data = data or default_dataset(weights, fallback=None)  # class names: the dataset the weights were trained on

    model, imgsz = load_model(weights, imgsz, device, half=half, dnn=dnn, data=data, backend=backend, project=project)
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
    with writer:
        seen, dt = detect_all(model, dataset, nms, writer, augment=augment,
                              visualize_dir=save_dir if visualize else None)
    log_summary(source, dataset, seen, dt, imgsz, save_dir, writer.labels_saved if save_txt else None)
    if update:
        strip_weights(weights)
    return save_dir


def strip_weights(weights: str | Path | Sequence[str | Path]) -> None:
    """``--update``: strip the optimizer from each of this project's .pt checkpoints in ``weights``; other files
    (exported models, official YOLOv5 pickles) are left as they are, with a warning."""
    for w in [weights] if isinstance(weights, (str, Path)) else weights:
        if Path(w).suffix != ".pt":
            LOGGER.warning(f"WARNING: --update: {w} is not a .pt checkpoint; left as it is")
            continue
        try:
            strip_optimizer(w)
        except UserError as e:
            LOGGER.warning(f"WARNING: --update: {e}")


def load_model(weights: str | Path | Sequence[str | Path], imgsz: int | Sequence[int], device: str,
               half: bool = False, dnn: bool = False, data: str | Path | None = None,
               backend: str | None = None, project: str | Path | None = None) -> tuple[DetectMultiBackend, list[int]]:
    """The model on its device (converted first with ``backend``) and the input size to run it at: a fixed-size
    exported model's own size, else ``imgsz`` rounded to a multiple of the stride."""
    device = select_device(device)
    if half and device.type != "cuda":
        LOGGER.warning("WARNING: --half needs a CUDA device; running in float32")
    imgsz = [imgsz] * 2 if isinstance(imgsz, int) else list(imgsz) * (2 if len(imgsz) == 1 else 1)
    weights = backend_weights(weights, backend, check_img_size(imgsz), project=project)
    model = DetectMultiBackend(weights, device=device, dnn=dnn, data=data, fp16=half)
    if model.imgsz and tuple(imgsz) != model.imgsz:
        h, w = model.imgsz
        LOGGER.info(f"{Path(str(weights)).name} was exported for {h}x{w} inputs: using --imgsz {h} {w}")
        imgsz = list(model.imgsz)
    return model, check_img_size(imgsz, s=model.stride)


def open_source(source: str, files: list[str] | None, model: DetectMultiBackend, imgsz: list[int],
                vid_stride: int = 1) -> LoadImages | LoadStreams:
    """The images, videos or streams of ``source`` (``files``: its listed files, None for streams), letterboxed
    for ``model``, after a warm-up pass at the batch size they come in."""
    # a fixed-size exported model needs the full letterbox size; .pt models take the minimum stride rectangle
    auto = model.imgsz is None
    if files is None:
        dataset = LoadStreams(source, img_size=imgsz, stride=model.stride, auto=auto, vid_stride=vid_stride)
    else:
        dataset = LoadImages(files, img_size=imgsz, stride=model.stride, auto=auto, vid_stride=vid_stride)
    bs = len(dataset) if files is None else 1
    model.warmup(imgsz=(1 if model.pt else bs, 3, *imgsz))
    return dataset


def detect_all(model: DetectMultiBackend, dataset: LoadImages | LoadStreams, nms: Callable, writer: DetectionWriter,
               augment: bool = False, visualize_dir: Path | None = None) -> tuple[int, list[float]]:
    """Run ``model`` and ``nms`` over ``dataset``, hand each image's detections to ``writer`` and log a line per
    batch. ``visualize_dir``: save feature maps there (not for streams). Returns (images seen, seconds spent
    [pre-processing, inference, NMS])."""
    stream = isinstance(dataset, LoadStreams)
    seen, dt = 0, [0.0, 0.0, 0.0]
    for path, im, im0s, vid_cap, s in dataset:
        t0 = time_sync()
        im = torch.from_numpy(im).to(model.device)
        im = (im.half() if model.fp16 else im.float()) / 255
        if im.ndim == 3:
            im = im[None]
        t1 = time_sync()
        vis_dir = False
        if visualize_dir and not stream:
            vis_dir = increment_path(visualize_dir / safe_filename(Path(path).stem), mkdir=True)
        with torch.inference_mode():
            pred = model(im, augment=augment, visualize=vis_dir)
        t2 = time_sync()
        pred = nms(pred)
        t3 = time_sync()
        dt = [dt[0] + t1 - t0, dt[1] + t2 - t1, dt[2] + t3 - t2]

        for i, det in enumerate(pred):
            seen += 1
            if stream:
                p, im0, frame, fps = path[i], im0s[i], dataset.count, dataset.fps[i]
                s += f"{i}: "
            else:
                p, im0 = path, im0s
                frame = None if dataset.mode == "image" else dataset.frame
                fps = (vid_cap.get(cv2.CAP_PROP_FPS) if vid_cap else 0) or 30.0  # some containers report 0
            s += "{:g}x{:g} ".format(*im.shape[2:])
            if len(det):
                det[:, :4] = scale_boxes(im.shape[2:], det[:, :4], im0.shape).round()
                s += count_string(det, model.names)
            else:
                s += "(no detections), "
            writer.write(p, im0, det, frame=frame, fps=fps, stream=i if stream else None)
        LOGGER.info(f"{s}{(t2 - t1) * 1e3:.1f}ms")
    return seen, dt


def log_summary(source: str, dataset: LoadImages | LoadStreams, seen: int, dt: list[float], imgsz: list[int],
                save_dir: Path, labels_saved: int | None = None) -> None:
    """The closing log: speed per image, images processed and skipped, label files (``labels_saved``, None
    without --save-txt) and the results folder. No image read at all is a UserError."""
    skipped = getattr(dataset, "skipped", [])
    if not seen:
        raise UserError(f"--source {source}: none of the {len(skipped)} file(s) could be read")
    speeds = tuple(x / seen * 1e3 for x in dt)
    LOGGER.info(
        f"Speed: %.1fms pre-process, %.1fms inference, %.1fms NMS per image at shape {(1, 3, *imgsz)}" % speeds
    )
    summary = f"{seen} image(s) processed"
    if skipped:
        summary += f", {len(skipped)} unreadable file(s) skipped"
    if labels_saved is not None:
        summary += f", {labels_saved} label file(s) saved to {save_dir / 'labels'}"
    LOGGER.info(f"{summary}\nResults saved to {colorstr('bold', save_dir)}")


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
    parser.add_argument("--backend", choices=("pytorch", "onnx", "openvino"), default=None,
                        help=".pt weights: convert once (cached by content hash under --project) and run there")
    opt = parser.parse_args(argv)
    opt.imgsz = opt.imgsz * 2 if len(opt.imgsz) == 1 else opt.imgsz
    print_args(vars(opt), "detect")
    return opt


def main(argv: list[str] | None = None) -> int:
    return exit_code(lambda: run(**vars(parse_opt(argv))))


if __name__ == "__main__":
    sys.exit(main())
