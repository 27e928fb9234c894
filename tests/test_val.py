"""val.run end to end on the bundled coco8 at 160 px: the official fixture checkpoint, and stand-in models whose
predictions are known (the labels themselves, or jittered labels) so the metrics have known answers; the COCO
helpers of utils/evaluation.py."""

import contextlib
import io
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

import val
from utils.dataloaders import create_dataloader
from utils.dataset_yaml import check_dataset
from utils.evaluation import coco80_to_coco91_class, coco_evaluate, coco_ground_truth, coco_image_id
from utils.general import ROOT, UserError
from utils.plots import output_to_target

COCO8 = ROOT / "data" / "coco8.yaml"
IMGSZ = 160


class LabelModel(nn.Module):
    """Stands in for a detector: returns the labels of each batch (taken from the same loader beforehand) as
    predictions, optionally jittered, with confidences and a few false alarms. Output like Detect in eval mode."""

    def __init__(self, loader, nc, jitter=0.0, false_alarms=0, seed=0):
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(1))  # gives val.run a device
        self.names = {i: f"class{i}" for i in range(nc)}
        self.stride = torch.tensor([8.0, 16.0, 32.0])
        self.nc, self.jitter, self.false_alarms = nc, jitter, false_alarms
        self.generator = torch.Generator().manual_seed(seed)
        self.batches = [targets.clone() for _, targets, _, _ in loader]
        self.calls = 0

    def forward(self, im, augment=False):
        targets = self.batches[self.calls % len(self.batches)]
        self.calls += 1
        n, _, h, w = im.shape
        g = self.generator
        per_image = [targets[targets[:, 0] == i, 1:] for i in range(n)]
        k = max(len(t) for t in per_image) + self.false_alarms
        preds = torch.zeros(n, k, 5 + self.nc)
        for i, t in enumerate(per_image):
            boxes = t[:, 1:5] * torch.tensor([w, h, w, h])
            boxes = boxes * (1 + self.jitter * torch.randn(boxes.shape, generator=g))
            preds[i, : len(t), :4] = boxes
            preds[i, : len(t), 4] = 1.0 if not self.jitter else 0.3 + 0.7 * torch.rand(len(t), generator=g)
            preds[i, torch.arange(len(t)), 5 + t[:, 0].long()] = 1.0
            for j in range(len(t), len(t) + self.false_alarms):  # boxes at random places, low confidence
                preds[i, j, :4] = torch.rand(4, generator=g) * torch.tensor([w, h, w / 3, h / 3]) + 2
                preds[i, j, 4] = 0.5 * torch.rand(1, generator=g)
                preds[i, j, 5 + int(torch.randint(self.nc, (1,), generator=g))] = 1.0
        return preds, None


@pytest.fixture(scope="module")
def coco8():
    data = check_dataset(str(COCO8))
    loader, dataset = create_dataloader(data["val"], IMGSZ, 2, 32, rect=True, pad=0.5, workers=0)
    return data, loader, dataset


def test_run_cli_path_with_fixture_checkpoint(tmp_path, official_ckpt):
    """The command-line path: DetectMultiBackend + dataloader + plots at 160 px. The fixture's random weights give
    no candidate above conf 0.001, so every metric is exactly 0."""
    results, maps, times = val.run(data=str(COCO8), weights=str(official_ckpt), imgsz=IMGSZ, batch_size=4,
                                   device="cpu", workers=0, project=tmp_path, name="exp", save_txt=True)
    assert len(results) == 7 and results == (0.0,) * 7
    assert maps.shape == (80,) and len(times) == 3 and all(t >= 0 for t in times)
    save_dir = tmp_path / "exp"
    for f in ("confusion_matrix.png", "PR_curve.png", "F1_curve.png", "P_curve.png", "R_curve.png",
              "val_batch0_labels.jpg", "val_batch0_pred.jpg"):
        assert (save_dir / f).stat().st_size > 1000, f


