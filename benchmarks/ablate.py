"""Ablation runner: train every model variant with several seeds under the same settings, then compare each with
the baseline on paired seeds.

    python benchmarks/ablate.py --cfgs all --seeds 0 1 2                      # the default budget, 3 seeds
    python benchmarks/ablate.py --cfgs models/yolov5n.yaml yolov5n_ScConv.yaml --budget long --seeds 0 1 2 3 4
    python benchmarks/ablate.py --cfgs 'models/yolov5s_*.yaml' --no-train      # measure only
    python benchmarks/ablate.py --cfgs all --seeds 0 1 2 --out benchmarks/results --write-readme

Each (configuration, seed) trains with train.run(...) into <project>/<name>/seed<k>/ (identical image size, batch
size, epochs, workers; validation after the last epoch only). A seed fixes the data order and every augmentation,
so the same seed gives every configuration the same training stream: the seeds pair the runs. Then parameters,
GFLOPs at 640 and CPU latency (batch 1, fused, median) of each configuration, and mAP50 / mAP50-95 of each seed's
final weights on the val split are collected into <out>/ablation.md and ablation.csv (per configuration: seed
count, mean and standard deviation, the mean paired difference in mAP50-95 from the baseline with a 95% Student-t
interval, a verdict, the seeds a difference of that size would need, and COCO's small-object AP with its paired
difference and interval), ablation_seeds.csv (one row per seed)
and ablation.png (mean mAP50-95 with error bars vs GFLOPs and vs latency). <out>/ablation_state.json remembers
finished (configuration, seed) rows: a second invocation with the same settings reuses them, and an interrupted
training continues from its last.pt (train.py --resume).
"""

from __future__ import annotations

import argparse
import csv
import glob
import json
import logging
import math
import os
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from utils.general import LOGGER, UserError, exit_code  # noqa: E402

STATE_FILE = "ablation_state.json"
STATE_VERSION = 2  # rows per (configuration, seed); version 1 kept one row per configuration
RUN_SETTINGS_FILE = "ablate_settings.json"  # in each run folder: the settings it was started with
SCALE = "n"
README_START, README_END = "<!-- ablation-table:start -->", "<!-- ablation-table:end -->"
# one row per (configuration, seed): ablation_seeds.csv
SEED_COLUMNS = ("model", "cfg", "seed", "params", "gflops_640", "latency_ms", "map50", "map50_95", "epochs", "train_s",
                "ap_small")
# one row per configuration: ablation.csv (the Markdown table shows the same values, rounded)
COLUMNS = ("model", "cfg", "seeds", "params", "gflops_640", "latency_ms", "map50_mean", "map50_std",
           "map50_95_mean", "map50_95_std", "diff_map50_95", "diff_low", "diff_high", "verdict", "seeds_to_resolve",
           "epochs", "train_s", "ap_small_mean", "ap_small_std", "diff_ap_small", "diff_ap_small_low",
           "diff_ap_small_high")
# the settings of a training (train.run flags); a run started with other values is trained again
TRAIN_KEYS = ("data", "hyp", "epochs", "imgsz", "batch_size", "seed", "weights", "noautoanchor")
# --budget presets (epochs, image size). yolov5n from scratch on data/shapes.yaml (mAP50-95 over 3 seeds, README)
# is at 0.0006 after 6 epochs, 0.009 after 12 and 0.055 after 18 (the warmup alone is 100 iterations, 4 epochs):
# 'short' is the shortest budget whose models detect something; 'long' is train.py's default training; 'smoke'
# only checks that every configuration trains.
BUDGETS = {"smoke": (1, 64), "short": (18, 128), "long": (30, 256)}
DEFAULT_BUDGET = "short"

# Verdicts of the paired comparison with the baseline
BETTER, WORSE = "better", "worse"
UNRESOLVED = "not distinguishable from the baseline at this budget"
ONE_SEED = "no interval with 1 seed"
BASELINE = "baseline"
# 0.975 quantiles of Student's t for 1..30 degrees of freedom (two-sided 95% intervals)
T_975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
         2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)
MAX_SEEDS_TO_RESOLVE = 1000  # beyond this the table says "> 1000"


# ---------------------------------------------------------------------------------------------------------------
# Which configurations
# ---------------------------------------------------------------------------------------------------------------
def variant_cfgs(scale: str = SCALE) -> list[str]:
    """The stock model and every variant yaml at one scale: yolov5{scale}.yaml, yolov5{scale}_<Variant>.yaml ...

    Variants are found as models/yolov5?_<Variant>.yaml at any scale; Model() builds the requested scale from them.
    """
    variants = sorted({p.stem.split("_", 1)[1] for p in (ROOT / "models").glob("yolov5[nsmlx]_*.yaml")})
    return [f"yolov5{scale}.yaml"] + [f"yolov5{scale}_{v}.yaml" for v in variants]


