"""utils/results_csv.py: YOLOv5's exact results.csv header, rows appended per epoch, the file started fresh or
trimmed on resume; and the one definition of the validation columns that results.csv and evolve.csv share."""

from utils.evaluation import VAL_COLUMNS, VAL_LOSS_COLUMNS, ValResults
from utils.evolve import RESULT_COLUMNS
from utils.results_csv import RESULTS_COLUMNS, append_results_row, start_results_csv

# the header official YOLOv5 v6.0-v7.0 writes (its tools, e.g. plot_results, read it back by these names)
OFFICIAL_HEADER = (
    "               epoch,      train/box_loss,      train/obj_loss,      train/cls_loss,   metrics/precision,"
    "      metrics/recall,     metrics/mAP_0.5,metrics/mAP_0.5:0.95,        val/box_loss,        val/obj_loss,"
    "        val/cls_loss,               x/lr0,               x/lr1,               x/lr2"
)
HEADER = "               epoch,      train/box_loss"


def test_header_and_rows_are_yolov5s_text(tmp_path):
    f = tmp_path / "results.csv"
    append_results_row(f, [0, 0.1, 0.2, 0.3, 0.5, 0.25, 0.125, 0.0625, 1.5, 2.5, 3.5, 0.01, 0.02, 0.001])
    append_results_row(f, [1] + [123456.789] * 13)
    header, row0, row1 = f.read_text().splitlines()
    assert header == OFFICIAL_HEADER
    assert row0.split(",")[:5] == ["                   0", "                 0.1", "                 0.2",
                                   "                 0.3", "                 0.5"]
    assert row0.endswith(",               0.001") and len(row0) == len(header)
    assert row1.split(",")[1] == "          1.2346e+05"  # 5 significant digits


def test_validation_columns_follow_valresults():
    """ValResults' fields name the 7 validation columns, in order, in results.csv and evolve.csv."""
    assert tuple(VAL_COLUMNS) == ValResults._fields
    assert RESULT_COLUMNS == RESULTS_COLUMNS[4:11] == tuple(VAL_COLUMNS.values())
    assert RESULT_COLUMNS[3] == "metrics/mAP_0.5:0.95" and VAL_COLUMNS["map50_95"] == "metrics/mAP_0.5:0.95"
    assert VAL_LOSS_COLUMNS == {"box_loss": "val/box_loss", "obj_loss": "val/obj_loss", "cls_loss": "val/cls_loss"}


def test_new_run_starts_a_fresh_results_csv(tmp_path):
    f = tmp_path / "results.csv"
    f.write_text(f"{HEADER}\n                   0,                 0.1\n")
    start_results_csv(f)  # an --exist-ok rerun in the same folder
    assert not f.exists()


def test_resume_drops_rows_after_the_checkpoint_epoch(tmp_path):
    """A kill between writing the row of epoch 2 and saving its last.pt: the checkpoint is of epoch 1, so the
    resumed run rewrites epoch 2; a half-written line goes too."""
    f = tmp_path / "results.csv"
    rows = [f"{e:>20},{0.1 * e:>20.5g}" for e in range(3)]
    f.write_text("\n".join([HEADER, *rows, "                   3,   0.0"[:12]]) + "\n")
    start_results_csv(f, resume_epoch=1)
    assert f.read_text() == "\n".join([HEADER, *rows[:2]]) + "\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.csv"]
    start_results_csv(tmp_path / "none.csv", resume_epoch=1)  # resuming without a csv is fine
    assert not (tmp_path / "none.csv").exists()
