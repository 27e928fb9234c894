"""Hyperparameter evolution (``train.py --evolve N``): YOLOv5's genetic search over the hyp keys.

Each generation trains once with hyperparameters mutated from a parent drawn from the best earlier generations
(the first generation, with no evolve.csv yet, trains the given hyperparameters as they are). A mutation
multiplies each evolvable key, with probability 0.8, by a factor 1 + N(0, 1) * u * 0.2 * gain (u uniform in
[0, 1) per generation, ``gain`` the key's mutation scale in utils/hyp.py's HYP_SCHEMA), clipped to [0.3, 3.0];
the result is clipped to the key's official evolution limits (HYP_SCHEMA too) and rounded to 5 significant
digits. Parents: the 5 fittest rows of evolve.csv, one drawn with probability proportional to its fitness above
the worst of them (+1e-6).

evolve.csv holds one row per generation: fitness (0.1 mAP50 + 0.9 mAP50-95), the 7 validation results and every
hyp key. hyp_evolve.yaml is the fittest row's hyperparameters; evolve.png plots every key against fitness.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from utils.evaluation import VAL_COLUMNS
from utils.general import LOGGER, UserError, colorstr, yaml_save
from utils.hyp import HYP_SCHEMA
from utils.metrics import fitness as results_fitness

RESULT_COLUMNS = tuple(VAL_COLUMNS.values())  # evolve.csv's names of the 7 validation results
MUTATION_PROBABILITY, MUTATION_SIGMA = 0.8, 0.2
PARENTS = 5


def _evolve_row(row: dict) -> dict | None:
    """One evolve.csv row as floats, or None when it is damaged: a field missing, extra, empty, text or not
    finite, or neither a fitness nor the results to compute it from."""
    if None in row or None in row.values():  # a long row (extra fields) or a short one (missing fields)
        return None
    try:
        values = {k.strip(): float(v) for k, v in row.items()}
    except ValueError:  # an empty field or text
        return None
    if not all(math.isfinite(v) for v in values.values()):
        return None
    if "fitness" not in values:
        if not all(c in values for c in RESULT_COLUMNS[:4]):
            return None
        values["fitness"] = float(results_fitness(np.array([[values[c] for c in RESULT_COLUMNS[:4]]]))[0])
    return values


def read_evolve_csv(file: str | Path) -> list[dict]:
    """The rows of evolve.csv as dicts of floats (fitness computed when a file, e.g. YOLOv5's, lacks it). Damaged
    rows (see ``_evolve_row``) are skipped with a warning; the good rows are all kept."""
    file = Path(file)
    if not file.is_file():
        return []
    try:
        with open(file, newline="", encoding="utf-8") as f:
            raw = list(csv.DictReader(f, skipinitialspace=True))
    except (UnicodeDecodeError, csv.Error) as e:
        LOGGER.warning(f"WARNING: {file} is not a readable csv ({e}); evolving without its rows")
        return []
    rows = [_evolve_row(row) for row in raw]
    damaged = [i + 2 for i, row in enumerate(rows) if row is None]  # line numbers: the header is line 1
    if damaged:
        LOGGER.warning(f"WARNING: {file}: skipped {len(damaged)} damaged row(s) (a missing, empty, text or non-finite "
                       f"field), e.g. line {damaged[0]}")
    return [row for row in rows if row is not None]


def append_evolve_csv(file: str | Path, results: Sequence[float], hyp: dict,
                      columns: Sequence[str] = RESULT_COLUMNS, fitness_fn: Callable | None = None) -> float:
    """Append one generation (results: the 7 validation values, or a task's ``columns``, e.g. segmentation's 12,
    scored by its ``fitness_fn``; hyp: the hyperparameters it trained with)."""
    file = Path(file)
    fit = float((fitness_fn or results_fitness)(np.array([list(results)]))[0])
    keys = ("fitness", *columns, *hyp)
    values = (fit, *results, *hyp.values())
    new = not file.exists()
    with open(file, "a") as f:
        if new:
            f.write(",".join(f"{k:>20}" for k in keys) + "\n")
        f.write(",".join(f"{float(v):>20.5g}" for v in values) + "\n")
    return fit


def select_parent(rows: list[dict], hyp_keys: list[str], rng: np.random.Generator) -> dict:
    """Hyperparameters of a parent drawn from the PARENTS fittest rows, weighted by fitness above the worst."""
    best = sorted(rows, key=lambda r: -r["fitness"])[:PARENTS]
    fits = np.array([r["fitness"] for r in best])
    weights = fits - fits.min() + 1e-6
    parent = best[rng.choice(len(best), p=weights / weights.sum())]
    return {k: parent[k] for k in hyp_keys if k in parent}


def mutate(parent: dict, rng: np.random.Generator) -> dict:
    """A child of ``parent``: evolvable keys multiplied by random factors (see module docstring), at least one
    of them changed when any can change, then clipped to the official evolution limits and rounded to 5 digits."""
    keys = [k for k in parent if k in HYP_SCHEMA and HYP_SCHEMA[k].gain > 0]
    child = dict(parent)
    if keys:
        gains = np.array([HYP_SCHEMA[k].gain for k in keys], dtype=float)
        factors = np.ones(len(keys))
        while np.all(factors == 1):  # redraw until something changes
            chosen = rng.random(len(keys)) < MUTATION_PROBABILITY
            factors = (gains * chosen * rng.standard_normal(len(keys)) * rng.random() * MUTATION_SIGMA + 1)
            factors = factors.clip(0.3, 3.0)
        for k, f in zip(keys, factors):
            child[k] = float(parent[k] * f)
    for k, v in child.items():
        if k in HYP_SCHEMA:
            spec = HYP_SCHEMA[k]
            child[k] = float(f"{min(max(v, spec.evolve_low), spec.evolve_high):.5g}")
    return child


def next_hyp(base_hyp: dict, evolve_csv: str | Path, generation_seed: int) -> dict:
    """Hyperparameters of the next generation: the base ones while evolve.csv is empty, else a mutated parent
    (keys missing from evolve.csv keep their base values)."""
    rows = read_evolve_csv(evolve_csv)
    if not rows:
        return dict(base_hyp)
    rng = np.random.default_rng(generation_seed)
    return {**base_hyp, **mutate(select_parent(rows, list(base_hyp), rng), rng)}


def write_best_hyp(evolve_csv: str | Path, hyp_keys: list[str], out_file: str | Path) -> dict:
    """Save the fittest generation's hyperparameters as a hyp yaml (with a header saying where it came from)."""
    rows = read_evolve_csv(evolve_csv)
    if not rows:
        raise UserError(f"{evolve_csv} has no generations")
    best_i = int(np.argmax([r["fitness"] for r in rows]))
    best = {k: rows[best_i][k] for k in hyp_keys if k in rows[best_i]}
    yaml_save(out_file, best)
    LOGGER.info(f"{colorstr('evolve: ')}best of {len(rows)} generations: generation {best_i} "
                f"(fitness {rows[best_i]['fitness']:.4f}) saved to {out_file}")
    return best


def plot_evolve(evolve_csv: str | Path) -> Path | None:
    """evolve.png next to evolve.csv: each hyperparameter against fitness, the best generation marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_evolve_csv(evolve_csv)
    keys = [k for k in rows[0] if k in HYP_SCHEMA] if rows else []
    if not keys:
        return None
    fits = np.array([r["fitness"] for r in rows])
    best = int(np.argmax(fits))
    cols = min(len(keys), 6)
    rows_n = (len(keys) + cols - 1) // cols
    fig, axes = plt.subplots(rows_n, cols, figsize=(2.5 * cols, 2.2 * rows_n), tight_layout=True, squeeze=False)
    for ax, k in zip(axes.ravel(), keys):
        x = np.array([r[k] for r in rows])
        ax.scatter(x, fits, c=fits, cmap="viridis", s=12, alpha=0.8)
        ax.plot(x[best], fits[best], "k+", markersize=12)
        ax.set_title(f"{k} = {x[best]:.3g}", fontsize=8)
        ax.tick_params(labelsize=6)
    for ax in axes.ravel()[len(keys):]:
        ax.axis("off")
    out = Path(evolve_csv).with_name("evolve.png")
    fig.savefig(out, dpi=150)
    plt.close(fig)
    return out
