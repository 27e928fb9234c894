"""AP, matching, confusion matrix and fitness against hand-computed values, a reference matcher and pycocotools."""

import contextlib
import io

import numpy as np
import pytest
import torch

from utils.boxes import box_iou
from utils.metrics import (
    AREA_RANGES,
    IOU_THRESHOLDS,
    ConfusionMatrix,
    ap_ar_by_area,
    ap_per_class,
    compute_ap,
    fitness,
    greedy_match,
    match_predictions,
    match_predictions_by_area,
)


def test_compute_ap_hand_computed():
    # 3 labels; detections by confidence: TP, FP, TP, FP
    recall = np.array([1, 1, 2, 2]) / 3
    precision = np.array([1, 1 / 2, 2 / 3, 2 / 4])
    ap, mpre, mrec = compute_ap(recall, precision)
    # envelope: 1 for recall thresholds 0.00..0.33 (34 of them), 2/3 for 0.34..0.66 (33), 0 for 0.67..1.00
    assert ap == pytest.approx((34 * 1 + 33 * 2 / 3) / 101)
    assert mpre.tolist() == pytest.approx([1, 1, 2 / 3, 2 / 3, 0.5, 0])
    assert mrec.tolist() == pytest.approx([0, 1 / 3, 1 / 3, 2 / 3, 2 / 3, 1])


def test_compute_ap_perfect_and_empty():
    assert compute_ap(np.array([0.5, 1.0]), np.array([1.0, 1.0]))[0] == pytest.approx(1.0)
    assert compute_ap(np.array([]), np.array([]))[0] == 0.0


def test_fitness():
    assert fitness(np.array([[0.5, 0.6, 0.7, 0.4], [0, 0, 1, 1]])).tolist() == pytest.approx([0.43, 1.0])


def labels_tensor(rows):
    return torch.tensor(rows, dtype=torch.float32).reshape(-1, 5)


def dets_tensor(rows):
    return torch.tensor(rows, dtype=torch.float32).reshape(-1, 6)


def test_match_predictions_duplicate_goes_to_most_confident():
    labels = labels_tensor([[0, 0, 0, 10, 10]])
    dets = dets_tensor([[0, 0, 10, 8, 0.95, 0], [0, 0, 10, 10, 0.9, 0]])  # IoU 0.8 (more confident) and 1.0
    correct = match_predictions(dets, labels, IOU_THRESHOLDS)
    assert correct.shape == (2, 10) and correct.dtype == torch.bool
    # thresholds 0.50 .. 0.80: the confident one takes the label; above 0.8 only the exact box qualifies
    assert correct[0].tolist() == [True] * 7 + [False] * 3
    assert correct[1].tolist() == [False] * 7 + [True] * 3


def test_match_predictions_second_choice_and_classes():
    # B (conf 0.9): IoU 0.78 with L1 and 78/110 = 0.709 with L2; A (conf 0.5): IoU 0.92 with L1 and 0.836 with L2.
    labels = labels_tensor([[0, 0, 0, 10, 10], [0, 0, 0, 10, 11]])
    dets = dets_tensor([[0, 0, 10, 9.2, 0.5, 0], [0, 0, 10, 7.8, 0.9, 0], [0, 0, 10, 10, 0.99, 1]])
    correct = match_predictions(dets, labels, IOU_THRESHOLDS)
    # up to 0.75 B takes L1 and A falls back to L2; from 0.80 B matches nothing and A takes L1 (up to 0.90)
    assert correct[1].tolist() == [True] * 6 + [False] * 4
    assert correct[0].tolist() == [True] * 9 + [False]
    assert not correct[2].any()  # other class


def test_match_predictions_empty():
    assert match_predictions(dets_tensor([]), labels_tensor([[0, 0, 0, 1, 1]])).shape == (0, 10)
    assert not match_predictions(dets_tensor([[0, 0, 1, 1, 0.5, 0]]), labels_tensor([])).any()


def reference_match(dets, labels, iouv):
    """pycocotools' rule, one threshold at a time: detections by confidence take the best free label of their class."""
    iou = box_iou(labels[:, 1:], dets[:, :4]).tolist()
    order = sorted(range(len(dets)), key=lambda j: -float(dets[j, 4]))
    correct = np.zeros((len(dets), len(iouv)), dtype=bool)
    for t, thr in enumerate(iouv.tolist()):
        used = set()
        for j in order:
            free = [i for i in range(len(labels)) if i not in used and labels[i, 0] == dets[j, 5] and iou[i][j] >= thr]
            if free:
                used.add(max(free, key=lambda i: iou[i][j]))
                correct[j, t] = True
    return correct