def expand_cfgs(cfgs: list[str]) -> list[str]:
    """Expand 'all' and glob patterns (relative to the current folder or the repository) into a list of yamls,
    without duplicates, in the order given."""
    out = []
    for c in cfgs:
        if c == "all":
            found = variant_cfgs()
        elif any(ch in c for ch in "*?["):
            found = sorted(glob.glob(c)) or sorted(str(p.relative_to(ROOT)) for p in ROOT.glob(c))
            if not found:
                raise UserError(f"--cfgs '{c}' matches no file (patterns are relative to . or {ROOT})")
        else:
            found = [c]
        out += [f for f in found if f not in out]
    names = [Path(c).stem for c in out]
    clash = sorted({n for n in names if names.count(n) > 1})
    if clash:
        raise UserError(f"--cfgs: several yamls share the run name(s) {clash}; give each configuration once")
    return out


def segmentation_cfg(cfg: str) -> str:
    """The -seg form of a detection yaml name, by the rule models/yolo.py resolves (``yolov5n.yaml`` ->
    ``yolov5n-seg.yaml``, ``yolov5n_ScConv.yaml`` -> ``yolov5n-seg_ScConv.yaml``); -seg names stay as they are."""
    name = Path(cfg).name
    if "-seg" in name:
        return cfg
    stem, _, variant = Path(name).stem.partition("_")
    return f"{stem}-seg{'_' + variant if variant else ''}.yaml"


# ---------------------------------------------------------------------------------------------------------------
# Measurements
# ---------------------------------------------------------------------------------------------------------------
@contextmanager
def quiet() -> Iterator[None]:
    """Silence the INFO logging of model building and fusing while measuring."""
    level = LOGGER.level
    LOGGER.setLevel(logging.WARNING)
    try:
        yield
    finally:
        LOGGER.setLevel(level)


def measure_model(cfg: str, latency_img: int = 640, latency_runs: int = 5) -> tuple[int, float, float]:
    """(parameters, GFLOPs at 640, median CPU latency in ms at batch 1 and ``latency_img`` px) of a yaml, measured
    like benchmarks/variants_table.py: parameters of the trainable 80-class model, GFLOPs and latency of the fused
    one (latency on the channels-last path). Weights do not matter for these, so a fresh model is measured."""
    from benchmarks.variants_table import measure

    with quiet():
        params, gflops, latency_ms = measure(cfg, latency_img, torch.get_num_threads(), latency_runs, warmup=1)
    return params, gflops * (640 / latency_img) ** 2, latency_ms  # FLOPs grow with the pixel count


