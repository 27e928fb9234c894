"""Scripts written against official YOLOv5 v7.0 imports: every (module, name) pair that its detect.py, val.py,
train.py, export.py, hubconf.py and benchmarks.py import from models.* and utils.*, and the official semantics of
the names this project provides only for them."""

import argparse
import importlib
import inspect
import os
import time

import numpy as np
import pytest
import torch
import torch.nn as nn
from tqdm import tqdm

import utils.checkpoints
import utils.dataset_yaml
import utils.evaluation
import utils.evolve
import utils.general
import utils.torch_utils
import utils.training
from utils.general import ROOT, UserError, yaml_load

# (module, names) as imported by official v7.0's six top-level files
OFFICIAL_IMPORTS = {
    "models.common": ("AutoShape", "DetectMultiBackend"),
    "models.experimental": ("attempt_load",),
    "models.yolo": ("ClassificationModel", "Detect", "DetectionModel", "Model", "SegmentationModel"),
    "utils": ("notebook_init",),
    "utils.autoanchor": ("check_anchors",),
    "utils.autobatch": ("check_train_batch_size",),
    "utils.callbacks": ("Callbacks",),
    "utils.dataloaders": ("IMG_FORMATS", "VID_FORMATS", "LoadImages", "LoadScreenshots", "LoadStreams",
                          "create_dataloader"),
    "utils.downloads": ("attempt_download", "is_url"),
    "utils.general": (
        "LOGGER", "TQDM_BAR_FORMAT", "Profile", "check_amp", "check_dataset", "check_file", "check_git_info",
        "check_git_status", "check_img_size", "check_imshow", "check_requirements", "check_suffix", "check_version",
        "check_yaml", "coco80_to_coco91_class", "colorstr", "cv2", "file_size", "get_default_args", "get_latest_run",
        "increment_path", "init_seeds", "intersect_dicts", "labels_to_class_weights", "labels_to_image_weights",
        "logging", "methods", "non_max_suppression", "one_cycle", "print_args", "print_mutation", "scale_boxes",
        "strip_optimizer", "url2file", "xywh2xyxy", "xyxy2xywh", "yaml_save",
    ),
    "utils.loggers": ("Loggers",),
    "utils.loggers.comet.comet_utils": ("check_comet_resume",),
    "utils.loss": ("ComputeLoss",),
    "utils.metrics": ("ConfusionMatrix", "ap_per_class", "box_iou", "fitness"),
    "utils.plots": ("Annotator", "colors", "output_to_target", "plot_evolve", "plot_images", "plot_val_study",
                    "save_one_box"),
    "utils.torch_utils": ("EarlyStopping", "ModelEMA", "de_parallel", "select_device", "smart_DDP",
                          "smart_inference_mode", "smart_optimizer", "smart_resume", "torch_distributed_zero_first"),
}


def _available(module, name):
    try:
        getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return False
    return True


def test_official_imports_resolve(capsys):
    pairs = [(m, n) for m, names in OFFICIAL_IMPORTS.items() for n in names]
    assert len(pairs) == len(set(pairs)) == 80
    missing = {p for p in pairs if not _available(*p)}
    with capsys.disabled():
        print(f"\nofficial v7.0 imports available: {len(pairs) - len(missing)}/{len(pairs)}; missing: "
              f"{sorted('.'.join(p) for p in missing)}")
    assert missing == set()
    assert not _available("utils.general", "no_such_name")  # the lazy lookups still refuse unknown names


def test_lazy_general_names_are_the_projects_own():
    g = utils.general
    assert g.strip_optimizer is utils.checkpoints.strip_optimizer
    assert g.check_dataset is utils.dataset_yaml.check_dataset
    assert g.labels_to_class_weights is utils.training.labels_to_class_weights
    assert g.labels_to_image_weights is utils.training.labels_to_image_weights
    assert g.cv2 is importlib.import_module("cv2") and g.logging is importlib.import_module("logging")
    mapping = g.coco80_to_coco91_class()
    assert mapping is not None and len(mapping) == 80 and mapping[:3] == [1, 2, 3] and mapping[-1] == 90
    bar = tqdm.format_meter(5, 10, 2.0, bar_format=g.TQDM_BAR_FORMAT)
    assert bar.startswith(" 50%|") and bar.endswith("| 5/10 00:02")
    assert utils.torch_utils.EarlyStopping is utils.training.EarlyStopping
    from utils.plots import plot_evolve

    assert plot_evolve is utils.evolve.plot_evolve


def test_profile_times_blocks_and_functions():
    with utils.general.Profile() as p:
        time.sleep(0.02)
    assert 0.015 < p.dt < 1 and p.t == p.dt
    first = p.dt
    with p:
        time.sleep(0.01)
    assert p.t == pytest.approx(first + p.dt)

    timer = utils.general.Profile(t=1.0)

    @timer
    def work():
        time.sleep(0.01)

    work()
    work()
    assert 1.015 < timer.t < 2


