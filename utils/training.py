"""Training helpers: optimizer parameter groups, learning-rate schedule and warmup, early stopping, class and
image weights from labels (YOLOv5's rules)."""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import Dataset

from utils.general import LOGGER, UserError, colorstr, warn_once

NBS = 64  # nominal batch size: gradients are accumulated up to it


def build_optimizer(
    model: nn.Module, name: str = "SGD", lr: float = 0.001, momentum: float = 0.9, decay: float = 1e-5
) -> torch.optim.Optimizer:
    """Optimizer with three parameter groups: 0 biases (no decay), 1 conv/linear weights (decay ``decay``),
    2 normalisation-layer weights (no decay). Adam/AdamW use ``momentum`` as beta1; SGD is Nesterov."""
    biases, weights, norm_weights = [], [], []
    norm_types = tuple(v for k, v in vars(nn).items() if "Norm" in k and isinstance(v, type))
    for module in model.modules():
        for pname, p in module.named_parameters(recurse=False):
            if pname == "bias":
                biases.append(p)
            elif pname == "weight" and isinstance(module, norm_types):
                norm_weights.append(p)
            else:
                weights.append(p)
    if name == "Adam":
        optimizer = torch.optim.Adam(biases, lr=lr, betas=(momentum, 0.999))
    elif name == "AdamW":
        optimizer = torch.optim.AdamW(biases, lr=lr, betas=(momentum, 0.999), weight_decay=0.0)
    elif name == "SGD":
        optimizer = torch.optim.SGD(biases, lr=lr, momentum=momentum, nesterov=True, **sgd_kernel(model))
    else:
        raise UserError(f"--optimizer {name} is not supported; choose SGD, Adam or AdamW")
    optimizer.add_param_group({"params": weights, "weight_decay": decay})
    optimizer.add_param_group({"params": norm_weights, "weight_decay": 0.0})
    for group in optimizer.param_groups:
        group["initial_lr"] = lr
    LOGGER.info(
        f"{colorstr('optimizer:')} {name}(lr={lr}) with parameter groups {len(norm_weights)} weight(decay=0.0), "
        f"{len(weights)} weight(decay={decay}), {len(biases)} bias"
    )
    return optimizer


def sgd_kernel(model: nn.Module) -> dict:
    """SGD's fused CPU kernel (one pass per parameter) for a model on the CPU, where torch otherwise steps each
    tensor with several separate ops from Python: the same updates (bit for bit on AVX-512 builds, within 1 ulp on
    AVX2 ones, where the kernel's multiply-add rounds once; tests/test_train.py), several times faster for yolov5n's
    177 tensors. Elsewhere torch's own choice (foreach on CUDA; a GradScaler'd fp16 step stays on that path)."""
    return {"fused": True} if all(p.device.type == "cpu" for p in model.parameters()) else {}


def lr_lambda(epochs: int, lrf: float, cos_lr: bool = False) -> Callable[[float], float]:
    """Learning-rate factor of an epoch: linear from 1 to ``lrf`` over ``epochs``, or a cosine one-cycle."""
    if cos_lr:
        return lambda x: ((1 - math.cos(x * math.pi / epochs)) / 2) * (lrf - 1) + 1
    return lambda x: (1 - x / epochs) * (1.0 - lrf) + lrf


def set_epoch_lr(optimizer: torch.optim.Optimizer, lf: Callable[[float], float], epoch: int) -> None:
    """Scheduled learning rate of every group for ``epoch``: initial_lr * lf(epoch - 1), lf(0) for epoch 0.

    The one-epoch lag is official YOLOv5's schedule: its LambdaLR is stepped at each epoch's end after being set
    back to last_epoch = start_epoch - 1, so epoch e trains at lf(e - 1) once warmup is over (warmup's targets
    use lf(epoch)). Measured: lr0 0.01, 10 epochs, warmup 100 iterations, 24 per epoch: epochs 4 and 5 both at
    0.00604. Without the lag the last third of a 30-epoch run trained at down to 0.57x official's rate and its mAP
    ended ~0.04 lower (benchmarks/results/train_avx2.md)."""
    for group in optimizer.param_groups:
        group["lr"] = group["initial_lr"] * lf(max(epoch - 1, 0))