def test_perfect_predictions_score_one(tmp_path, coco8):
    data, loader, dataset = coco8
    model = LabelModel(loader, data["nc"])
    fixed_loss = lambda p, t: (None, torch.tensor([1.0, 2, 3]))  # noqa: E731
    output = val.run(data, model=model, dataloader=loader, save_dir=tmp_path, plots=True, save_txt=True,
                     save_json=True, verbose=True, compute_loss=fixed_loss)
    results, maps, _ = output  # named tuples, still tuples
    assert output.results is results and output.maps is maps
    mp, mr, map50, map5095, *losses = results
    assert (results.precision, results.map50_95, results.cls_loss) == (mp, map5095, losses[2])
    assert (mp, mr, map50, map5095) == pytest.approx((1.0, 1.0, 1.0, 1.0), abs=1e-3)
    assert losses == pytest.approx([1.0, 2.0, 3.0])  # per-batch loss items averaged over the batches
    present = {int(c) for lb in dataset.labels for c in lb[:, 0]}
    assert all(maps[c] == pytest.approx(1.0, abs=1e-3) for c in present)
    # --save-txt: the predictions mapped back through the letterbox equal the label files
    for label_file, image_file in zip(dataset.label_files, dataset.im_files):
        expected = np.loadtxt(label_file, ndmin=2)
        saved = np.loadtxt(tmp_path / "labels" / f"{Path(image_file).stem}.txt", ndmin=2)
        key = lambda a: a[np.lexsort(a.T[::-1])]  # noqa: E731
        assert np.allclose(key(saved), key(expected), atol=2e-3)
    # --save-json: pycocotools on our ground-truth and prediction files agrees
    pytest.importorskip("pycocotools")
    stats = coco_evaluate(tmp_path / "val_ground_truth.json", tmp_path / "model_predictions.json",
                          [coco_image_id(f) for f in dataset.im_files])
    assert stats == pytest.approx((1.0, 1.0), abs=1e-3)


def test_noisy_predictions_agree_with_pycocotools(tmp_path, coco8):
    pytest.importorskip("pycocotools")
    data, loader, dataset = coco8
    model = LabelModel(loader, data["nc"], jitter=0.08, false_alarms=3, seed=1)
    results, _, _ = val.run(data, model=model, dataloader=loader, save_dir=tmp_path, plots=False, save_json=True)
    map50, map5095 = results[2:4]
    assert 0.1 < map5095 < 0.9  # really imperfect
    coco_map, coco_map50 = coco_evaluate(tmp_path / "val_ground_truth.json", tmp_path / "model_predictions.json",
                                         [coco_image_id(f) for f in dataset.im_files])
    assert map50 == pytest.approx(coco_map50, abs=0.01)
    assert map5095 == pytest.approx(coco_map, abs=0.01)


def test_ap_by_object_size_agrees_with_pycocotools(tmp_path, coco8, info_log):
    """Small / medium / large AP and AR from val.run equal pycocotools' on the json files val.run wrote."""
    pytest.importorskip("pycocotools")
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    data, loader, dataset = coco8
    model = LabelModel(loader, data["nc"], jitter=0.08, false_alarms=3, seed=1)
    with info_log() as log:
        output = val.run(data, model=model, dataloader=loader, save_dir=tmp_path, plots=False, save_json=True)
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(tmp_path / "val_ground_truth.json"))
        coco_eval = COCOeval(gt, gt.loadRes(str(tmp_path / "model_predictions.json")), "bbox")
        coco_eval.params.imgIds = [coco_image_id(f) for f in dataset.im_files]
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    expected = [*coco_eval.stats[3:6], *coco_eval.stats[9:12]]
    assert sum(v > 0 for v in expected) >= 4  # several size ranges hold labels and hits
    assert list(output.by_size) == pytest.approx(expected, abs=1e-3)
    assert any(line.endswith(output.by_size.describe()) for line in log.lines)
    results, _, _ = output  # still a 3-tuple
    assert results is output.results


def test_coco_ground_truth_boxes(coco8):
    data, _, dataset = coco8
    gt = coco_ground_truth(dataset, data["names"], list(range(80)))
    assert len(gt["images"]) == 4 and len(gt["annotations"]) == sum(len(lb) for lb in dataset.labels)
    first = dataset.labels[0][0]
    w, h = dataset.shapes[0]
    ann = next(a for a in gt["annotations"] if a["image_id"] == coco_image_id(dataset.im_files[0]))
    assert ann["category_id"] == int(first[0])
    assert ann["bbox"] == pytest.approx([(first[1] - first[3] / 2) * w, (first[2] - first[4] / 2) * h,
                                         first[3] * w, first[4] * h], abs=1e-2)
    json.dumps(gt)  # plain types only


