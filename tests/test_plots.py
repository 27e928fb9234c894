"""Plots: drawing lands where asked, files are written with the expected sizes, crops have hand-computed shapes."""

import cv2
import numpy as np
import pandas as pd
import torch

from utils.plots import (
    PALETTE,
    Annotator,
    colors,
    feature_visualization,
    plot_images,
    plot_labels,
    plot_results,
    save_one_box,
)


def _close(pixel, color, tol=40):
    """Anti-aliased lines blend with the background: compare colours with a tolerance."""
    return np.abs(pixel.astype(int) - np.array(color)).max() < tol


def test_colors_and_annotator_box():
    assert colors(0) == PALETTE[0] and colors(len(PALETTE)) == PALETTE[0] and colors(3, bgr=True) == PALETTE[3][::-1]
    assert len(set(PALETTE)) == len(PALETTE)
    im = np.zeros((100, 100, 3), np.uint8)
    annotator = Annotator(im, line_width=2)
    annotator.box_label((20, 30, 60, 80), "cat", color=(0, 255, 0))
    out = annotator.result()
    green = (out[..., 1] > 200) & (out[..., 0] < 60) & (out[..., 2] < 60)
    assert green[55, 20] and green[55, 60] and green[30, 40] and green[80, 40]  # the four edges
    assert not out[35:75, 25:55].any()  # inside untouched
    assert green[15:28, 20:40].sum() > 100 and not green[:28, 62:].any()  # filled label tag above, at the left


def test_plot_images_grid_and_boxes(tmp_path):
    images = torch.zeros((4, 3, 64, 64), dtype=torch.uint8)
    targets = torch.tensor([[0, 1, 0.5, 0.5, 0.5, 0.5], [3, 2, 0.25, 0.25, 0.25, 0.25]])
    grid = plot_images(images, targets, paths=["a.jpg"] * 4, fname=tmp_path / "b.jpg", names={0: "z", 1: "x", 2: "y"})
    assert grid.shape == (128, 128, 3) and cv2.imread(str(tmp_path / "b.jpg")).shape == (128, 128, 3)
    assert _close(grid[32, 16], colors(1))  # left edge of image 0's box (x 16..48, y 16..48)
    assert _close(grid[64 + 20, 64 + 8], colors(2))  # left edge of image 3's box (x, y 8..24 + 64)
    preds = torch.tensor([[1, 0, 0.5, 0.5, 0.5, 0.5, 0.1]])  # below the 0.25 display threshold
    assert not plot_images(images[1:2], preds, fname=tmp_path / "p.jpg")[32, 16].any()


def test_plot_labels_and_results(tmp_path):
    labels = np.array([[0, 0.5, 0.5, 0.2, 0.3], [1, 0.2, 0.7, 0.1, 0.1]], np.float32)
    assert cv2.imread(str(plot_labels(labels, {0: "a", 1: "b"}, tmp_path))) is not None
    columns = ["epoch", "train/box_loss", "train/obj_loss", "train/cls_loss", "metrics/precision", "metrics/recall",
               "metrics/mAP_0.5", "metrics/mAP_0.5:0.95", "val/box_loss", "val/obj_loss", "val/cls_loss", "x/lr0",
               "x/lr1", "x/lr2"]
    frame = pd.DataFrame(np.random.default_rng(0).random((5, len(columns))), columns=[f"{c:>22}" for c in columns])
    frame.to_csv(tmp_path / "results.csv", index=False)
    out = plot_results(tmp_path / "results.csv")
    assert out == tmp_path / "results.png" and cv2.imread(str(out)) is not None
    assert plot_results(tmp_path / "missing.csv") is None


def test_feature_visualization_and_save_one_box(tmp_path):
    x = torch.randn(1, 10, 8, 4)
    x[0, 1] = 7.0  # a constant map: drawn at the bottom of the scale, not divided by zero
    f = feature_visualization(x, "models.common.Conv", 2, save_dir=tmp_path)
    assert f == tmp_path / "stage2_Conv_features.png"
    grid = cv2.imread(str(f))
    # 10 maps in 2 rows of 8; 8x4 maps enlarged 32 times to 256x128, 4 px white gaps
    assert grid.shape == (2 * 260 - 4, 8 * 132 - 4, 3)
    viridis_low, viridis_high = cv2.applyColorMap(np.array([[0, 255]], np.uint8), cv2.COLORMAP_VIRIDIS)[0]
    y, x_ = divmod(int(x[0, 0].argmax()), 4)  # map 0's maximum, its own scale's top
    np.testing.assert_array_equal(grid[y * 32 + 16, x_ * 32 + 16], viridis_high)
    y, x_ = divmod(int(x[0, 9].argmin()), 4)  # map 9 (row 1, column 1)'s minimum
    np.testing.assert_array_equal(grid[260 + y * 32 + 16, 132 + x_ * 32 + 16], viridis_low)
    np.testing.assert_array_equal(grid[100, 132 + 50], viridis_low)  # the constant map
    assert (grid[260 + 100, 2 * 132 + 50] == 255).all()  # no map 10: white
    np.testing.assert_array_equal(np.load(f.with_suffix(".npy")), x[0].numpy())  # every channel, for analysis
    assert feature_visualization(torch.randn(1, 4, 8, 8), "models.yolo.Detect", 24, save_dir=tmp_path) is None
    im = np.arange(100 * 100 * 3, dtype=np.uint32).reshape(100, 100, 3).astype(np.uint8)
    # box 40 x 50 centred at (30, 35): 40 * 1.02 + 10 = 50.8 wide, 50 * 1.02 + 10 = 61 tall
    # -> x 4.6..55.4, y 4.5..65.5, truncated to 4..55 and 4..65
    crop = save_one_box([10, 10, 50, 60], im, tmp_path / "crops" / "c.jpg", BGR=True)
    np.testing.assert_array_equal(crop, im[4:65, 4:55])
    assert cv2.imread(str(tmp_path / "crops" / "c.jpg")).shape == (61, 51, 3)
