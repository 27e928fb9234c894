"""Instance-segmentation metrics (utils/segment_evaluation.py) against known answers and pycocotools' 'segm'.

A fake segmentation model gives exact masks: prototype channel k is +20 on a chosen pixel set and -20 elsewhere,
so a detection whose coefficients select channel k has exactly that pixel set (cut to its box) as its mask.
Images are 64 x 64, prototypes and ground-truth masks 16 x 16 (mask ratio 4).
"""

import contextlib
import io
import json

import numpy as np
import pytest
import torch
import torch.nn as nn

from utils.evaluation import coco_evaluate
from utils.metrics import (
    AREA_RANGES,
    IOU_THRESHOLDS,
    ConfusionMatrix,
    ap_ar_by_area,
    match_predictions,
    match_predictions_by_area,
)
from utils.segment_evaluation import (
    SEG_VAL_COLUMNS,
    SegValResults,
    ap_per_class_box_and_mask,
    coco_ground_truth_segm,
    evaluate_segmentation,
    gt_instance_masks,
    mask_to_rle,
    masks_iou_matrix,
    resize_masks,
    segment_fitness,
)

IMG, PROTO, NM, NC = 64, 16, 4, 2
BOX_A, BOX_B = (0, 0, 40, 40), (44, 44, 64, 64)  # input pixels; at 1/4: rows/cols 0..9 and 11..15


def block(x1, y1, x2, y2, size=PROTO):
    """A binary (size, size) mask, ones on rows y1..y2-1 and columns x1..x2-1."""
    m = torch.zeros(size, size)
    m[y1:y2, x1:x2] = 1
    return m


def first_pixels(n, region=(0, 0, 10, 10)):
    """A mask of the first n pixels (row by row) of a region: a subset of the region's block."""
    x1, y1, x2, y2 = region
    m = torch.zeros(PROTO, PROTO)
    rows, cols = np.unravel_index(np.arange(n), (y2 - y1, x2 - x1))
    m[torch.as_tensor(rows + y1), torch.as_tensor(cols + x1)] = 1
    return m