def test_helpers():
    assert coco80_to_coco91_class()[:12] == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13]
    assert len(coco80_to_coco91_class()) == 80 and coco80_to_coco91_class()[-1] == 90
    assert coco_image_id("a/000000000139.jpg") == 139 and coco_image_id("b/bus.jpg") == "bus"
    out = output_to_target([torch.tensor([[10.0, 20.0, 30.0, 60.0, 0.9, 2.0]]), torch.zeros((0, 6))])
    assert out.tolist() == [[0.0, 2.0, 20.0, 40.0, 20.0, 40.0, pytest.approx(0.9)]]


def test_bad_inputs_are_user_errors(tmp_path, official_ckpt):
    with pytest.raises(UserError, match="not found"):
        val.run(data=str(COCO8), weights=str(tmp_path / "missing.pt"), imgsz=IMGSZ, device="cpu", project=tmp_path)
    three = tmp_path / "three.yaml"
    three.write_text(f"path: {ROOT / 'data' / 'coco8'}\ntrain: images/train\nval: images/val\nnames: [a, b, c]\n")
    with pytest.raises(UserError, match="80 classes"):
        val.run(data=str(three), weights=str(official_ckpt), imgsz=IMGSZ, device="cpu", project=tmp_path)
    with pytest.raises(UserError, match="'test' split"):
        val.run(data=str(COCO8), weights=str(official_ckpt), imgsz=IMGSZ, device="cpu", project=tmp_path,
                task="test", workers=0)


def test_label_class_beyond_nc_is_a_user_error(tmp_path, official_ckpt):
    images, labels = tmp_path / "data" / "images" / "val", tmp_path / "data" / "labels" / "val"
    images.mkdir(parents=True)
    labels.mkdir(parents=True)
    shutil.copy(ROOT / "data" / "images" / "bus.jpg", images)
    (labels / "bus.txt").write_text("5 0.5 0.5 0.2 0.2\n85 0.3 0.3 0.1 0.1\n")
    yaml_file = tmp_path / "data.yaml"
    yaml_file.write_text(f"path: {tmp_path / 'data'}\ntrain: images/val\nval: images/val\nnc: 80\n")
    with pytest.raises(UserError, match="label class 85 exceeds nc=80"):
        val.run(data=str(yaml_file), weights=str(official_ckpt), imgsz=IMGSZ, device="cpu", project=tmp_path,
                workers=0)


@pytest.mark.parametrize("flags, message", [
    (dict(batch_size=0), "--batch-size 0 must be at least 1"),
    (dict(imgsz=0), "--img-size 0 must be a positive"),
    (dict(conf_thres=2.0), "--conf-thres 2.0 and --iou-thres 0.6 must both be between 0 and 1"),
    (dict(iou_thres=-0.5), "--conf-thres 0.001 and --iou-thres -0.5 must both be between 0 and 1"),
])
def test_out_of_range_flags_are_user_errors(tmp_path, official_ckpt, flags, message):
    run_flags = dict(data=str(COCO8), weights=str(official_ckpt), imgsz=IMGSZ, device="cpu", project=tmp_path,
                     workers=0) | flags
    with pytest.raises(UserError, match=re.escape(message)):
        val.run(**run_flags)


def test_cli_parses_yolov5_flags():
    opt = val.parse_opt(["--weights", "a.pt", "b.pt", "--img", "320", "--conf-thres", "0.01", "--iou-thres", "0.5",
                         "--max-det", "100", "--task", "speed", "--single-cls", "--augment", "--verbose",
                         "--save-hybrid", "--save-conf", "--save-json", "--exist-ok", "--half", "--dnn",
                         "--batch-size", "8", "--workers", "1", "--device", "cpu", "--project", "p", "--name", "n"])
    assert opt.weights == ["a.pt", "b.pt"] and opt.imgsz == 320 and opt.save_txt  # --save-hybrid implies txt
    import inspect

    assert set(vars(opt)) <= set(inspect.signature(val.run).parameters)


def test_empty_weights_means_the_newest_trained_weights(monkeypatch, official_ckpt, tmp_path):
    """--weights '' is "not given": val takes the newest trained best.pt (here patched to the fixture)."""
    chosen = []
    monkeypatch.setattr(val, "newest_trained_weights", lambda: chosen.append(1) or official_ckpt)
    val.run(data="data/coco8.yaml", weights=[""], imgsz=64, batch_size=4, workers=0, project=tmp_path, plots=False)
    assert chosen == [1]
