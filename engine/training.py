"""The training engine: the phases train.py and segment/train.py run, with the task (detection, segmentation) as
a parameter.

Training reads top to bottom as phases (``train``): ``setup`` builds a TrainState once (``build_model``,
``build_optimization``, ``build_data``, then EMA, resume state and loss), then per epoch ``train_one_epoch`` and
``end_epoch`` (validate, log, checkpoint, early stop), and ``finish`` (strip the checkpoints, validate best.pt,
plots). The events of utils/callbacks.py fire along the way; the loggers of utils/loggers/ listen to them.
``main(opt, callbacks, task)`` is a whole run from parsed flags (new, resumed or ``--evolve``); ``make_parser``
gives the official flags, to which a task's script adds its own.

What differs between tasks is one ``TrainTask`` (model class, loaders, loss, evaluation, result columns): DETECT
here; segment/train.py defines SEGMENT. The engine sits between the scripts and models/ (it builds models and
reads utils/); scripts import it, it imports no script."""

import argparse
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn as nn

from models.experimental import attempt_load
from models.yolo import Model, check_activation_size
from utils.allocator import keep_freed_memory
from utils.amp import AMP_CHOICES, AmpPolicy, check_amp, select_amp
from utils.autoanchor import check_anchors
from utils.autobatch import FALLBACK_BATCH_SIZE, autobatch
from utils.callbacks import Callbacks
from utils.checkpoints import (
    checkpoint_model_parts,
    load_checkpoint,
    make_checkpoint,
    nonfinite_weights,
    save_checkpoint,
    strip_optimizer,
)
from utils.dataloaders import create_dataloader
from utils.dataset_yaml import check_dataset
from utils.evaluation import VAL_COLUMNS, ValResults, evaluate
from utils.evolve import append_evolve_csv, next_hyp, plot_evolve, read_evolve_csv, write_best_hyp
from utils.general import (
    LOGGER,
    ROOT,
    UserError,
    check_img_size,
    colorstr,
    increment_path,
    init_seeds,
    print_args,
    yaml_load,
    yaml_save,
)
from utils.hyp import check_hyperparameters
from utils.loggers import Loggers
from utils.loss import ComputeLoss, scale_loss_gains
from utils.metrics import fitness
from utils.results_csv import LR_COLUMNS, start_results_csv
from utils.resume import (
    check_option_bounds,
    load_optimizer_state,
    load_resume_state,
    load_resumed_weights,
)
from utils.torch_utils import LOCAL_RANK, RANK, WORLD_SIZE, ModelEMA, de_parallel, grid_stride, select_device
from utils.training import (
    NBS,
    EarlyStopping,
    build_optimizer,
    labels_to_class_weights,
    lr_lambda,
    random_rescale,
    resample_images,
    set_epoch_lr,
    train_cache,
    warmup,
)
from utils.transfer import transfer_pretrained

DEFAULT_CFG = "yolov5n.yaml"  # model trained when neither --cfg nor --weights is given
DEMO = dict(data=str(ROOT / "data/shapes.yaml"), epochs=30, imgsz=256)  # `python train.py` without --data
OFFICIAL = dict(epochs=100, imgsz=640)  # YOLOv5's defaults, for unset flags once --data is given
GRAD_CLIP_NORM = 10.0


@dataclass(frozen=True)
class TrainTask:
    """What one task changes on the training engine; the phases, callbacks, resume, --evolve, checkpoints, EMA and
    AMP are shared. DETECT (below) is train.py's; segment/train.py defines SEGMENT."""

    name: str  # 'detect', 'segment'
    model_class: type  # built from --cfg or a checkpoint's yaml
    default_cfg: str  # the model when neither --cfg nor --weights is given
    demo_data: str  # the dataset yaml of the built-in demo (no --data)
    loss_names: tuple[str, ...]  # the loss items in order: progress bar and results.csv train/<name>
    val_columns: tuple[str, ...]  # results.csv / evolve.csv names of the validation results, in their order
    # (opt, path, imgsz, batch_size, gs, **create_dataloader options) -> (loader, dataset)
    make_loader: Callable[..., tuple]
    make_loss: Callable[[nn.Module, dict, argparse.Namespace], Callable]  # (model, scaled hyp, opt) -> loss fn
    # (loss fn, model training output, batch from the loader, device) -> (loss, detached items)
    compute_loss: Callable[..., tuple[torch.Tensor, torch.Tensor]]
    # (state, model, plots, verbose, by_size) -> an output with .results (val_columns order) and .maps
    evaluate: Callable[..., object]
    fitness: Callable[[np.ndarray], np.ndarray]  # validation result rows (n, k) -> (n,)
    option_defaults: dict = field(default_factory=dict)  # flags the task adds to train.py's (defaults for resume)
    scripts: tuple[str, str] = ("val.py", "detect.py")  # named in the closing summary

    @property
    def results_columns(self) -> tuple[str, ...]:
        return ("epoch", *(f"train/{n}" for n in self.loss_names), *self.val_columns, *LR_COLUMNS)


def create_model(cfg: str | dict, ckpt: dict | None = None, nc: int | None = None,
                 anchors: float | list | None = None, model_class: type = Model) -> Model:
    """A new Model from ``cfg`` (or the checkpoint's own yaml when cfg is empty), with every weight of checkpoint
    dict ``ckpt`` (official or project format) that fits copied in: by key when the layer lists agree, else
    by aligning the two layer lists (utils/transfer.py), so an inserted layer does not shift the rest out. The
    checkpoint's anchors are kept only when the model comes from its own yaml and no ``anchors`` are given."""
    if ckpt is None:
        return model_class(cfg or DEFAULT_CFG, ch=3, nc=nc, anchors=anchors)
    ckpt_yaml, _, ckpt_sd = checkpoint_model_parts(ckpt)
    model = model_class(cfg or ckpt_yaml, ch=3, nc=nc, anchors=anchors)
    exclude = ["anchor"] if (cfg or anchors) else []
    transfer_pretrained(model, ckpt_yaml, {k: v.float() for k, v in ckpt_sd.items()}, exclude=exclude)
    return model


