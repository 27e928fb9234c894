"""Segmentation data: polygon labels verified and cached with their segments (bad polygons skipped with a warning),
the polygons kept aligned with the image and the boxes through letterbox, flips, random affine and mosaic, masks
rasterised at img_size / mask_ratio (overlap index map sorted by area, or per instance), and the shapes generator's
exact polygons."""

import shutil

import cv2
import numpy as np
import pytest
import torch

from data.synthetic import make_image, shape_polygon
from utils.dataset_yaml import check_dataset
from utils.general import LOGGER, ROOT, UserError, yaml_load
from utils.labels import load_verified_segments, verify_image_label
from utils.segment_data import LoadImagesAndMasks, random_perspective_segments, resample_polygon

NO_AUGMENT = dict(hsv_h=0.0, hsv_s=0.0, hsv_v=0.0, degrees=0.0, translate=0.0, scale=0.0, shear=0.0,
                  perspective=0.0, flipud=0.0, fliplr=0.0, mosaic=0.0, mixup=0.0, copy_paste=0.0)


def _dataset(tmp_path, rows, size=(64, 96)):
    """One grey image (h, w) with label ``rows``; returns the images folder."""
    (tmp_path / "images").mkdir(exist_ok=True)
    (tmp_path / "labels").mkdir(exist_ok=True)
    cv2.imwrite(str(tmp_path / "images" / "a.png"), np.full((*size, 3), 128, np.uint8))
    (tmp_path / "labels" / "a.txt").write_text(rows)
    return tmp_path / "images"


def test_polygon_rows_kept_as_segments_and_bad_polygons_skipped(tmp_path, caplog):
    rows = ("0 0.1 0.2 0.5 0.2 0.3 0.6\n"  # a triangle
            "1 0.5 0.5 0.2 0.2\n"  # a box row: no segment
            "2 0.1 0.1 0.2 0.2 0.3\n"  # odd coordinate count
            "2 0.1 0.1 0.2 0.2\n"  # 5 columns: a box row (a polygon needs 3 points, 7 columns)
            "2 0.1 0.1 0.9 0.1 0.9 nan\n"  # NaN
            "2 0.1 0.1 1.5 0.1 0.9 0.9\n")  # outside the image
    images = _dataset(tmp_path, rows)
    im_file = str(images / "a.png")
    _, labels, _, segments, *_, corrupt, message = verify_image_label((im_file, str(tmp_path / "labels" / "a.txt"),
                                                                       ""))
    assert corrupt == 0
    assert "skipped 3 bad polygon(s)" in message and "odd number" in message
    # rows kept: the triangle, the box row, and '2 0.1 0.1 0.2 0.2' which has 5 columns (a box)
    np.testing.assert_allclose(labels[0], [0, 0.3, 0.4, 0.4, 0.4], atol=1e-6)
    np.testing.assert_allclose(labels[1], [1, 0.5, 0.5, 0.2, 0.2])
    assert len(labels) == 3 and [len(s) for s in segments] == [3, 0, 0]
    np.testing.assert_allclose(segments[0], [[0.1, 0.2], [0.5, 0.2], [0.3, 0.6]], atol=1e-6)

    (tmp_path / "labels" / "a.txt").write_text("0 0.1 0.2 0.5 0.2 0.3 0.6 0.1 0.6\n0 0.5 0.5 0.2 0.2\n")
    _, labels, _, segments, *_, message = verify_image_label((im_file, str(tmp_path / "labels" / "a.txt"), ""))
    assert not message  # '0 0.5 0.5 0.2 0.2' has 5 columns: a box row, not a 2-point polygon
    LOGGER.addHandler(caplog.handler)
    try:
        files, labels, _, segments = load_verified_segments(str(images), [im_file])
        again = load_verified_segments(str(images), [im_file])  # from the cache written by the first call
    finally:
        LOGGER.removeHandler(caplog.handler)
    assert (tmp_path / "labels.cache").is_file()
    assert [len(s) for s in segments[0]] == [4, 0] and [len(s) for s in again[3][0]] == [4, 0]
    np.testing.assert_allclose(again[3][0][0], [[0.1, 0.2], [0.5, 0.2], [0.3, 0.6], [0.1, 0.6]], atol=1e-6)


def _mask_box(mask):
    """Pixel extent (x1, y1, x2, y2) of a binary mask, x2/y2 exclusive."""
    ys, xs = np.nonzero(np.asarray(mask))
    return xs.min(), ys.min(), xs.max() + 1, ys.max() + 1


