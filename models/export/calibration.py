"""INT8 calibration images: a spread of the dataset's train split, letterboxed as at inference. No labels."""

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from utils.dataloaders import list_image_files
from utils.dataset_yaml import check_dataset
from utils.general import LOGGER, UserError, colorstr
from utils.sources import LoadImages

DEFAULT_CALIB = 300  # INT8 calibration images from the train split


def calibration_images(data: str | Path, imgsz: Sequence[int], stride: int = 32,
                       n: int = DEFAULT_CALIB) -> list[np.ndarray]:
    """Up to ``n`` images (1, 3, h, w) float32 in 0-1 from the train split of ``data``, letterboxed to ``imgsz`` as
    detect.py letterboxes for a fixed-size model, spread evenly over the split. Labels are not read."""
    if n < 1:
        raise UserError(f"--calib {n}: give at least 1 calibration image")
    files = list_image_files(check_dataset(data)["train"], prefix="--int8 calibration: ")
    picked = [files[i] for i in np.linspace(0, len(files) - 1, min(n, len(files))).round().astype(int)]
    images = [im for _, im, *_ in LoadImages(picked, img_size=list(imgsz), stride=stride, auto=False)]
    LOGGER.info(f"{colorstr('INT8:')} {len(images)} calibration images from {data} (train split, {len(files)} images)")
    return [(im[None].astype(np.float32) / 255.0) for im in images]
