"""Train a YOLOv5 detection model on a dataset.

Usage:
    python train.py                                  # yolov5n from scratch on the built-in synthetic shapes
    python train.py --cfg models/yolov5s_ScConv.yaml --data data/coco8.yaml --weights yolov5s.pt --epochs 100
    python train.py --resume                         # continue the newest interrupted run (runs/**/last.pt)
    python train.py --resume runs/train/exp3/weights/last.pt

Outputs go to runs/train/exp{N}/: weights/last.pt and best.pt, results.csv and .png, opt.yaml, hyp.yaml,
labels.jpg, train_batch{0,1,2}.jpg and the final validation plots.
"""

import argparse
import logging
import math
import os
import random
import sys
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

ROOT = Path(__file__).resolve().parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from utils.amp import AMP_CHOICES, check_amp, select_amp  # noqa: E402
from utils.general import LOGGER, UserError, check_img_size, colorstr, increment_path, init_seeds  # noqa: E402
from utils.general import exit_code, print_args, start_results_csv, yaml_load, yaml_save  # noqa: E402
from utils.hyp import check_hyp  # noqa: E402
from utils.resume import load_resume_state  # noqa: E402
from utils.torch_utils import LOCAL_RANK, RANK, WORLD_SIZE, ModelEMA, de_parallel, select_device  # noqa: E402

DEFAULT_CFG = "yolov5n.yaml"  # model trained when neither --cfg nor --weights is given
NBS = 64  # nominal batch size: gradients are accumulated up to it
GRAD_CLIP_NORM = 10.0
RESULTS_COLUMNS = (
    "epoch",
    "train/box_loss",
    "train/obj_loss",
    "train/cls_loss",
    "metrics/precision",
    "metrics/recall",
    "metrics/mAP_0.5",
    "metrics/mAP_0.5:0.95",
    "val/box_loss",
    "val/obj_loss",
    "val/cls_loss",
    "x/lr0",
    "x/lr1",
    "x/lr2",
)
HYP_KEYS = (
    "lr0", "lrf", "momentum", "weight_decay", "warmup_epochs", "warmup_momentum", "warmup_bias_lr", "box", "cls",
    "cls_pw", "obj", "obj_pw", "anchor_t",
)


# ---------------------------------------------------------------------------------------------------------------
# Optimizer, learning-rate schedule and warmup
# ---------------------------------------------------------------------------------------------------------------
def build_optimizer(model, name="SGD", lr=0.001, momentum=0.9, decay=1e-5):
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
        optimizer = torch.optim.SGD(biases, lr=lr, momentum=momentum, nesterov=True)
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


def lr_lambda(epochs, lrf, cos_lr=False):
    """Learning-rate factor of an epoch: linear from 1 to ``lrf`` over ``epochs``, or a cosine one-cycle."""
    if cos_lr:
        return lambda x: ((1 - math.cos(x * math.pi / epochs)) / 2) * (lrf - 1) + 1
    return lambda x: (1 - x / epochs) * (1.0 - lrf) + lrf


def set_epoch_lr(optimizer, lf, epoch):
    """Scheduled learning rate of every group for ``epoch``: initial_lr * lf(epoch)."""
    for group in optimizer.param_groups:
        group["lr"] = group["initial_lr"] * lf(epoch)


def warmup(optimizer, ni, nw, epoch, lf, hyp, batch_size):
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

    def __init__(self, patience=30):
        self.best_fitness = 0.0
        self.best_epoch = 0
        self.patience = patience or float("inf")

    def __call__(self, epoch, fitness):
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


def labels_to_class_weights(labels, nc=80):
    """Inverse class frequencies (nc,) of a list of (n, 5) label arrays, normalised to sum 1."""
    classes = np.concatenate([x[:, 0] for x in labels if len(x)] or [np.zeros(0)]).astype(int)
    counts = np.bincount(classes, minlength=nc)[:nc].astype(np.float64)
    counts[counts == 0] = 1  # absent classes weigh like a single label
    weights = 1 / counts
    return torch.from_numpy(weights / weights.sum()).float()


def labels_to_image_weights(labels, nc, class_weights):
    """Sampling weight of each image: the sum of its labels' class weights."""
    counts = np.array([np.bincount(x[:, 0].astype(int), minlength=nc)[:nc] for x in labels])
    return (np.asarray(class_weights).reshape(1, nc) * counts).sum(1)