def test_rectangle_polygon_after_letterbox_and_flips_rasterises_inside_its_box(tmp_path):
    # an axis-aligned rectangle polygon on a 64 x 96 (h x w) image: x 0.25..0.5, y 0.25..0.75
    images = _dataset(tmp_path, "0 0.25 0.25 0.5 0.25 0.5 0.75 0.25 0.75\n")
    for flipud, fliplr in ((0.0, 0.0), (1.0, 0.0), (0.0, 1.0), (1.0, 1.0)):
        ds = LoadImagesAndMasks(str(images), img_size=96, augment=True, hyp={**NO_AUGMENT, "flipud": flipud,
                                                                              "fliplr": fliplr}, mask_ratio=1)
        im, targets, _, _, masks = ds[0]
        assert im.shape == (3, 96, 96) and masks.shape == (1, 96, 96)
        _, cls, x, y, w, h = targets[0].tolist()
        # letterbox: 96 wide, 64 tall -> padded by 16 above and below; the rectangle is x 24..48, y 32..64
        x1, x2 = (96 - 48, 96 - 24) if fliplr else (24, 48)
        y1, y2 = (96 - 64, 96 - 32) if flipud else (32, 64)
        np.testing.assert_allclose([x * 96, y * 96, w * 96, h * 96], [(x1 + x2) / 2, (y1 + y2) / 2, 24, 32],
                                   atol=1e-3)
        mx1, my1, mx2, my2 = _mask_box(masks[0] == 1)
        assert abs(mx1 - x1) <= 1 and abs(mx2 - x2) <= 1 and abs(my1 - y1) <= 1 and abs(my2 - y2) <= 1
        assert (masks[0] == 1).sum() >= 0.9 * 24 * 32


def test_affine_moves_polygon_and_box_together():
    rng = np.random.default_rng(0)
    im = np.zeros((100, 100, 3), np.uint8)
    square = np.array([[30, 30], [60, 30], [60, 60], [30, 60]], np.float32)
    cv2.fillPoly(im, [square.astype(np.int32)], (255, 255, 255))
    labels = np.array([[0, 30, 30, 60, 60]], np.float32)
    out, labels, segments = random_perspective_segments(im, labels, [square], degrees=30, translate=0.1,
                                                        scale=0.2, shear=5, rng=rng)
    assert len(labels) == 1 and segments[0].shape == (1000, 2)
    x1, y1, x2, y2 = labels[0, 1:]
    np.testing.assert_allclose([x1, y1, x2, y2], [*segments[0].min(0), *segments[0].max(0)], atol=1e-3)
    mask = np.zeros((100, 100), np.uint8)
    cv2.fillPoly(mask, [np.round(segments[0]).astype(np.int32)], 1)
    warped = out[..., 0] > 127  # the warped white square
    iou = (warped & (mask > 0)).sum() / (warped | (mask > 0)).sum()
    assert iou > 0.9  # the moved polygon covers the moved pixels
    assert x2 - x1 > 30  # a 30-degree rotation widens the box of a 30 px square


def test_resample_polygon_closes_and_keeps_vertices():
    tri = np.array([[0, 0], [10, 0], [0, 10]], np.float32)
    points = resample_polygon(tri, n=31)  # parameter step 0.1: every vertex lands on a sample
    assert points.shape == (31, 2)
    np.testing.assert_allclose(points[[0, 10, 20, 30]], [[0, 0], [10, 0], [0, 10], [0, 0]], atol=1e-5)


def test_overlap_index_map_sorted_by_area_and_no_overlap_masks(tmp_path):
    # a large square with a small square on top of it
    rows = "0 0.1 0.1 0.9 0.1 0.9 0.9 0.1 0.9\n1 0.4 0.4 0.6 0.4 0.6 0.6 0.4 0.6\n"
    images = _dataset(tmp_path, rows, size=(64, 64))
    ds = LoadImagesAndMasks(str(images), img_size=64, augment=False, mask_ratio=4)
    _, targets, _, _, masks = ds[0]
    assert masks.shape == (1, 16, 16) and set(masks.unique().tolist()) == {0.0, 1.0, 2.0}
    assert targets[:, 1].tolist() == [0, 1]  # largest first: the order of the index map's values 1, 2
    assert masks[0, 8, 8] == 2 and masks[0, 3, 3] == 1  # the small one drawn over the large one
    ds = LoadImagesAndMasks(str(images), img_size=64, augment=False, mask_ratio=4, overlap=False)
    _, targets, _, _, masks = ds[0]
    assert masks.shape == (2, 16, 16) and masks[0, 8, 8] == 1 and masks[1, 8, 8] == 1 and masks[1, 3, 3] == 0
    batch = LoadImagesAndMasks.collate_fn([ds[0], ds[0]])
    assert batch[4].shape == (4, 16, 16) and batch[1][:, 0].tolist() == [0, 0, 1, 1]