def pred_row(box, conf, cls, channel):
    """One raw prediction [cx, cy, w, h, obj, class scores..., coefficients...] (NMS: conf = obj * class score)."""
    x1, y1, x2, y2 = box
    scores = [1.0 if c == cls else 0.0 for c in range(NC)]
    coeffs = [1.0 if k == channel else 0.0 for k in range(NM)]
    return [(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1, conf, *scores, *coeffs]


class FakeSegModel(nn.Module):
    """Returns the given (pred, proto) per call, in call order, like a SegmentationModel's eval forward."""

    def __init__(self, outputs):
        super().__init__()
        self.outputs = outputs
        self.calls = 0

    def forward(self, im, augment=False):
        pred, proto = self.outputs[self.calls]
        self.calls += 1
        return pred, proto, None


def protos(*channel_masks):
    """(1, NM, 16, 16) prototypes: +20 on each given mask's pixels, -20 elsewhere (unused channels all -20)."""
    p = -20 * torch.ones(1, NM, PROTO, PROTO)
    for k, m in enumerate(channel_masks):
        p[0, k] = torch.where(m > 0, 20.0, -20.0)
    return p


def batch(labels, gt_masks, overlap=False):
    """One-image loader batch: labels [(cls, box)], gt masks (n, 16, 16) in label order."""
    rows = [[0, c, (b[0] + b[2]) / 2 / IMG, (b[1] + b[3]) / 2 / IMG, (b[2] - b[0]) / IMG, (b[3] - b[1]) / IMG]
            for c, b in labels]
    targets = torch.tensor(rows, dtype=torch.float32).reshape(-1, 6)
    masks = torch.stack(gt_masks) if gt_masks else torch.zeros(0, PROTO, PROTO)
    if overlap:  # index map: value j + 1 marks the j-th label
        index = torch.zeros(1, PROTO, PROTO)
        for j, m in enumerate(gt_masks):
            index[0][m > 0] = j + 1
        masks = index
    shapes = [((IMG, IMG), ((1.0, 1.0), (0.0, 0.0)))]
    return torch.zeros(1, 3, IMG, IMG, dtype=torch.uint8), targets, ["images/0.jpg"], shapes, masks


def run_scene(preds, proto, labels, gt_masks, overlap=False, **kwargs):
    model = FakeSegModel([(torch.tensor([preds], dtype=torch.float32), proto)])
    loader = [batch(labels, gt_masks, overlap)]
    kwargs.setdefault("plots", False)
    return evaluate_segmentation(model, loader, NC, {0: "a", 1: "b"}, torch.device("cpu"), overlap=overlap, **kwargs)


@pytest.mark.parametrize("overlap", [False, True])
def test_perfect_predictions_give_map_one(overlap):
    everywhere = torch.ones(PROTO, PROTO)  # channel 0: the mask is the whole box
    preds = [pred_row(BOX_A, 0.9, 0, 0), pred_row(BOX_B, 0.8, 1, 0)]
    out = run_scene(preds, protos(everywhere), [(0, BOX_A), (1, BOX_B)],
                    [block(0, 0, 10, 10), block(11, 11, 16, 16)], overlap=overlap)
    r = out.results
    assert isinstance(r, SegValResults) and len(r) == 12
    assert (r.map50_bbox, r.map_bbox, r.map50_mask, r.map_mask) == pytest.approx((1, 1, 1, 1))
    assert (r.mp_bbox, r.mr_bbox, r.mp_mask, r.mr_mask) == pytest.approx((1, 1, 1, 1), abs=1e-3)
    assert out.maps.tolist() == pytest.approx([2.0, 2.0])  # box + mask mAP50-95 per class, as official
    assert out.box.ap_class.tolist() == [0, 1] and out.mask.ap.shape == (2, 10)


@pytest.mark.parametrize("pixels, mask_map50, mask_map", [
    (100, 1.0, 1.0),  # the whole ground-truth mask
    (62, 1.0, 0.3),   # mask IoU 0.62: a true positive at 0.50, 0.55, 0.60 only
    (30, 0.0, 0.0),   # mask IoU 0.3: the box matches, the mask does not
])
def test_box_and_mask_metrics_differ_when_only_the_box_matches(pixels, mask_map50, mask_map):
    preds = [pred_row(BOX_A, 0.9, 0, 1)]  # the exact box, with the channel-1 mask
    out = run_scene(preds, protos(torch.zeros(PROTO, PROTO), first_pixels(pixels)), [(0, BOX_A)],
                    [block(0, 0, 10, 10)])
    r = out.results
    assert (r.map50_bbox, r.map_bbox) == pytest.approx((1.0, 1.0))
    assert (r.map50_mask, r.map_mask) == pytest.approx((mask_map50, mask_map))


def test_mask_iou_point_six_is_a_true_positive_at_half_not_at_point_seven():
    gt, pred = block(0, 0, 10, 10)[None], first_pixels(60)[None]
    iou = masks_iou_matrix(gt, pred)
    assert iou.item() == pytest.approx(0.6, abs=1e-6)
    labels = torch.tensor([[0, 0, 0, 40, 40]], dtype=torch.float32)
    dets = torch.tensor([[0, 0, 40, 40, 0.9, 0]], dtype=torch.float32)
    correct_mask = match_predictions(dets, labels, IOU_THRESHOLDS, iou=iou)[0]
    correct_box = match_predictions(dets, labels, IOU_THRESHOLDS)[0]
    assert IOU_THRESHOLDS[0] == pytest.approx(0.5) and IOU_THRESHOLDS[4] == pytest.approx(0.7)
    assert correct_mask[0] and correct_mask[1] and not correct_mask[4:].any()
    assert correct_box.all()
    # a mask of another class never matches, whatever its IoU
    assert not match_predictions(dets, labels + torch.tensor([1.0, 0, 0, 0, 0]), IOU_THRESHOLDS, iou=iou).any()


def test_gt_instance_masks_overlap_and_per_instance_agree():
    a, b = block(0, 0, 10, 10), block(4, 4, 8, 8)  # b inside a: the index map keeps the smaller on top
    targets = torch.tensor([[0, 0, 0, 0, 0, 0], [0, 1, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0]], dtype=torch.float32)
    index = torch.zeros(2, PROTO, PROTO)
    index[0][a > 0] = 1
    index[0][b > 0] = 2
    index[1][block(0, 0, 3, 3) > 0] = 1
    got = gt_instance_masks(index, targets, 0, overlap=True)
    assert got.shape == (2, PROTO, PROTO)
    assert torch.equal(got[1], b) and got[0].sum() == 100 - 16  # the larger one loses the overlapped pixels
    per_instance = torch.stack([a, b, block(0, 0, 3, 3)])
    assert torch.equal(gt_instance_masks(per_instance, targets, 1, overlap=False)[0], block(0, 0, 3, 3))
    assert gt_instance_masks(per_instance[:0], targets[:0], 0, overlap=False).shape == (0, PROTO, PROTO)


def test_resize_masks_keeps_aligned_blocks():
    big = block(0, 0, 20, 20, size=32)
    assert torch.equal(resize_masks(big[None], (16, 16))[0], block(0, 0, 10, 10))
    assert resize_masks(torch.zeros(0, 32, 32), (16, 16)).shape == (0, 16, 16)


def test_official_columns_order_and_fitness():
    assert list(SEG_VAL_COLUMNS.values())[:8] == [
        "metrics/precision(B)", "metrics/recall(B)", "metrics/mAP_0.5(B)", "metrics/mAP_0.5:0.95(B)",
        "metrics/precision(M)", "metrics/recall(M)", "metrics/mAP_0.5(M)", "metrics/mAP_0.5:0.95(M)"]
    assert list(SEG_VAL_COLUMNS.values())[8:] == ["val/box_loss", "val/seg_loss", "val/obj_loss", "val/cls_loss"]
    row = [0.5, 0.5, 0.6, 0.4, 0.5, 0.5, 0.3, 0.2]
    assert segment_fitness(np.array([row])).tolist() == pytest.approx([0.06 + 0.36 + 0.03 + 0.18])


@pytest.mark.slow
def test_plots_use_official_file_names(tmp_path):
    everywhere = torch.ones(PROTO, PROTO)
    preds = [pred_row(BOX_A, 0.9, 0, 0), pred_row((20, 44, 40, 64), 0.5, 1, 0)]  # a hit and a false alarm
    run_scene(preds, protos(everywhere), [(0, BOX_A), (1, BOX_B)], [block(0, 0, 10, 10), block(11, 11, 16, 16)],
              plots=True, save_dir=tmp_path)
    for kind in ("Box", "Mask"):
        for curve in ("PR", "F1", "P", "R"):
            assert (tmp_path / f"{kind}{curve}_curve.png").stat().st_size > 1000
    assert (tmp_path / "confusion_matrix.png").exists() and (tmp_path / "mask_confusion_matrix.png").exists()
    assert (tmp_path / "val_batch0_labels.jpg").exists() and (tmp_path / "val_batch0_pred.jpg").exists()


def test_mask_confusion_matrix_uses_mask_iou():
    """Box right, mask wrong (mask IoU 0.3): the box matrix counts a hit, the mask matrix a miss and a false alarm."""
    labels = torch.tensor([[0, 0, 0, 40, 40]], dtype=torch.float32)
    dets = torch.tensor([[0, 0, 40, 40, 0.9, 0], [44, 44, 64, 64, 0.1, 1]], dtype=torch.float32)  # 2nd: below conf
    iou = masks_iou_matrix(block(0, 0, 10, 10)[None], torch.stack([first_pixels(30), block(11, 11, 16, 16)]))
    box, mask = ConfusionMatrix(nc=NC), ConfusionMatrix(nc=NC)
    box.process_batch(dets, labels)
    mask.process_batch(dets, labels, iou=iou)
    assert box.matrix[0, 0] == 1 and box.matrix.sum() == 1
    assert mask.matrix[0, 0] == 0 and mask.matrix[NC, 0] == 1 and mask.matrix[0, NC] == 1 and mask.matrix.sum() == 2


def test_rle_fallback_matches_pycocotools(monkeypatch):
    mask_utils = pytest.importorskip("pycocotools.mask")
    import builtins

    real_import = builtins.__import__

    def no_pycocotools(name, *a, **k):
        if name.startswith("pycocotools"):
            raise ImportError(name)
        return real_import(name, *a, **k)

    rng = np.random.default_rng(0)
    for m in (rng.random((7, 5)) > 0.5, np.ones((3, 4), bool), np.zeros((3, 4), bool)):
        rle = mask_to_rle(m)
        assert isinstance(rle["counts"], str) and list(rle["size"]) == [m.shape[0], m.shape[1]]
        assert np.array_equal(mask_utils.decode(rle), m.astype(np.uint8))
        # the pure-numpy uncompressed form used without pycocotools decodes to the same mask
        with monkeypatch.context() as patch:
            patch.setattr(builtins, "__import__", no_pycocotools)
            plain = mask_to_rle(m)
        assert isinstance(plain["counts"], list)
        compressed = mask_utils.frPyObjects(plain, *plain["size"])
        assert np.array_equal(mask_utils.decode(compressed), m.astype(np.uint8))


def random_mask_scene(seed=0, n_images=25, size=128):
    """Images of ellipse masks (4 to 110 pixels across) with jittered, duplicated, misclassified and false-alarm
    predicted masks; returns per image (gt classes (m,), gt masks (m, s, s), pred conf (n,), cls (n,), masks)."""
    import cv2

    rng = np.random.default_rng(seed)

    def ellipse(cx, cy, ax, ay, angle):
        m = np.zeros((size, size), np.uint8)
        cv2.ellipse(m, (int(cx), int(cy)), (max(int(ax), 1), max(int(ay), 1)), float(angle), 0, 360, 1, -1)
        return m

    images = []
    for _ in range(n_images):
        gts, gcls, pms, pconf, pcls = [], [], [], [], []
        for _ in range(int(rng.integers(1, 6))):
            cx, cy = rng.uniform(10, size - 10, 2)
            ax, ay = rng.uniform(2, 55, 2)
            angle = rng.uniform(0, 180)
            c = int(rng.integers(0, 3))
            gts.append(ellipse(cx, cy, ax, ay, angle))
            gcls.append(c)
            for _ in range(int(rng.choice([0, 1, 1, 2]))):
                j = rng.normal(0, rng.uniform(0.5, 6), 4)
                m = ellipse(cx + j[0], cy + j[1], ax * (1 + j[2] / 20), ay * (1 + j[3] / 20), angle + j[2])
                if m.any():
                    pms.append(m)
                    pconf.append(rng.uniform(0.05, 1))
                    pcls.append(c if rng.random() < 0.85 else int(rng.integers(0, 3)))
        for _ in range(int(rng.integers(0, 3))):  # false alarms
            pms.append(ellipse(*rng.uniform(10, size - 10, 2), *rng.uniform(3, 30, 2), rng.uniform(0, 180)))
            pconf.append(rng.uniform(0, 0.6))
            pcls.append(int(rng.integers(0, 3)))
        images.append((np.array(gcls), np.array(gts), np.array(pconf), np.array(pcls, dtype=float),
                       np.array(pms).reshape(-1, size, size)))
    return images


def boxes_of(masks):
    out = []
    for m in masks:
        ys, xs = np.nonzero(m)
        out.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1] if len(xs) else [0, 0, 0, 0])
    return np.array(out, dtype=np.float32).reshape(-1, 4)