def create_model(cfg, ckpt=None, nc=None, anchors=None):
    """A new Model from ``cfg`` (or the checkpoint's own yaml when cfg is empty), with every weight of checkpoint
    dict ``ckpt`` (official or project format) whose key and shape match copied in. The checkpoint's anchors are
    kept only when the model comes from its own yaml and no ``anchors`` are given."""
    from models.yolo import Model
    from utils.checkpoints import checkpoint_model_parts, transfer_weights

    if ckpt is None:
        return Model(cfg or DEFAULT_CFG, ch=3, nc=nc, anchors=anchors)
    ckpt_yaml, _, ckpt_sd = checkpoint_model_parts(ckpt)
    model = Model(cfg or ckpt_yaml, ch=3, nc=nc, anchors=anchors)
    exclude = ["anchor"] if (cfg or anchors) else []
    transfer_weights(model, {k: v.float() for k, v in ckpt_sd.items()}, exclude=exclude)
    return model


# ---------------------------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------------------------
def train(hyp, opt, device):
    """Train with options ``opt`` (the CLI namespace) and hyperparameters ``hyp``; returns the final
    (P, R, mAP50, mAP50-95, val box, obj, cls) tuple."""
    import val as validate
    from models.yolo import Model
    from utils.autoanchor import check_anchors
    from utils.checkpoints import load_checkpoint, make_checkpoint, nonfinite_weights, save_checkpoint, strip_optimizer
    from utils.dataloaders import create_dataloader
    from utils.dataset_yaml import check_dataset
    from utils.loss import ComputeLoss, scale_loss_gains
    from utils.metrics import fitness
    from utils.plots import plot_images, plot_labels, plot_results

    save_dir = Path(opt.save_dir)
    epochs, batch_size, weights, single_cls = opt.epochs, opt.batch_size, opt.weights, opt.single_cls
    resume, noval, nosave, plots = opt.resume, opt.noval, opt.nosave, not opt.noplots
    main_process = RANK in (-1, 0)
    wdir = save_dir / "weights"
    last, best = wdir / "last.pt", wdir / "best.pt"
    hyp_saved = dict(hyp)  # as given; the copy below is scaled for this model and batch
    hyp = dict(hyp)
    missing = [k for k in HYP_KEYS if k not in hyp]
    if missing:
        raise UserError(
            f"hyperparameters {missing} missing from --hyp {opt.hyp}; start from data/hyps/hyp.scratch-low.yaml"
        )
    not_numbers = [k for k, v in hyp.items() if isinstance(v, bool) or not isinstance(v, (int, float))]
    if not_numbers:
        raise UserError(f"hyperparameters {not_numbers} in --hyp {opt.hyp} must be numbers")
    check_hyp(hyp, f"--hyp {opt.hyp}")
    LOGGER.info(colorstr("hyperparameters: ") + ", ".join(f"{k}={v}" for k, v in hyp.items()))

    if main_process:
        wdir.mkdir(parents=True, exist_ok=True)
        yaml_save(save_dir / "hyp.yaml", hyp_saved)
        yaml_save(save_dir / "opt.yaml", vars(opt))

    cuda = device.type == "cuda"
    ckpt = load_checkpoint(weights) if weights else None  # first: a missing file fails fast, nothing is downloaded
    init_seeds(opt.seed + 1 + RANK, deterministic=cuda)  # CPU kernels are deterministic already
    data_dict = check_dataset(opt.data, autodownload=opt.download)
    train_path, val_path = data_dict["train"], data_dict["val"]
    nc = 1 if single_cls else int(data_dict["nc"])
    names = {0: "item"} if single_cls and len(data_dict["names"]) != 1 else dict(data_dict["names"])

    # Model
    if resume:
        if not 0 <= ckpt["epoch"] < epochs - 1:
            raise UserError(f"{weights} has finished training ({epochs} epochs); nothing to resume. "
                            f"Start a new run with --weights {weights}")
        model = Model(ckpt["yaml"], ch=3, nc=nc).to(device)
        model.load_state_dict({k: v.float() for k, v in ckpt["model"].items()})
        LOGGER.info(f"Resuming model weights from {weights}")
    else:
        model = create_model(opt.cfg, ckpt, nc, anchors=hyp.get("anchors")).to(device)
    model.names = names
    amp = select_amp(opt.amp, device.type)
    if amp.device_type == "cuda":
        amp = check_amp(model, amp)
    LOGGER.info(f"{colorstr('AMP:')} {amp.describe()}")

    # Freeze
    freeze = [f"model.{x}." for x in (opt.freeze if len(opt.freeze) > 1 else range(opt.freeze[0]))]
    for k, v in model.named_parameters():
        v.requires_grad = not any(x in k for x in freeze)
        if freeze and not v.requires_grad:
            LOGGER.debug(f"freezing {k}")
    if not any(v.requires_grad for v in model.parameters()):
        raise UserError(f"--freeze {' '.join(map(str, opt.freeze))} freezes all {len(model.model)} layers; "
                        f"nothing would train (backbone only: --freeze 10)")

    gs = max(int(model.stride.max()), 32)
    imgsz = check_img_size(opt.imgsz, gs, floor=gs * 2)

    # Optimizer
    accumulate = max(round(NBS / batch_size), 1)
    hyp["weight_decay"] *= batch_size * accumulate / NBS
    optimizer = build_optimizer(model, opt.optimizer, hyp["lr0"], hyp["momentum"], hyp["weight_decay"])
    lf = lr_lambda(epochs, hyp["lrf"], opt.cos_lr)

    # Multi-GPU hooks
    if cuda and RANK == -1 and torch.cuda.device_count() > 1:
        LOGGER.warning("WARNING: several GPUs visible; for multi-GPU training launch with torch.distributed.run")
    if opt.sync_bn and cuda and RANK != -1:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model).to(device)
        LOGGER.info("Using SyncBatchNorm()")
    elif opt.sync_bn:  # torch's SyncBatchNorm runs on GPUs only
        LOGGER.warning("WARNING: --sync-bn needs CUDA devices and DDP (torchrun); training with BatchNorm2d")

    # Data
    train_loader, dataset = create_dataloader(
        train_path, imgsz, batch_size // WORLD_SIZE, gs, single_cls, hyp=hyp, augment=True,
        cache=None if opt.cache == "val" else opt.cache,
        rect=opt.rect, rank=LOCAL_RANK, workers=opt.workers, image_weights=opt.image_weights,
        prefix=colorstr("train: "), shuffle=True, seed=opt.seed,
    )
    labels = np.concatenate([x for x in dataset.labels if len(x)] or [np.zeros((0, 5))], 0)
    if len(labels) and int(labels[:, 0].max()) >= nc:
        raise UserError(f"label class {int(labels[:, 0].max())} exceeds nc={nc} in {opt.data}; "
                        f"possible class labels are 0-{nc - 1}")
    nb = len(train_loader)
    if nb == 0:
        raise UserError(f"no training images found in {train_path}")

    val_loader = None
    if main_process:
        if val_path:
            val_loader = create_dataloader(
                val_path, imgsz, batch_size // WORLD_SIZE * 2, gs, single_cls, hyp=hyp,
                cache=None if noval else opt.cache, rect=True, rank=-1, workers=opt.workers * 2, pad=0.5,
                prefix=colorstr("val: "),
            )[0]
        else:
            LOGGER.warning(f"WARNING: {opt.data} has no 'val' split; validation is skipped")
        if not resume:
            if not opt.noautoanchor:
                check_anchors(dataset, model=model, thr=hyp["anchor_t"], imgsz=imgsz)
            if plots:
                plot_labels(labels, names, save_dir)

    ema = ModelEMA(model) if main_process else None  # after AutoAnchor, which may change the anchors

    # Resume state
    best_fitness, start_epoch = 0.0, 0
    last_opt_step, best_epoch, maps = -1, 0, np.zeros(nc)  # optimizer step, fitness epoch, per-class mAPs
    if resume:
        if ckpt.get("optimizer") is not None:
            optimizer.load_state_dict(ckpt["optimizer"])
        best_fitness = ckpt.get("best_fitness") or 0.0
        if ema is not None and ckpt.get("ema"):
            ema.ema.load_state_dict({k: v.float() for k, v in ckpt["ema"].items()})
            ema.updates = ckpt.get("updates", 0)
        start_epoch = ckpt["epoch"] + 1
        state = ckpt.get("train_state") or {}
        last_opt_step = state.get("last_opt_step", last_opt_step)
        best_epoch = state.get("best_epoch", best_epoch)
        maps = np.array(state.get("maps", maps), dtype=np.float64)
        LOGGER.info(f"Resuming training from {weights} at epoch {start_epoch} of {epochs}")
    del ckpt

    if cuda and RANK != -1:
        model = nn.parallel.DistributedDataParallel(model, device_ids=[LOCAL_RANK], output_device=LOCAL_RANK)
    elif RANK != -1:
        model = nn.parallel.DistributedDataParallel(model)
    if amp.channels_last:
        model = model.to(memory_format=torch.channels_last)

    bare = de_parallel(model)
    hyp = scale_loss_gains(hyp, bare.model[-1].nl, nc, imgsz)
    hyp["label_smoothing"] = opt.label_smoothing
    bare.class_weights = labels_to_class_weights(dataset.labels, nc).to(device) * nc
    compute_loss = ComputeLoss(bare, hyp)

    # Training loop
    nw = max(round(hyp["warmup_epochs"] * nb), 100) if hyp["warmup_epochs"] > 0 else 0
    results = (0, 0, 0, 0, 0, 0, 0)
    scaler = amp.grad_scaler()
    stopper = EarlyStopping(patience=opt.patience)
    stopper.best_fitness, stopper.best_epoch = best_fitness, best_epoch
    tb_writer = _tensorboard(save_dir) if main_process else None
    csv_file = save_dir / "results.csv"
    if main_process:
        start_results_csv(csv_file, resume_epoch=start_epoch - 1 if resume else None)
    last_saved_epoch = start_epoch - 1 if resume else None  # epoch of the newest finite last.pt
    t0 = time.time()
    LOGGER.info(
        f"Image sizes {imgsz} train, {imgsz} val\nUsing {getattr(train_loader, 'num_workers', 0)} dataloader "
        f"workers\nLogging results to {colorstr('bold', save_dir)}\nStarting training for {epochs} epochs..."
    )
    nan_stop = diverged = None
    epoch = start_epoch
    for epoch in range(start_epoch, epochs):
        init_seeds(opt.seed + 1 + RANK + epoch)  # per-epoch seeds: a resumed run draws what it would have drawn
        model.train()
        set_epoch_lr(optimizer, lf, epoch)
        if opt.image_weights:
            _resample_images(dataset, nc, bare.class_weights.cpu().numpy() * (1 - maps) ** 2 / nc)
        train_loader.set_epoch(epoch)  # the shuffle and every augmentation depend on (seed, epoch) only
        mloss = torch.zeros(3, device=device)
        header = ("Epoch", "GPU_mem", "box_loss", "obj_loss", "cls_loss", "Instances", "Size")
        LOGGER.info(("\n" + "%11s" * 7) % header)
        pbar = enumerate(train_loader)
        t_epoch, n_images = time.time(), 0
        if main_process:
            pbar = _progress(pbar, nb)
        optimizer.zero_grad()
        for i, (imgs, targets, paths, _) in pbar:
            ni = i + nb * epoch
            imgs = imgs.to(device, non_blocking=True).float() / 255
            if ni <= nw:
                accumulate = warmup(optimizer, ni, nw, epoch, lf, hyp, batch_size)
            if opt.multi_scale:
                imgs = _random_rescale(imgs, imgsz, gs)
            if amp.channels_last:
                imgs = imgs.contiguous(memory_format=torch.channels_last)

            with amp.autocast():
                pred = model(imgs)
            loss, loss_items = compute_loss([p.float() for p in pred], targets.to(device))  # the loss is fp32
            if RANK != -1:
                loss *= WORLD_SIZE  # gradients are averaged between processes
            if not torch.isfinite(loss):
                nan_stop = (epoch, i, loss_items.tolist())
                break

            n_images += imgs.shape[0]
            scaler.scale(loss).backward()
            if ni - last_opt_step >= accumulate:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=GRAD_CLIP_NORM)
                scaler.step(optimizer)
                scaler.update()
                optimizer.zero_grad()
                if ema is not None:
                    ema.update(model)
                last_opt_step = ni

            if main_process:
                mloss = (mloss * i + loss_items) / (i + 1)
                mem = f"{torch.cuda.memory_reserved() / 1e9 if cuda else 0:.3g}G"
                progress = (f"{epoch}/{epochs - 1}", mem, *mloss, targets.shape[0], imgs.shape[-1])
                pbar.set_description(("%11s" * 2 + "%11.4g" * 5) % progress)
                if plots and ni < 3:
                    plot_images(imgs, targets, paths, save_dir / f"train_batch{ni}.jpg", names=names)
        if main_process and hasattr(pbar, "close"):
            pbar.close()
        if nan_stop is not None:
            break

        lr = [g["lr"] for g in optimizer.param_groups]
        t_train = time.time() - t_epoch
        stop = False
        if main_process:
            ema.update_attr(model, include=["yaml", "nc", "names", "stride", "class_weights"])
            final_epoch = epoch + 1 == epochs or stopper.patience <= epoch - stopper.best_epoch + 1
            # the epoch's last optimizer steps can break the weights although every loss was finite
            bad = nonfinite_weights({"model": de_parallel(model).state_dict(), "ema": ema.ema.state_dict()})
            if not bad and val_loader is not None and (not noval or final_epoch):
                results, maps, _ = validate.run(
                    data_dict, batch_size=batch_size // WORLD_SIZE * 2, imgsz=imgsz, half=amp.fp16, model=ema.ema,
                    single_cls=single_cls, dataloader=val_loader, save_dir=save_dir, plots=False,
                    compute_loss=compute_loss,
                )
                bad = [k for k, v in zip(RESULTS_COLUMNS[8:11], results[4:7]) if not math.isfinite(v)]
            LOGGER.info(
                f"epoch {epoch}: train {t_train:.1f}s ({n_images / max(t_train, 1e-9):.1f} img/s), "
                f"val {time.time() - t_epoch - t_train:.1f}s"
            )
            if bad:  # nothing of this epoch is logged or saved
                diverged, stop = (epoch, bad), True
            else:
                fi = float(fitness(np.array(results).reshape(1, -1))[0]) if val_loader is not None else 0.0
                stop = stopper(epoch=epoch, fitness=fi)
                improved = fi > best_fitness or not best.exists()  # a tie (at 0: nothing learnt) keeps best.pt
                best_fitness = max(best_fitness, fi)
                row = [epoch, *mloss.tolist(), *[float(x) for x in results], *lr]
                _append_csv(csv_file, row)
                if tb_writer is not None:
                    for k, v in zip(RESULTS_COLUMNS[1:], row[1:]):
                        tb_writer.add_scalar(k, v, epoch)

                if not nosave or final_epoch:
                    train_state = {"last_opt_step": int(last_opt_step), "best_epoch": int(stopper.best_epoch),
                                   "maps": [float(x) for x in maps]}
                    ckpt = make_checkpoint(
                        model, names=names, ema=ema, optimizer=optimizer, epoch=epoch, best_fitness=best_fitness,
                        opt=vars(opt), hyp=hyp_saved, half=False, train_state=train_state,
                    )
                    save_checkpoint(ckpt, last)
                    last_saved_epoch = epoch
                    if improved:
                        save_checkpoint(ckpt, best)
                    if opt.save_period > 0 and epoch % opt.save_period == 0:
                        save_checkpoint(ckpt, wdir / f"epoch{epoch}.pt")
                    del ckpt
        if RANK != -1:  # every process stops together
            flag = [stop]
            torch.distributed.broadcast_object_list(flag, 0)
            stop = flag[0]
        if stop:
            break

    if nan_stop is not None or diverged is not None:
        if nan_stop is not None:
            e, i, items = nan_stop
            what = f"the loss became NaN/inf at epoch {e}, batch {i} (box, obj, cls = {items})"
        else:
            e, bad = diverged
            what = f"NaN/inf at the end of epoch {e} in {len(bad)} of the weights/val losses (e.g. {bad[:3]})"
        kept = (f"the newest finite checkpoint is {last} (epoch {last_saved_epoch})" if last_saved_epoch is not None
                else "no checkpoint was written yet")
        msg = (f"training stopped: {what}; {kept}. Lower the learning rate (--hyp with a smaller lr0) or the "
               f"momentum, check the labels, then start again or resume with --resume {last}")
        LOGGER.error(msg)
        raise UserError(msg)

    if main_process:
        hours = (time.time() - t0) / 3600
        LOGGER.info(f"\n{epoch - start_epoch + 1} epochs completed in {hours:.3f} hours.")
        for f in (last, best):
            if f.exists():
                strip_optimizer(f)
                if f is best and val_loader is not None:
                    from models.experimental import attempt_load

                    LOGGER.info(f"\nValidating {f}...")
                    results, _, _ = validate.run(
                        data_dict, batch_size=batch_size // WORLD_SIZE * 2, imgsz=imgsz,
                        model=attempt_load(f, device).half() if amp.fp16 else attempt_load(f, device),
                        single_cls=single_cls, dataloader=val_loader, save_dir=save_dir, verbose=True,
                        plots=plots, compute_loss=compute_loss, half=amp.fp16,
                    )
        if plots and csv_file.exists():
            plot_results(file=csv_file)
        if tb_writer is not None:
            tb_writer.close()
        _summary(save_dir, last, best)
    if cuda:
        torch.cuda.empty_cache()
    return results