def _run_settings(settings_file: Path) -> dict | None:
    """The settings a run folder was started with; None (the run is trained again) when the file is damaged."""
    try:
        return json.loads(settings_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        LOGGER.warning(f"WARNING: {settings_file} is unreadable; training {settings_file.parent.name} again")
        return None


def training_plan(run_dir: Path, settings: dict) -> tuple[str, Path | None]:
    """What to do with ``run_dir``: ('fresh', None), ('resume', last.pt) for an interrupted run of the same
    settings, or ('done', weights) for a finished one (best.pt, or last.pt when no best.pt was written).

    The settings a run was started with are kept in <run_dir>/ablate_settings.json; a run of other settings is
    trained again."""
    from utils.checkpoints import load_checkpoint

    last, best = run_dir / "weights" / "last.pt", run_dir / "weights" / "best.pt"
    settings_file = run_dir / RUN_SETTINGS_FILE
    if not last.is_file() or not settings_file.is_file() or _run_settings(settings_file) != settings:
        return "fresh", None
    try:
        ckpt = load_checkpoint(last)
    except UserError as e:  # e.g. truncated by a kill during the write: train this one again
        LOGGER.warning(f"WARNING: {e}; training {run_dir.name} again")
        return "fresh", None
    if ckpt.get("optimizer") is not None and 0 <= ckpt.get("epoch", -1) < settings["epochs"] - 1:
        return "resume", last
    return "done", best if best.is_file() else last


def train_config(cfg: str, run_dir: Path, settings: dict, workers: int, device: str,
                 plots: bool, task: str = "detect") -> tuple[float | None, float | None, float | None, float | None]:
    """Train (or resume, or reuse) one configuration; returns (mAP50, mAP50-95, AP_small, training seconds or None).
    mAP50 and mAP50-95 of a training come from its final validation; AP_small (COCO's small-object AP) from
    validating the weights it left (``validate``). ``task`` 'segment': segment/train.py's training, mask metrics."""
    import train
    from segment import train as segment_train

    trainer = segment_train if task == "segment" else train

    plan, weights = training_plan(run_dir, settings)
    t0 = time.time()
    if plan == "fresh":
        if run_dir.exists():  # a stale run or one of other settings: start clean
            shutil.rmtree(run_dir)
        run_dir.mkdir(parents=True)
        (run_dir / RUN_SETTINGS_FILE).write_text(json.dumps(settings))
        LOGGER.info(f"\nablate: training {run_dir.name} ({cfg}) from {settings['weights'] or 'scratch'}")
        kwargs = {k: settings[k] for k in TRAIN_KEYS if k != "hyp" or settings[k]}
        # noval: only the final weights are validated (the row's mAP); saves a validation per epoch. amp off: every
        # row of a table trains in the same precision (fp32), whatever train.py's default is on this machine
        opt = trainer.run(cfg=cfg, workers=workers, device=device, project=str(run_dir.parent), name=run_dir.name,
                          exist_ok=True, noplots=not plots, noval=True, amp="off", **kwargs)
    elif plan == "resume":
        LOGGER.info(f"\nablate: resuming {run_dir.name} from {weights}")
        opt = trainer.run(resume=str(weights), workers=workers, device=device)
    else:
        LOGGER.info(f"\nablate: {run_dir.name} has finished training; validating {weights}")
        return *validate(weights, settings, workers, device, run_dir, task), None
    results, train_s = opt.results, time.time() - t0
    plan, weights = training_plan(run_dir, settings)
    ap_small = validate(weights, settings, workers, device, run_dir, task)[2] if plan == "done" else None
    first = 6 if task == "segment" else 2  # official order: box P R mAP50 mAP50-95, then the masks' four
    return float(results[first]), float(results[first + 1]), ap_small, train_s


def validate(weights: Path | str | None, settings: dict, workers: int, device: str, run_dir: Path,
             task: str = "detect") -> tuple[float | None, float | None, float | None]:
    """mAP50, mAP50-95 and AP_small (COCO's AP of objects under 32x32 pixels; None when the split has none) of
    ``weights`` on the val split (all None when there are no weights); of the masks for ``task`` 'segment'."""
    if weights is None or not Path(weights).is_file():
        return None, None, None
    import val
    from segment import val as segment_val

    kwargs = dict(data=settings["data"], weights=str(weights), batch_size=settings["batch_size"] * 2,
                  imgsz=settings["imgsz"], device=device, workers=workers, plots=False, half=False,
                  project=str(run_dir), name="val", exist_ok=True)
    if task == "segment":
        output = segment_val.run(**kwargs)
        by_size = (output.by_size or {}).get("mask")
        ap_small = by_size.ap_small if by_size is not None else -1.0
        return float(output.results[6]), float(output.results[7]), ap_small if ap_small >= 0 else None
    output = val.run(**kwargs)
    ap_small = output.by_size.ap_small if output.by_size is not None else -1.0
    return float(output.results.map50), float(output.results.map50_95), ap_small if ap_small >= 0 else None


# ---------------------------------------------------------------------------------------------------------------
# Statistics over seeds
# ---------------------------------------------------------------------------------------------------------------
def t_quantile_975(dof: int) -> float:
    """The 0.975 quantile of Student's t with ``dof`` degrees of freedom: the table up to 30, beyond that the
    Cornish-Fisher expansion around the normal quantile (within 5e-4 of the exact value for dof > 30)."""
    if dof < 1:
        raise ValueError(f"Student's t needs at least 1 degree of freedom, got {dof}")
    if dof <= len(T_975):
        return T_975[dof - 1]
    z = 1.959964
    return z + (z**3 + z) / (4 * dof) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * dof**2)


def mean_std(values: list[float]) -> tuple[float | None, float | None]:
    """(mean, sample standard deviation) of a list of numbers; the deviation is None for fewer than 2 values, both
    are None for none."""
    n = len(values)
    if n == 0:
        return None, None
    mean = sum(values) / n
    if n == 1:
        return mean, None
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))


def seeds_to_resolve(mean_diff: float, sd_diff: float) -> int | None:
    """The smallest number of paired seeds n >= 2 whose 95% t interval, at the observed spread ``sd_diff`` of the
    differences, excludes 0 for a mean difference of the observed size: t(n-1) * sd / sqrt(n) < |mean|, about
    (t * sd / mean)^2. None when no n up to MAX_SEEDS_TO_RESOLVE does (or the mean difference is 0)."""
    if mean_diff == 0:
        return None
    for n in range(2, MAX_SEEDS_TO_RESOLVE + 1):
        if t_quantile_975(n - 1) * sd_diff / math.sqrt(n) < abs(mean_diff):
            return n
    return None