# ---------------------------------------------------------------------------------------------------------------
# Training phases
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class TrainState:
    """What the phases of one training share; built once by ``setup``."""

    opt: argparse.Namespace  # the options as given (batch_size -1 for AutoBatch; the chosen one is batch_size)
    device: torch.device
    callbacks: Callbacks
    save_dir: Path
    hyp: dict  # scaled for this model, batch and image size
    hyp_saved: dict  # as given (hyp.yaml, checkpoints)
    data_dict: dict
    nc: int
    names: dict
    model: nn.Module  # the training model (DDP-wrapped under torchrun)
    ema: ModelEMA | None  # None on DDP ranks other than 0
    optimizer: torch.optim.Optimizer
    lf: Callable[[float], float]  # learning-rate factor of an epoch
    amp: AmpPolicy
    scaler: torch.amp.GradScaler
    compute_loss: Callable  # the task's loss (ComputeLoss for detection)
    train_loader: object
    dataset: object
    val_loader: object  # None without a val split and on DDP ranks other than 0
    imgsz: int
    gs: int
    batch_size: int  # total over all processes: --batch-size, or AutoBatch's choice for -1
    stopper: EarlyStopping
    task: TrainTask
    start_epoch: int = 0
    best_fitness: float = 0.0
    last_opt_step: int = -1
    maps: np.ndarray | None = None  # per-class mAP50-95 of the latest validation
    results: tuple = ()  # latest validation results (zeros of the task's val_columns before the first)
    last_saved_epoch: int | None = None  # epoch of the newest finite last.pt
    best_saved: bool = False  # best.pt written by this run (a new run writes its own, also in an --exist-ok folder)
    failure: str | None = None  # why training stopped on NaN/inf, when it did
    t0: float = field(default_factory=time.time)

    @property
    def main_process(self) -> bool:
        return RANK in (-1, 0)

    @property
    def last(self) -> Path:
        return self.save_dir / "weights" / "last.pt"

    @property
    def best(self) -> Path:
        return self.save_dir / "weights" / "best.pt"

    @property
    def epochs(self) -> int:
        return self.opt.epochs


class TrainData(NamedTuple):
    """The loaders of a training (build_data) and the training labels (n, 5) they hold."""

    train_loader: object
    dataset: object  # the training LoadImagesAndLabels
    val_loader: object  # None without a val split and on DDP ranks other than 0
    labels: np.ndarray


def setup(hyp: dict, opt: argparse.Namespace, device: torch.device, callbacks: Callbacks,
          task: TrainTask | None = None) -> TrainState:
    """Everything before the first epoch: options and hyperparameters checked and saved, then the model, the batch
    size, the optimization, the data, AutoAnchor, EMA, the resumed training state and the loss."""
    task = task or DETECT
    keep_freed_memory()  # no page faults for activation maps allocated anew at every pass (utils/allocator.py)
    callbacks.run("on_pretrain_routine_start")
    save_dir = Path(opt.save_dir)
    main_process = RANK in (-1, 0)
    hyp_saved = dict(hyp)  # as given; the copies below are scaled for this model and batch
    check_hyperparameters(hyp, opt.hyp)
    LOGGER.info(colorstr("hyperparameters: ") + ", ".join(f"{k}={v}" for k, v in hyp.items()))
    if main_process:
        (save_dir / "weights").mkdir(parents=True, exist_ok=True)
        yaml_save(save_dir / "hyp.yaml", hyp_saved)
        yaml_save(save_dir / "opt.yaml", vars(opt))

    ckpt = load_checkpoint(opt.weights) if opt.weights else None  # first: a missing file fails fast
    init_seeds(opt.seed + 1 + RANK, deterministic=device.type == "cuda")  # CPU kernels are deterministic already
    data_dict = check_dataset(opt.data, autodownload=opt.download)
    nc = 1 if opt.single_cls else int(data_dict["nc"])
    names = {0: "item"} if opt.single_cls and len(data_dict["names"]) != 1 else dict(data_dict["names"])

    model, amp = build_model(opt, ckpt, nc, names, device, anchors=hyp.get("anchors"), model_class=task.model_class)
    gs = grid_stride(model)
    imgsz = check_img_size(opt.imgsz, gs, floor=gs * 2)
    check_activation_size(model, imgsz)  # per image; the batch size is the user's to choose
    # AutoBatch: single process (main() refuses it under DDP); opt keeps -1, the chosen size lives in the state
    batch_size = autobatch(model, imgsz, device, amp) if opt.batch_size == -1 else opt.batch_size
    optimizer, lf, hyp = build_optimization(model, opt, hyp, batch_size)
    data = build_data(opt, data_dict, nc, imgsz, gs, batch_size, hyp, device, task)
    if main_process and not opt.resume and not opt.noautoanchor:
        check_anchors(data.dataset, model=model, thr=hyp["anchor_t"], imgsz=imgsz)
    if not opt.resume:
        callbacks.run("on_pretrain_routine_end", data.labels, names)

    ema = ModelEMA(model) if main_process else None  # after AutoAnchor, which may change the anchors
    stopper = EarlyStopping(patience=opt.patience)
    progress = dict(maps=np.zeros(nc))  # where training starts: epoch 0, or where the checkpoint stopped
    if opt.resume:
        progress = _restore(ckpt, optimizer, ema, stopper, nc, opt.weights)
        progress["best_saved"] = (save_dir / "weights" / "best.pt").exists()
        LOGGER.info(f"Resuming training from {opt.weights} at epoch {progress['start_epoch']} of {opt.epochs}")
    del ckpt

    train_model = model
    if RANK != -1:
        cuda_ids = dict(device_ids=[LOCAL_RANK], output_device=LOCAL_RANK) if device.type == "cuda" else {}
        train_model = nn.parallel.DistributedDataParallel(model, **cuda_ids)
    if amp.channels_last:
        train_model = train_model.to(memory_format=torch.channels_last)
    model.class_weights = labels_to_class_weights(data.dataset.labels, nc).to(device) * nc
    hyp = scale_loss_gains(hyp, model.model[-1].nl, nc, imgsz)
    hyp["label_smoothing"] = opt.label_smoothing

    state = TrainState(
        opt=opt, device=device, callbacks=callbacks, save_dir=save_dir, hyp=hyp, hyp_saved=hyp_saved,
        data_dict=data_dict, nc=nc, names=names, model=train_model, ema=ema, optimizer=optimizer, lf=lf, amp=amp,
        scaler=amp.grad_scaler(), compute_loss=task.make_loss(model, hyp, opt), train_loader=data.train_loader,
        dataset=data.dataset, val_loader=data.val_loader, imgsz=imgsz, gs=gs, batch_size=batch_size,
        stopper=stopper, task=task, results=(0.0,) * len(task.val_columns), **progress,
    )
    if main_process:
        start_results_csv(save_dir / "results.csv", resume_epoch=state.start_epoch - 1 if opt.resume else None)
    return state


