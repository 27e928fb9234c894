"""Markdown table: how much of a yolov5s checkpoint each variant yaml receives, by key (index) matching and by
structure matching (utils/transfer.py).

    python benchmarks/transfer_table.py                                   # every models/yolov5s_*.yaml
    python benchmarks/transfer_table.py --cfg yolov5s_ScConv.yaml --weights yolov5s.pt

Without --weights the checkpoint is a randomly initialised (seed 0) yolov5s in the project's format: the counts
depend only on the layer lists and tensor shapes, not on the values. The anchors are excluded as train.py does
with --cfg.
"""

from __future__ import annotations

import argparse
import sys
from copy import deepcopy
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from benchmarks.ablate import quiet  # noqa: E402
from models.yolo import Model  # noqa: E402
from utils.checkpoints import checkpoint_model_parts, load_checkpoint, make_checkpoint, transfer_weights  # noqa: E402
from utils.general import ROOT  # noqa: E402
from utils.transfer import transfer_by_structure  # noqa: E402

EXCLUDE = ("anchor",)


def transfer_rows(cfgs: list[str], ckpt: dict) -> list[dict]:
    """Per variant: model tensors, tensors loaded by index matching, and the structure-matching report's numbers."""
    ckpt_yaml, _, ckpt_sd = checkpoint_model_parts(ckpt)
    ckpt_sd = {k: v.float() for k, v in ckpt_sd.items()}
    rows = []
    for cfg in cfgs:
        with quiet():
            model = Model(cfg, nc=ckpt_yaml.get("nc"))
            by_index, total = transfer_weights(deepcopy(model), ckpt_sd, exclude=EXCLUDE)
            report = transfer_by_structure(model, ckpt_yaml, ckpt_sd, exclude=EXCLUDE)
        rows.append(dict(cfg=Path(cfg).name, model_tensors=total, checkpoint_tensors=len(ckpt_sd), by_index=by_index,
                         by_structure=report.transferred,
                         params_pct=100 * report.transferred_params / max(report.model_params, 1)))
    return rows


def markdown(rows: list[dict], source: str) -> str:
    """The table of ``transfer_rows``; percentages of the checkpoint's tensors (``source``)."""
    n = rows[0]["checkpoint_tensors"] if rows else 0
    lines = [f"Checkpoint: {source} ({n} tensors; anchors excluded)", "",
             "| variant | model tensors | by index | by structure | % of checkpoint (index → structure) "
             "| % of new model's parameters (structure) |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['cfg']} | {r['model_tensors']} | {r['by_index']} | {r['by_structure']} "
                     f"| {100 * r['by_index'] / n:.1f} → {100 * r['by_structure'] / n:.1f} | {r['params_pct']:.1f} |")
    return "\n".join(lines)


def parse_opt(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cfg", nargs="+", default=None, help="variant yamls (default: models/yolov5s_*.yaml)")
    p.add_argument("--weights", default="", help="checkpoint (default: random-init yolov5s, seed 0)")
    return p.parse_args(argv)


def main(opt: argparse.Namespace) -> str:
    cfgs = opt.cfg or sorted(str(p) for p in (ROOT / "models").glob("yolov5s_*.yaml"))
    if opt.weights:
        ckpt, source = load_checkpoint(opt.weights), opt.weights
    else:
        torch.manual_seed(0)
        with quiet():
            ckpt, source = make_checkpoint(Model("yolov5s.yaml"), half=False), "random-init yolov5s.yaml (seed 0)"
    table = markdown(transfer_rows(cfgs, ckpt), source)
    print(table)
    return table


if __name__ == "__main__":
    main(parse_opt())
