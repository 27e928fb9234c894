"""Class activation maps (utils/cam.py) against known answers, and benchmarks/cam.py end to end.

Toy network: a fixed 1x1 identity convolution and ReLU over a 2-channel image, whose score is the mean of feature
channel 0 over a mask region R. The gradient of the score is 1/|R| on channel 0 inside R and zero elsewhere, so
Grad-CAM's map is channel 0's activation (channel weights: mean gradient, zero for channel 1) and LayerCAM's map
is channel 0's activation inside R only.
"""

import cv2
import numpy as np
import pytest
import torch
import torch.nn as nn

from benchmarks import cam as cam_script
from models.experimental import attempt_load
from models.yolo import Model
from utils.augmentations import letterbox
from utils.cam import (
    DetectionScore,
    class_activation_map,
    eigen_cam,
    first_principal_map,
    panel_size,
    record_outputs,
    unletterbox_map,
)
from utils.checkpoints import make_checkpoint, save_checkpoint
from utils.general import ROOT, UserError

SIZE = 16
REGION = (slice(2, 8), slice(2, 8))  # rows, cols of R


def blob(cy, cx, sigma=0.7, size=SIZE):
    y, x = torch.meshgrid(torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32),
                          indexing="ij")
    return torch.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * sigma**2))


class RegionScoreNet(nn.Module):
    """Score = mean over R of feature channel 0; ``body`` (identity 1x1 conv + ReLU) is the layer to read."""

    def __init__(self):
        super().__init__()
        conv = nn.Conv2d(2, 2, 1, bias=False)
        with torch.no_grad():
            conv.weight.copy_(torch.eye(2).view(2, 2, 1, 1))
        self.body = nn.Sequential(conv, nn.ReLU())
        self.requires_grad_(False)  # fixed weights: the input carries the graph, as for attempt_load's models
        mask = torch.zeros(SIZE, SIZE)
        mask[REGION] = 1
        self.register_buffer("mask", mask)

    def forward(self, x):
        features = self.body(x)
        return (features[:, 0] * self.mask).sum((1, 2)) / self.mask.sum()


def total(output):
    return output.sum()


def image(channel0_blobs, channel1_blobs):
    x = torch.zeros(1, 2, SIZE, SIZE)
    for cy, cx in channel0_blobs:
        x[0, 0] += blob(cy, cx)
    for cy, cx in channel1_blobs:
        x[0, 1] += blob(cy, cx)
    return x


def inside_region():
    region = torch.zeros(SIZE, SIZE, dtype=torch.bool)
    region[REGION] = True
    return region


@pytest.mark.parametrize("method", ["gradcam", "layercam"])
def test_gradient_cams_peak_inside_the_scored_region_and_vanish_outside(method):
    # channel 0 has an object inside R, channel 1 one outside R: only channel 0 inside R moves the score
    net = RegionScoreNet()
    x = image([(4.5, 4.5)], [(4.5, 12)])
    heat = class_activation_map(net, [net.body], x, method, total)[0]
    region = inside_region()
    assert heat.shape == (SIZE, SIZE)
    assert region.flatten()[heat.argmax()]
    assert heat.max() == pytest.approx(1.0)
    assert heat[~region].abs().max() < 1e-3  # the channel-1 object outside R is not highlighted
    features = x[0, 0].relu()
    expected = features if method == "gradcam" else features * region  # see the module docstring
    torch.testing.assert_close(heat, expected / expected.max(), atol=1e-6, rtol=0)


def test_layercam_is_spatial_where_gradcam_averages():
    # a second channel-0 object outside R: Grad-CAM's spatially averaged weights highlight it as much as the one
    # inside R; LayerCAM weighs each position by its own gradient and leaves it at zero
    net = RegionScoreNet()
    x = image([(4.5, 4.5), (12.5, 12.5)], [])
    grad = class_activation_map(net, [net.body], x, "gradcam", total)[0]
    layer = class_activation_map(net, [net.body], x, "layercam", total)[0]
    assert grad[12:14, 12:14].min() == pytest.approx(1.0) and grad[4:6, 4:6].min() == pytest.approx(1.0)
    assert layer[4:6, 4:6].min() == pytest.approx(1.0) and layer[12:14, 12:14].max() == 0