def build_model(opt: argparse.Namespace, ckpt: dict | None, nc: int, names: dict, device: torch.device,
                anchors: float | None = None, model_class: type = Model) -> tuple[nn.Module, AmpPolicy]:
    """The model to train (resumed from ``ckpt``, or new with its matching weights transferred), with its class
    names, the layers of --freeze frozen and SyncBatchNorm where asked, and the AMP policy that suits it."""
    if opt.resume:
        if not 0 <= ckpt["epoch"] < opt.epochs - 1:
            raise UserError(f"{opt.weights} has finished training ({opt.epochs} epochs); nothing to resume. "
                            f"Start a new run with --weights {opt.weights}")
        model = model_class(ckpt["yaml"], ch=3, nc=nc).to(device)
        load_resumed_weights(model, ckpt["model"], opt.weights)
        LOGGER.info(f"Resuming model weights from {opt.weights}")
    else:
        model = create_model(opt.cfg, ckpt, nc, anchors=anchors, model_class=model_class).to(device)
    model.names = names
    amp = select_amp(opt.amp, device.type)
    if amp.device_type == "cuda":
        amp = check_amp(model, amp)
    LOGGER.info(f"{colorstr('AMP:')} {amp.describe()}")

    n_layers = len(model.model)  # a count or index past the last layer adds nothing: never a list of 10^9 names
    frozen = set(opt.freeze) if len(opt.freeze) > 1 else range(min(opt.freeze[0], n_layers))
    freeze = [f"model.{x}." for x in frozen if x < n_layers]
    for k, v in model.named_parameters():
        v.requires_grad = not any(x in k for x in freeze)
    if not any(v.requires_grad for v in model.parameters()):
        raise UserError(f"--freeze {' '.join(map(str, opt.freeze))} freezes all {len(model.model)} layers; "
                        f"nothing would train (backbone only: --freeze 10)")

    cuda = device.type == "cuda"
    if cuda and RANK == -1 and torch.cuda.device_count() > 1:
        LOGGER.warning("WARNING: several GPUs visible; for multi-GPU training launch with torch.distributed.run")
    if opt.sync_bn and cuda and RANK != -1:  # the converted layers keep the same parameters
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model).to(device)
        LOGGER.info("Using SyncBatchNorm()")
    elif opt.sync_bn:  # torch's SyncBatchNorm runs on GPUs only
        LOGGER.warning("WARNING: --sync-bn needs CUDA devices and DDP (torchrun); training with BatchNorm2d")
    return model, amp


def build_optimization(model: nn.Module, opt: argparse.Namespace, hyp: dict,
                       batch_size: int) -> tuple[torch.optim.Optimizer, Callable[[float], float], dict]:
    """The optimizer and learning-rate schedule for a total batch of ``batch_size``: returns (optimizer, the
    learning-rate factor of an epoch, a copy of ``hyp`` with weight_decay scaled to the batch size and its
    gradient accumulation)."""
    hyp = dict(hyp)
    accumulate = max(round(NBS / batch_size), 1)
    hyp["weight_decay"] *= batch_size * accumulate / NBS
    optimizer = build_optimizer(model, opt.optimizer, hyp["lr0"], hyp["momentum"], hyp["weight_decay"])
    return optimizer, lr_lambda(opt.epochs, hyp["lrf"], opt.cos_lr), hyp


def build_data(opt: argparse.Namespace, data_dict: dict, nc: int, imgsz: int, gs: int, batch_size: int, hyp: dict,
               device: torch.device, task: TrainTask | None = None) -> TrainData:
    """The training loader (this process's share of the total ``batch_size``) with its labels checked against
    ``nc``, and on the main process the val loader (twice the batch, rectangular)."""
    make_loader = (task or DETECT).make_loader
    train_loader, dataset = make_loader(
        opt, data_dict["train"], imgsz, batch_size // WORLD_SIZE, gs, hyp=hyp, augment=True,
        cache=train_cache(opt.cache, device), rect=opt.rect, rank=LOCAL_RANK, workers=opt.workers,
        image_weights=opt.image_weights, prefix=colorstr("train: "), shuffle=True, seed=opt.seed, quad=opt.quad,
    )
    labels = np.concatenate([x for x in dataset.labels if len(x)] or [np.zeros((0, 5))], 0)
    if len(labels) and int(labels[:, 0].max()) >= nc:
        raise UserError(f"label class {int(labels[:, 0].max())} exceeds nc={nc} in {opt.data}; "
                        f"possible class labels are 0-{nc - 1}")
    if len(train_loader) == 0:
        raise UserError(f"no training images found in {data_dict['train']}")
    val_loader = None
    if RANK in (-1, 0):
        if data_dict["val"]:
            val_loader = make_loader(
                opt, data_dict["val"], imgsz, batch_size // WORLD_SIZE * 2, gs, hyp=hyp,
                cache=None if opt.noval or opt.cache == "off" else opt.cache, rect=True, rank=-1,
                workers=opt.workers * 2, pad=0.5, prefix=colorstr("val: "),
            )[0]
        else:
            LOGGER.warning(f"WARNING: {opt.data} has no 'val' split; validation is skipped")
    return TrainData(train_loader, dataset, val_loader, labels)


