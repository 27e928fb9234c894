"""utils/evolve.py: mutation within the official ranges, parent selection, evolve.csv round trip, best hyp, plot."""

import numpy as np
import pytest

from utils.evolve import (
    append_evolve_csv,
    mutate,
    next_hyp,
    plot_evolve,
    read_evolve_csv,
    select_parent,
    write_best_hyp,
)
from utils.general import yaml_load
from utils.hyp import HYP_SCHEMA

BASE = dict(lr0=0.01, momentum=0.937, iou_t=0.2, fliplr=0.5, mosaic=0.5, box=0.05)


def test_mutation_changes_evolvable_keys_only_within_ranges():
    rng = np.random.default_rng(0)
    children = [mutate(BASE, rng) for _ in range(200)]
    for child in children:
        assert child["iou_t"] == 0.2 and child["fliplr"] == 0.5  # mutation scale 0: never mutated
        assert any(child[k] != BASE[k] for k in ("lr0", "momentum", "mosaic", "box"))
        for k, v in child.items():
            assert HYP_SCHEMA[k].evolve_low <= v <= HYP_SCHEMA[k].evolve_high
            assert v == float(f"{v:.5g}")
    lr0 = np.array([c["lr0"] for c in children])
    assert 0.3 * 0.01 <= lr0.min() and lr0.max() <= 3 * 0.01 and lr0.std() > 0
    at_limit = [mutate(dict(mosaic=1.0), rng)["mosaic"] for _ in range(50)]
    assert max(at_limit) == 1.0 and min(at_limit) < 1.0  # clipped to its upper limit


def test_csv_round_trip_parent_and_best(tmp_path):
    csv = tmp_path / "evolve.csv"
    results = [(0.5, 0.4, 0.3, 0.1, 0.05, 0.02, 0.01), (0.6, 0.5, 0.6, 0.4, 0.04, 0.02, 0.01)]
    fits = [append_evolve_csv(csv, r, dict(BASE, lr0=lr)) for r, lr in zip(results, (0.01, 0.02))]
    assert fits == pytest.approx([0.1 * 0.3 + 0.9 * 0.1, 0.1 * 0.6 + 0.9 * 0.4])
    rows = read_evolve_csv(csv)
    assert [r["lr0"] for r in rows] == [0.01, 0.02] and [r["fitness"] for r in rows] == pytest.approx(fits)
    assert rows[1]["metrics/mAP_0.5:0.95"] == 0.4
    # the fitter parent weighs (0.42 - 0.12 + 1e-6) against 1e-6: practically always drawn
    assert select_parent(rows, list(BASE), np.random.default_rng(0))["lr0"] == 0.02
    best = write_best_hyp(csv, list(BASE), tmp_path / "hyp_evolve.yaml")
    assert best["lr0"] == 0.02 and yaml_load(tmp_path / "hyp_evolve.yaml")["lr0"] == 0.02
    assert plot_evolve(csv).stat().st_size > 1000
    child = next_hyp(dict(BASE, extra=7.0), csv, generation_seed=3)
    assert child["extra"] == 7.0 and child["iou_t"] == 0.2  # keys outside evolve.csv keep their base values
    assert next_hyp(BASE, tmp_path / "none.csv", 0) == BASE  # first generation: the given hyps


def test_official_evolve_csv_without_fitness_column(tmp_path):
    csv = tmp_path / "evolve.csv"
    csv.write_text("metrics/precision,metrics/recall,metrics/mAP_0.5,metrics/mAP_0.5:0.95,val/box_loss,"
                   "val/obj_loss,val/cls_loss,lr0\n0.5,0.5,0.5,0.2,0.1,0.1,0.1,0.01\n")
    assert read_evolve_csv(csv)[0]["fitness"] == pytest.approx(0.05 + 0.18)