def test_layers_are_upsampled_and_averaged():
    # reading the full-resolution body and a 2x average-pooled copy of it: both maps peak in R; their average too
    net = RegionScoreNet()
    pool = nn.AvgPool2d(2)
    net.body.append(pool)
    net.body.append(nn.Upsample(scale_factor=2))
    x = image([(4.5, 4.5)], [(4.5, 12)])
    heat = class_activation_map(net, [net.body[1], pool], x, "layercam", total)[0]
    assert heat.shape == (SIZE, SIZE)
    assert inside_region().flatten()[heat.argmax()]
    assert heat[12:, :].max() < 1e-3  # rows far from R and from the channel-1 object


def test_hooks_are_removed_after_use_and_after_an_error():
    net = RegionScoreNet()
    class_activation_map(net, [net.body], image([(4.5, 4.5)], []), "gradcam", total)
    assert not net.body._forward_hooks
    head = nn.Flatten()
    model = nn.Sequential(nn.Conv2d(2, 2, 1), head)
    with pytest.raises(ValueError, match="needs a \\(B, C, H, W\\) feature map"):
        class_activation_map(model, [head], torch.zeros(1, 2, 4, 4), "eigencam", total)
    assert not head._forward_hooks
    with record_outputs([net.body]) as outputs:
        net(torch.zeros(1, 2, SIZE, SIZE))
    assert len(outputs) == 1 and not net.body._forward_hooks
    with pytest.raises(ValueError, match="unknown CAM method"):
        class_activation_map(net, [net.body], torch.zeros(1, 2, SIZE, SIZE), "scorecam", total)


def correlation(a, b):
    a, b = a.flatten() - a.mean(), b.flatten() - b.mean()
    return float(a @ b / (a.norm() * b.norm()))


def rank_one_activations(pattern, channel_weights, seed=0):
    """Activations c x H x W = weight[c] * pattern + an offset per channel + 1e-3 noise."""
    g = torch.Generator().manual_seed(seed)
    c = channel_weights.numel()
    offsets = torch.rand(c, 1, 1, generator=g) * 2
    noise = torch.randn(c, *pattern.shape, generator=g) * 1e-3
    return (channel_weights.view(c, 1, 1) * pattern + offsets + noise)[None]


def test_eigencam_recovers_a_rank_one_pattern():
    pattern = blob(5, 9, sigma=2.0) + 0.5 * blob(11, 3, sigma=1.5)
    g = torch.Generator().manual_seed(1)
    weights = torch.rand(32, generator=g) + 0.2  # positive channel mean
    acts = rank_one_activations(pattern, weights)
    assert correlation(first_principal_map(acts)[0], pattern) > 0.999  # the per-channel offsets are centred away
    # the component is the centred pattern; EigenCAM keeps its positive part, normalised
    centred = (pattern - pattern.mean()).relu()
    torch.testing.assert_close(eigen_cam(acts)[0], centred / centred.max(), atol=2e-3, rtol=0)
    # one object on an empty background: the map is the object
    pattern = blob(5, 9, sigma=1.5)
    heat = eigen_cam(rank_one_activations(pattern, weights))[0]
    assert correlation(heat, pattern) > 0.99
    assert heat.argmax() == pattern.argmax() and heat.max() == pytest.approx(1.0)


def test_eigencam_sign_follows_the_activation_mean():
    # the same pattern entering every channel negatively: the channel mean is -pattern, and so is the component
    pattern = blob(5, 9, sigma=2.0)
    g = torch.Generator().manual_seed(2)
    acts = rank_one_activations(pattern, -(torch.rand(16, generator=g) + 0.2))
    assert correlation(first_principal_map(acts)[0], -pattern) > 0.999


def test_detection_score_sums_the_kept_detections():
    # rows: [x, y, w, h, obj, cls0, cls1]; row 1 overlaps row 0 (same class) and is suppressed by NMS
    pred = torch.tensor([[[50.0, 50, 20, 20, 0.9, 1.0, 0.1],
                          [51.0, 50, 20, 20, 0.8, 1.0, 0.1],
                          [150.0, 150, 30, 30, 0.6, 0.2, 1.0],
                          [100.0, 10, 10, 10, 0.1, 0.5, 0.5]]], requires_grad=True)
    score = DetectionScore(conf_thres=0.25, iou_thres=0.45)
    value = score((pred, None))
    assert value.item() == pytest.approx(0.9 * 1.0 + 0.6 * 1.0)
    assert [d[:, 5].tolist() for d in score.detections] == [[0.0, 1.0]]
    (grad,) = torch.autograd.grad(value, pred)
    expected = torch.zeros_like(pred)
    expected[0, 0, 4], expected[0, 0, 5] = 1.0, 0.9  # d(obj * cls0) of row 0
    expected[0, 2, 4], expected[0, 2, 6] = 1.0, 0.6  # d(obj * cls1) of row 2
    torch.testing.assert_close(grad, expected)