def random_scene(rng, n_labels, n_dets, nc=2, size=100):
    xy = rng.uniform(0, size, (n_labels, 2))
    wh = rng.uniform(10, 40, (n_labels, 2))
    labels = np.concatenate((rng.integers(0, nc, (n_labels, 1)), xy, xy + wh), 1)
    src = rng.integers(0, n_labels, n_dets)  # detections are jittered copies of labels: many duplicates
    boxes = labels[src, 1:] + rng.normal(0, 4, (n_dets, 4))
    cls = np.where(rng.random(n_dets) < 0.85, labels[src, 0], rng.integers(0, nc, n_dets))
    dets = np.concatenate((boxes, rng.random((n_dets, 1)), cls[:, None]), 1)
    return torch.tensor(dets, dtype=torch.float32), torch.tensor(labels, dtype=torch.float32)


def test_match_predictions_equals_per_threshold_reference():
    rng = np.random.default_rng(0)
    for _ in range(20):
        dets, labels = random_scene(rng, n_labels=6, n_dets=15)
        expected = reference_match(dets, labels, IOU_THRESHOLDS)
        assert np.array_equal(match_predictions(dets, labels, IOU_THRESHOLDS).numpy(), expected)


def test_greedy_match_one_to_one():
    iou = np.array([[0.9, 0.8], [0.85, 0.2]])
    li, pi, v = greedy_match(iou, 0.5)
    assert sorted(zip(li.tolist(), pi.tolist())) == [(0, 0)]  # (1, 0) and (0, 1) conflict; (1, 1) is below 0.5
    assert v.tolist() == [0.9]


def test_ap_per_class_hand_computed():
    # class 0: TP, FP, TP, FP at falling confidence, 3 labels; class 1: 2 labels, one perfect detection;
    # class 2: labels but no detections; class 5: a detection without labels (ignored)
    tp = np.array([[1], [0], [1], [0], [1], [0]], dtype=bool).repeat(10, 1)
    conf = np.array([0.9, 0.8, 0.7, 0.6, 0.95, 0.5])
    pred_cls = np.array([0, 0, 0, 0, 1, 5])
    target_cls = np.array([0, 0, 0, 1, 1, 2])
    tp_c, fp_c, p, r, f1, ap, classes = ap_per_class(tp, conf, pred_cls, target_cls)
    assert classes.tolist() == [0, 1, 2]
    assert ap[:, 0] == pytest.approx([56 / 101, 51 / 101, 0.0])  # class 1: envelope 1 up to recall 0.5
    assert ap.shape == (3, 10)
    assert p[2] == 0 and r[2] == 0
    # the chosen confidence lies where class 1 has its one TP counted, so recall 0.5 and precision 1 there
    assert r[1] == pytest.approx(0.5, abs=0.01) and p[1] == pytest.approx(1.0, abs=0.01)
    assert tp_c[1] == 1 and fp_c[1] == 0
    assert np.allclose(f1, 2 * p * r / (p + r + 1e-16))


def test_ap_per_class_plots(tmp_path):
    tp = np.array([[1], [0], [1]], dtype=bool).repeat(10, 1)
    ap_per_class(tp, np.array([0.9, 0.5, 0.3]), np.array([0, 1, 1]), np.array([0, 1]), plot=True,
                 save_dir=tmp_path, names={0: "cat", 1: "dog"})
    for name in ("PR_curve.png", "F1_curve.png", "P_curve.png", "R_curve.png"):
        assert (tmp_path / name).stat().st_size > 1000


def test_confusion_matrix_counts(tmp_path):
    cm = ConfusionMatrix(nc=3, conf=0.25, iou_thres=0.45)
    labels = labels_tensor([[0, 0, 0, 10, 10], [1, 20, 20, 30, 30], [2, 50, 50, 60, 60], [1, 80, 80, 90, 90]])
    dets = dets_tensor([
        [0, 0, 10, 10, 0.9, 0],  # correct class 0
        [0, 0, 10, 9, 0.8, 0],  # duplicate: the label is taken, so a false alarm of class 0
        [20, 20, 30, 30, 0.9, 0],  # class-1 object called class 0
        [100, 100, 110, 110, 0.7, 1],  # nothing there: class-1 false alarm
        [50, 50, 60, 60, 0.1, 2],  # below conf: ignored, so the class-2 label is missed
    ])
    cm.process_batch(dets, labels)
    cm.process_batch(None, labels_tensor([[2, 0, 0, 1, 1]]))  # an image without detections
    expected = np.zeros((4, 4))
    expected[0, 0] = 1
    expected[0, 3] = 1
    expected[0, 1] = 1
    expected[1, 3] = 1
    expected[3, 2] = 2
    expected[3, 1] = 1  # the label at (80, 80) has no detection
    assert np.array_equal(cm.matrix, expected)
    tp, fp = cm.tp_fp()
    assert tp.tolist() == [1, 0, 0] and fp.tolist() == [2, 1, 0]
    cm.plot(save_dir=tmp_path, names={0: "a", 1: "b", 2: "c"})
    assert (tmp_path / "confusion_matrix.png").stat().st_size > 1000


