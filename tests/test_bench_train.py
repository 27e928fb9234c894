"""benchmarks/bench_train.py's own parts: official's harness lines parse into epochs and final results, and the
runs alternate A B / B A between seeds, an official that does not import stops the benchmark first."""

import json

import pytest
import torch

from benchmarks import bench_train


def test_official_output_parses_to_epochs_and_final():
    lines = ["noise",
             "BENCH " + json.dumps({"kind": "epoch", "epoch": 0, "train_s": 12.0, "images": 384, "val_s": 3.0,
                                    "map50_95": 0.1}),
             "BENCH " + json.dumps({"kind": "epoch", "epoch": 1, "train_s": 8.0, "images": 384, "val_s": 2.5,
                                    "map50_95": 0.3}),
             "BENCH " + json.dumps({"kind": "epoch", "epoch": 2, "train_s": 9.0, "images": 384, "val_s": 2.5,
                                    "map50_95": 0.2}),
             "BENCH " + json.dumps({"kind": "final", "results": [0.5, 0.4, 0.3, 0.2, 0.01, 0.02, 0.03]})]
    epochs, final = bench_train.parse_official_output(lines)
    assert epochs == [(0, 12.0, 32.0, 3.0, 0.1), (1, 8.0, 48.0, 2.5, 0.3), (2, 9.0, 384 / 9.0, 2.5, 0.2)]
    assert final == (0.5, 0.4, 0.3, 0.2)
    run = bench_train.RunResult(epochs, None, final, 30.0)
    assert run.map50_95 == 0.2 and run.later_epochs() == epochs[1:]
    assert run.late_map50_95 == 0.2  # the last third of 3 epochs: the last one
    assert bench_train.RunResult(epochs * 2, None, final).late_map50_95 == pytest.approx(0.25)  # last 2 of 6
    assert bench_train.median_train_epoch([run, bench_train.RunResult(epochs[:1], None, final)]) == 9.0
    assert bench_train.fastest_train_epoch([run, bench_train.RunResult(epochs[:1], None, final)]) == 8.0
    assert bench_train.median_whole_epoch([run, bench_train.RunResult(epochs[:1], None, final)]) == 11.5
    assert bench_train.parse_official_output(["BENCH " + json.dumps({"kind": "epoch", "epoch": 0, "train_s": 1.0,
                                                                     "images": 2, "val_s": 0.0,
                                                                     "map50_95": 0.0})])[1] is None


def test_epoch_timer_records_the_validation_map_of_our_csv_row():
    timer = bench_train.EpochTimer()
    timer.epoch_start(0)
    timer.batch_end(0, None, torch.zeros(16, 3, 8, 8), None, None, None)
    timer.epoch_end(0)
    row = [0, 0.1, 0.05, 0.02, 0.6, 0.5, 0.45, 0.25, 0.03, 0.02, 0.01, 0.01, 0.01, 0.01]  # epoch ... lr2
    timer.fit_epoch_end(row, 0, 0.25, 0.27)
    assert timer.epochs[0][0] == 0 and timer.epochs[0][4] == 0.25


def test_run_order_alternates():
    assert bench_train.run_order(["a", "b"], 0) == ["a", "b"]
    assert bench_train.run_order(["a", "b"], 1) == ["b", "a"]


def test_official_that_does_not_import_stops_before_any_training(tmp_path):
    args = bench_train.parse_args(["--official", str(tmp_path), "--official-path", str(tmp_path / "stubs")])
    with pytest.raises(SystemExit, match=r"does not import from .* --official-path .*stubs: ModuleNotFoundError: "
                                         r"No module named 'yolov5'"):
        bench_train.check_official_imports(args)
