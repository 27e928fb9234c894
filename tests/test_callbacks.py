"""utils/callbacks.py and utils/loggers/ on hand-made events (the training loop's use is in test_train.py)."""

import csv

import pytest
import torch

from utils.callbacks import HOOKS, Callbacks
from utils.loggers import Loggers
from utils.results_csv import RESULTS_COLUMNS


def test_callbacks_run_in_registration_order_with_arguments():
    cb, calls = Callbacks(), []
    cb.register_action("on_train_epoch_end", "first", lambda epoch: calls.append(("first", epoch)))
    cb.register_action("on_train_epoch_end", "second", lambda epoch: calls.append(("second", epoch)))
    cb.register_action("on_train_end", "other", lambda *a: calls.append(("end", a)))
    cb.run("on_train_epoch_end", 3)
    cb.run("on_train_epoch_end", epoch=4)
    assert calls == [("first", 3), ("second", 3), ("first", 4), ("second", 4)]
    assert [e["name"] for e in cb.get_registered_actions("on_train_epoch_end")] == ["first", "second"]
    assert set(cb.get_registered_actions()) == set(HOOKS)
    cb.run("on_fit_epoch_end", [0.0], 0, 0.0, 0.0)  # a hook without callbacks is fine
    assert not cb.stop_training


def test_callbacks_reject_unknown_hooks_and_non_callables():
    cb = Callbacks()
    with pytest.raises(KeyError, match="on_train_epoch_ends"):
        cb.register_action("on_train_epoch_ends", "typo", print)
    with pytest.raises(KeyError):
        cb.run("on_nothing")
    with pytest.raises(TypeError):
        cb.register_action("on_train_end", "not callable", None)


def test_yolov5_hook_names():
    for hook in ("on_pretrain_routine_end", "on_train_start", "on_train_epoch_start", "on_train_batch_end",
                 "on_train_epoch_end", "on_fit_epoch_end", "on_model_save", "on_train_end"):
        assert hook in HOOKS


def fake_training(save_dir, tensorboard, epochs=2, plots=True):
    """Drive Loggers through the hooks like train.py does for a 2-epoch, 2-batch run."""
    cb = Callbacks()
    Loggers(save_dir, names={0: "a", 1: "b"}, plots=plots, tensorboard=tensorboard).register(cb)
    labels = torch.tensor([[0, 0.5, 0.5, 0.2, 0.3], [1, 0.3, 0.6, 0.1, 0.1]])
    cb.run("on_pretrain_routine_end", labels, {0: "a", 1: "b"})
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4)).train()
    imgs = torch.randint(0, 255, (2, 3, 64, 64), dtype=torch.uint8).float() / 255
    targets = torch.tensor([[0, 1, 0.5, 0.5, 0.2, 0.2], [1, 0, 0.4, 0.4, 0.3, 0.3]])
    for epoch in range(epochs):
        for i in range(2):
            cb.run("on_train_batch_end", epoch * 2 + i, model, imgs, targets, ["a.jpg", "b.jpg"], torch.zeros(3))
        values = [epoch, 0.1, 0.2, 0.3, 0.5, 0.6, 0.4 + epoch / 10, 0.2 + epoch / 10, 0.1, 0.2, 0.3, 0.01, 0.01, 0.01]
        cb.run("on_fit_epoch_end", values, epoch, 0.2, 0.25)
    cb.run("on_train_end", save_dir / "last.pt", save_dir / "best.pt", epochs - 1, tuple(values[4:11]))
    return model


def test_loggers_write_results_csv_and_plots(tmp_path):
    model = fake_training(tmp_path, tensorboard=False)
    with open(tmp_path / "results.csv") as f:
        rows = list(csv.reader(f))
    assert [c.strip() for c in rows[0]] == list(RESULTS_COLUMNS)
    assert [float(r[0]) for r in rows[1:]] == [0, 1] and float(rows[2][7]) == pytest.approx(0.3)
    for name in ("results.png", "labels.jpg", "train_batch0.jpg", "train_batch1.jpg", "train_batch2.jpg"):
        assert (tmp_path / name).stat().st_size > 1000, name
    assert not (tmp_path / "train_batch3.jpg").exists()
    assert not list(tmp_path.glob("events.out.tfevents.*"))
    assert float(model[1].num_batches_tracked) == 0  # logging never runs the training model


def test_tensorboard_event_file_holds_scalars_images_and_graph(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    model = fake_training(tmp_path, tensorboard=True)
    events = list(tmp_path.glob("events.out.tfevents.*"))
    assert len(events) == 1
    acc = EventAccumulator(str(events[0]), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    tags = acc.Tags()
    assert {"metrics/mAP_0.5:0.95", "train/box_loss", "x/lr0", "x/fitness"} <= set(tags["scalars"])
    assert [e.value for e in acc.Scalars("metrics/mAP_0.5:0.95")] == pytest.approx([0.2, 0.3])
    assert {"train_batch0", "train_batch2", "labels", "results"} <= set(tags["images"])
    assert acc.Graph() is not None  # the traced model graph
    assert float(model[1].num_batches_tracked) == 0  # traced on a copy


def test_noplots_logs_scalars_to_tensorboard_but_no_graph_or_images(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    fake_training(tmp_path, tensorboard=True, plots=False)
    acc = EventAccumulator(str(next(tmp_path.glob("events.out.tfevents.*"))), size_guidance={"images": 0})
    acc.Reload()
    assert "metrics/mAP_0.5:0.95" in acc.Tags()["scalars"] and not acc.Tags()["images"]
    with pytest.raises(ValueError, match="no graph"):  # official traces the graph only where it plots
        acc.Graph()