def warmup(
    optimizer: torch.optim.Optimizer,
    ni: int,
    nw: int,
    epoch: int,
    lf: Callable[[float], float],
    hyp: dict,
    batch_size: int,
) -> int:
    """Warm up iteration ``ni`` of ``nw``: learning rates rise linearly to their scheduled values (the bias group
    0 falls from warmup_bias_lr), momentum rises from warmup_momentum, and the gradient accumulation grows from
    1 to NBS / batch_size. Returns the accumulation (number of batches per optimizer step)."""
    xi = [0, nw]
    for j, group in enumerate(optimizer.param_groups):
        start = hyp["warmup_bias_lr"] if j == 0 else 0.0
        group["lr"] = float(np.interp(ni, xi, [start, group["initial_lr"] * lf(epoch)]))
        if "momentum" in group:  # SGD only; Adam keeps beta1
            group["momentum"] = float(np.interp(ni, xi, [hyp["warmup_momentum"], hyp["momentum"]]))
    return max(1, int(np.interp(ni, xi, [1, NBS / batch_size]).round()))


class EarlyStopping:
    """Stop when the fitness has not improved for ``patience`` epochs."""

    def __init__(self, patience: int | None = 30) -> None:
        self.best_fitness = 0.0
        self.best_epoch = 0
        self.patience = patience or float("inf")

    def __call__(self, epoch: int, fitness: float) -> bool:
        if fitness >= self.best_fitness:
            self.best_epoch = epoch
            self.best_fitness = fitness
        stop = (epoch - self.best_epoch) >= self.patience
        if stop:
            LOGGER.info(
                f"Stopping training early as no improvement observed in last {self.patience} epochs. "
                f"Best results observed at epoch {self.best_epoch}, best model saved as best.pt.\n"
                f"To update EarlyStopping(patience={self.patience}) pass a new patience value, "
                f"i.e. `python train.py --patience 300` or use `--patience 0` to disable EarlyStopping."
            )
        return stop


def labels_to_class_weights(labels: Sequence[np.ndarray], nc: int = 80) -> torch.Tensor:
    """Inverse class frequencies (nc,) of a list of (n, 5) label arrays, normalised to sum 1."""
    classes = np.concatenate([x[:, 0] for x in labels if len(x)] or [np.zeros(0)]).astype(int)
    counts = np.bincount(classes, minlength=nc)[:nc].astype(np.float64)
    counts[counts == 0] = 1  # absent classes weigh like a single label
    weights = 1 / counts
    return torch.from_numpy(weights / weights.sum()).float()


def labels_to_image_weights(
    labels: Sequence[np.ndarray], nc: int, class_weights: torch.Tensor | np.ndarray
) -> np.ndarray:
    """Sampling weight of each image: the sum of its labels' class weights."""
    counts = np.array([np.bincount(x[:, 0].astype(int), minlength=nc)[:nc] for x in labels])
    return (np.asarray(class_weights).reshape(1, nc) * counts).sum(1)


def random_rescale(imgs: torch.Tensor, imgsz: int, gs: int) -> torch.Tensor:
    """Multi-scale training: resize the batch to a random multiple of ``gs`` in [0.5, 1.5] x imgsz, at least
    2 * gs (at gs the deepest feature map is 1x1, and BatchNorm of a 1-image batch on it fails)."""
    size = max(random.randrange(int(imgsz * 0.5), int(imgsz * 1.5) + gs) // gs * gs, 2 * gs)
    factor = size / max(imgs.shape[2:])
    if factor != 1:
        new_shape = [math.ceil(x * factor / gs) * gs for x in imgs.shape[2:]]
        imgs = nn.functional.interpolate(imgs, size=new_shape, mode="bilinear", align_corners=False)
    return imgs


def train_cache(cache: str | None, device: torch.device) -> str | None:
    """The training loader's image cache for --cache ``cache``: none for val/off; unset on the CPU 'auto' (RAM when
    the decoded set is small, see LoadImagesAndLabels), as the decoding would take cores from the training."""
    if cache in ("val", "off"):
        return None
    if cache is None and device.type == "cpu":
        return "auto"
    return cache


def resample_images(dataset: Dataset, nc: int, class_weights: torch.Tensor | np.ndarray) -> None:
    """--image-weights: draw this epoch's images with probability proportional to their rare-class content."""
    if not hasattr(dataset, "indices"):
        warn_once("WARNING: --image-weights is not supported by this dataset; sampling uniformly")
        return
    iw = labels_to_image_weights(dataset.labels, nc=nc, class_weights=class_weights)
    if not iw.sum() > 0:  # no labels at all: nothing to weigh by
        warn_once("WARNING: --image-weights: the training images have no labels; sampling uniformly")
        return
    dataset.indices = random.choices(range(dataset.n), weights=iw, k=dataset.n)
