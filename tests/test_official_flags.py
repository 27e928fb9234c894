"""Official YOLOv5 v7.0 command lines: every flag of its train.py, detect.py, val.py and export.py parses here, and
the ones this project implements for them behave as official's (--quad, detect --update, --batch-size -1 on the
CPU, export --optimize) or say clearly that they do nothing here."""

import pytest
import torch
import torch.backends.xnnpack

import detect
import export
import train
import utils.dataloaders as dl
import val
from engine import training
from models.yolo import Model
from utils.callbacks import Callbacks
from utils.checkpoints import load_checkpoint, make_checkpoint, save_checkpoint
from utils.dataloaders import LoadImagesAndLabels, create_dataloader
from utils.general import ROOT, UserError

# official v7.0's flags, each with a value where it takes one
TRAIN_FLAGS = [
    ["--weights", "yolov5s.pt"], ["--cfg", "yolov5s.yaml"], ["--data", "coco128.yaml"], ["--hyp", "hyp.yaml"],
    ["--epochs", "3"], ["--batch-size", "16"], ["--imgsz", "320"], ["--img", "320"], ["--img-size", "320"],
    ["--rect"], ["--resume"], ["--resume", "last.pt"], ["--nosave"], ["--noval"], ["--noautoanchor"], ["--noplots"],
    ["--evolve"], ["--evolve", "10"], ["--bucket", "gs://b"], ["--cache"], ["--cache", "disk"], ["--image-weights"],
    ["--device", "cpu"], ["--multi-scale"], ["--single-cls"], ["--optimizer", "AdamW"], ["--sync-bn"],
    ["--workers", "2"], ["--project", "p"], ["--name", "n"], ["--exist-ok"], ["--quad"], ["--cos-lr"],
    ["--label-smoothing", "0.1"], ["--patience", "10"], ["--freeze", "10"], ["--freeze", "0", "1"],
    ["--save-period", "5"], ["--seed", "1"], ["--local_rank", "0"], ["--entity", "me"], ["--upload_dataset"],
    ["--upload_dataset", "val"], ["--bbox_interval", "2"], ["--artifact_alias", "v1"],
]
DETECT_FLAGS = [
    ["--weights", "a.pt", "b.pt"], ["--source", "data/images"], ["--data", "coco128.yaml"], ["--imgsz", "640"],
    ["--img", "640", "480"], ["--img-size", "640"], ["--conf-thres", "0.3"], ["--iou-thres", "0.5"],
    ["--max-det", "10"], ["--device", "cpu"], ["--view-img"], ["--save-txt"], ["--save-conf"], ["--save-crop"],
    ["--nosave"], ["--classes", "0", "2"], ["--agnostic-nms"], ["--augment"], ["--visualize"], ["--update"],
    ["--project", "p"], ["--name", "n"], ["--exist-ok"], ["--line-thickness", "2"], ["--hide-labels"],
    ["--hide-conf"], ["--half"], ["--dnn"], ["--vid-stride", "2"],
]
VAL_FLAGS = [
    ["--data", "coco128.yaml"], ["--weights", "a.pt", "b.pt"], ["--batch-size", "8"], ["--imgsz", "320"],
    ["--img", "320"], ["--img-size", "320"], ["--conf-thres", "0.01"], ["--iou-thres", "0.5"], ["--max-det", "100"],
    ["--task", "speed"], ["--device", "cpu"], ["--workers", "2"], ["--single-cls"], ["--augment"], ["--verbose"],
    ["--save-txt"], ["--save-hybrid"], ["--save-conf"], ["--save-json"], ["--project", "p"], ["--name", "n"],
    ["--exist-ok"], ["--half"], ["--dnn"],
]
EXPORT_FLAGS = [
    ["--data", "coco128.yaml"], ["--weights", "a.pt"], ["--imgsz", "640", "640"], ["--img", "320"],
    ["--img-size", "320"], ["--batch-size", "1"], ["--device", "cpu"], ["--half"], ["--inplace"], ["--keras"],
    ["--optimize"], ["--int8"], ["--dynamic"], ["--simplify"], ["--opset", "12"], ["--verbose"], ["--workspace", "8"],
    ["--nms"], ["--agnostic-nms"], ["--topk-per-class", "50"], ["--topk-all", "50"], ["--iou-thres", "0.5"],
    ["--conf-thres", "0.3"], ["--include", "torchscript", "onnx"],
]
SCRIPTS = {"train": (train, TRAIN_FLAGS), "detect": (detect, DETECT_FLAGS), "val": (val, VAL_FLAGS),
           "export": (export, EXPORT_FLAGS)}


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_official_flag_parses(script):
    module, flags = SCRIPTS[script]
    for argv in flags:
        opt = module.parse_opt(argv)
        key = argv[0].lstrip("-").replace("-", "_")
        key = {"img": "imgsz", "img_size": "imgsz"}.get(key, key)
        assert hasattr(opt, key), argv
    module.parse_opt([x for argv in flags if argv[0] not in ("--resume", "--evolve") for x in argv])  # all at once


