"""benchmarks/bench_train.py's own parts: official's harness lines parse into epochs and final results, and the
runs alternate A B / B A between seeds, an official that does not import stops the benchmark first."""

import json

import pytest

from benchmarks import bench_train


def test_official_output_parses_to_epochs_and_final():
    lines = ["noise",
             "BENCH " + json.dumps({"kind": "epoch", "epoch": 0, "train_s": 12.0, "images": 384, "val_s": 3.0}),
             "BENCH " + json.dumps({"kind": "epoch", "epoch": 1, "train_s": 8.0, "images": 384, "val_s": 2.5}),
             "BENCH " + json.dumps({"kind": "final", "results": [0.5, 0.4, 0.3, 0.2, 0.01, 0.02, 0.03]})]
    epochs, final = bench_train.parse_official_output(lines)
    assert epochs == [(0, 12.0, 32.0, 3.0), (1, 8.0, 48.0, 2.5)]
    assert final == (0.5, 0.4, 0.3, 0.2)
    run = bench_train.RunResult(epochs, None, final, 30.0)
    assert run.map50_95 == 0.2 and run.later_epochs() == epochs[1:]
    assert bench_train.median_train_epoch([run, bench_train.RunResult(epochs[:1], None, final)]) == 10.0
    assert bench_train.fastest_train_epoch([run, bench_train.RunResult(epochs[:1], None, final)]) == 8.0
    assert bench_train.parse_official_output(["BENCH " + json.dumps({"kind": "epoch", "epoch": 0, "train_s": 1.0,
                                                                     "images": 2, "val_s": 0.0})])[1] is None


def test_run_order_alternates():
    assert bench_train.run_order(["a", "b"], 0) == ["a", "b"]
    assert bench_train.run_order(["a", "b"], 1) == ["b", "a"]


def test_official_that_does_not_import_stops_before_any_training(tmp_path):
    args = bench_train.parse_args(["--official", str(tmp_path), "--official-path", str(tmp_path / "stubs")])
    with pytest.raises(SystemExit, match=r"does not import from .* --official-path .*stubs: ModuleNotFoundError: "
                                         r"No module named 'yolov5'"):
        bench_train.check_official_imports(args)
