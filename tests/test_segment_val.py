"""segment/val.py and evaluate_segmentation on the real mask loader (utils/segment_data.py): a generated 4-image
shapes-seg split at 128 px, a stand-in model that predicts the labels with their own masks (known answer: box and
mask mAP50 = 1), and the script end to end with an untrained yolov5n-seg (table, files, json, refusals)."""

import json
import logging

import numpy as np
import pytest
import torch
import torch.nn as nn

from data.synthetic import generate_shapes_seg
from models.yolo import Model, SegmentationModel
from segment import val as segment_val
from tests.conftest import LogLines
from utils.checkpoints import make_checkpoint, save_checkpoint
from utils.general import UserError
from utils.segment_data import create_segment_dataloader
from utils.segment_evaluation import SegValResults, evaluate_segmentation

IMGSZ, NAMES = 128, {0: "circle", 1: "square", 2: "triangle"}


@pytest.fixture(scope="module")
def shapes_seg(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("shapes_seg")
    root = generate_shapes_seg(tmp / "shapes-seg", n_train=1, n_val=4, size=IMGSZ, seed=3)
    yaml_file = tmp / "shapes-seg.yaml"
    yaml_file.write_text(f"path: {root}\ntrain: images/train\nval: images/val\nnames:\n"
                         + "".join(f"  {k}: {v}\n" for k, v in NAMES.items()))
    return yaml_file, root


class LabelMaskModel(nn.Module):
    """Predicts each batch's labels (taken from the same loader beforehand) with their ground-truth masks: prototype
    channel j is label j's mask (+/-20 logits) and detection j's coefficients select channel j."""

    def __init__(self, loader, overlap):
        super().__init__()
        self.batches = [(targets.clone(), masks.clone()) for _, targets, _, _, masks in loader]
        self.overlap, self.calls = overlap, 0

    def forward(self, im, augment=False):
        targets, masks = self.batches[self.calls]
        self.calls += 1
        n, _, h, w = im.shape
        per_image = [targets[targets[:, 0] == i, 1:] for i in range(n)]
        nm = max(len(t) for t in per_image)
        preds, protos = torch.zeros(n, nm, 5 + len(NAMES) + nm), -20 * torch.ones(n, nm, h // 4, w // 4)
        first = 0
        for i, t in enumerate(per_image):
            k = len(t)
            preds[i, :k, :4] = t[:, 1:5] * torch.tensor([w, h, w, h])
            preds[i, :k, 4] = torch.linspace(0.9, 0.5, k)
            preds[i, torch.arange(k), 5 + t[:, 0].long()] = 1.0
            preds[i, torch.arange(k), 5 + len(NAMES) + torch.arange(k)] = 1.0
            for j in range(k):
                own = masks[i] == j + 1 if self.overlap else masks[first + j] > 0
                protos[i, j][own] = 20.0
            first += k
        return preds, protos, None


@pytest.mark.parametrize("overlap", [True, False])
def test_label_masks_on_the_real_loader_give_map_one(shapes_seg, overlap):
    yaml_file, root = shapes_seg
    loader, _ = create_segment_dataloader(str(root / "images" / "val"), IMGSZ, 2, 32, mask_ratio=4, overlap=overlap,
                                          rect=True, pad=0.5, workers=0)
    model = LabelMaskModel(loader, overlap)
    out = evaluate_segmentation(model, loader, len(NAMES), NAMES, torch.device("cpu"), plots=False,
                                overlap=overlap)
    r = out.results
    assert (r.map50_bbox, r.map_bbox) == pytest.approx((1.0, 1.0))
    # the predicted mask is the label's mask cut to the label's box: the edge pixels of the rasterised polygon that
    # fall outside the box are lost, a row or column of a 7-pixel-wide mask (objects of ~28 px at 1/4 resolution)
    assert r.map50_mask == pytest.approx(1.0) and 0.8 < r.map_mask < 1.0


@pytest.fixture(scope="module")
def seg_weights(tmp_path_factory):
    torch.manual_seed(0)
    model = SegmentationModel("models/segment/yolov5n-seg.yaml", nc=len(NAMES))
    model.names = dict(NAMES)
    path = tmp_path_factory.mktemp("seg_weights") / "seg.pt"
    save_checkpoint(make_checkpoint(model, names=model.names), path)
    return path


@pytest.mark.slow
def test_segment_val_runs_end_to_end(shapes_seg, seg_weights, tmp_path):
    yaml_file, root = shapes_seg
    opt = segment_val.parse_opt(["--data", str(yaml_file), "--weights", str(seg_weights), "--imgsz", str(IMGSZ),
                                 "--batch-size", "4", "--workers", "0", "--project", str(tmp_path), "--save-json",
                                 "--save-txt", "--save-conf", "--verbose"])
    with LogLines(logging.INFO) as log:
        out = segment_val.run(**vars(opt), plots=False)
    r = out.results
    assert isinstance(r, SegValResults) and all(0 <= v <= 1 for v in r[:8])
    assert out.maps.shape == (len(NAMES),) and len(out.times) == 3
    text = "\n".join(log.lines)
    row = next(line.split() for line in log.lines if line.split()[:1] == ["all"])
    instances = sum(len(f.read_text().splitlines()) for f in (root / "labels" / "val").glob("*.txt"))
    assert len(row) == 11 and row[1:3] == ["4", str(instances)]  # images, instances
    assert [float(v) for v in row[3:]] == pytest.approx(list(r[:8]), abs=1e-3)  # Box P R mAP50 mAP50-95, Mask ...
    assert "pycocotools: box mAP50" in text and "mask by object size" in text
    save_dir = tmp_path / "exp"
    records = json.loads((save_dir / "seg_predictions.json").read_text())
    assert records and {"image_id", "category_id", "bbox", "score", "segmentation"} <= set(records[0])
    assert set(records[0]["segmentation"]) == {"size", "counts"}
    assert records[0]["segmentation"]["size"] == [IMGSZ, IMGSZ]  # masks on the original image
    gt = json.loads((save_dir / "val_ground_truth.json").read_text())
    assert len(gt["images"]) == 4 and all(len(a["segmentation"][0]) >= 6 for a in gt["annotations"])
    rows = [line.split() for f in (save_dir / "labels").glob("*.txt") for line in f.read_text().splitlines()]
    assert rows and all(len(row) == 6 for row in rows)  # cls x y w h conf
    assert np.array([row[1:5] for row in rows], dtype=float).max() <= 1.0


def test_segment_val_refuses_ensembles(shapes_seg, tmp_path):
    with pytest.raises(UserError, match="one model at a time"):
        segment_val.run(data=str(shapes_seg[0]), weights=["a.pt", "b.pt"], imgsz=IMGSZ, project=tmp_path)


@pytest.mark.slow
def test_segment_val_refuses_detection_weights(shapes_seg, tmp_path):
    yaml_file, _ = shapes_seg
    det = Model("models/yolov5n.yaml", nc=len(NAMES))
    det.names = dict(NAMES)
    path = tmp_path / "det.pt"
    save_checkpoint(make_checkpoint(det, names=det.names), path)
    with pytest.raises(UserError, match="detection model"):
        segment_val.run(data=str(yaml_file), weights=str(path), imgsz=IMGSZ, project=tmp_path, workers=0)


def test_segment_val_has_the_official_flags():
    official = ["--data", "--weights", "--batch-size", "--imgsz", "--conf-thres", "--iou-thres", "--max-det",
                "--task", "--device", "--workers", "--single-cls", "--augment", "--verbose", "--save-txt",
                "--save-hybrid", "--save-conf", "--save-json", "--project", "--name", "--exist-ok", "--half", "--dnn"]
    opt = segment_val.parse_opt([])
    for flag in official:
        assert hasattr(opt, flag[2:].replace("-", "_")), flag
    assert (opt.batch_size, opt.imgsz, opt.conf_thres, opt.iou_thres, opt.max_det) == (32, 640, 0.001, 0.6, 300)
    assert segment_val.parse_opt(["--save-hybrid"]).save_txt  # as official: hybrid labels are written


@pytest.mark.slow
def test_validation_losses_are_the_segment_loss_of_the_batches(shapes_seg):
    """With compute_loss (what segment/train.py passes), the returned losses are ComputeSegmentLoss's
    [box, seg, obj, cls] on the eval forward's (raw levels, proto), averaged over the batches."""
    from utils.general import yaml_load
    from utils.segment_loss import ComputeSegmentLoss

    _, root = shapes_seg
    loader, _ = create_segment_dataloader(str(root / "images" / "val"), IMGSZ, 4, 32, mask_ratio=4, overlap=True,
                                          rect=True, pad=0.5, workers=0)
    torch.manual_seed(0)
    model = SegmentationModel("models/segment/yolov5n-seg.yaml", nc=len(NAMES)).eval()
    hyp = yaml_load("data/hyps/hyp.scratch-low.yaml")
    compute_loss = ComputeSegmentLoss(model, hyp, overlap=True)
    im, targets, _, _, masks = next(iter(loader))
    with torch.no_grad():
        pred, proto, raw = model(im.float() / 255)
        expected = compute_loss((raw, proto), targets, masks)[1]
    out = evaluate_segmentation(model, loader, len(NAMES), NAMES, torch.device("cpu"), plots=False, overlap=True,
                                compute_loss=compute_loss)
    losses = list(out.results[8:])
    assert len(loader) == 1 and all(v > 0 for v in losses)
    assert losses == pytest.approx(expected.tolist(), rel=1e-5)