def paired_comparison(variant: dict[int, float | None], baseline: dict[int, float | None]) -> dict:
    """Compare mAPs of a variant with the baseline's on the seeds both have ({seed: mAP} each; None = no value).

    Returns a dict: n (paired seeds), diff (mean of variant - baseline), low/high (95% paired-t interval with n-1
    degrees of freedom; None for n < 2), verdict (BETTER / WORSE when the interval excludes 0, else UNRESOLVED;
    ONE_SEED for one pair) and seeds_to_resolve (see seeds_to_resolve; None for n < 2)."""
    seeds = sorted(s for s in variant if variant[s] is not None and baseline.get(s) is not None)
    diffs = [variant[s] - baseline[s] for s in seeds]
    n = len(diffs)
    out = {"n": n, "diff": None, "low": None, "high": None, "verdict": None, "seeds_to_resolve": None}
    if n == 0:
        return out
    mean, sd = mean_std(diffs)
    out["diff"] = mean
    if n == 1:
        out["verdict"] = ONE_SEED
        return out
    half = t_quantile_975(n - 1) * sd / math.sqrt(n)
    out.update(low=mean - half, high=mean + half, seeds_to_resolve=seeds_to_resolve(mean, sd))
    out["verdict"] = BETTER if mean - half > 0 else WORSE if mean + half < 0 else UNRESOLVED
    return out


def summarize(seed_rows: list[dict], baseline: str) -> list[dict]:
    """One row per configuration (the COLUMNS keys, in the order of first appearance) from the per-seed rows; each
    variant is compared with the configuration named ``baseline`` on the seeds both finished."""
    by_model = {}
    for r in seed_rows:
        by_model.setdefault(r["model"], []).append(r)
    base_map = {r["seed"]: r["map50_95"] for r in by_model.get(baseline, [])}
    base_small = {r["seed"]: r.get("ap_small") for r in by_model.get(baseline, [])}  # rows of older states lack it
    summary = []
    for name, rows in by_model.items():
        done = [r for r in rows if r["map50_95"] is not None]
        map50_mean, map50_std = mean_std([r["map50"] for r in done])
        map_mean, map_std = mean_std([r["map50_95"] for r in done])
        small_mean, small_std = mean_std([r["ap_small"] for r in rows if r.get("ap_small") is not None])
        if name == baseline:
            comp = {"diff": None, "low": None, "high": None, "verdict": BASELINE, "seeds_to_resolve": None}
            small = dict(comp)
        else:
            comp = paired_comparison({r["seed"]: r["map50_95"] for r in rows}, base_map)
            small = paired_comparison({r["seed"]: r.get("ap_small") for r in rows}, base_small)
        train_s = [r["train_s"] for r in rows if r["train_s"] is not None]
        first = rows[0]
        summary.append({
            "model": name, "cfg": first["cfg"], "seeds": len(done), "params": first["params"],
            "gflops_640": first["gflops_640"], "latency_ms": first["latency_ms"], "map50_mean": map50_mean,
            "map50_std": map50_std, "map50_95_mean": map_mean, "map50_95_std": map_std, "diff_map50_95": comp["diff"],
            "diff_low": comp["low"], "diff_high": comp["high"], "verdict": comp["verdict"],
            "seeds_to_resolve": comp["seeds_to_resolve"], "epochs": first["epochs"],
            "train_s": sum(train_s) if train_s else None, "ap_small_mean": small_mean, "ap_small_std": small_std,
            "diff_ap_small": small["diff"], "diff_ap_small_low": small["low"], "diff_ap_small_high": small["high"],
        })
    return summary


# ---------------------------------------------------------------------------------------------------------------
# State, table, plot, README
# ---------------------------------------------------------------------------------------------------------------
def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _sound_state_entry(entry: object) -> bool:
    """A saved run: {'key': {...}, 'row': {...}} with the row's fields of the types summarize() reads."""
    if not isinstance(entry, dict) or not isinstance(entry.get("key"), dict) or not isinstance(entry.get("row"), dict):
        return False
    row = entry["row"]
    return (isinstance(row.get("model"), str) and isinstance(row.get("cfg"), str) and _number(row.get("seed"))
            and all(_number(row.get(k)) for k in ("params", "gflops_640", "latency_ms"))
            and all(row.get(k) is None or _number(row.get(k)) for k in ("map50", "map50_95", "epochs", "train_s")))