def coco_scene(seed=1, n_images=25, nc=3, wh_range=(15, 120)):
    """Labels and detections of several images, (xyxy pixels), with misses, duplicates, confusions, noise; label
    sides drawn from ``wh_range`` pixels."""
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(n_images):
        n = int(rng.integers(1, 7))
        xy = rng.uniform(0, 500, (n, 2))
        wh = rng.uniform(*wh_range, (n, 2))
        labels = np.concatenate((rng.integers(0, nc, (n, 1)), xy, xy + wh), 1)
        dets = []
        for lb in labels:
            for _ in range(int(rng.choice([0, 1, 1, 1, 2]))):  # missed, found, or found twice
                jitter = rng.normal(0, rng.uniform(1, 12), 4)
                c = lb[0] if rng.random() < 0.85 else rng.integers(0, nc)
                dets.append([*(lb[1:] + jitter), rng.uniform(0.05, 1.0), c])
        for _ in range(int(rng.integers(0, 4))):  # background false alarms
            x, y = rng.uniform(0, 500, 2)
            dets.append([x, y, x + rng.uniform(15, 80), y + rng.uniform(15, 80), rng.uniform(0, 0.6),
                         rng.integers(0, nc)])
        dets = np.array(dets, dtype=np.float64).reshape(-1, 6)
        dets[:, 2:4] = np.maximum(dets[:, 2:4], dets[:, :2] + 1)
        dets = dets[np.argsort(-dets[:, 4])]
        images.append((labels, dets))
    return images


def coco_json(images):
    """COCO ground-truth dict and results list of ``coco_scene`` images (area = box area, as for boxes)."""
    gt = {"images": [], "annotations": [], "categories": [{"id": c} for c in range(3)]}
    results = []
    for image_id, (labels, dets) in enumerate(images):
        gt["images"].append({"id": image_id, "width": 640, "height": 640})
        for c, x1, y1, x2, y2 in labels:
            gt["annotations"].append({"id": len(gt["annotations"]) + 1, "image_id": image_id, "category_id": int(c),
                                      "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1),
                                      "iscrowd": 0})
        for x1, y1, x2, y2, s, c in dets:
            results.append({"image_id": image_id, "category_id": int(c), "bbox": [x1, y1, x2 - x1, y2 - y1],
                            "score": float(s)})
    return gt, results