def test_check_file_and_yaml(tmp_path, monkeypatch):
    g = utils.general
    assert g.check_file("coco8.yaml") == str(ROOT / "data" / "coco8.yaml")  # found under data/
    assert g.check_yaml("hyp.scratch-low.yaml") == str(ROOT / "data" / "hyps" / "hyp.scratch-low.yaml")
    existing = tmp_path / "mine.yaml"
    existing.write_text("a: 1\n")
    assert g.check_yaml(existing) == str(existing) and g.check_file("") == ""
    with pytest.raises(UserError, match="URL"):
        g.check_file("https://example.com/data.yaml")
    with pytest.raises(UserError, match="not found"):
        g.check_file("no_such_file_anywhere.yaml")
    with pytest.raises(UserError, match="several files"):
        g.check_file("*.yaml")
    with pytest.raises(UserError, match=r"acceptable suffix is \.yaml"):
        g.check_yaml(tmp_path / "weights.pt")
    g.check_suffix(["a.pt", "b.PT", "noext"], (".pt",))
    with pytest.raises(UserError, match="acceptable suffix"):
        g.check_suffix("model.onnx", ".pt")


def test_environment_checks(monkeypatch):
    g = utils.general
    assert g.check_requirements() is None and g.check_requirements(("numpy>=1.0",), install=False) is None
    assert g.check_git_info() == {} and g.check_git_status() is None
    assert g.check_version("2.13.0+cpu", "1.8.0") and not g.check_version("1.7.1", "1.8.0")
    assert g.check_version("1.8.0", "1.8.0", pinned=True) and not g.check_version("1.8.1", "1.8.0", pinned=True)
    with pytest.raises(UserError, match="1.9.0 is required"):
        g.check_version("1.8.0", "1.9.0", name="torch ", hard=True)
    cv2 = importlib.import_module("cv2")
    monkeypatch.setattr(cv2, "imshow", lambda *a: (_ for _ in ()).throw(cv2.error("no GUI")))
    assert g.check_imshow(warn=True) is False
    monkeypatch.setattr(cv2, "imshow", lambda *a: None)
    monkeypatch.setattr(cv2, "waitKey", lambda *a: -1)
    monkeypatch.setattr(cv2, "destroyAllWindows", lambda: None)
    assert g.check_imshow() is True


def test_dict_and_small_helpers(tmp_path):
    g = utils.general
    da = {"a.weight": torch.zeros(2, 3), "b.weight": torch.zeros(4), "anchor": torch.zeros(3), "only_a": torch.ones(1)}
    db = {"a.weight": torch.ones(2, 3), "b.weight": torch.zeros(5), "anchor": torch.zeros(3)}
    assert list(g.intersect_dicts(da, db)) == ["a.weight", "anchor"]  # mismatched shapes and missing keys dropped
    assert list(g.intersect_dicts(da, db, exclude=["anchor"])) == ["a.weight"]

    class Thing:
        def on_fit(self):
            pass

        value = 3

    assert "on_fit" in g.methods(Thing()) and "value" not in g.methods(Thing())
    lf = g.one_cycle(1, 0.01, 100)
    assert lf(0) == pytest.approx(1) and lf(50) == pytest.approx(0.505) and lf(100) == pytest.approx(0.01)
    f = tmp_path / "w.bin"
    f.write_bytes(b"\0" * 2**19)
    assert g.file_size(f) == 0.5 and g.file_size(tmp_path) == 0.5 and g.file_size(tmp_path / "none") == 0.0
    assert g.get_default_args(lambda a, b=2, *, c="x": 0) == {"b": 2, "c": "x"}
    assert g.url2file("https://host.com/a/yolov5s%20v2.pt?auth=1") == "yolov5s v2.pt"
    assert g.url2file("path/to/file.txt") == "file.txt"


def test_official_training_wrappers(tmp_path):
    g = utils.general
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    assert g.check_amp(model) is False  # CPU: official trains in fp32
    assert g.get_latest_run(tmp_path) == ""
    for run, age in (("exp", 100), ("exp2", 0)):
        (tmp_path / run / "weights").mkdir(parents=True)
        f = tmp_path / run / "weights" / "last.pt"
        f.write_bytes(b"x")
        os.utime(f, (time.time() - age, time.time() - age))
    assert g.get_latest_run(tmp_path) == str(tmp_path / "exp2" / "weights" / "last.pt")

    hyp = yaml_load(ROOT / "data/hyps/hyp.scratch-low.yaml")
    g.print_mutation(("metrics/precision",), (0.5, 0.4, 0.3, 0.2, 0.01, 0.02, 0.03), hyp, tmp_path)
    g.print_mutation(("metrics/precision",), (0.6, 0.5, 0.6, 0.5, 0.01, 0.02, 0.03), {**hyp, "lr0": 0.02}, tmp_path)
    assert len(utils.evolve.read_evolve_csv(tmp_path / "evolve.csv")) == 2
    assert yaml_load(tmp_path / "hyp_evolve.yaml")["lr0"] == pytest.approx(0.02)  # the fitter generation


