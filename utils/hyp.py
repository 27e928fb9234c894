"""The training hyperparameters (data/hyps/*.yaml): one schema, and the checks and tables derived from it.

``HYP_SCHEMA`` holds one record per key: the interval of sane values, YOLOv5's evolution settings (mutation gain
and limits, used by utils/evolve.py) and whether training needs the key. From it come the required-key check,
the range check and evolve's mutation table; ``is_number`` is what a hyperparameter value must be, both for a
--hyp file and for the hyperparameters a --resume checkpoint carries (utils/resume.py).

A value outside its range is an error before training starts: a NaN probability, a scale gain of 5 (negative
resize factors), a translation beyond the image or a negative learning rate would otherwise fail deep inside the
loader or the optimizer, or train to nothing. Keys not in the schema are left alone.
"""

import math
from dataclasses import dataclass

from utils.general import UserError


@dataclass(frozen=True)
class HypSpec:
    """One hyperparameter: its sane interval, how evolution mutates it, and whether training needs it."""

    low: float
    high: float
    bounds: str  # which ends of [low, high] are included, as in interval notation: "[]", "[)", "(]" or "()"
    gain: float  # evolution's mutation scale; 0 = never mutated
    evolve_low: float  # evolution clips a mutated value to [evolve_low, evolve_high] (YOLOv5's official table)
    evolve_high: float
    required: bool = False  # training refuses a --hyp without it


# key: HypSpec(low, high, bounds, gain, evolve_low, evolve_high), in the order of the official files
HYP_SCHEMA = {
    "lr0": HypSpec(0.0, 1.0, "(]", 1, 1e-5, 1e-1, required=True),  # initial learning rate
    "lrf": HypSpec(0.0, 1.0, "[]", 1, 0.01, 1.0, required=True),  # final learning rate as a fraction of lr0
    "momentum": HypSpec(0.0, 1.0, "[)", 0.3, 0.6, 0.98, required=True),  # SGD momentum / Adam beta1
    "weight_decay": HypSpec(0.0, 1.0, "[)", 1, 0.0, 0.001, required=True),
    "warmup_epochs": HypSpec(0.0, 1000.0, "[]", 1, 0.0, 5.0, required=True),
    "warmup_momentum": HypSpec(0.0, 1.0, "[)", 1, 0.0, 0.95, required=True),
    "warmup_bias_lr": HypSpec(0.0, 1.0, "[]", 1, 0.0, 0.2, required=True),
    "box": HypSpec(0.0, 100.0, "[]", 1, 0.02, 0.2, required=True),  # loss gains
    "cls": HypSpec(0.0, 100.0, "[]", 1, 0.2, 4.0, required=True),
    "cls_pw": HypSpec(0.0, 100.0, "(]", 1, 0.5, 2.0, required=True),  # BCE positive weights
    "obj": HypSpec(0.0, 100.0, "[]", 1, 0.2, 4.0, required=True),
    "obj_pw": HypSpec(0.0, 100.0, "(]", 1, 0.5, 2.0, required=True),
    "iou_t": HypSpec(0.0, 1.0, "[]", 0, 0.1, 0.7),
    # target/anchor size ratio limit: at 1 no target matches any anchor
    "anchor_t": HypSpec(1.0, 100.0, "(]", 1, 2.0, 8.0, required=True),
    "anchors": HypSpec(0.0, 10.0, "[]", 2, 2.0, 10.0),  # anchors per level for AutoAnchor, 0 = the yaml's
    "fl_gamma": HypSpec(0.0, 10.0, "[]", 0, 0.0, 2.0),
    "hsv_h": HypSpec(0.0, 1.0, "[]", 1, 0.0, 0.1),  # colour jitter gains (fractions)
    "hsv_s": HypSpec(0.0, 1.0, "[]", 1, 0.0, 0.9),
    "hsv_v": HypSpec(0.0, 1.0, "[]", 1, 0.0, 0.9),
    "degrees": HypSpec(0.0, 180.0, "[]", 1, 0.0, 45.0),
    "translate": HypSpec(0.0, 0.9, "[]", 1, 0.0, 0.9),  # fraction of the image size; beyond: off the canvas
    # resize factor drawn from [1 - scale, 1 + scale], so it must stay positive
    "scale": HypSpec(0.0, 1.0, "[)", 1, 0.0, 0.9),
    "shear": HypSpec(0.0, 45.0, "[]", 1, 0.0, 10.0),
    "perspective": HypSpec(0.0, 0.01, "[]", 0, 0.0, 0.001),
    "flipud": HypSpec(0.0, 1.0, "[]", 1, 0.0, 1.0),  # probabilities
    "fliplr": HypSpec(0.0, 1.0, "[]", 0, 0.0, 1.0),
    "mosaic": HypSpec(0.0, 1.0, "[]", 1, 0.0, 1.0),
    "mixup": HypSpec(0.0, 1.0, "[]", 1, 0.0, 1.0),
    "copy_paste": HypSpec(0.0, 1.0, "[]", 1, 0.0, 1.0),
}
REQUIRED_KEYS = tuple(k for k, spec in HYP_SCHEMA.items() if spec.required)


def is_number(value: object) -> bool:
    """Whether ``value`` can be a hyperparameter: an int or float, not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def in_range(value: float, low: float, high: float, bounds: str) -> bool:
    """Whether ``value`` lies in the interval; NaN and inf never do."""
    if not math.isfinite(value):
        return False
    above = value >= low if bounds[0] == "[" else value > low
    below = value <= high if bounds[1] == "]" else value < high
    return above and below


def check_hyp(hyp: dict, source: str = "--hyp") -> None:
    """UserError listing every hyperparameter of ``hyp`` (numbers) outside its range in :data:`HYP_SCHEMA`."""
    bad = [
        f"{k}={hyp[k]} (allowed {s.bounds[0]}{s.low:g}, {s.high:g}{s.bounds[1]})"
        for k, s in HYP_SCHEMA.items()
        if isinstance(hyp.get(k), (int, float)) and not in_range(float(hyp[k]), s.low, s.high, s.bounds)
    ]
    if bad:
        raise UserError(f"hyperparameters out of range in {source}: {', '.join(bad)}")


def check_hyperparameters(hyp: dict, source: str) -> None:
    """Every key training needs is present and every value a number within its range (UserError otherwise);
    ``source`` names the --hyp file in the messages."""
    missing = [k for k in REQUIRED_KEYS if k not in hyp]
    if missing:
        raise UserError(f"hyperparameters {missing} missing from --hyp {source}; start from "
                        f"data/hyps/hyp.scratch-low.yaml")
    not_numbers = [k for k, v in hyp.items() if not is_number(v)]
    if not_numbers:
        raise UserError(f"hyperparameters {not_numbers} in --hyp {source} must be numbers")
    check_hyp(hyp, f"--hyp {source}")
