"""Sane ranges of the training hyperparameters (data/hyps/*.yaml) and the check that enforces them.

A value outside its range is an error before training starts: a NaN probability, a scale gain of 5 (negative
resize factors), a translation beyond the image or a negative learning rate would otherwise fail deep inside the
loader or the optimizer, or train to nothing. Keys not in the table are left alone.
"""

import math

from utils.general import UserError

# key: (low, high, bounds) where bounds says which ends are included, as in interval notation
HYP_RANGES = {
    "lr0": (0.0, 1.0, "(]"),  # initial learning rate
    "lrf": (0.0, 1.0, "[]"),  # final learning rate as a fraction of lr0
    "momentum": (0.0, 1.0, "[)"),  # SGD momentum / Adam beta1
    "weight_decay": (0.0, 1.0, "[)"),
    "warmup_epochs": (0.0, 1000.0, "[]"),
    "warmup_momentum": (0.0, 1.0, "[)"),
    "warmup_bias_lr": (0.0, 1.0, "[]"),
    "box": (0.0, 100.0, "[]"),  # loss gains
    "cls": (0.0, 100.0, "[]"),
    "obj": (0.0, 100.0, "[]"),
    "cls_pw": (0.0, 100.0, "(]"),  # BCE positive weights
    "obj_pw": (0.0, 100.0, "(]"),
    "iou_t": (0.0, 1.0, "[]"),
    "anchor_t": (1.0, 100.0, "(]"),  # target/anchor size ratio limit: at 1 no target matches any anchor
    "anchors": (0.0, 10.0, "[]"),  # anchors per level for AutoAnchor, 0 = the yaml's
    "fl_gamma": (0.0, 10.0, "[]"),
    "hsv_h": (0.0, 1.0, "[]"),  # colour jitter gains (fractions)
    "hsv_s": (0.0, 1.0, "[]"),
    "hsv_v": (0.0, 1.0, "[]"),
    "degrees": (0.0, 180.0, "[]"),
    "translate": (0.0, 0.9, "[]"),  # fraction of the image size; beyond it the image leaves the canvas
    "scale": (0.0, 1.0, "[)"),  # resize factor drawn from [1 - scale, 1 + scale], so it must stay positive
    "shear": (0.0, 45.0, "[]"),
    "perspective": (0.0, 0.01, "[]"),
    "flipud": (0.0, 1.0, "[]"),  # probabilities
    "fliplr": (0.0, 1.0, "[]"),
    "mosaic": (0.0, 1.0, "[]"),
    "mixup": (0.0, 1.0, "[]"),
    "copy_paste": (0.0, 1.0, "[]"),
}


def in_range(value, low, high, bounds):
    """Whether ``value`` lies in the interval; NaN and inf never do."""
    if not math.isfinite(value):
        return False
    above = value >= low if bounds[0] == "[" else value > low
    below = value <= high if bounds[1] == "]" else value < high
    return above and below


def check_hyp(hyp, source="--hyp"):
    """UserError listing every hyperparameter of ``hyp`` (numbers) outside :data:`HYP_RANGES`."""
    bad = [
        f"{k}={hyp[k]} (allowed {bounds[0]}{low:g}, {high:g}{bounds[1]})"
        for k, (low, high, bounds) in HYP_RANGES.items()
        if isinstance(hyp.get(k), (int, float)) and not in_range(float(hyp[k]), low, high, bounds)
    ]
    if bad:
        raise UserError(f"hyperparameters out of range in {source}: {', '.join(bad)}")
