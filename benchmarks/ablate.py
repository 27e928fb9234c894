"""Ablation runner: train every model variant on the same data with the same settings, then compare.

    python benchmarks/ablate.py --data data/shapes.yaml --cfgs all --epochs 3 --imgsz 128
    python benchmarks/ablate.py --cfgs models/yolov5n.yaml yolov5n_ScConv.yaml --epochs 10
    python benchmarks/ablate.py --cfgs 'models/yolov5s_*.yaml' --no-train      # measure only
    python benchmarks/ablate.py --cfgs all --epochs 3 --out benchmarks/results --write-readme

Each configuration trains with train.run(...) into <project>/<name>/ (identical seed, image size, batch size,
epochs, workers; validation after the last epoch only). Then parameters, GFLOPs at 640, CPU latency (batch 1,
fused, median) and mAP50 / mAP50-95 of the final weights on the val split are collected into <out>/ablation.md,
ablation.csv and ablation.png (mAP vs GFLOPs and vs latency). <out>/ablation_state.json remembers finished rows:
a second invocation with the same settings reuses them, and an interrupted training continues from its last.pt
(train.py --resume).
"""

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
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from utils.general import LOGGER, UserError, exit_code  # noqa: E402

STATE_FILE = "ablation_state.json"
RUN_SETTINGS_FILE = "ablate_settings.json"  # in each run folder: the settings it was started with
BASELINE_CFG = "yolov5n.yaml"  # the stock model of the scale, marked in the plot
SCALE = "n"
README_START, README_END = "<!-- ablation-table:start -->", "<!-- ablation-table:end -->"
# CSV columns (the Markdown table shows the same values, rounded)
COLUMNS = ("model", "cfg", "params", "gflops_640", "latency_ms", "map50", "map50_95", "epochs", "train_s")
# the settings of a training (train.run flags); a run started with other values is trained again
TRAIN_KEYS = ("data", "hyp", "epochs", "imgsz", "batch_size", "seed", "weights", "noautoanchor")


# ---------------------------------------------------------------------------------------------------------------
# Which configurations
# ---------------------------------------------------------------------------------------------------------------
def variant_cfgs(scale=SCALE):
    """The stock model and every variant yaml at one scale: yolov5{scale}.yaml, yolov5{scale}_<Variant>.yaml ...

    Variants are found as models/yolov5?_<Variant>.yaml at any scale; Model() builds the requested scale from them.
    """
    variants = sorted({p.stem.split("_", 1)[1] for p in (ROOT / "models").glob("yolov5[nsmlx]_*.yaml")})
    return [f"yolov5{scale}.yaml"] + [f"yolov5{scale}_{v}.yaml" for v in variants]


def expand_cfgs(cfgs):
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


# ---------------------------------------------------------------------------------------------------------------
# Measurements
# ---------------------------------------------------------------------------------------------------------------
@contextmanager
def quiet():
    """Silence the INFO logging of model building and fusing while measuring."""
    level = LOGGER.level
    LOGGER.setLevel(logging.WARNING)
    try:
        yield
    finally:
        LOGGER.setLevel(level)


def measure_model(cfg, latency_img=640, latency_runs=5):
    """(parameters, GFLOPs at 640, median CPU latency in ms at batch 1 and ``latency_img`` px) of a yaml, measured
    like benchmarks/variants_table.py: parameters of the trainable 80-class model, GFLOPs and latency of the fused
    one (latency on the channels-last path). Weights do not matter for these, so a fresh model is measured."""
    from benchmarks.variants_table import measure

    with quiet():
        params, gflops, latency_ms = measure(cfg, latency_img, torch.get_num_threads(), latency_runs, warmup=1)
    return params, gflops * (640 / latency_img) ** 2, latency_ms  # FLOPs grow with the pixel count


def training_plan(run_dir, settings):
    """What to do with ``run_dir``: ('fresh', None), ('resume', last.pt) for an interrupted run of the same
    settings, or ('done', weights) for a finished one (best.pt, or last.pt when no best.pt was written).

    The settings a run was started with are kept in <run_dir>/ablate_settings.json; a run of other settings is
    trained again."""
    from utils.checkpoints import load_checkpoint

    last, best = run_dir / "weights" / "last.pt", run_dir / "weights" / "best.pt"
    settings_file = run_dir / RUN_SETTINGS_FILE
    if not last.is_file() or not settings_file.is_file() or json.loads(settings_file.read_text()) != settings:
        return "fresh", None
    try:
        ckpt = load_checkpoint(last)
    except UserError as e:  # e.g. truncated by a kill during the write: train this one again
        LOGGER.warning(f"WARNING: {e}; training {run_dir.name} again")
        return "fresh", None
    if ckpt.get("optimizer") is not None and 0 <= ckpt.get("epoch", -1) < settings["epochs"] - 1:
        return "resume", last
    return "done", best if best.is_file() else last