def test_parsed_values_of_the_new_flags():
    opt = train.parse_opt(["--quad", "--upload_dataset", "--bbox_interval", "3", "--entity", "me"])
    assert opt.quad and opt.upload_dataset is True and opt.bbox_interval == 3 and opt.entity == "me"
    defaults = train.parse_opt([])
    assert not defaults.quad and {k: getattr(defaults, k) for k in training.ONLINE_LOGGER_FLAGS} == \
        training.ONLINE_LOGGER_FLAGS
    assert detect.parse_opt(["--update"]).update and not detect.parse_opt([]).update
    opt = export.parse_opt(["--optimize", "--workspace", "8", "--topk-all", "50", "--conf-thres", "0.3"])
    assert opt.optimize and opt.workspace == 8 and opt.topk_all == 50 and opt.conf_thres == 0.3


def _sample(value, labels):
    """A LoadImagesAndLabels item: a constant 3x8x8 uint8 image and its (n, 6) targets."""
    targets = torch.zeros(len(labels), 6)
    targets[:, 1:] = torch.tensor(labels, dtype=torch.float32).view(-1, 5)
    return torch.full((3, 8, 8), value, dtype=torch.uint8), targets, f"im{value}.jpg", ((8, 8), ((1, 1), (0, 0)))


def test_quad_collate_tiles_or_upsamples(monkeypatch):
    batch = [_sample(10 * (i + 1), [[i, 0.5, 0.25, 0.2, 0.4]]) for i in range(9)]  # 9: one image left over
    monkeypatch.setattr(dl.torch, "rand", lambda *a: torch.tensor([0.9]))  # tile every quad
    imgs, targets, paths, shapes = LoadImagesAndLabels.collate_fn4(batch)
    assert imgs.shape == (2, 3, 16, 16) and imgs.dtype == torch.uint8
    assert paths == ("im10.jpg", "im50.jpg") and shapes == (batch[0][3], batch[4][3])
    for q in range(2):  # quadrants left to right, top to bottom
        quarters = [imgs[q, :, :8, :8], imgs[q, :, :8, 8:], imgs[q, :, 8:, :8], imgs[q, :, 8:, 8:]]
        assert [int(x.unique()) for x in quarters] == [10 * (4 * q + k + 1) for k in range(4)]
    expected = torch.tensor([[0, 0, 0.25, 0.125, 0.1, 0.2], [0, 1, 0.75, 0.125, 0.1, 0.2],
                             [0, 2, 0.25, 0.625, 0.1, 0.2], [0, 3, 0.75, 0.625, 0.1, 0.2]])
    assert torch.allclose(targets[:4], expected)
    assert targets[4:, 0].tolist() == [1] * 4 and targets[4:, 1].tolist() == [4, 5, 6, 7]

    monkeypatch.setattr(dl.torch, "rand", lambda *a: torch.tensor([0.1]))  # upsample the first of each quad
    imgs, targets, _, _ = LoadImagesAndLabels.collate_fn4(batch[:4])
    assert imgs.shape == (1, 3, 16, 16) and int(imgs.unique()) == 10
    assert torch.allclose(targets, torch.tensor([[0, 0, 0.5, 0.25, 0.2, 0.4]]))  # normalised: unchanged


