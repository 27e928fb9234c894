"""utils/hyp.py: hyperparameters outside their sane ranges are one clear error before training starts."""

import math

import pytest

import train
from utils.general import ROOT, UserError, yaml_load
from utils.hyp import HYP_SCHEMA, REQUIRED_KEYS, check_hyp, check_hyperparameters, in_range

HYP = yaml_load(ROOT / "data/hyps/hyp.scratch-low.yaml")


def test_bundled_hyperparameter_files_are_in_range():
    for name in ("low", "med", "high"):
        check_hyp(yaml_load(ROOT / f"data/hyps/hyp.scratch-{name}.yaml"))
    assert set(HYP) - {"anchors"} <= set(HYP_SCHEMA)  # every key of the official files has a range


@pytest.mark.parametrize("key, value", [
    ("mosaic", math.nan), ("scale", 5), ("translate", 1.5), ("hsv_v", -0.1), ("hsv_h", -0.015), ("lr0", -1),
    ("lr0", 0), ("lr0", 100), ("momentum", 5), ("warmup_epochs", math.inf), ("anchor_t", 0), ("anchor_t", 1),
    ("fliplr", 1.5),
])
def test_out_of_range_values_are_user_errors(key, value):
    with pytest.raises(UserError, match=rf"out of range in --hyp: {key}={value} \(allowed [\[(]"):
        check_hyp(HYP | {key: value})


def test_interval_ends():
    assert in_range(0, 0, 1, "[)") and not in_range(1, 0, 1, "[)") and not in_range(0, 0, 1, "(]")
    assert not in_range(math.nan, 0, 1, "[]") and not in_range(-math.inf, -math.inf, 1, "[]")


def test_train_refuses_out_of_range_hyperparameters_before_loading_data(tmp_path):
    hyp = HYP | {"lr0": -1, "mosaic": math.nan}
    with pytest.raises(UserError, match=r"lr0=-1 \(allowed \(0, 1\]\), mosaic=nan \(allowed \[0, 1\]\)"):
        train.run(data=str(tmp_path / "missing.yaml"), hyp=hyp, project=str(tmp_path), name="bad")


def test_missing_required_keys_are_named_and_optional_keys_may_be_absent():
    with pytest.raises(UserError, match=r"hyperparameters \['lr0', 'anchor_t'\] missing from --hyp my\.yaml; start "):
        check_hyperparameters({k: v for k, v in HYP.items() if k not in ("lr0", "anchor_t")}, "my.yaml")
    check_hyperparameters({k: v for k, v in HYP.items() if k not in ("iou_t", "fl_gamma", "mosaic")}, "my.yaml")
    assert "lr0" in REQUIRED_KEYS and "mosaic" not in REQUIRED_KEYS


def test_evolution_limits_lie_within_the_sane_ranges():
    """A mutant is clipped to its evolution limits, so those must pass check_hyp: evolution never breaks a run."""
    for key, s in HYP_SCHEMA.items():
        assert s.evolve_low <= s.evolve_high, key
        assert in_range(s.evolve_low, s.low, s.high, s.bounds) and in_range(s.evolve_high, s.low, s.high, s.bounds), key