def pycocotools_segm_stats(images):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt = {"images": [], "annotations": [], "categories": [{"id": c} for c in range(3)]}
    results = []
    for image_id, (gcls, gmasks, pconf, pcls, pmasks) in enumerate(images):
        gt["images"].append({"id": image_id, "width": gmasks.shape[2], "height": gmasks.shape[1]})
        for c, m, b in zip(gcls, gmasks, boxes_of(gmasks)):
            gt["annotations"].append({"id": len(gt["annotations"]) + 1, "image_id": image_id, "category_id": int(c),
                                      "segmentation": mask_to_rle(m), "area": float(m.sum()),
                                      "bbox": [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])],
                                      "iscrowd": 0})
        for s, c, m in zip(pconf, pcls, pmasks):
            results.append({"image_id": image_id, "category_id": int(c), "segmentation": mask_to_rle(m),
                            "score": float(s)})
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = gt
        coco_gt.createIndex()
        coco_eval = COCOeval(coco_gt, coco_gt.loadRes(results), "segm")
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    return coco_eval.stats


@pytest.mark.parametrize("seed", [0, pytest.param(1, marks=pytest.mark.slow)])
def test_mask_map_and_size_metrics_agree_with_pycocotools_segm(seed):
    """The project's matching on mask IoU + 101-point AP == pycocotools' 'segm' mAP50, mAP50-95, and AP / AR by
    object size (mask areas), on random ellipse masks."""
    pytest.importorskip("pycocotools")
    images = random_mask_scene(seed)
    stats, per_range = [], {name: [] for name in AREA_RANGES}
    for gcls, gmasks, pconf, pcls, pmasks in images:
        labels = torch.tensor(np.concatenate((gcls[:, None], boxes_of(gmasks)), 1), dtype=torch.float32)
        dets = torch.tensor(np.concatenate((boxes_of(pmasks), pconf[:, None], pcls[:, None]), 1),
                            dtype=torch.float32).reshape(-1, 6)
        iou = masks_iou_matrix(torch.tensor(gmasks), torch.tensor(pmasks))
        correct = match_predictions(dets, labels, IOU_THRESHOLDS, iou=iou).numpy()
        stats.append((correct, correct, pconf, pcls, gcls))  # box tp unused here: masks twice
        by_area = match_predictions_by_area(dets, labels, IOU_THRESHOLDS, iou=iou,
                                            label_area=gmasks.sum((1, 2)),
                                            det_area=pmasks.sum((1, 2)))
        for name, (tp, counted, in_range) in by_area.items():
            per_range[name].append((tp, counted, pconf, pcls, gcls[in_range]))
    arrays = [np.concatenate(x, 0) for x in zip(*stats)]
    _, mask = ap_per_class_box_and_mask(*arrays)
    coco = pycocotools_segm_stats(images)
    assert 0.2 < coco[0] < 0.9  # real errors, not a trivial scene
    assert mask.ap[:, 0].mean() == pytest.approx(coco[1], abs=1e-6)
    assert mask.ap.mean() == pytest.approx(coco[0], abs=1e-6)
    ours = np.array([ap_ar_by_area(per_range[name]) for name in AREA_RANGES])
    assert ours[:, 0] == pytest.approx(coco[3:6], abs=1e-6)
    assert ours[:, 1] == pytest.approx(coco[9:12], abs=1e-6)


