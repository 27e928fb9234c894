"""Shared phases of the prediction scripts (detect.py, segment/predict.py): load the weights at a valid input size,
open the source, run the model over it (``segment_all`` for segmentation weights: boxes, masks and polygons per
image), and the closing log. Scripts add argparse and their writer; nothing here is specific to one script."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np
import torch

from models.backends import DetectMultiBackend
from models.export import backend_weights
from utils.boxes import scale_boxes
from utils.checkpoints import strip_optimizer
from utils.detection_output import count_string
from utils.general import LOGGER, UserError, check_img_size, colorstr, increment_path, safe_filename
from utils.masks import masks_to_polygons, process_mask, process_mask_native, scale_masks, scale_polygons
from utils.segment_output import SegmentationWriter
from utils.sources import LoadImages, LoadStreams
from utils.torch_utils import select_device, time_sync


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
    weights = backend_weights(weights, backend, check_img_size(imgsz), project=project, device_type=device.type)
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


def model_input(im: np.ndarray, model: DetectMultiBackend) -> torch.Tensor:
    """A loader's letterboxed uint8 image(s) (C, H, W) or (N, C, H, W) as the model's 0-1 float batch."""
    x = torch.from_numpy(im).to(model.device)
    x = (x.half() if model.fp16 else x.float()) / 255
    return x[None] if x.ndim == 3 else x


def feature_map_dir(visualize_dir: Path | None, path: str, stream: bool) -> Path | bool:
    """--visualize: a new folder for this image's feature maps (none for streams), else False."""
    if not visualize_dir or stream:
        return False
    return increment_path(visualize_dir / safe_filename(Path(path).stem), mkdir=True)


def image_of_batch(dataset: LoadImages | LoadStreams, path: str | list[str], im0s: np.ndarray | list[np.ndarray],
                   vid_cap: cv2.VideoCapture | None, i: int) -> tuple[str, np.ndarray, int | None, float]:
    """Image ``i`` of a loader's batch: (its path, original frame, video frame number or None, frames per second)."""
    if isinstance(dataset, LoadStreams):
        return path[i], im0s[i], dataset.count, dataset.fps[i]
    frame = None if dataset.mode == "image" else dataset.frame
    return path, im0s, frame, (vid_cap.get(cv2.CAP_PROP_FPS) if vid_cap else 0) or 30.0  # some containers report 0


def segment_all(model: DetectMultiBackend, dataset: LoadImages | LoadStreams, nms: Callable,
                writer: SegmentationWriter, retina_masks: bool = False, augment: bool = False,
                visualize_dir: Path | None = None) -> tuple[int, list[float]]:
    """Run a segmentation ``model`` and ``nms`` (with nm) over ``dataset``; per image, masks and polygons in the
    original image's pixels go to ``writer``. ``retina_masks``: prototypes upsampled to the original image before
    thresholding (official --retina-masks); else masks at the letterboxed input size, mapped back.
    ``visualize_dir``: save feature maps there (not for streams). Returns (images seen, seconds [pre-processing,
    inference, NMS + masks])."""
    if not model.segmentation:
        raise UserError("these weights are a detection model (no mask prototypes); use detect.py, or segmentation "
                        "weights (e.g. trained with segment/train.py)")
    stream = isinstance(dataset, LoadStreams)
    seen, dt = 0, [0.0, 0.0, 0.0]
    for path, im, im0s, vid_cap, s in dataset:
        t0 = time_sync()
        im = model_input(im, model)
        t1 = time_sync()
        vis_dir = feature_map_dir(visualize_dir, path, stream)
        with torch.inference_mode():
            pred, proto = model(im, augment=augment, visualize=vis_dir)
        t2 = time_sync()
        pred = nms(pred, nm=proto.shape[1])
        for i, det in enumerate(pred):
            seen += 1
            p, im0, frame, fps = image_of_batch(dataset, path, im0s, vid_cap, i)
            s += f"{i}: " if stream else ""
            s += "{:g}x{:g} ".format(*im.shape[2:])
            h0, w0 = im0.shape[:2]
            if retina_masks:
                det[:, :4] = scale_boxes(im.shape[2:], det[:, :4], im0.shape).round()
                masks = process_mask_native(proto[i], det[:, 6:], det[:, :4], (h0, w0))
                polygons = [scale_polygons((h0, w0), x, (h0, w0), normalize=True) for x in masks_to_polygons(masks)]
            else:
                masks = process_mask(proto[i], det[:, 6:], det[:, :4], im.shape[2:], upsample=True)
                polygons = [scale_polygons(im.shape[2:], x, (h0, w0), normalize=True)
                            for x in masks_to_polygons(masks)]
                masks = scale_masks(masks, (h0, w0))
                det[:, :4] = scale_boxes(im.shape[2:], det[:, :4], im0.shape).round()
            det = det[:, :6]
            s += count_string(det, model.names) if len(det) else "(no detections), "
            writer.write_instances(p, im0, det, masks.bool(), polygons, frame=frame, fps=fps,
                                   stream=i if stream else None)
        dt = [dt[0] + t1 - t0, dt[1] + t2 - t1, dt[2] + time_sync() - t2]
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