def test_torch_utils_names(tmp_path):
    from utils.torch_utils import ModelEMA, smart_DDP, smart_inference_mode, smart_optimizer, smart_resume

    @smart_inference_mode()
    def forward(x):
        return x * 2

    assert torch.is_inference(forward(torch.ones(1))) and not torch.is_inference(torch.ones(1) * 2)

    model = nn.Sequential(nn.Conv2d(3, 4, 3, bias=True), nn.BatchNorm2d(4))
    opt = smart_optimizer(model, "AdamW", lr=0.01, momentum=0.8, decay=5e-4)
    assert isinstance(opt, torch.optim.AdamW) and opt.defaults["betas"] == (0.8, 0.999)
    groups = [(len(g["params"]), g["weight_decay"]) for g in opt.param_groups]
    assert groups == [(2, 0.0), (1, 5e-4), (1, 0.0)]  # biases, conv weight (decay), BatchNorm weight

    ema = ModelEMA(model)
    ckpt = {"epoch": 4, "optimizer": opt.state_dict(), "best_fitness": 0.3, "updates": 40,
            "ema": {k: v + 1 for k, v in model.state_dict().items()}}
    fresh = smart_optimizer(model, "AdamW", lr=0.01, momentum=0.8, decay=5e-4)
    assert smart_resume(ckpt, fresh, ema, epochs=10) == (0.3, 5, 10)
    assert ema.updates == 40 and torch.equal(ema.ema[0].weight, model[0].weight + 1)
    assert smart_resume(ckpt, fresh, None, epochs=3, resume=False) == (0.3, 5, 7)  # fine-tune 3 more
    with pytest.raises(UserError, match="nothing to resume"):
        smart_resume({"epoch": -1, "optimizer": None}, fresh)

    torch.distributed.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        ddp = smart_DDP(model)
        assert isinstance(ddp, nn.parallel.DistributedDataParallel) and ddp.module is model
    finally:
        torch.distributed.destroy_process_group()


def test_other_module_names(tmp_path, capsys):
    from utils import notebook_init
    from utils.autobatch import FALLBACK_BATCH_SIZE, check_train_batch_size
    from utils.dataloaders import LoadScreenshots
    from utils.downloads import is_url
    from utils.loggers.comet.comet_utils import check_comet_resume
    from utils.plots import plot_val_study

    assert check_train_batch_size(nn.Conv2d(3, 4, 3), 64) == FALLBACK_BATCH_SIZE == 16  # CPU: official's default
    with pytest.raises(UserError, match="screen capture is not supported"):
        LoadScreenshots("screen 0")
    assert is_url("https://github.com/ultralytics/yolov5/releases/download/v7.0/yolov5s.pt")
    assert not is_url("yolov5s.pt") and not is_url("file:///etc/passwd") and not is_url("https://")
    assert check_comet_resume(argparse.Namespace(resume="comet://x/y")) is False
    notebook_init()
    assert "torch-" in capsys.readouterr().out

    with pytest.raises(UserError, match="study"):
        plot_val_study(dir=tmp_path)
    table = np.array([[size, 0.5, 0.4, 0.3 + size / 1e4, 0.2, 0, 0, 0, 1.0, size / 100, 1.0] for size in (256, 384)])
    np.savetxt(tmp_path / "study_coco8_yolov5n.txt", table, fmt="%10.4g")
    assert plot_val_study(dir=tmp_path) == tmp_path / "study.png" and (tmp_path / "study.png").stat().st_size > 0
    assert list(inspect.signature(plot_val_study).parameters) == ["file", "dir", "x"]


def test_classification_model_from_a_detection_model():
    """Official v7.0 ClassificationModel(model=detection, nc, cutoff=10): the backbone's first 9 layers kept (same
    weights), SPPF replaced by Classify (1x1 Conv to 1280, pool, linear) -> (N, nc) logits."""
    from models.common import Classify
    from models.yolo import ClassificationModel, Model

    torch.manual_seed(0)
    det = Model("yolov5n.yaml").eval()
    cls = ClassificationModel(model=det, nc=7).eval()
    assert len(cls.model) == 10 and isinstance(cls.model[-1], Classify)
    assert cls.model[-1].type == "models.common.Classify"
    assert cls.model[0] is det.model[0]  # the backbone's own weights
    head = cls.model[-1]
    assert sum(p.numel() for p in head.parameters()) == 256 * 1280 + 2 * 1280 + 1280 * 7 + 7
    with torch.no_grad():
        out = cls(torch.rand(2, 3, 96, 64))
    assert out.shape == (2, 7)
    with pytest.raises(UserError, match="cutoff"):
        ClassificationModel(model=det, cutoff=99)
    with pytest.raises(UserError, match="needs a detection model"):
        ClassificationModel()