class FakeDataset:
    """What coco_ground_truth_segm reads: image files, (w, h) shapes, YOLO labels and normalised polygons."""

    def __init__(self):
        self.im_files = ["images/0.jpg"]
        self.shapes = np.array([[IMG, IMG]])
        a = np.array([[0, 0], [40, 0], [40, 40], [0, 40]]) / IMG
        b = np.array([[44, 44], [64, 44], [64, 64], [44, 64]]) / IMG
        self.labels = [np.array([[0, 20 / IMG, 20 / IMG, 40 / IMG, 40 / IMG], [1, 54 / IMG, 54 / IMG, 20 / IMG,
                                                                               20 / IMG]])]
        self.segments = [[a, b]]


def test_coco_ground_truth_segm_polygons_in_pixels():
    gt = coco_ground_truth_segm(FakeDataset(), {0: "a", 1: "b"}, list(range(1000)))
    a, b = gt["annotations"]
    assert a["segmentation"] == [[0, 0, 40, 0, 40, 40, 0, 40]] and a["area"] == pytest.approx(1600)
    assert b["segmentation"] == [[44, 44, 64, 44, 64, 64, 44, 64]] and b["area"] == pytest.approx(400)
    assert a["bbox"] == pytest.approx([0, 0, 40, 40])
    dataset = FakeDataset()
    dataset.segments = [[np.zeros((2, 2)), dataset.segments[0][1]]]  # a degenerate polygon: the box stands in
    assert coco_ground_truth_segm(dataset, {0: "a", 1: "b"}, list(range(1000)))["annotations"][0]["area"] == \
        pytest.approx(1600)