def _restore(ckpt: dict, optimizer: torch.optim.Optimizer, ema: ModelEMA | None, stopper: EarlyStopping,
             nc: int, source: str) -> dict:
    """Continue where checkpoint ``ckpt`` stopped: loads the optimizer, EMA and early-stopping state and returns
    the TrainState fields to start from (epoch, best fitness, loop state)."""
    if ckpt.get("optimizer") is not None:
        load_optimizer_state(optimizer, ckpt["optimizer"], source)
    best_fitness = ckpt.get("best_fitness") or 0.0
    if ema is not None and ckpt.get("ema"):
        load_resumed_weights(ema.ema, ckpt["ema"], source, "ema")
        ema.updates = ckpt.get("updates", 0)
    saved = ckpt.get("train_state") or {}
    stopper.best_fitness = best_fitness
    stopper.best_epoch = saved.get("best_epoch", 0)
    return dict(start_epoch=ckpt["epoch"] + 1, last_saved_epoch=ckpt["epoch"], best_fitness=best_fitness,
                last_opt_step=saved.get("last_opt_step", -1),
                maps=np.array(saved.get("maps", np.zeros(nc)), dtype=np.float64))


@dataclass
class EpochMetrics:
    """What train_one_epoch measured: mean losses (the task's loss_names), images, seconds, the learning rates."""

    mloss: torch.Tensor
    images: int
    seconds: float
    lr: list


def train_one_epoch(state: TrainState, epoch: int) -> EpochMetrics | None:
    """One pass over the training data with warmup, AMP, gradient accumulation and EMA. Returns EpochMetrics, or
    None when the loss became NaN/inf (state.failure says where)."""
    opt, model, optimizer, cb = state.opt, state.model, state.optimizer, state.callbacks
    init_seeds(opt.seed + 1 + RANK + epoch)  # per-epoch seeds: a resumed run draws what it would have drawn
    model.train()
    set_epoch_lr(optimizer, state.lf, epoch)
    if opt.image_weights:
        class_weights = de_parallel(model).class_weights.cpu().numpy() * (1 - state.maps) ** 2 / state.nc
        resample_images(state.dataset, state.nc, class_weights)
    state.train_loader.set_epoch(epoch)  # the shuffle and every augmentation depend on (seed, epoch) only
    cb.run("on_train_epoch_start", epoch)
    nb = len(state.train_loader)
    nw = max(round(state.hyp["warmup_epochs"] * nb), 100) if state.hyp["warmup_epochs"] > 0 else 0
    accumulate = max(round(NBS / state.batch_size), 1)
    loss_names = state.task.loss_names
    mloss = torch.zeros(len(loss_names), device=state.device)
    LOGGER.info(("\n" + "%11s" * (4 + len(loss_names))) % ("Epoch", "GPU_mem", *loss_names, "Instances", "Size"))
    pbar = enumerate(state.train_loader)
    if state.main_process:
        pbar = _progress(pbar, nb)
    t_epoch, n_images = time.time(), 0
    optimizer.zero_grad()
    for i, batch in pbar:
        imgs, targets, paths = batch[:3]
        ni = i + nb * epoch
        cb.run("on_train_batch_start", ni, epoch)
        imgs = imgs.to(state.device, non_blocking=True).float() / 255
        if ni <= nw:
            accumulate = warmup(optimizer, ni, nw, epoch, state.lf, state.hyp, state.batch_size)
        if opt.multi_scale:
            imgs = random_rescale(imgs, state.imgsz, state.gs)
        if state.amp.channels_last:
            imgs = imgs.contiguous(memory_format=torch.channels_last)

        with state.amp.training_forward():
            pred = model(imgs)
        loss, loss_items = state.task.compute_loss(state.compute_loss, pred, batch, state.device)  # fp32 loss
        if RANK != -1:
            loss *= WORLD_SIZE  # gradients are averaged between processes
        if opt.quad:
            loss *= 4  # the loss sums over images and a quad batch holds a quarter of them
        if not torch.isfinite(loss):
            items = loss_items.tolist()
            state.failure = f"the loss became NaN/inf at epoch {epoch}, batch {i} ({', '.join(loss_names)} = {items})"
            break

        n_images += imgs.shape[0]
        state.scaler.scale(loss).backward()
        if ni - state.last_opt_step >= accumulate:
            state.scaler.unscale_(optimizer)
            # foreach: one multi-tensor norm and scale instead of two ops per tensor (torch's default on CUDA only)
            torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=GRAD_CLIP_NORM,
                                           foreach=state.device.type in ("cpu", "cuda") or None)
            state.scaler.step(optimizer)
            state.scaler.update()
            optimizer.zero_grad()
            if state.ema is not None:
                state.ema.update(model)
            state.last_opt_step = ni

        mloss = (mloss * i + loss_items) / (i + 1)
        if state.main_process:
            mem = f"{torch.cuda.memory_reserved() / 1e9 if state.device.type == 'cuda' else 0:.3g}G"
            progress = (f"{epoch}/{state.epochs - 1}", mem, *mloss, targets.shape[0], imgs.shape[-1])
            pbar.set_description(("%11s" * 2 + "%11.4g" * (2 + len(loss_names))) % progress)
        cb.run("on_train_batch_end", ni, model, imgs, targets, paths, mloss)
        if cb.stop_training and RANK == -1:  # under DDP every rank stops together at the epoch's end
            break
    if hasattr(pbar, "close"):
        pbar.close()
    if state.failure is not None:
        return None
    cb.run("on_train_epoch_end", epoch)
    return EpochMetrics(mloss, n_images, time.time() - t_epoch, [g["lr"] for g in optimizer.param_groups])