def train_config(cfg, run_dir, settings, workers, device, plots):
    """Train (or resume, or reuse) one configuration; returns (mAP50, mAP50-95, training seconds or None)."""
    import train

    plan, weights = training_plan(run_dir, settings)
    t0 = time.time()
    if plan == "fresh":
        if run_dir.exists():  # a stale run or one of other settings: start clean
            shutil.rmtree(run_dir)
        run_dir.mkdir(parents=True)
        (run_dir / RUN_SETTINGS_FILE).write_text(json.dumps(settings))
        LOGGER.info(f"\nablate: training {run_dir.name} ({cfg}) from scratch")
        kwargs = {k: settings[k] for k in TRAIN_KEYS if k != "hyp" or settings[k]}
        # noval: only the final weights are validated (the row's mAP); saves a validation per epoch
        opt = train.run(cfg=cfg, workers=workers, device=device, project=str(run_dir.parent), name=run_dir.name,
                        exist_ok=True, noplots=not plots, noval=True, **kwargs)
    elif plan == "resume":
        LOGGER.info(f"\nablate: resuming {run_dir.name} from {weights}")
        opt = train.run(resume=str(weights), workers=workers, device=device)
    else:
        LOGGER.info(f"\nablate: {run_dir.name} has finished training; validating {weights}")
        return *validate(weights, settings, workers, device, run_dir), None
    results = opt.results
    return float(results[2]), float(results[3]), time.time() - t0


def validate(weights, settings, workers, device, run_dir):
    """mAP50 and mAP50-95 of ``weights`` on the val split (None, None when there are no weights)."""
    if weights is None or not Path(weights).is_file():
        return None, None
    import val

    results, _, _ = val.run(data=settings["data"], weights=str(weights), batch_size=settings["batch_size"] * 2,
                            imgsz=settings["imgsz"], device=device, workers=workers, plots=False, half=False,
                            project=str(run_dir), name="val", exist_ok=True)
    return float(results[2]), float(results[3])


# ---------------------------------------------------------------------------------------------------------------
# State, table, plot, README
# ---------------------------------------------------------------------------------------------------------------
def load_state(path):
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text()).get("rows", {})
    except (json.JSONDecodeError, AttributeError):
        LOGGER.warning(f"WARNING: {path} is unreadable; measuring every configuration again")
        return {}