def test_quad_loader_batches():
    loader, _ = create_dataloader(ROOT / "data/coco8/images/train", 64, 4, 32, workers=0, quad=True)
    imgs, targets, paths, _ = next(iter(loader))
    assert imgs.shape == (1, 3, 128, 128) and len(paths) == 1
    assert len(targets) and set(targets[:, 0].tolist()) == {0}
    assert ((targets[:, 2:] >= 0) & (targets[:, 2:] <= 1)).all()


def test_train_quad_cpu_autobatch_and_online_flags(tmp_path, warnings_log):
    flags = dict(data=str(ROOT / "data/coco8.yaml"), cfg="yolov5n.yaml", imgsz=64, epochs=1, batch_size=-1, workers=0,
                 quad=True, entity="me", bbox_interval=2, noplots=True, noautoanchor=True, noval=True,
                 project=str(tmp_path), name="quad")
    shapes = []
    callbacks = Callbacks()
    callbacks.register_action("on_train_batch_end", callback=lambda ni, model, imgs, *a: shapes.append(imgs.shape))
    with warnings_log() as log:
        opt = train.run(callbacks=callbacks, **flags)
    assert shapes == [(1, 3, 128, 128)]  # coco8's 4 training images tiled into one at twice --imgsz
    assert opt.batch_size == 16  # --batch-size -1 on the CPU: official's default batch size
    assert sum("AutoBatch) needs a CUDA device" in line and "16" in line for line in log.lines) == 1
    assert sum("--entity, --bbox_interval ignored: online loggers" in line for line in log.lines) == 1
    ckpt = load_checkpoint(tmp_path / "quad" / "weights" / "last.pt")
    assert ckpt["opt"]["quad"] is True and ckpt["opt"]["batch_size"] == 16


def test_detect_update_strips_the_optimizer(tmp_path, warnings_log):
    model = Model("yolov5n.yaml", nc=2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    weights = save_checkpoint(make_checkpoint(model, optimizer=optimizer, epoch=3, half=False), tmp_path / "w.pt")
    assert load_checkpoint(weights)["optimizer"] is not None
    detect.run(weights=str(weights), source=ROOT / "data/images/bus.jpg", imgsz=(64, 64), project=tmp_path,
               update=True)
    stripped = load_checkpoint(weights)
    assert stripped["optimizer"] is None and stripped["epoch"] == -1
    with warnings_log() as log:
        detect.strip_weights([tmp_path / "w.onnx"])
    assert any("not a .pt checkpoint" in line for line in log.lines)


def test_detect_screen_source_is_not_supported():
    with pytest.raises(UserError, match="screen capture is not supported"):
        detect.run(weights="yolov5n.pt", source="screen 0 100 100 512 256")


def test_export_official_only_flags(tmp_path, official_ckpt, warnings_log):
    weights = tmp_path / "yolov5n.pt"
    weights.write_bytes(official_ckpt.read_bytes())
    with warnings_log() as log:
        files = export.run(weights=weights, imgsz=(64, 64), include=("torchscript",), optimize=True, keras=True,
                           nms=True, workspace=8)
    text = "\n".join(log.lines)
    assert "--keras applies to TensorFlow formats" in text and "--nms applies to onnx and openvino" in text
    assert "--workspace/--verbose ignored" in text
    if torch.backends.xnnpack.enabled:
        assert files == [str(tmp_path / "yolov5n.torchscript"), str(tmp_path / "yolov5n.ptl")]
        assert (tmp_path / "yolov5n.ptl").stat().st_size > 0
    else:
        assert files == [str(tmp_path / "yolov5n.torchscript")] and "needs a torch build with XNNPACK" in text