def end_epoch(state: TrainState, epoch: int, metrics: EpochMetrics) -> bool:
    """Validate the EMA, log the epoch, write last.pt / best.pt and decide whether to stop (last epoch, early
    stop, a callback's request, or NaN/inf in the weights or validation losses). Returns True to stop."""
    opt, cb = state.opt, state.callbacks
    stop = cb.stop_training
    if state.main_process:
        ema, t_val = state.ema, time.time()
        ema.update_attr(state.model, include=["yaml", "nc", "names", "stride", "class_weights"])
        final_epoch = epoch + 1 == state.epochs or state.stopper.patience <= epoch - state.stopper.best_epoch + 1
        # the epoch's last optimizer steps can break the weights although every loss was finite
        bad = nonfinite_weights({"model": de_parallel(state.model).state_dict(), "ema": ema.ema.state_dict()})
        if not bad and state.val_loader is not None and (not opt.noval or final_epoch or stop):
            state.results, state.maps, _ = _validate(state, ema.ema)
            bad = [c for c, v in zip(state.task.val_columns, state.results) if c.startswith("val/")
                   and not math.isfinite(v)]
        LOGGER.info(f"epoch {epoch}: train {metrics.seconds:.1f}s "
                    f"({metrics.images / max(metrics.seconds, 1e-9):.1f} img/s), val {time.time() - t_val:.1f}s")
        if bad:  # nothing of this epoch is logged or saved
            state.failure = (f"NaN/inf at the end of epoch {epoch} in {len(bad)} of the weights/val losses "
                             f"(e.g. {bad[:3]})")
            stop = True
        else:
            fi = float(state.task.fitness(np.array(state.results).reshape(1, -1))[0]) \
                if state.val_loader is not None else 0.0
            stop = state.stopper(epoch=epoch, fitness=fi) or stop
            improved = fi > state.best_fitness or not state.best_saved  # a tie (at 0: nothing learnt) keeps best
            state.best_fitness = max(state.best_fitness, fi)
            values = [epoch, *metrics.mloss.tolist(), *[float(x) for x in state.results], *metrics.lr]
            cb.run("on_fit_epoch_end", values, epoch, state.best_fitness, fi)
            if not opt.nosave or final_epoch or stop:
                _save(state, epoch, improved)
                cb.run("on_model_save", state.last, epoch, final_epoch, state.best_fitness, fi)
            stop = stop or cb.stop_training
    if RANK != -1:  # every process stops together, as rank 0 decides
        flag = [stop]
        torch.distributed.broadcast_object_list(flag, 0)
        stop = flag[0]
    return stop


def _validate(state, model, plots=False, verbose=False, by_size=False):
    """The task's evaluation on the val loader, in half precision when training runs fp16 autocast (as YOLOv5)."""
    state.callbacks.run("on_val_start")
    model = model.half() if state.amp.fp16 else model.float()
    output = state.task.evaluate(state, model, plots=plots, verbose=verbose, by_size=by_size)
    model.float()
    state.callbacks.run("on_val_end", output.results)
    return output


def evaluate_detection(state: TrainState, model: nn.Module, plots: bool = False, verbose: bool = False,
                       by_size: bool = False) -> object:
    """DETECT's evaluation: utils.evaluation.evaluate. AP by object size (three more matchings per image) only
    where asked: the final validation, not every epoch."""
    return evaluate(
        model, state.val_loader, state.nc, state.names, state.device, single_cls=state.opt.single_cls,
        half=state.amp.fp16, compute_loss=state.compute_loss, verbose=verbose, save_dir=state.save_dir, plots=plots,
        by_size=by_size,
    )


DETECT = TrainTask(
    name="detect", model_class=Model, default_cfg=DEFAULT_CFG, demo_data=DEMO["data"],
    loss_names=("box_loss", "obj_loss", "cls_loss"), val_columns=tuple(VAL_COLUMNS.values()),
    make_loader=lambda opt, path, imgsz, batch_size, gs, **kw: create_dataloader(
        path, imgsz, batch_size, gs, opt.single_cls, **kw),
    make_loss=lambda model, hyp, opt: ComputeLoss(model, hyp),
    compute_loss=lambda loss_fn, pred, batch, device: loss_fn([p.float() for p in pred], batch[1].to(device)),
    evaluate=evaluate_detection, fitness=fitness,
)


def _save(state, epoch, improved):
    """last.pt (and best.pt when improved, epoch{N}.pt every --save-period) with everything --resume needs."""
    opt = state.opt
    saved_opt = {**vars(opt), "batch_size": state.batch_size}  # the size trained with (AutoBatch's), for --resume
    train_state = {"last_opt_step": int(state.last_opt_step), "best_epoch": int(state.stopper.best_epoch),
                   "maps": [float(x) for x in state.maps]}
    ckpt = make_checkpoint(state.model, names=state.names, ema=state.ema, optimizer=state.optimizer, epoch=epoch,
                           best_fitness=state.best_fitness, opt=saved_opt, hyp=state.hyp_saved, half=False,
                           train_state=train_state)
    save_checkpoint(ckpt, state.last)
    state.last_saved_epoch = epoch
    if improved:
        save_checkpoint(ckpt, state.best)
        state.best_saved = True
    if opt.save_period > 0 and epoch % opt.save_period == 0:
        save_checkpoint(ckpt, state.save_dir / "weights" / f"epoch{epoch}.pt")


