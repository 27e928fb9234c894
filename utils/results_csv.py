"""A training run's results.csv: its columns (YOLOv5's header, which its tools read, so the text never changes), one
row appended per epoch, and the file started fresh or trimmed back to the resumed epoch.

The validation columns come from utils.evaluation.VAL_COLUMNS, the one definition of ValResults' csv names.
"""

import os
from collections.abc import Sequence
from pathlib import Path

from utils.evaluation import VAL_COLUMNS
from utils.general import LOGGER

TRAIN_LOSS_COLUMNS = ("train/box_loss", "train/obj_loss", "train/cls_loss")
LR_COLUMNS = ("x/lr0", "x/lr1", "x/lr2")  # the optimizer's three parameter groups
RESULTS_COLUMNS = ("epoch", *TRAIN_LOSS_COLUMNS, *VAL_COLUMNS.values(), *LR_COLUMNS)
COLUMN_WIDTH = 20


def append_results_row(file: str | Path, row: Sequence[float], columns: Sequence[str] = RESULTS_COLUMNS) -> None:
    """Append one epoch's values (in ``columns`` order: RESULTS_COLUMNS, or a task's, e.g. segmentation's) to
    results.csv, writing the header first when the file is new."""
    file = Path(file)
    new = not file.exists()
    with open(file, "a") as f:
        if new:
            f.write(",".join(f"{c:>{COLUMN_WIDTH}}" for c in columns) + "\n")
        f.write(",".join(f"{x:>{COLUMN_WIDTH}.5g}" for x in row) + "\n")


def start_results_csv(file: str | Path, resume_epoch: int | None = None) -> None:
    """Prepare a run's results.csv: a new run starts without one (an --exist-ok rerun never appends to the old
    rows); a run resumed from a checkpoint of epoch ``resume_epoch`` keeps the header and the rows up to that
    epoch and drops the rest (rows written by a run killed after logging an epoch but before saving it, or a
    half-written last line). The file is rewritten atomically."""
    file = Path(file)
    if resume_epoch is None:
        file.unlink(missing_ok=True)
        return
    if not file.is_file():
        return
    lines = file.read_text().splitlines()
    kept = lines[:1]
    for line in lines[1:]:
        try:
            epoch = float(line.split(",")[0])
        except ValueError:
            continue
        if epoch <= resume_epoch:
            kept.append(line)
    if len(kept) < len(lines):
        tmp = file.with_name(f".{file.name}.{os.getpid()}.tmp")
        tmp.write_text("".join(x + "\n" for x in kept))
        os.replace(tmp, file)
        LOGGER.info(f"{file}: dropped {len(lines) - len(kept)} rows after epoch {resume_epoch}, the resumed epoch")