def test_mosaic_masks_stay_inside_their_boxes(tmp_path):
    rng = np.random.default_rng(1)
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    for i in range(4):
        polygons = []
        im, labels = make_image(rng, 128, polygons=polygons)
        cv2.imwrite(str(tmp_path / "images" / f"{i}.png"), im)
        (tmp_path / "labels" / f"{i}.txt").write_text("".join(
            f"{int(lb[0])} " + " ".join(f"{v:.6f}" for v in pg.reshape(-1)) + "\n" for lb, pg in zip(labels, polygons)))
    ds = LoadImagesAndMasks(str(tmp_path / "images"), img_size=128, augment=True,
                            hyp={"degrees": 15.0, "shear": 3.0, "fliplr": 0.5, "flipud": 0.5}, mask_ratio=4)
    checked = 0
    for epoch in range(3):
        for i in range(len(ds)):
            _, targets, _, shapes, masks = ds[(epoch, i)]
            for k, (_, _, x, y, w, h) in enumerate(targets.tolist()):
                mask = masks[0] == k + 1
                if mask.sum() < 4:
                    continue
                x1, y1, x2, y2 = _mask_box(mask)  # in mask pixels (128 / 4 = 32)
                assert x1 >= (x - w / 2) * 32 - 1.5 and x2 <= (x + w / 2) * 32 + 1.5
                assert y1 >= (y - h / 2) * 32 - 1.5 and y2 <= (y + h / 2) * 32 + 1.5
                checked += 1
    assert checked > 10


def test_shapes_polygons_are_exact_outlines():
    rng = np.random.default_rng(0)
    polygons = []
    im, labels = make_image(rng, 256, polygons=polygons)
    assert len(polygons) == len(labels) > 0
    for lb, pg in zip(labels, polygons):
        (x1, y1), (x2, y2) = pg.min(0), pg.max(0)
        np.testing.assert_allclose([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], lb[1:], atol=1e-6)
    assert len(shape_polygon(1, (10, 20, 30, 40))) == 4 and len(shape_polygon(2, (10, 20, 30, 40))) == 3
    # the same seed without polygons draws the same image and labels (the detection dataset is unchanged)
    im2, labels2 = make_image(np.random.default_rng(0), 256)
    assert (im == im2).all() and (labels == labels2).all()


@pytest.mark.parametrize("ratio", [0, -1])
def test_bad_mask_ratio_is_a_user_error(tmp_path, ratio):
    images = _dataset(tmp_path, "0 0.5 0.5 0.2 0.2\n")
    with pytest.raises(UserError, match="mask-ratio"):
        LoadImagesAndMasks(str(images), img_size=64, mask_ratio=ratio)
    assert torch.is_tensor(LoadImagesAndMasks(str(images), img_size=64)[0][4])  # a box row gets a rectangle mask


def test_coco8_seg_yaml_names_the_download_and_loads_a_local_folder(tmp_path):
    data = yaml_load(ROOT / "data" / "coco8-seg.yaml")
    assert len(data["names"]) == 80 and data["download"].endswith("/coco8-seg.zip")
    with pytest.raises(UserError, match="--download"):  # missing data: a hint, nothing fetched
        check_dataset({**data, "path": str(tmp_path / "absent")})
    for split in ("train", "val"):  # a local coco8-seg layout: coco8's images with polygon labels
        (tmp_path / "images" / split).mkdir(parents=True)
        (tmp_path / "labels" / split).mkdir(parents=True)
        for im in sorted((ROOT / "data" / "coco8" / "images" / split).glob("*.jpg"))[:2]:
            shutil.copy(im, tmp_path / "images" / split / im.name)
            (tmp_path / "labels" / split / f"{im.stem}.txt").write_text("45 0.2 0.2 0.6 0.25 0.4 0.7\n")
    resolved = check_dataset({**data, "path": str(tmp_path)})
    ds = LoadImagesAndMasks(resolved["val"], img_size=64)
    _, targets, _, _, masks = ds[0]
    assert targets[:, 1].tolist() == [45] and masks.shape == (1, 16, 16) and masks.max() == 1