def finish(state: TrainState, epoch: int) -> ValResults:
    """After the last epoch: strip last.pt and best.pt, validate best.pt with plots, summarise. A NaN/inf stop
    raises a UserError naming the newest finite checkpoint instead."""
    if state.failure is not None:
        kept = (f"the newest finite checkpoint is {state.last} (epoch {state.last_saved_epoch})"
                if state.last_saved_epoch is not None else "no checkpoint was written yet")
        msg = (f"training stopped: {state.failure}; {kept}. Lower the learning rate (--hyp with a smaller lr0) or "
               f"the momentum, check the labels, then start again or resume with --resume {state.last}")
        LOGGER.error(msg)
        raise UserError(msg)
    if state.main_process:
        LOGGER.info(f"\n{epoch - state.start_epoch + 1} epochs completed in {(time.time() - state.t0) / 3600:.3f} "
                    f"hours.")
        last, best = state.last, state.best
        for f in (last, best):
            if f.exists():
                strip_optimizer(f)
                if f is best and state.val_loader is not None:
                    LOGGER.info(f"\nValidating {f}...")
                    model = attempt_load(f, state.device)
                    output = _validate(state, model, plots=not state.opt.noplots, verbose=True, by_size=True)
                    state.results = output.results
        state.callbacks.run("on_train_end", last, best, epoch, state.results)
        _summary(state.save_dir, last, best, state.task.scripts)
    if state.device.type == "cuda":
        torch.cuda.empty_cache()
    return state.results


def train(hyp: dict, opt: argparse.Namespace, device: torch.device, callbacks: Callbacks | None = None,
          task: TrainTask | None = None) -> ValResults:
    """Train with options ``opt`` (the CLI namespace) and hyperparameters ``hyp``; returns the final ValResults
    (P, R, mAP50, mAP50-95, val box, obj, cls), or the ``task``'s results (e.g. segmentation's box and mask
    metrics)."""
    task = task or DETECT
    callbacks = callbacks or Callbacks()
    callbacks.stop_training = False
    # the default loggers, after the caller's callbacks, on the process that logs; removed again at the end, so a
    # Callbacks object can serve several runs
    loggers = Loggers(opt.save_dir, plots=not opt.noplots, columns=task.results_columns).register(callbacks) \
        if RANK in (-1, 0) else None
    try:
        state = setup(hyp, opt, device, callbacks, task)
        LOGGER.info(f"Image sizes {state.imgsz} train, {state.imgsz} val\nUsing "
                    f"{getattr(state.train_loader, 'num_workers', 0)} dataloader workers\nLogging results to "
                    f"{colorstr('bold', state.save_dir)}\nStarting training for {state.epochs} epochs...")
        callbacks.run("on_train_start")
        epoch = state.start_epoch
        for epoch in range(state.start_epoch, state.epochs):
            metrics = train_one_epoch(state, epoch)
            if metrics is None or end_epoch(state, epoch, metrics):
                break
        return finish(state, epoch)
    finally:
        if loggers is not None:
            loggers.close()
            callbacks.remove_actions("loggers")


def _progress(iterable, total):
    from tqdm import tqdm

    return tqdm(iterable, total=total, bar_format="{l_bar}{bar:10}{r_bar}")


def _summary(save_dir, last, best, scripts=("val.py", "detect.py")):
    files = sorted(p.name for p in save_dir.iterdir() if p.is_file())
    LOGGER.info(
        f"\n{colorstr('Training finished.')} Results saved to {colorstr('bold', save_dir)}\n"
        f"  weights: {best if best.exists() else '-'} (best), {last if last.exists() else '-'} (last)\n"
        f"  files:   {', '.join(files)}\n"
        f"  validate: python {scripts[0]} --weights {best} --data <data.yaml>\n"
        f"  predict:  python {scripts[1]} --weights {best} --source <images>"
    )


# ---------------------------------------------------------------------------------------------------------------
# Hyperparameter evolution
# ---------------------------------------------------------------------------------------------------------------
def evolve(hyp: dict, opt: argparse.Namespace, device: torch.device, callbacks: Callbacks | None = None,
           task: TrainTask | None = None) -> dict:
    """--evolve N: N generations (fewer when evolve.csv in the run folder already holds some: the evolution
    resumes), each a full training validated only at its final epoch; then hyp_evolve.yaml and evolve.png."""
    save_dir = Path(opt.save_dir)
    evolve_csv = save_dir / "evolve.csv"
    done = len(read_evolve_csv(evolve_csv))
    if done:
        LOGGER.info(f"{colorstr('evolve: ')}resuming: {evolve_csv} holds {done} of {opt.evolve} generations")
    for generation in range(done, opt.evolve):
        gen_hyp = next_hyp(hyp, evolve_csv, generation_seed=opt.seed + generation)
        gen_opt = argparse.Namespace(**{**vars(opt), "hyp": dict(gen_hyp), "noval": True, "nosave": True,
                                        "noplots": True})
        LOGGER.info(f"\n{colorstr('evolve: ')}generation {generation + 1}/{opt.evolve}")
        results = train(gen_hyp, gen_opt, device, callbacks, task)
        task = task or DETECT
        fit = append_evolve_csv(evolve_csv, results, gen_hyp, columns=task.val_columns, fitness_fn=task.fitness)
        LOGGER.info(f"{colorstr('evolve: ')}generation {generation + 1}: fitness {fit:.4f}")
    best = write_best_hyp(evolve_csv, list(hyp), save_dir / "hyp_evolve.yaml")
    plot_evolve(evolve_csv)
    LOGGER.info(f"{colorstr('evolve: ')}results in {save_dir} (evolve.csv, hyp_evolve.yaml, evolve.png); train "
                f"with them: python train.py --hyp {save_dir / 'hyp_evolve.yaml'}")
    return best