def _progress(iterable, total):
    from tqdm import tqdm

    return tqdm(iterable, total=total, bar_format="{l_bar}{bar:10}{r_bar}")


def _random_rescale(imgs, imgsz, gs):
    """Multi-scale training: resize the batch to a random multiple of ``gs`` in [0.5, 1.5] x imgsz, at least
    2 * gs (at gs the deepest feature map is 1x1, and BatchNorm of a 1-image batch on it fails)."""
    size = max(random.randrange(int(imgsz * 0.5), int(imgsz * 1.5) + gs) // gs * gs, 2 * gs)
    factor = size / max(imgs.shape[2:])
    if factor != 1:
        new_shape = [math.ceil(x * factor / gs) * gs for x in imgs.shape[2:]]
        imgs = nn.functional.interpolate(imgs, size=new_shape, mode="bilinear", align_corners=False)
    return imgs


def _resample_images(dataset, nc, class_weights):
    """--image-weights: draw this epoch's images with probability proportional to their rare-class content."""
    if not hasattr(dataset, "indices"):
        LOGGER.warning("WARNING: --image-weights is not supported by this dataset; sampling uniformly")
        return
    iw = labels_to_image_weights(dataset.labels, nc=nc, class_weights=class_weights)
    if not iw.sum() > 0:  # no labels at all: nothing to weigh by
        LOGGER.warning("WARNING: --image-weights: the training images have no labels; sampling uniformly")
        return
    dataset.indices = random.choices(range(dataset.n), weights=iw, k=dataset.n)


def _append_csv(file, row):
    new = not file.exists()
    with open(file, "a") as f:
        if new:
            f.write(",".join(f"{c:>20}" for c in RESULTS_COLUMNS) + "\n")
        f.write(",".join(f"{x:>20.5g}" for x in row) + "\n")


def _tensorboard(save_dir):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except Exception:  # TensorBoard is optional
        return None
    LOGGER.info(f"{colorstr('TensorBoard: ')}Start with 'tensorboard --logdir {save_dir.parent}'")
    return SummaryWriter(str(save_dir))


def _summary(save_dir, last, best):
    files = sorted(p.name for p in save_dir.iterdir() if p.is_file())
    LOGGER.info(
        f"\n{colorstr('Training finished.')} Results saved to {colorstr('bold', save_dir)}\n"
        f"  weights: {best if best.exists() else '-'} (best), {last if last.exists() else '-'} (last)\n"
        f"  files:   {', '.join(files)}\n"
        f"  validate: python val.py --weights {best} --data <data.yaml>\n"
        f"  predict:  python detect.py --weights {best} --source <images>"
    )


# ---------------------------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------------------------
def parse_opt(argv=None, known=False):
    parser = argparse.ArgumentParser(description="Train a YOLOv5 detection model.")
    parser.add_argument("--weights", type=str, default="", help="initial weights path ('' = from scratch)")
    parser.add_argument("--cfg", type=str, default="", help="model.yaml path (yolov5n.yaml when no --weights)")
    parser.add_argument("--data", type=str, default=str(ROOT / "data/shapes.yaml"), help="dataset.yaml path")
    parser.add_argument("--hyp", type=str, default=str(ROOT / "data/hyps/hyp.scratch-low.yaml"), help="hyp path")
    parser.add_argument("--epochs", type=int, default=30, help="total training epochs")
    parser.add_argument("--batch-size", type=int, default=16, help="total batch size for all GPUs")
    parser.add_argument("--imgsz", "--img", "--img-size", type=int, default=256, help="train, val image size (pixels)")
    parser.add_argument("--rect", action="store_true", help="rectangular training")
    parser.add_argument("--resume", nargs="?", const=True, default=False, help="resume most recent training or PATH")
    parser.add_argument("--nosave", action="store_true", help="only save final checkpoint")
    parser.add_argument("--noval", action="store_true", help="only validate final epoch")
    parser.add_argument("--noautoanchor", action="store_true", help="disable AutoAnchor")
    parser.add_argument("--noplots", action="store_true", help="save no plot files")
    parser.add_argument("--cache", type=str, nargs="?", const="ram", choices=["ram", "disk", "val"],
                        help="cache images: ram (default), disk (.npy beside each image) or val (val split only)")
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
    parser.add_argument("--amp", choices=AMP_CHOICES, default="auto",
                        help="mixed precision: auto = fp16 on CUDA (after a check), bf16 + channels-last on CPUs "
                             "with native bf16, else fp32; on = also emulated bf16; off = fp32")
    parser.add_argument("--local_rank", type=int, default=-1, help="automatic DDP multi-GPU argument, do not modify")
    return parser.parse_known_args(argv)[0] if known else parser.parse_args(argv)


def main(opt):
    if RANK in (-1, 0):
        print_args(vars(opt), "train")
    else:  # DDP: only rank 0 logs; the other ranks report errors only
        LOGGER.setLevel(logging.ERROR)

    if opt.resume:  # only training state and whitelisted options come from the checkpoint (utils/resume.py)
        ckpt_path, saved, hyp = load_resume_state(opt.resume)
        cli = {k: getattr(opt, k) for k in ("workers", "device", "download")}
        opt = argparse.Namespace(**{**vars(parse_opt([])), **saved, **cli})
        opt.resume, opt.weights = True, str(ckpt_path)
        opt.save_dir = str(Path(os.path.abspath(ckpt_path)).parents[1])
    else:
        if not opt.cfg and not opt.weights:
            opt.cfg = DEFAULT_CFG
        hyp = opt.hyp if isinstance(opt.hyp, dict) else yaml_load(opt.hyp)
        if opt.epochs < 1:
            raise UserError(f"--epochs must be at least 1, got {opt.epochs}")
        if opt.batch_size < 1:
            raise UserError(f"--batch-size must be at least 1, got {opt.batch_size}")
        if opt.workers < 0:
            raise UserError(f"--workers must be 0 (load in the main process) or more, got {opt.workers}")
        opt.save_dir = str(increment_path(Path(opt.project) / opt.name, exist_ok=opt.exist_ok, mkdir=RANK in (-1, 0)))
        if isinstance(opt.hyp, dict):
            opt.hyp = "dict"

    device = select_device(opt.device, batch_size=opt.batch_size)
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
        opt.results = train(hyp, opt, device)
    finally:  # every rank leaves the process group, also on an error, so no gloo thread outlives the process
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    return opt


def run(**kwargs):
    """Train from Python with the CLI flags as keyword arguments, e.g. ``run(data='coco8.yaml', imgsz=320,
    epochs=3)``. Returns the options namespace with ``save_dir`` and final ``results``."""
    opt = parse_opt([], known=True)
    unknown = [k for k in kwargs if not hasattr(opt, k)]
    if unknown:
        raise UserError(f"train.run: unknown argument(s) {unknown}; valid ones are {sorted(vars(opt))}")
    for k, v in kwargs.items():
        setattr(opt, k, v)
    if isinstance(opt.freeze, int):
        opt.freeze = [opt.freeze]
    return main(opt)


if __name__ == "__main__":
    sys.exit(exit_code(lambda: main(parse_opt())))