@pytest.mark.parametrize("pixels, expected_map50", [(100, 1.0), (30, 0.0)])
def test_saved_json_scores_the_same_in_pycocotools(tmp_path, pixels, expected_map50):
    """evaluate_segmentation's COCO json (RLE masks on the original image) against coco_ground_truth_segm's
    polygons, scored by pycocotools 'segm' and 'bbox': the same mAP50 as the project's own numbers."""
    pytest.importorskip("pycocotools")
    jdict = []
    preds = [pred_row(BOX_A, 0.9, 0, 1), pred_row(BOX_B, 0.8, 1, 0)]
    channel_1 = first_pixels(pixels)
    out = run_scene(preds, protos(torch.ones(PROTO, PROTO), channel_1), [(0, BOX_A), (1, BOX_B)],
                    [block(0, 0, 10, 10), block(11, 11, 16, 16)], jdict=jdict)
    assert len(jdict) == 2 and {"segmentation", "bbox", "score", "category_id", "image_id"} <= set(jdict[0])
    from pycocotools import mask as mask_utils
    decoded = mask_utils.decode(jdict[0]["segmentation"])
    # each mask pixel is 4 x 4 image pixels; bilinear upsampling rounds off a corner pixel or two, as official's
    assert decoded.shape == (IMG, IMG) and abs(int(decoded.sum()) - pixels * 16) <= 3
    anno, pred = tmp_path / "gt.json", tmp_path / "pred.json"
    anno.write_text(json.dumps(coco_ground_truth_segm(FakeDataset(), {0: "a", 1: "b"}, list(range(1000)))))
    pred.write_text(json.dumps(jdict))
    with contextlib.redirect_stdout(io.StringIO()):
        segm = coco_evaluate(anno, pred, [0], iou_type="segm")
        bbox = coco_evaluate(anno, pred, [0], iou_type="bbox")
    expected_mask_map50 = (1.0 + expected_map50) / 2  # class b always right, class a as parametrized
    assert out.results.map50_mask == pytest.approx(expected_mask_map50)
    assert segm[1] == pytest.approx(expected_mask_map50, abs=1e-6)
    assert bbox[1] == pytest.approx(1.0) and out.results.map50_bbox == pytest.approx(1.0)


def test_batch_with_masks_colours_only_mask_pixels():
    from utils.plots import colors
    from utils.segment_evaluation import batch_with_masks

    images = torch.zeros(2, 3, 8, 8)
    out = batch_with_masks(images, [block(0, 0, 2, 2, size=4)[None], torch.zeros(0, 4, 4)],
                           [torch.tensor([1.0]), torch.zeros(0)])
    assert out.shape == (2, 3, 8, 8) and out.dtype == np.uint8
    expected = (np.array(colors(1), dtype=np.float32) * 0.5).astype(np.uint8)
    assert (out[0, :, :4, :4].reshape(3, -1) == expected[:, None]).all()  # the 2x2 mask covers 4x4 image pixels
    assert out[0, :, 4:, :].sum() == 0 and out[0, :, :, 4:].sum() == 0 and out[1].sum() == 0
    assert images.abs().sum() == 0  # the batch itself is left alone