# ---------------------------------------------------------------------------------------------------------------
# Flags and whole runs (the scripts parse, main runs)
# ---------------------------------------------------------------------------------------------------------------
def make_parser(description: str = "Train a YOLOv5 detection model.") -> argparse.ArgumentParser:
    """train.py's flags (official YOLOv5's); a task's script adds its own (segment/train.py: --mask-ratio, ...)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--weights", type=str, default="", help="initial weights path ('' = from scratch)")
    parser.add_argument("--cfg", type=str, default="", help="model.yaml path (yolov5n.yaml when no --weights)")
    parser.add_argument("--data", type=str, default=None,
                        help="dataset.yaml path (none: the built-in demo on generated shapes)")
    parser.add_argument("--hyp", type=str, default=str(ROOT / "data/hyps/hyp.scratch-low.yaml"), help="hyp path")
    parser.add_argument("--epochs", type=int, default=None, help="total training epochs (100; demo: 30)")
    parser.add_argument("--batch-size", type=int, default=16, help="total batch size for all GPUs, -1 for AutoBatch")
    parser.add_argument("--imgsz", "--img", "--img-size", type=int, default=None,
                        help="train, val image size (pixels) (640; demo: 256)")
    parser.add_argument("--rect", action="store_true", help="rectangular training")
    parser.add_argument("--resume", nargs="?", const=True, default=False, help="resume most recent training or PATH")
    parser.add_argument("--nosave", action="store_true", help="only save final checkpoint")
    parser.add_argument("--noval", action="store_true", help="only validate final epoch")
    parser.add_argument("--noautoanchor", action="store_true", help="disable AutoAnchor")
    parser.add_argument("--noplots", action="store_true", help="save no plot files")
    parser.add_argument("--cache", type=str, nargs="?", const="ram", choices=["ram", "disk", "val", "off"],
                        help="cache images: ram (default), disk (.npy beside each image), val (val split only) or off; "
                             "unset: training on the CPU caches a small training set in RAM (see README)")
    parser.add_argument("--image-weights", action="store_true", help="use weighted image selection for training")
    parser.add_argument("--device", default="", help="cuda device, i.e. 0 or 0,1,2,3 or cpu")
    parser.add_argument("--multi-scale", action="store_true", help="vary img-size +/- 50%%")
    parser.add_argument("--single-cls", action="store_true", help="train multi-class data as single-class")
    parser.add_argument("--optimizer", type=str, choices=["SGD", "Adam", "AdamW"], default="SGD", help="optimizer")
    parser.add_argument("--sync-bn", action="store_true", help="use SyncBatchNorm, only available in DDP mode")
    parser.add_argument("--download", action="store_true",
                        help="download a missing dataset from the 'download' entry of its yaml (needs internet)")
    parser.add_argument("--workers", type=int, default=8, help="max dataloader workers (per RANK in DDP mode)")
    parser.add_argument("--project", default=str(ROOT / "runs/train"), help="save to project/name")
    parser.add_argument("--name", default="exp", help="save to project/name")
    parser.add_argument("--exist-ok", action="store_true", help="existing project/name ok, do not increment")
    parser.add_argument("--cos-lr", action="store_true", help="cosine LR scheduler")
    parser.add_argument("--label-smoothing", type=float, default=0.0, help="label smoothing epsilon")
    parser.add_argument("--patience", type=int, default=100, help="EarlyStopping patience (epochs without improvement)")
    parser.add_argument("--freeze", nargs="+", type=int, default=[0], help="freeze layers: backbone=10, first3=0 1 2")
    parser.add_argument("--save-period", type=int, default=-1, help="checkpoint every x epochs (off if < 1)")
    parser.add_argument("--seed", type=int, default=0, help="global training seed")
    parser.add_argument("--evolve", type=int, nargs="?", const=300, default=None,
                        help="evolve hyperparameters for N generations (300 without N) in runs/evolve/<name>")
    parser.add_argument("--amp", choices=AMP_CHOICES, default="auto",
                        help="mixed precision: auto = fp16 on CUDA (after a check), bf16 + channels-last on CPUs "
                             "with native bf16, else fp32; on = also emulated bf16; off = fp32")
    parser.add_argument("--local_rank", type=int, default=-1, help="automatic DDP multi-GPU argument, do not modify")
    parser.add_argument("--quad", action="store_true", help="quad dataloader: every 4 images tiled into one at 2x")
    # official YOLOv5's online-logger and cloud flags: accepted, with one warning that they do nothing here
    parser.add_argument("--bucket", type=str, default="", help="gsutil bucket (not supported; ignored)")
    parser.add_argument("--entity", default=None, help="W&B entity (not supported; ignored)")
    parser.add_argument("--upload_dataset", nargs="?", const=True, default=False,
                        help="W&B dataset upload (not supported; ignored)")
    parser.add_argument("--bbox_interval", type=int, default=-1, help="W&B box-image interval (not supported; ignored)")
    parser.add_argument("--artifact_alias", type=str, default="latest",
                        help="W&B artifact alias (not supported; ignored)")
    return parser


ONLINE_LOGGER_FLAGS = {"bucket": "", "entity": None, "upload_dataset": False, "bbox_interval": -1,
                       "artifact_alias": "latest"}  # official flags for W&B / ClearML / Comet / gsutil, and defaults


def options_from_kwargs(defaults: argparse.Namespace, kwargs: dict[str, object], caller: str) -> argparse.Namespace:
    """A script's ``run(**kwargs)``: its parsed defaults with the keyword arguments set (flag names with
    underscores); an unknown name is a UserError naming ``caller`` and the valid ones."""
    unknown = [k for k in kwargs if not hasattr(defaults, k)]
    if unknown:
        raise UserError(f"{caller}: unknown argument(s) {unknown}; valid ones are {sorted(vars(defaults))}")
    for k, v in kwargs.items():
        setattr(defaults, k, v)
    if isinstance(defaults.freeze, int):
        defaults.freeze = [defaults.freeze]
    return defaults


def warn_online_logger_flags(opt: argparse.Namespace) -> None:
    """One warning naming the online-logger flags that were set: those loggers are not part of this project."""
    given = [k for k, default in ONLINE_LOGGER_FLAGS.items() if getattr(opt, k, default) != default]
    if given:
        LOGGER.warning(f"WARNING: {', '.join('--' + k for k in given)} ignored: online loggers (W&B, ClearML, Comet) "
                       f"and cloud buckets are not part of this project; results stay in {opt.save_dir}")


def apply_defaults(opt: argparse.Namespace, task: TrainTask | None = None) -> str:
    """Fill the unset flags of a new run: the built-in demo without --data, YOLOv5's defaults with it. Returns a
    line saying which."""
    task = task or DETECT
    demo = opt.data is None
    for key, value in ({**DEMO, "data": task.demo_data} if demo else OFFICIAL).items():
        if getattr(opt, key) is None:
            setattr(opt, key, value)
    if not opt.cfg and not opt.weights:
        opt.cfg = task.default_cfg
    model = opt.cfg or opt.weights
    if demo:
        return (f"built-in demo: {model} on generated shapes ({Path(opt.data).name}), {opt.imgsz} px, {opt.epochs} "
                f"epochs; with --data, unset flags take YOLOv5's defaults ({OFFICIAL['imgsz']} px, "
                f"{OFFICIAL['epochs']} epochs)")
    return f"{model} on {opt.data}, {opt.imgsz} px, {opt.epochs} epochs"


def _device_type(device):
    """The device type --device names ('cpu', 'cuda', 'mps'), without selecting it."""
    device = str(device or "").strip().lower()
    if device in ("cpu", "mps"):
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def main(opt: argparse.Namespace, callbacks: Callbacks | None = None,
         task: TrainTask | None = None) -> argparse.Namespace:
    if RANK not in (-1, 0):  # DDP: only rank 0 logs; the other ranks report errors only
        LOGGER.setLevel(logging.ERROR)

    if opt.resume:  # only training state and whitelisted options come from the checkpoint (utils/resume.py)
        if opt.evolve is not None:
            raise UserError("--resume and --evolve do not combine; an evolution resumes by itself from the "
                            "evolve.csv in its folder")
        ckpt_path, saved, hyp = load_resume_state(opt.resume)
        cli = {k: getattr(opt, k) for k in ("workers", "device", "download")}
        defaults = vars(make_parser().parse_args([]))
        opt = argparse.Namespace(**{**defaults, **(task or DETECT).option_defaults, **saved, **cli})
        opt.resume, opt.weights = True, str(ckpt_path)
        opt.save_dir = str(Path(os.path.abspath(ckpt_path)).parents[1])
        mode = f"resuming {ckpt_path} ({opt.epochs} epochs, {opt.imgsz} px)"
    else:
        mode = apply_defaults(opt, task)
        hyp = opt.hyp if isinstance(opt.hyp, dict) else yaml_load(opt.hyp)
        if opt.epochs < 1:
            raise UserError(f"--epochs must be at least 1, got {opt.epochs}")
        if opt.batch_size < 1 and opt.batch_size != -1:
            raise UserError(f"--batch-size must be at least 1 (or -1 for AutoBatch), got {opt.batch_size}")
        if opt.workers < 0:
            raise UserError(f"--workers must be 0 (load in the main process) or more, got {opt.workers}")
        check_option_bounds({k: v for k, v in vars(opt).items() if not (k == "batch_size" and v == -1)})
        if opt.evolve is not None:
            if opt.evolve < 1:
                raise UserError(f"--evolve needs at least 1 generation, got {opt.evolve}")
            if WORLD_SIZE > 1 or LOCAL_RANK != -1:
                raise UserError("--evolve runs in a single process; start it without torchrun (DDP)")
            if Path(opt.project) == ROOT / "runs/train":
                opt.project = str(ROOT / "runs/evolve")
            opt.exist_ok = True  # the same folder again: the evolution resumes from its evolve.csv
        opt.save_dir = str(increment_path(Path(opt.project) / opt.name, exist_ok=opt.exist_ok, mkdir=RANK in (-1, 0)))
        if isinstance(opt.hyp, dict):
            opt.hyp = "dict"
    LOGGER.info(f"{colorstr('train:')} {mode}; precision: {select_amp(opt.amp, _device_type(opt.device)).describe()}")
    if RANK in (-1, 0):
        print_args(vars(opt), "train")

    warn_online_logger_flags(opt)
    device = select_device(opt.device, batch_size=max(opt.batch_size, 0))
    if opt.batch_size == -1 and WORLD_SIZE > 1:
        raise UserError("--batch-size -1 (AutoBatch) needs a single CUDA device (no torchrun); pass a batch size, "
                        "e.g. --batch-size 16")
    if opt.batch_size == -1 and device.type != "cuda":  # as official: AutoBatch falls back to its default
        LOGGER.warning(f"WARNING: --batch-size -1 (AutoBatch) needs a CUDA device; this run is on the "
                       f"{device.type.upper()}, using --batch-size {FALLBACK_BATCH_SIZE}")
        opt.batch_size = FALLBACK_BATCH_SIZE
    if LOCAL_RANK != -1 and WORLD_SIZE > 1:
        import torch.distributed as dist

        if opt.image_weights:
            raise UserError("--image-weights is not supported with multi-GPU (DDP) training")
        if opt.batch_size % WORLD_SIZE:
            raise UserError(f"--batch-size {opt.batch_size} must be a multiple of WORLD_SIZE {WORLD_SIZE}")
        if device.type == "cuda":  # --device cpu keeps DDP on the CPU even where GPUs exist
            torch.cuda.set_device(LOCAL_RANK)
            device = torch.device("cuda", LOCAL_RANK)
        backend = "nccl" if device.type == "cuda" and dist.is_nccl_available() else "gloo"
        dist.init_process_group(backend=backend, timeout=timedelta(seconds=10800))

    try:
        if opt.evolve is not None:
            opt.hyp_evolve, opt.results = evolve(hyp, opt, device, callbacks, task), None
        else:
            opt.results = train(hyp, opt, device, callbacks, task)
    finally:  # every rank leaves the process group, also on an error, so no gloo thread outlives the process
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    return opt