def pycocotools_stats(images):
    """pycocotools' 12 summary numbers (AP, AP50, AP75, AP s/m/l, AR1, AR10, AR100, AR s/m/l) of the images."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt, results = coco_json(images)
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = gt
        coco_gt.createIndex()
        coco_eval = COCOeval(coco_gt, coco_gt.loadRes(results), "bbox")
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    return coco_eval.stats


def test_map_agrees_with_pycocotools():
    pytest.importorskip("pycocotools")
    images = coco_scene()
    stats, target_cls = [], []
    for labels, dets in images:
        lb, dt = torch.tensor(labels, dtype=torch.float32), torch.tensor(dets, dtype=torch.float32)
        correct = match_predictions(dt, lb, IOU_THRESHOLDS)
        stats.append((correct.numpy(), dets[:, 4], dets[:, 5]))
        target_cls.append(labels[:, 0])
    tp, conf, pred_cls = (np.concatenate(x, 0) for x in zip(*stats))
    *_, ap, _ = ap_per_class(tp, conf, pred_cls, np.concatenate(target_cls))

    map50_95, map50 = pycocotools_stats(images)[:2]
    assert 0.2 < map50_95 < 0.9  # a scene with real errors, not a trivial one
    # same matching rule and the same 101-point AP: equal up to float rounding (the issue asks for 0.01)
    assert ap[:, 0].mean() == pytest.approx(map50, abs=1e-6)
    assert ap.mean() == pytest.approx(map50_95, abs=1e-6)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_ap_ar_by_size_agree_with_pycocotools(seed):
    """Small / medium / large AP and AR (pycocotools' stats[3:6] and [9:12]) from the project's matcher: labels from
    4 to 200 pixels a side, so every range holds labels, and detections straddle the range bounds."""
    pytest.importorskip("pycocotools")
    images = coco_scene(seed=seed, n_images=40, wh_range=(4, 200))
    per_range = {name: [] for name in AREA_RANGES}
    for labels, dets in images:
        lb, dt = torch.tensor(labels, dtype=torch.float64), torch.tensor(dets, dtype=torch.float64)
        for name, (tp, counted, in_range) in match_predictions_by_area(dt, lb, IOU_THRESHOLDS).items():
            per_range[name].append((tp, counted, dets[:, 4], dets[:, 5], labels[in_range, 0]))
    ours = np.array([ap_ar_by_area(per_range[name]) for name in AREA_RANGES])  # (3, 2): AP, AR per range
    coco = pycocotools_stats(images)
    assert (coco[3:6] > 0.01).all() and (coco[9:12] > 0.01).all()  # every range has labels and hits
    assert len(set(np.round(coco[3:6], 3))) == 3  # the ranges differ, so a range mix-up shows
    assert ours[:, 0] == pytest.approx(coco[3:6], abs=1e-6)
    assert ours[:, 1] == pytest.approx(coco[9:12], abs=1e-6)


def test_match_by_area_ignores_outside_labels_and_detections():
    """A small label and a large one; detections: one on each, one large false alarm, one small false alarm."""
    labels = labels_tensor([[0, 0, 0, 20, 20], [0, 100, 100, 300, 300]])
    dets = dets_tensor([[0, 0, 20, 20, 0.9, 0], [100, 100, 300, 300, 0.8, 0], [400, 400, 600, 600, 0.7, 0],
                        [50, 50, 60, 60, 0.6, 0]])
    out = match_predictions_by_area(dets, labels, [0.5])
    tp, counted, in_range = out["small"]
    assert in_range.tolist() == [True, False]
    assert tp[:, 0].tolist() == [True, False, False, False]
    assert counted[:, 0].tolist() == [True, False, False, True]  # the large hit and large false alarm: ignored
    tp, counted, in_range = out["large"]
    assert in_range.tolist() == [False, True]
    assert tp[:, 0].tolist() == [False, True, False, False]
    assert counted[:, 0].tolist() == [False, True, True, False]
    assert out["medium"][1][:, 0].tolist() == [False, False, False, False]
    ap, ar = ap_ar_by_area([(tp, counted, dets[:, 4].numpy(), dets[:, 5].numpy(), labels[in_range, 0].numpy())])
    assert (ap, ar) == (pytest.approx(1.0), 1.0)  # the hit ranks above the false alarm
    assert ap_ar_by_area([(*out["medium"][:2], dets[:, 4].numpy(), dets[:, 5].numpy(), np.zeros(0))]) == (-1, -1)


def test_match_by_area_prefers_a_label_in_range():
    """As pycocotools: a detection takes a label in range (IoU 0.83) over an ignored one it overlaps more (0.9)."""
    labels = labels_tensor([[0, 0, 0, 30, 30], [0, 0, 0, 30, 40]])  # areas 900 (small) and 1200 (medium)
    dets = dets_tensor([[0, 0, 30, 36, 0.9, 0]])
    tp, counted, _ = match_predictions_by_area(dets, labels, [0.5])["small"]
    assert tp[0, 0] and counted[0, 0]
    tp, counted, _ = match_predictions_by_area(dets, labels, [0.5])["medium"]
    assert tp[0, 0] and counted[0, 0]


def test_per_class_results_do_not_depend_on_the_other_classes():
    """ap_per_class and ap_ar_by_area group detections by class with one sort (not one scan per class): every
    class's AP over 50 interleaved classes, confidence ties included, equals that class evaluated alone."""
    rng = np.random.default_rng(3)
    n, t = 3000, 10
    pred_cls = rng.integers(0, 50, n)
    conf = np.round(rng.random(n), 2)  # many ties, resolved by input order in both cases
    tp = rng.random((n, t)) < np.linspace(0.8, 0.2, t)
    counted = rng.random((n, t)) < 0.9
    target_cls = np.concatenate([rng.integers(0, 60, 400), np.arange(50)])  # classes 50..59: labels, no detections
    *_, ap, classes = ap_per_class(tp, conf, pred_cls, target_cls)
    mean_alone = []
    for k, c in enumerate(classes):
        mine = pred_cls == c
        *_, ap_alone, _ = ap_per_class(tp[mine], conf[mine], pred_cls[mine], target_cls[target_cls == c])
        np.testing.assert_array_equal(ap[k], ap_alone[0] if len(ap_alone) else np.zeros(t))
        labels_c = target_cls[target_cls == c]
        mean_alone.append(ap_ar_by_area([(tp[mine], counted[mine], conf[mine], pred_cls[mine], labels_c)]))
    assert (ap[classes >= 50] == 0).all() and ap[classes < 50].min() > 0
    together = ap_ar_by_area([(tp, counted, conf, pred_cls, target_cls)])
    np.testing.assert_allclose(together, np.mean(mean_alone, 0), rtol=1e-12)