def save_state(path, rows):
    """Write the state atomically so that a kill never leaves half a file."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"version": 1, "rows": rows}, indent=1))
    os.replace(tmp, path)


def _fmt(x, spec):
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def markdown_table(rows, latency_img):
    """A Markdown table of result rows (dicts with the COLUMNS keys)."""
    lines = [
        f"| model | params (M) | GFLOPs @640 (fused) | CPU ms @{latency_img} (fused) | mAP50 | mAP50-95 "
        "| train (min) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        train_min = None if r["train_s"] is None else r["train_s"] / 60
        lines.append(
            f"| {r['model']} | {_fmt(r['params'] / 1e6, '.3f')} | {_fmt(r['gflops_640'], '.2f')} | "
            f"{_fmt(r['latency_ms'], '.1f')} | {_fmt(r['map50'], '.3f')} | {_fmt(r['map50_95'], '.3f')} | "
            f"{_fmt(train_min, '.1f')} |"
        )
    return "\n".join(lines) + "\n"


def write_csv(rows, path):
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        for r in rows:
            writer.writerow({k: "" if r[k] is None else r[k] for k in COLUMNS})


def plot_ablation(rows, path, latency_img):
    """Scatter mAP50-95 against GFLOPs and against latency, one labelled point per model; False when no row has
    an mAP (nothing to plot)."""
    rows = [r for r in rows if r["map50_95"] is not None]
    if not rows:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    baseline = next((r for r in rows if Path(r["cfg"]).name == BASELINE_CFG), None)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), constrained_layout=True)
    for ax, key, label in ((axes[0], "gflops_640", "GFLOPs @640 (fused)"),
                           (axes[1], "latency_ms", f"CPU latency @{latency_img}, batch 1, fused (ms)")):
        if baseline is not None:  # the stock model is the reference the variants are read against
            ax.axhline(baseline["map50_95"], color="grey", lw=0.8, ls="--")
        for r in rows:
            is_base = r is baseline
            ax.scatter(r[key], r["map50_95"], s=90 if is_base else 30, marker="*" if is_base else "o")
            ax.annotate(r["model"].replace(f"yolov5{SCALE}_", ""), (r[key], r["map50_95"]), fontsize=8,
                        xytext=(4, 3), textcoords="offset points")
        ax.set_xlabel(label)
        ax.set_ylabel("mAP50-95 (val)")
        ax.grid(alpha=0.3)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def replace_readme_block(readme, block):
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


def settings_note(settings, latency_img, latency_runs):
    """One sentence on how the table was made."""
    epochs, weights = settings["epochs"], settings["weights"] or "scratch"
    return (f"data {Path(settings['data']).name}, {epochs} epoch{'s' if epochs > 1 else ''}, image size "
            f"{settings['imgsz']}, batch {settings['batch_size']}, seed {settings['seed']}, from {weights}; latency: "
            f"median of {latency_runs} runs at {latency_img} px, batch 1, fused, channels-last, "
            f"{torch.get_num_threads()} CPU threads; train (min): wall time of the training and its final "
            f"validation in the invocation that finished it")


# ---------------------------------------------------------------------------------------------------------------
# Runner
# ---------------------------------------------------------------------------------------------------------------
def run(data=str(ROOT / "data/shapes.yaml"), cfgs=("all",), epochs=3, imgsz=128, batch_size=16, workers=0, seed=0,
        hyp="", weights="", device="cpu", project=str(ROOT / "runs/ablate"), out="", no_train=False,
        latency_img=640, latency_runs=5, threads=0, plots=False, noautoanchor=False, write_readme=False):
    """Train (unless ``no_train``) and measure each configuration; write the table, CSV and plot into ``out``
    (default: ``project``). Returns the list of result rows (dicts with the COLUMNS keys)."""
    from models.yolo import resolve_cfg
    from utils.dataset_yaml import check_dataset

    t_start = time.time()
    if threads:
        torch.set_num_threads(threads)
    if epochs < 1:
        raise UserError(f"--epochs must be at least 1, got {epochs}")
    cfg_list = expand_cfgs([cfgs] if isinstance(cfgs, str) else list(cfgs))
    for cfg in cfg_list:  # a missing yaml stops here, not after hours of training the others
        resolve_cfg(cfg)
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
                "seed": seed, "weights": str(weights), "noautoanchor": bool(noautoanchor)}
    measure = {"latency_img": latency_img, "train": not no_train}

    rows = []
    for i, cfg in enumerate(cfg_list):
        name = Path(cfg).stem
        key = {"cfg": cfg, **settings, **measure}
        saved = state.get(name)
        if saved and saved.get("key") == key:
            LOGGER.info(f"ablate: [{i + 1}/{len(cfg_list)}] {name}: finished earlier, reusing its row")
            rows.append(saved["row"])
            continue
        LOGGER.info(f"ablate: [{i + 1}/{len(cfg_list)}] {name}")
        run_dir = project / name
        map50 = map50_95 = train_s = None
        failed = False
        if no_train:
            plan, weights_file = training_plan(run_dir, settings)
            if plan == "done":
                map50, map50_95 = validate(weights_file, settings, workers, device, run_dir)
        else:
            try:
                map50, map50_95, train_s = train_config(cfg, run_dir, settings, workers, device, plots)
            except UserError as e:  # e.g. a NaN loss: the other configurations still run; this one is not kept
                LOGGER.error(f"ablate: {name} failed: {e}")
                failed = True
        params, gflops, latency_ms = measure_model(cfg, latency_img, latency_runs)
        row = {"model": name, "cfg": cfg, "params": params, "gflops_640": gflops, "latency_ms": latency_ms,
               "map50": map50, "map50_95": map50_95, "epochs": None if no_train else epochs, "train_s": train_s}
        rows.append(row)
        if not failed:
            state[name] = {"key": key, "row": row}
            save_state(state_path, state)

    md_path, csv_path, png_path = out_dir / "ablation.md", out_dir / "ablation.csv", out_dir / "ablation.png"
    table = markdown_table(rows, latency_img)
    train_total = sum(r["train_s"] or 0 for r in rows)
    note = f"Settings: {settings_note(settings, latency_img, latency_runs)}. Training time, all rows: " \
           f"{train_total / 60:.1f} min."
    wall = time.time() - t_start
    md_path.write_text(f"{table}\n{note}\n")
    write_csv(rows, csv_path)
    plotted = plot_ablation(rows, png_path, latency_img)
    LOGGER.info(f"\n{table}\nablate: {len(rows)} rows in {wall / 60:.1f} min; wrote {md_path}, {csv_path}"
                f"{f', {png_path}' if plotted else ' (no mAP values, so no plot)'}")
    if write_readme:
        link = f"\n![mAP vs GFLOPs and latency]({os.path.relpath(png_path, readme.parent)})\n" if plotted else ""
        replace_readme_block(readme, f"{table}\n{note}\n{link}")
        LOGGER.info(f"ablate: table written into {readme}")
    return rows


def parse_opt(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(ROOT / "data/shapes.yaml"), help="dataset.yaml path")
    p.add_argument("--cfgs", nargs="+", default=["all"],
                   help="model yamls, glob patterns, or 'all' (stock yolov5n and every variant at n scale)")
    p.add_argument("--epochs", type=int, default=3, help="training epochs of every configuration")
    p.add_argument("--imgsz", "--img", type=int, default=128, help="train and val image size (pixels)")
    p.add_argument("--batch-size", type=int, default=16, help="training batch size")
    p.add_argument("--workers", type=int, default=0, help="dataloader workers")
    p.add_argument("--seed", type=int, default=0, help="training seed (the same for every configuration)")
    p.add_argument("--hyp", default="", help="hyperparameters yaml ('' = train.py's default)")
    p.add_argument("--weights", default="", help="initial weights for every configuration ('' = from scratch)")
    p.add_argument("--device", default="cpu", help="cpu or a CUDA device such as 0")
    p.add_argument("--project", default=str(ROOT / "runs/ablate"), help="training runs go to project/<model name>")
    p.add_argument("--out", default="", help="folder of the table, CSV, plot and state file (default: --project)")
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
