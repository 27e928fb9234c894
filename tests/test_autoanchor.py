"""utils/autoanchor.py: best possible recall on known cases; evolution when the anchors fit poorly."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from models.yolo import Model
from utils.autoanchor import anchor_metrics, check_anchors, dataset_wh, kmean_anchors, kmeans


def make_dataset(wh_pixels, size=256, per_image=4):
    """Square ``size`` images holding boxes of the given pixel sizes (centred, class 0)."""
    wh = np.asarray(wh_pixels, dtype=np.float32) / size
    labels = [
        np.concatenate([np.zeros((len(chunk), 1)), np.full((len(chunk), 2), 0.5), chunk], 1).astype(np.float32)
        for chunk in np.array_split(wh, max(1, len(wh) // per_image))
    ]
    return SimpleNamespace(shapes=np.full((len(labels), 2), size, dtype=np.float64), labels=labels)


def test_anchor_metrics_known_case():
    """Anchors 10x10 and 40x40, thr 4 (a fit needs both side ratios within 4, i.e. closeness > 0.25):
    10x10 fits the first (1 anchor); 30x5 fits the first (closeness 1/3); 100x100 fits the second (0.4);
    20x20 fits both (0.5 each); 200x20 and 2x2 fit none. BPR 4/6, anchors per target 5/6."""
    anchors = torch.tensor([[10.0, 10.0], [40.0, 40.0]])
    wh = torch.tensor([[10.0, 10.0], [30.0, 5.0], [100.0, 100.0], [20.0, 20.0], [200.0, 20.0], [2.0, 2.0]])
    bpr, aat = anchor_metrics(anchors, wh, thr=4.0)
    assert bpr.item() == pytest.approx(4 / 6)
    assert aat.item() == pytest.approx(5 / 6)


def test_dataset_wh_letterbox_scaling():
    """A 200x100 (w x h) image letterboxed to 400 px is scaled by 2: a 0.5 x 0.5 box becomes 200 x 100 px."""
    ds = SimpleNamespace(shapes=np.array([[200.0, 100.0]]), labels=[np.array([[0, 0.5, 0.5, 0.5, 0.5]])])
    assert dataset_wh(ds, img_size=400).tolist() == [[200.0, 100.0]]


def test_kmeans_finds_separated_clusters():
    rng = np.random.default_rng(1)
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    points = np.concatenate([c + rng.normal(0, 0.1, (50, 2)) for c in centres])
    found = kmeans(points, 3, rng=np.random.default_rng(0))
    distance = np.linalg.norm(found[:, None] - centres[None], axis=2)  # (found, true)
    assert sorted(distance.argmin(1).tolist()) == [0, 1, 2]  # one centroid per cluster
    assert distance.min(1).max() < 0.05


def test_kmean_anchors_fit_elongated_boxes():
    rng = np.random.default_rng(0)
    wh = np.stack([rng.uniform(120, 200, 200), rng.uniform(5, 10, 200)], 1)  # wide, flat boxes
    ds = make_dataset(wh)
    anchors = kmean_anchors(ds, n=9, img_size=256, thr=4.0, gen=200, verbose=False)
    assert anchors.shape == (9, 2)
    assert (np.diff(anchors.prod(1)) >= 0).all()  # sorted small to large
    bpr, _ = anchor_metrics(torch.tensor(anchors).float(), torch.tensor(wh).float(), thr=4.0)
    assert bpr.item() == 1.0


def test_check_anchors_evolves_poor_anchors():
    """Default COCO anchors cannot recall 150x6 px boxes (ratios > 4 on one side); AutoAnchor replaces them, in
    grid units, ordered like the strides, with a better recall; good anchors are left alone."""
    torch.manual_seed(0)
    model = Model("yolov5n.yaml", nc=1)
    m = model.model[-1]
    before = (m.anchors * m.stride.view(-1, 1, 1)).view(-1, 2).clone()
    rng = np.random.default_rng(0)
    wh = np.stack([rng.uniform(120, 180, 120), rng.uniform(5, 8, 120)], 1)
    ds = make_dataset(wh)
    bpr_before = anchor_metrics(before, torch.tensor(wh).float())[0].item()
    assert bpr_before < 0.98

    assert check_anchors(ds, model, thr=4.0, imgsz=256) is True
    after = (m.anchors * m.stride.view(-1, 1, 1)).view(-1, 2)
    assert not torch.allclose(after, before)
    assert (after.prod(1).diff() >= 0).all()
    assert anchor_metrics(after, torch.tensor(wh).float())[0].item() > max(bpr_before, 0.98)

    # anchors that already fit stay as they are
    anchors_now = m.anchors.clone()
    assert check_anchors(ds, model, thr=4.0, imgsz=256) is False
    assert torch.equal(m.anchors, anchors_now)
