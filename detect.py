"""Run YOLOv5 detection on images, folders, globs, videos, .txt lists, webcams and streams.

Usage:
    python detect.py --weights runs/train/exp/weights/best.pt --source data/images
    python detect.py --weights yolov5s.pt --source video.mp4 --save-txt --save-conf --save-crop
    python detect.py --weights best.onnx --source 0          # webcam; also rtsp://, http:// stream URLs
    python detect.py --weights best.pt --backend openvino    # converted once (runs/backend-cache), then run there

Weights: .pt (project or official YOLOv5 checkpoints), .torchscript, .onnx, OpenVINO folders and TensorRT .engine
files from export.py.
Results go to runs/detect/exp{N}: annotated images and videos, labels/*.txt (class x y w h [conf], normalised)
and crops/<class>/*.jpg.
"""

import argparse
import sys
from collections import Counter
from pathlib import Path

import cv2
import torch

from models.export import backend_weights
from models.backends import DetectMultiBackend, newest_trained_weights
from utils.boxes import non_max_suppression, scale_boxes, xyxy2xywh
from utils.general import LOGGER, ROOT, UserError, check_img_size, colorstr, exit_code, increment_path, print_args
from utils.general import safe_filename
from utils.plots import Annotator, colors, save_one_box
from utils.sources import LoadImages, LoadStreams, is_stream_source, list_source_files
from utils.torch_utils import select_device, time_sync


def label_lines(det, im0_shape, save_conf=False):
    """YOLO label lines 'cls x y w h [conf]' (normalised xywh) for detections det (n, 6) in original pixels."""
    gn = torch.tensor(im0_shape)[[1, 0, 1, 0]]  # w, h, w, h
    lines = []
    for *xyxy, conf, cls in det.tolist():
        xywh = (xyxy2xywh(torch.tensor(xyxy).view(1, 4)) / gn).view(-1).tolist()
        values = (int(cls), *xywh, conf) if save_conf else (int(cls), *xywh)
        lines.append(" ".join(f"{v:g}" for v in values))
    return lines


def count_string(det, names):
    """'2 persons, 1 bus, ' from detections (n, 6)."""
    counts = Counter(int(c) for c in det[:, 5].tolist())
    return "".join(f"{n} {names[c]}{'s' * (n > 1)}, " for c, n in sorted(counts.items()))


class OutputNames:
    """Output stem of each source file, a plain file name unique within a run: the first a.jpg writes a.jpg /
    labels/a.txt, a later source with the same stem (other/a.jpg, a.png) writes a_2.*, so no result overwrites
    another's."""

    def __init__(self):
        self.stems, self.taken = {}, set()

    def __call__(self, path):
        key = str(path)
        if key not in self.stems:
            base = stem = safe_filename(Path(key).stem)  # nothing a source names leaves the run folder
            n = 2
            while stem in self.taken:
                stem, n = f"{base}_{n}", n + 1
            self.taken.add(stem)
            self.stems[key] = stem
        return self.stems[key]


class VideoSaver:
    """One cv2.VideoWriter per output path (mp4v), opened on the first frame and released by ``close``."""

    def __init__(self):
        self.writers = {}

    def write(self, path, frame, fps):
        path = str(Path(path).with_suffix(".mp4"))
        if path not in self.writers:
            h, w = frame.shape[:2]
            self.writers[path] = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
        self.writers[path].write(frame)

    def close(self):
        for writer in self.writers.values():
            writer.release()
        self.writers = {}