def load_state(path: Path) -> dict:
    """The finished rows of earlier invocations ({'<name>/seed<k>': {'key': ..., 'row': ...}}); damaged entries
    are dropped with a warning (those runs are measured again), the sound ones kept."""
    if not path.is_file():
        return {}
    try:
        state = json.loads(path.read_text())
        if state.get("version") != STATE_VERSION:  # rows of another layout never match: start a new state
            LOGGER.info(f"ablate: {path} is from another version of this runner; measuring every run again")
            return {}
        rows = state["rows"]
        if not isinstance(rows, dict):
            raise TypeError(f"its rows are a {type(rows).__name__}")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError, KeyError, TypeError):
        LOGGER.warning(f"WARNING: {path} is unreadable; measuring every configuration again")
        return {}
    sound = {k: v for k, v in rows.items() if _sound_state_entry(v)}
    if len(sound) < len(rows):
        damaged = sorted(str(k) for k in rows if k not in sound)
        LOGGER.warning(f"WARNING: {path}: {len(damaged)} damaged row(s), e.g. {damaged[0]!r:.60}; measuring them again")
    return sound


def save_state(path: Path, rows: dict) -> None:
    """Write the state atomically so that a kill never leaves half a file."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"version": STATE_VERSION, "rows": rows}, indent=1))
    os.replace(tmp, path)


def _fmt(x, spec):
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def _mean_sd(mean, sd):
    return _fmt(mean, ".3f") if sd is None else f"{mean:.3f} ± {sd:.3f}"


def _difference(r: dict, diff: str = "diff_map50_95", low: str = "diff_low", high: str = "diff_high") -> str:
    """The difference cell: '+0.012 [-0.010, +0.034]', or the difference alone without an interval (the columns
    ``diff``, ``low``, ``high`` of summary row ``r``)."""
    if r["verdict"] == BASELINE:
        return "(baseline)"
    if r[diff] is None:
        return "n/a"
    if r[low] is None:
        return f"{r[diff]:+.3f}"
    return f"{r[diff]:+.3f} [{r[low]:+.3f}, {r[high]:+.3f}]"


def markdown_table(summary: list[dict], latency_img: int, baseline: str) -> str:
    """A Markdown table of summary rows (dicts with the COLUMNS keys)."""
    lines = [
        f"| model | seeds | params (M) | GFLOPs @640 (fused) | CPU ms @{latency_img} (fused) | mAP50 | mAP50-95 "
        f"| Δ mAP50-95 vs {baseline} [95% CI] | verdict | seeds to resolve Δ | train (min) | AP_small "
        f"| Δ AP_small [95% CI] |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    for r in summary:
        train_min = None if r["train_s"] is None else r["train_s"] / 60
        if r["verdict"] == BASELINE:
            to_resolve = "—"
        elif r["seeds_to_resolve"] is not None:
            to_resolve = str(r["seeds_to_resolve"])
        else:
            to_resolve = f"> {MAX_SEEDS_TO_RESOLVE}" if r["diff_low"] is not None else "n/a"
        lines.append(
            f"| {r['model']} | {r['seeds']} | {_fmt(r['params'] / 1e6, '.3f')} | {_fmt(r['gflops_640'], '.2f')} | "
            f"{_fmt(r['latency_ms'], '.1f')} | {_mean_sd(r['map50_mean'], r['map50_std'])} | "
            f"{_mean_sd(r['map50_95_mean'], r['map50_95_std'])} | {_difference(r)} | {r['verdict'] or 'n/a'} | "
            f"{to_resolve} | {_fmt(train_min, '.1f')} | {_mean_sd(r['ap_small_mean'], r['ap_small_std'])} | "
            f"{_difference(r, 'diff_ap_small', 'diff_ap_small_low', 'diff_ap_small_high')} |"
        )
    return "\n".join(lines) + "\n"


def write_csv(rows: list[dict], path: Path, columns: tuple[str, ...]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        for r in rows:
            writer.writerow({k: "" if r.get(k) is None else r[k] for k in columns})  # older rows lack ap_small


def plot_ablation(summary: list[dict], path: Path, latency_img: int, baseline: str) -> bool:
    """Mean mAP50-95 with error bars (one standard deviation over the seeds) against GFLOPs and against latency, one
    labelled point per model; False when no row has an mAP (nothing to plot)."""
    rows = [r for r in summary if r["map50_95_mean"] is not None]
    if not rows:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    base = next((r for r in rows if r["model"] == baseline), None)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), constrained_layout=True)
    for ax, key, label in ((axes[0], "gflops_640", "GFLOPs @640 (fused)"),
                           (axes[1], "latency_ms", f"CPU latency @{latency_img}, batch 1, fused (ms)")):
        if base is not None:  # the baseline's mean and spread are what the variants are read against
            ax.axhline(base["map50_95_mean"], color="grey", lw=0.8, ls="--")
            if base["map50_95_std"]:
                ax.axhspan(base["map50_95_mean"] - base["map50_95_std"], base["map50_95_mean"] + base["map50_95_std"],
                           color="grey", alpha=0.12, lw=0)
        for r in rows:
            is_base = r is base
            ax.errorbar(r[key], r["map50_95_mean"], yerr=r["map50_95_std"] or 0, fmt="*" if is_base else "o",
                        ms=10 if is_base else 5, capsize=3, lw=1)
            ax.annotate(r["model"].replace(f"yolov5{SCALE}_", ""), (r[key], r["map50_95_mean"]), fontsize=8,
                        xytext=(4, 3), textcoords="offset points")
        ax.set_xlabel(label)
        ax.set_ylabel("mAP50-95 (val), mean ± 1 sd over seeds")
        ax.grid(alpha=0.3)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def replace_readme_block(readme: Path, block: str | None) -> None:
    """Put ``block`` between the ablation-table markers of ``readme`` (a path), leaving the rest untouched;
    ``block=None`` only checks that the markers are there."""
    readme = Path(readme)
    text = readme.read_text() if readme.is_file() else ""
    start, end = text.find(README_START), text.find(README_END)
    if start < 0 or end < start:
        raise UserError(f"{readme} has no '{README_START}' ... '{README_END}' block; add both markers on their own "
                        f"lines where the table belongs, then run again")
    if block is not None:
        readme.write_text(text[: start + len(README_START)] + "\n" + block.strip("\n") + "\n" + text[end:])


def settings_note(settings: dict, seeds: list[int], budget: str, latency_img: int, latency_runs: int) -> str:
    """One sentence on how the table was made."""
    epochs, weights, threads = settings["epochs"], settings["weights"] or "scratch", torch.get_num_threads()
    preset = f" (--budget {budget})" if BUDGETS.get(budget) == (epochs, settings["imgsz"]) else ""
    return (f"data {Path(settings['data']).name}, {epochs} epoch{'s' if epochs > 1 else ''} at image size "
            f"{settings['imgsz']}{preset}, batch {settings['batch_size']}, seed{'s' if len(seeds) > 1 else ''} "
            f"{', '.join(map(str, seeds))}, from {weights}; latency: median of {latency_runs} runs at {latency_img} "
            f"px, batch 1, fused, channels-last, {threads} CPU thread{'s' if threads > 1 else ''}; train (min): wall "
            f"time of the trainings and final validations of all seeds in the invocations that finished them")


AP_SMALL_NOTE = ("AP_small: COCO's AP (IoU 0.50:0.95) of objects under 32x32 pixels (n/a when the val split has none), "
                 "from validating each seed's final weights; its Δ is paired over the seeds like mAP50-95's.")


def statistics_note(n_seeds: int) -> str:
    """What the mean, spread, difference, verdict and seeds-to-resolve columns mean."""
    if n_seeds < 2:
        return ("mAP: one seed, so no spread; Δ: the variant's mAP50-95 minus the baseline's on the same seed. With 1 "
                "seed no interval can be computed and no verdict given: run with --seeds 0 1 2 (or more). "
                + AP_SMALL_NOTE)
    return ("mAP: mean ± sample standard deviation over the seeds. Δ: mean over the seeds of (variant - baseline) "
            "mAP50-95 on the same seed (same data order and augmentation, so the runs are paired), with a 95% "
            "paired Student-t interval (n-1 degrees of freedom). Verdict: better / worse when the interval excludes "
            "0, otherwise not distinguishable from the baseline at this budget. Seeds to resolve Δ: the smallest "
            "number of paired seeds n for which a difference of the observed size would exclude 0 at the observed "
            "spread of the differences sd (t(n-1)·sd/√n < |Δ|, about (t·sd/Δ)²). " + AP_SMALL_NOTE)


# ---------------------------------------------------------------------------------------------------------------
# Runner
# ---------------------------------------------------------------------------------------------------------------
def run(data: str = str(ROOT / "data/shapes.yaml"), cfgs: str | list[str] | tuple[str, ...] = ("all",),
        budget: str = DEFAULT_BUDGET, epochs: int | None = None, imgsz: int | None = None, batch_size: int = 16,
        workers: int = 0, seeds: int | list[int] | tuple[int, ...] = (0,), baseline: str = "", hyp: str = "",
        weights: str = "", device: str = "cpu", project: str = str(ROOT / "runs/ablate"), out: str = "",
        no_train: bool = False, latency_img: int = 640, latency_runs: int = 5, threads: int = 0, plots: bool = False,
        noautoanchor: bool = False, write_readme: bool = False, task: str = "detect") -> list[dict]:
    """Train (unless ``no_train``) each configuration with each seed and measure it; write the tables, CSVs and plot
    into ``out`` (default: ``project``). ``epochs`` and ``imgsz`` default to the ``budget`` preset. Returns the
    summary rows (dicts with the COLUMNS keys); the per-seed rows are in ablation_seeds.csv. ``task`` 'segment':
    every configuration in its -seg form (``segmentation_cfg``) trained by segment/train.py on ``data`` (the
    generated shapes-seg by default), mAPs and AP_small of the masks."""
    from models.yolo import load_model_yaml
    from utils.dataset_yaml import check_dataset

    t_start = time.time()
    if threads:
        torch.set_num_threads(threads)
    if budget not in BUDGETS:
        raise UserError(f"--budget must be one of {sorted(BUDGETS)}, got '{budget}'")
    epochs = BUDGETS[budget][0] if epochs is None else epochs
    imgsz = BUDGETS[budget][1] if imgsz is None else imgsz
    if epochs < 1:
        raise UserError(f"--epochs must be at least 1, got {epochs}")
    seeds = [seeds] if isinstance(seeds, int) else list(seeds)
    if not seeds or len(set(seeds)) != len(seeds):
        raise UserError(f"--seeds needs one or more different seeds, got {seeds}")
    if task not in ("detect", "segment"):
        raise UserError(f"--task must be detect or segment, got '{task}'")
    cfg_list = expand_cfgs([cfgs] if isinstance(cfgs, str) else list(cfgs))
    if task == "segment":
        cfg_list = [segmentation_cfg(c) for c in cfg_list]
        if Path(data) == ROOT / "data/shapes.yaml":
            data = str(ROOT / "data/shapes-seg.yaml")
    for cfg in cfg_list:  # a missing yaml stops here, not after hours of training the others
        load_model_yaml(cfg)  # also the -seg rule's names
    names = [Path(c).stem for c in cfg_list]
    baseline = Path(baseline).stem if baseline else names[0]
    if baseline not in names:
        raise UserError(f"--baseline '{baseline}' is not one of the configurations {names}")
    readme = ROOT / "README.md"
    if write_readme:
        replace_readme_block(readme, None)  # checks the markers before the work
    project = Path(project)
    out_dir = Path(out or project)
    out_dir.mkdir(parents=True, exist_ok=True)
    state_path = out_dir / STATE_FILE
    state = load_state(state_path)
    check_dataset(data)  # a missing dataset stops here (the synthetic one is generated)
    settings = {"data": str(data), "hyp": str(hyp), "epochs": epochs, "imgsz": imgsz, "batch_size": batch_size,
                "weights": str(weights), "noautoanchor": bool(noautoanchor), "task": task}
    measure = {"latency_img": latency_img, "train": not no_train}

    seed_rows = []
    for i, (cfg, name) in enumerate(zip(cfg_list, names)):
        measured = None  # (params, GFLOPs, latency): one measurement per configuration, shared by its seeds
        for seed in seeds:
            run_id, run_settings = f"{name}/seed{seed}", {**settings, "seed": seed}
            key = {"cfg": cfg, **run_settings, **measure}
            saved = state.get(run_id)
            # --no-train also reuses the row of a finished training of the same settings (it has the training time)
            if saved and saved.get("key") in (key, {**key, "train": True}):
                LOGGER.info(f"ablate: [{i + 1}/{len(cfg_list)}] {run_id}: finished earlier, reusing its row")
                row = saved["row"]
                seed_rows.append(row)
                measured = measured or (row["params"], row["gflops_640"], row["latency_ms"])
                continue
            LOGGER.info(f"ablate: [{i + 1}/{len(cfg_list)}] {run_id}")
            run_dir = project / name / f"seed{seed}"
            map50 = map50_95 = ap_small = train_s = None
            failed = False
            if no_train:
                plan, weights_file = training_plan(run_dir, run_settings)
                if plan == "done":
                    map50, map50_95, ap_small = validate(weights_file, run_settings, workers, device, run_dir, task)
            else:
                try:
                    map50, map50_95, ap_small, train_s = train_config(cfg, run_dir, run_settings, workers, device,
                                                                      plots, task)
                except UserError as e:  # e.g. a NaN loss: the other runs still go; this one is not kept
                    LOGGER.error(f"ablate: {run_id} failed: {e}")
                    failed = True
            measured = measured or measure_model(cfg, latency_img, latency_runs)
            params, gflops, latency_ms = measured
            row = {"model": name, "cfg": cfg, "seed": seed, "params": params, "gflops_640": gflops,
                   "latency_ms": latency_ms, "map50": map50, "map50_95": map50_95,
                   "epochs": None if no_train else epochs, "train_s": train_s, "ap_small": ap_small}
            seed_rows.append(row)
            # a --no-train row without mAP is not kept: the training may finish before the next invocation
            if not failed and (map50_95 is not None or not no_train):
                state[run_id] = {"key": key, "row": row}
                save_state(state_path, state)

    summary = summarize(seed_rows, baseline)
    md_path, csv_path, png_path = out_dir / "ablation.md", out_dir / "ablation.csv", out_dir / "ablation.png"
    table = markdown_table(summary, latency_img, baseline)
    train_total = sum(r["train_s"] or 0 for r in seed_rows)
    note = (f"Settings: {settings_note(settings, seeds, budget, latency_img, latency_runs)}. Training time, all "
            f"rows: {train_total / 60:.1f} min.\n\n{statistics_note(len(seeds))}")
    finished = sum(r["map50_95"] is not None for r in seed_rows)
    if finished < len(seed_rows):  # e.g. --no-train while the trainings run, or failed ones
        note += (f"\n\nOnly {finished} of the {len(seed_rows)} runs have an mAP so far (the others show fewer seeds or "
                 f"n/a); run the same command without --no-train to finish them (finished runs are reused).")
    wall = time.time() - t_start
    md_path.write_text(f"{table}\n{note}\n")
    write_csv(summary, csv_path, COLUMNS)
    write_csv(seed_rows, out_dir / "ablation_seeds.csv", SEED_COLUMNS)
    plotted = plot_ablation(summary, png_path, latency_img, baseline)
    LOGGER.info(f"\n{table}\nablate: {len(seed_rows)} runs of {len(summary)} configurations in {wall / 60:.1f} min; "
                f"wrote {md_path}, {csv_path}{f', {png_path}' if plotted else ' (no mAP values, so no plot)'}")
    if write_readme:
        link = f"\n![mAP vs GFLOPs and latency]({os.path.relpath(png_path, readme.parent)})\n" if plotted else ""
        replace_readme_block(readme, f"{table}\n{note}\n{link}")
        LOGGER.info(f"ablate: table written into {readme}")
    return summary


def parse_opt(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(ROOT / "data/shapes.yaml"), help="dataset.yaml path")
    p.add_argument("--cfgs", nargs="+", default=["all"],
                   help="model yamls, glob patterns, or 'all' (stock yolov5n and every variant at n scale)")
    presets = ", ".join(f"{k}: {e} epochs at {s} px" for k, (e, s) in BUDGETS.items())
    p.add_argument("--budget", default=DEFAULT_BUDGET, choices=list(BUDGETS),
                   help=f"training length preset ({presets}); --epochs / --imgsz override it")
    p.add_argument("--epochs", type=int, default=None, help="training epochs of every run (default: --budget's)")
    p.add_argument("--imgsz", "--img", type=int, default=None, help="train and val image size (default: --budget's)")
    p.add_argument("--batch-size", type=int, default=16, help="training batch size")
    p.add_argument("--workers", type=int, default=0, help="dataloader workers")
    p.add_argument("--task", choices=("detect", "segment"), default="detect",
                   help="segment: the -seg form of each configuration (segment/train.py), mask mAPs")
    p.add_argument("--seeds", type=int, nargs="+", default=[0],
                   help="training seeds; every configuration trains once per seed (the same seeds for all)")
    p.add_argument("--baseline", default="", help="the configuration the others are compared with (default: first)")
    p.add_argument("--hyp", default="", help="hyperparameters yaml ('' = train.py's default)")
    p.add_argument("--weights", default="", help="initial weights for every configuration ('' = from scratch)")
    p.add_argument("--device", default="cpu", help="cpu or a CUDA device such as 0")
    p.add_argument("--project", default=str(ROOT / "runs/ablate"),
                   help="training runs go to project/<model name>/seed<k>")
    p.add_argument("--out", default="", help="folder of the tables, CSVs, plot and state file (default: --project)")
    p.add_argument("--no-train", action="store_true", help="only measure (mAP from earlier runs' weights, if any)")
    p.add_argument("--latency-img", type=int, default=640, help="image size of the latency measurement")
    p.add_argument("--latency-runs", type=int, default=5, help="timed forward passes per model (median reported)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads of training and latency (0 = torch's default)")
    p.add_argument("--plots", action="store_true", help="let each training write its plots")
    p.add_argument("--noautoanchor", action="store_true", help="train every configuration without AutoAnchor")
    p.add_argument("--write-readme", action="store_true", help="replace the ablation-table block of README.md")
    return p.parse_args(argv)


if __name__ == "__main__":
    sys.exit(exit_code(lambda: run(**vars(parse_opt()))))