def test_detection_score_falls_back_to_the_top_k_raw_predictions():
    pred = torch.tensor([[[50.0, 50, 20, 20, 0.2, 0.5, 0.1],
                          [150.0, 50, 20, 20, 0.1, 0.3, 0.9],
                          [250.0, 50, 20, 20, 0.05, 0.1, 0.1]]], requires_grad=True)
    score = DetectionScore(conf_thres=0.25, top_k=2)
    value = score(pred)
    assert len(score.detections[0]) == 0
    assert value.item() == pytest.approx(0.2 * 0.5 + 0.1 * 0.9)  # rows 0 and 1, best class each
    (grad,) = torch.autograd.grad(value, pred)
    assert grad[0, 2].abs().sum() == 0 and grad[0, 0, 4] == pytest.approx(0.5) and grad[0, 1, 6] == pytest.approx(0.1)


def test_unletterbox_map_undoes_letterbox():
    h, w = 90, 200
    square = np.zeros((h, w), dtype=np.float32)
    square[30:60, 50:80] = 1.0
    boxed = letterbox(square, 128, auto=False, color=0)[0]  # 128 x 58 image area, 35 rows of padding above
    assert boxed.shape == (128, 128)
    back = unletterbox_map(boxed, (h, w))
    assert back.shape == (h, w)
    rows, cols = np.nonzero(back > 0.5)
    assert abs(rows.min() - 30) <= 1 and abs(rows.max() - 59) <= 1
    assert abs(cols.min() - 50) <= 1 and abs(cols.max() - 79) <= 1
    assert np.abs(back - square).mean() < 0.02


@pytest.fixture(scope="module")
def two_checkpoints(tmp_path_factory):
    """A baseline yolov5n and a variant (GSConv neck), random weights, saved by the project's checkpoint writer."""
    folder = tmp_path_factory.mktemp("cam")
    torch.manual_seed(0)
    paths = []
    for cfg, name in (("yolov5n.yaml", "base.pt"), ("yolov5n_GSConv.yaml", "variant.pt")):
        paths.append(str(save_checkpoint(make_checkpoint(Model(cfg)), folder / name)))
    return paths


def test_cam_script_writes_one_side_by_side_figure_per_image(two_checkpoints, tmp_path):
    out = tmp_path / "figures"
    rc = cam_script.main(["--weights", *two_checkpoints, "--source", str(ROOT / "data/images"), "--imgsz", "128",
                          "--method", "gradcam", "--out", str(out)])
    assert rc == 0
    assert sorted(p.name for p in out.iterdir()) == ["bus.png", "zidane.png"]
    for name, source in (("bus.png", "bus.jpg"), ("zidane.png", "zidane.jpg")):
        figure = cv2.imread(str(out / name))
        h, w = panel_size(cv2.imread(str(ROOT / "data/images" / source)).shape[:2])
        assert figure.shape == (h, 3 * w, 3)  # the image, then one panel per model
        plain, base, variant = (figure[:, i * w : (i + 1) * w].astype(int) for i in range(3))
        below_title = slice(h // 4, None)
        assert np.abs(base - plain)[below_title].mean() > 10  # the heatmap is blended over the image
        assert np.abs(base - variant)[below_title].mean() > 1  # each model has its own heatmap
    assert panel_size((1080, 810)) == (1024, 768) and panel_size((720, 1280)) == (576, 1024)


def test_cam_script_layer_errors(two_checkpoints, tmp_path):
    model = attempt_load(two_checkpoints[0])
    assert cam_script.cam_layers(model)[0] == [17, 20, 23]  # Detect's inputs
    assert cam_script.cam_layers(model, [4, -2])[0] == [4, 23]
    with pytest.raises(UserError, match="has layers 0 to 24"):
        cam_script.cam_layers(model, [25])
    with pytest.raises(UserError, match="is the Detect layer"):
        cam_script.cam_layers(model, [24])
    with pytest.raises(UserError, match="--method"):
        cam_script.run(weights=two_checkpoints, method="scorecam", out=str(tmp_path))