def run(
    weights=None,
    source=ROOT / "data/images",
    data=None,
    imgsz=(640, 640),
    conf_thres=0.25,
    iou_thres=0.45,
    max_det=1000,
    device="",
    view_img=False,
    save_txt=False,
    save_conf=False,
    save_crop=False,
    nosave=False,
    classes=None,
    agnostic_nms=False,
    augment=False,
    visualize=False,
    project=ROOT / "runs/detect",
    name="exp",
    exist_ok=False,
    line_thickness=3,
    hide_labels=False,
    hide_conf=False,
    half=False,
    dnn=False,
    vid_stride=1,
    backend=None,
):
    """Detect objects in ``source`` with ``weights``; returns the results folder (runs/detect/exp{N})."""
    weights = weights or newest_trained_weights()
    if isinstance(weights, (list, tuple)) and len(weights) == 1:
        weights = weights[0]
    source = str(source)
    if not isinstance(imgsz, int) and len(imgsz) not in (1, 2):
        raise UserError(f"--imgsz {' '.join(map(str, imgsz))}: give one size (square) or two (height width)")
    stream = is_stream_source(source)
    files = None if stream else list_source_files(source)  # a bad source fails before the model loads
    save_img = not nosave

    device = select_device(device)
    if half and device.type != "cuda":
        LOGGER.warning("WARNING: --half needs a CUDA device; running in float32")
    imgsz = [imgsz] * 2 if isinstance(imgsz, int) else list(imgsz) * (2 if len(imgsz) == 1 else 1)
    weights = backend_weights(weights, backend, check_img_size(imgsz))
    model = DetectMultiBackend(weights, device=device, dnn=dnn, data=data, fp16=half)
    stride, names = model.stride, model.names
    if model.imgsz and tuple(imgsz) != model.imgsz:
        h, w = model.imgsz
        LOGGER.info(f"{Path(str(weights)).name} was exported for {h}x{w} inputs: using --imgsz {h} {w}")
        imgsz = list(model.imgsz)
    imgsz = check_img_size(imgsz, s=stride)
    if not (0 <= conf_thres <= 1 and 0 <= iou_thres <= 1):
        raise UserError(f"--conf-thres {conf_thres} and --iou-thres {iou_thres} must both be between 0 and 1")
    if classes is not None:
        bad = [c for c in classes if not 0 <= int(c) < model.nc]
        if bad:
            raise UserError(f"--classes {bad}: the model has classes 0-{model.nc - 1}")

    # a fixed-size exported model needs the full letterbox size; .pt models take the minimum stride rectangle
    auto = model.imgsz is None
    if stream:
        dataset = LoadStreams(source, img_size=imgsz, stride=stride, auto=auto, vid_stride=vid_stride)
    else:
        dataset = LoadImages(files, img_size=imgsz, stride=stride, auto=auto, vid_stride=vid_stride)
    save_dir = increment_path(Path(project) / name, exist_ok=exist_ok, mkdir=True)
    if save_txt:
        (save_dir / "labels").mkdir(exist_ok=True)
    output_stem = OutputNames()

    bs = len(dataset) if stream else 1
    model.warmup(imgsz=(1 if model.pt else bs, 3, *imgsz))
    videos = VideoSaver()
    seen, n_labels, dt = 0, 0, [0.0, 0.0, 0.0]
    try:
        for path, im, im0s, vid_cap, s in dataset:
            t0 = time_sync()
            im = torch.from_numpy(im).to(device)
            im = (im.half() if model.fp16 else im.float()) / 255
            if im.ndim == 3:
                im = im[None]
            t1 = time_sync()
            vis_dir = False
            if visualize and not stream:
                vis_dir = increment_path(save_dir / safe_filename(Path(path).stem), mkdir=True)
            with torch.inference_mode():
                pred = model(im, augment=augment, visualize=vis_dir)
            t2 = time_sync()
            pred = non_max_suppression(pred, conf_thres, iou_thres, classes, agnostic_nms, max_det=max_det)
            t3 = time_sync()
            dt = [dt[0] + t1 - t0, dt[1] + t2 - t1, dt[2] + t3 - t2]

            for i, det in enumerate(pred):
                seen += 1
                if stream:
                    p, im0, frame = Path(path[i]), im0s[i].copy(), dataset.count
                    s += f"{i}: "
                    fps = dataset.fps[i]
                else:
                    p, im0, frame = Path(path), im0s.copy(), dataset.frame
                    fps = (vid_cap.get(cv2.CAP_PROP_FPS) if vid_cap else 0) or 30.0  # some containers report 0
                is_image = not stream and dataset.mode == "image"
                out_stem = output_stem(p)  # unique within the run and a plain file name
                save_path = save_dir / safe_filename(f"{out_stem}{p.suffix}")
                stem = out_stem if is_image else f"{out_stem}_{frame}"
                s += "{:g}x{:g} ".format(*im.shape[2:])
                imc = im0.copy() if save_crop else im0
                annotator = Annotator(im0, line_width=line_thickness)
                if len(det):
                    det[:, :4] = scale_boxes(im.shape[2:], det[:, :4], im0.shape).round()
                    s += count_string(det, names)
                    if save_txt:
                        lines = label_lines(det, im0.shape[:2], save_conf)
                        (save_dir / "labels" / f"{stem}.txt").write_text("\n".join(lines) + "\n")
                        n_labels += 1
                    for *xyxy, conf, cls in reversed(det.tolist()):
                        c = int(cls)
                        if save_img or view_img:
                            label = "" if hide_labels else names[c] if hide_conf else f"{names[c]} {conf:.2f}"
                            annotator.box_label(xyxy, label, color=colors(c, True))
                        if save_crop:
                            crop_dir = save_dir / "crops" / safe_filename(names[c], default=str(c))
                            save_one_box(xyxy, imc, file=crop_dir / f"{stem}.jpg", BGR=True)
                else:
                    s += "(no detections), "
                im0 = annotator.result()
                if view_img:
                    view_img = show_frame(str(p), im0)
                if save_img:
                    if is_image:
                        cv2.imwrite(str(save_path), im0)
                    else:
                        stream_path = save_dir / safe_filename(f"{p.stem or 'stream'}_{i}")
                        videos.write(save_path if not stream else stream_path, im0, fps)
            LOGGER.info(f"{s}{(t2 - t1) * 1e3:.1f}ms")
    finally:
        videos.close()

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
    if save_txt:
        summary += f", {n_labels} label file(s) saved to {save_dir / 'labels'}"
    LOGGER.info(f"{summary}\nResults saved to {colorstr('bold', save_dir)}")
    return save_dir


def show_frame(name, im):
    """Show a frame in a window; returns False (stop trying) where OpenCV has no GUI support."""
    try:
        cv2.imshow(name, im)
        cv2.waitKey(1)
        return True
    except cv2.error:
        LOGGER.warning("WARNING: --view-img needs an OpenCV build with GUI support; not showing results")
        return False


def parse_opt(argv=None):
    parser = argparse.ArgumentParser(description="YOLOv5 detection on images, videos and streams")
    parser.add_argument("--weights", nargs="+", type=str, default=None,
                        help="model path(s): .pt, .torchscript, .onnx, *_openvino_model, .engine (default: newest runs/train/*/weights/best.pt)")
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
                        help=".pt weights: convert once (cached by content hash in runs/backend-cache) and run there")
    opt = parser.parse_args(argv)
    opt.imgsz = opt.imgsz * 2 if len(opt.imgsz) == 1 else opt.imgsz
    print_args(vars(opt), "detect")
    return opt


def main(argv=None):
    return exit_code(lambda: run(**vars(parse_opt(argv))))


if __name__ == "__main__":
    sys.exit(main())
