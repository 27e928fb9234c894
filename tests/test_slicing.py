"""Sliced inference (utils/slicing.py): the tile grid, shifting, cut boxes and both merges against known answers,
and the whole Slicer around a fake model that finds the one bright square in its input."""

import hashlib
from functools import partial

import cv2
import numpy as np
import pytest
import torch
import torch.nn as nn

import detect
import val
from data.synthetic import crop_scene, make_large_image
from models.autoshape import AutoShape
from models.experimental import attempt_load
from utils.augmentations import letterbox
from utils.boxes import non_max_suppression, xywhn2xyxy, xyxy2xywh
from utils.dataloaders import create_dataloader
from utils.dataset_yaml import check_dataset
from utils.evaluation import evaluate
from utils.general import ROOT, UserError
from utils.slicing import (
    Slicer,
    box_ios,
    drop_cut_boxes,
    greedy_merge,
    merge_nms,
    shift_boxes,
    tile_grid,
)

FIXTURE = ROOT / "tests" / "fixtures" / "yolov5n-v7.0.pt"


def test_tile_grid_1080p_at_640():
    tiles = tile_grid(1080, 1920, 640, 0.2)  # step int(640 * 0.8) = 512, last tile flush with the far edge
    xs, ys = sorted({t[0] for t in tiles}), sorted({t[1] for t in tiles})
    assert xs == [0, 512, 1024, 1280] and ys == [0, 440]
    assert len(tiles) == 8 and tiles[0] == (0, 0, 640, 640) and tiles[-1] == (1280, 440, 1920, 1080)
    assert all(x2 - x1 == 640 and y2 - y1 == 640 for x1, y1, x2, y2 in tiles)


@pytest.mark.parametrize("height,width,size,overlap", [(1080, 1920, 640, 0.2), (700, 1000, 256, 0.25),
                                                       (333, 777, 100, 0.0), (50, 2000, 64, 0.5)])
def test_tile_grid_covers_with_overlap(height, width, size, overlap):
    tiles = tile_grid(height, width, size, overlap)
    covered = np.zeros((height, width), dtype=int)
    for x1, y1, x2, y2 in tiles:
        assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height
        covered[y1:y2, x1:x2] += 1
    assert covered.min() >= 1  # every pixel in some tile
    for axis in (0, 1):  # neighbouring starts are close enough that tiles overlap by at least overlap * size
        starts = sorted({t[axis] for t in tiles})
        extent = min(size, (width, height)[axis])
        assert all(b - a <= extent - int(overlap * size) for a, b in zip(starts, starts[1:]))


def test_tile_grid_small_image_is_one_tile_and_bad_settings_refused():
    assert tile_grid(100, 200, 640) == [(0, 0, 200, 100)]
    for size, overlap in ((16, 0.2), (640, 0.95), (640, -0.1)):
        with pytest.raises(UserError):
            tile_grid(1080, 1920, size, overlap)


def test_shift_boxes_moves_only_coordinates():
    det = torch.tensor([[1.0, 2.0, 11.0, 12.0, 0.5, 2.0]])
    out = shift_boxes(det, 512, 440)
    assert out.tolist() == [[513.0, 442.0, 523.0, 452.0, 0.5, 2.0]]
    assert det[0, 0] == 1  # the input is left alone


def test_box_ios_is_one_for_a_box_inside_another():
    a = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    b = torch.tensor([[2.0, 2.0, 6.0, 6.0], [5.0, 0.0, 15.0, 10.0], [20.0, 20.0, 30.0, 30.0]])
    assert torch.allclose(box_ios(a, b), torch.tensor([[1.0, 0.5, 0.0]]), atol=1e-6)


def test_a_box_found_in_two_tiles_merges_to_one():
    # the same 16 px object seen by the tiles at x=0 and x=512 (overlap 512-640): tile coordinates differ
    in_tile0 = shift_boxes(torch.tensor([[600.0, 100.0, 616.0, 116.0, 0.8, 1.0]]), 0, 0)
    in_tile1 = shift_boxes(torch.tensor([[88.5, 100.5, 104.5, 116.5, 0.9, 1.0]]), 512, 0)
    other_class = torch.tensor([[600.0, 100.0, 616.0, 116.0, 0.7, 0.0]])
    pooled = torch.cat((in_tile0, in_tile1, other_class))
    for merged in (greedy_merge(pooled), merge_nms(pooled, 0.45)):
        assert len(merged) == 2  # one per class: classes never merge
        assert merged[0, 4] == pytest.approx(0.9) and merged[0, 5] == 1
        assert merged[1, 5] == 0
    assert greedy_merge(pooled)[0, :4].tolist() == [600.0, 100.0, 616.5, 116.5]  # the enclosing box
    assert merge_nms(pooled, 0.45)[0, :4].tolist() == [600.5, 100.5, 616.5, 116.5]  # the most confident box


def test_cut_box_greedy_ios_merges_it_nms_iou_does_not():
    whole = torch.tensor([[600.0, 100.0, 680.0, 140.0, 0.9, 0.0]])  # 80 px wide, seen whole by one pass
    piece = torch.tensor([[600.0, 100.0, 630.0, 140.0, 0.8, 0.0]])  # its left 30 px, cut at a tile edge x=630
    pooled = torch.cat((whole, piece))
    assert greedy_merge(pooled).tolist() == whole.tolist()  # IoS 1: the piece joins the whole
    assert len(merge_nms(pooled, 0.45)) == 2  # IoU 30/80 = 0.375: NMS keeps the piece as a second object
    assert len(greedy_merge(pooled, metric="iou", match_thres=0.5)) == 2


def test_drop_cut_boxes_keeps_border_and_large_boxes():
    tiles = tile_grid(1080, 1920, 640, 0.2)
    tile = tiles[0]  # (0, 0, 640, 640): inner edges at x=640 (overlap 128) and y=640 (overlap 200)
    det = torch.tensor([
        [620.0, 100.0, 640.0, 116.0, 0.9, 0.0],  # cut at x=640, 20 px wide: whole in the tile at x=512
        [500.0, 100.0, 640.0, 116.0, 0.9, 0.0],  # cut at x=640 but 140 px wide: no tile holds it whole
        [0.0, 100.0, 16.0, 116.0, 0.9, 0.0],  # on the image border: nothing cut it
        [300.0, 630.0, 316.0, 639.0, 0.9, 0.0],  # cut at y=640
        [300.0, 300.0, 316.0, 316.0, 0.9, 0.0],  # inside
    ])
    kept = drop_cut_boxes(det, tile, tiles, 1920, 1080)
    assert kept[:, 0].tolist() == [500.0, 0.0, 300.0] and kept[:, 1].tolist() == [100.0, 100.0, 300.0]
    last = tiles[-1]  # (1280, 440, 1920, 1080): inner edges at x=1280 (overlap 1536-1280=256) and y=440 (200)
    det = torch.tensor([[1280.0, 1000.0, 1300.0, 1016.0, 0.9, 0.0], [1900.0, 1060.0, 1920.0, 1080.0, 0.9, 0.0]])
    assert drop_cut_boxes(det, last, tiles, 1920, 1080)[:, 0].tolist() == [1900.0]


def bright_square_model(x: torch.Tensor) -> torch.Tensor:
    """A fake one-class detector: per image, one prediction [cx, cy, w, h, obj, cls] boxing its bright pixels
    (> 0.8; the letterbox's grey padding is 114/255), objectness 0 when there are none."""
    out = torch.zeros(len(x), 1, 6)
    for i, im in enumerate(x):
        ys, xs = torch.nonzero(im.mean(0) > 0.8, as_tuple=True)
        if len(xs):
            x1, y1, x2, y2 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
            out[i, 0] = torch.tensor([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1, 0.9, 1.0])
    return out


@pytest.mark.parametrize("merge,box", [("greedy", (1000, 300, 1016, 316)), ("greedy", (630, 500, 646, 516)),
                                       ("nms", (630, 500, 646, 516)), ("greedy", (1500, 600, 1524, 624))])
def test_slicer_finds_a_small_object_once(merge, box):
    """A 16-24 px square in a 1920x1080 image, inside one tile, across the x=640 tile edge, or in the rows'
    overlap: one detection at the square's pixels (the tiles see it at full resolution)."""
    im = np.zeros((1080, 1920, 3), dtype=np.uint8)
    x1, y1, x2, y2 = box
    im[y1:y2, x1:x2] = 255
    calls = []

    def forward(x):
        calls.append(tuple(x.shape))
        return bright_square_model(x)

    nms = partial(non_max_suppression, conf_thres=0.25, iou_thres=0.45)
    det = Slicer(forward, nms, 640, size=640, overlap=0.2, merge=merge, batch_size=4)(im)
    assert len(det) == 1
    assert det[0, :4].tolist() == pytest.approx([x1, y1, x2, y2], abs=2.0)
    assert calls == [(4, 3, 640, 640), (4, 3, 640, 640), (1, 3, 640, 640)]  # 8 tiles + the whole image, batched


def test_slicer_without_slicing_misses_what_slicing_finds():
    """A 1 px object vanishes when the 1920 px image is letterboxed to 640 (bilinear at 1/3 samples columns and rows
    3k+1, not 1002 and 302) but not in a 640 tile."""
    im = np.zeros((1080, 1920, 3), dtype=np.uint8)
    im[302, 1002] = 255
    nms = partial(non_max_suppression, conf_thres=0.25, iou_thres=0.45)
    letterboxed = letterbox(im, 640, auto=False)[0]  # 640x360 plus grey bands: what unsliced detection sees
    x = torch.from_numpy(letterboxed.transpose(2, 0, 1).copy())[None].float() / 255
    assert bright_square_model(x)[0, 0, 4] == 0
    det = Slicer(bright_square_model, nms, 640, size=640, overlap=0.2)(im)
    assert det[:, :4].tolist() == [[1002.0, 302.0, 1003.0, 303.0]]


@pytest.mark.usefixtures("one_torch_thread")
def test_detect_slice_writes_the_slicers_detections(tmp_path):
    """detect.py --slice: the labels it writes are the Slicer's detections of the original image (same model,
    thresholds and tiles), rounded to whole pixels; the log says it sliced."""
    image = ROOT / "data" / "images" / "bus.jpg"  # 810x1080: 3x4 tiles of 320 at overlap 0.2, plus the whole image
    save_dir = detect.run(weights=FIXTURE, source=image, imgsz=(160, 160), conf_thres=1e-5, max_det=3, device="cpu",
                          project=tmp_path, name="exp", save_txt=True, save_conf=True, slice_size=320,
                          slice_overlap=0.2, slice_merge="nms")
    saved = np.loadtxt(save_dir / "labels" / "bus.txt", ndmin=2)
    model = attempt_load(FIXTURE)
    nms = partial(non_max_suppression, conf_thres=1e-5, iou_thres=0.45, max_det=3)
    im0 = cv2.imread(str(image))
    with torch.no_grad():
        det = Slicer(model, nms, 160, 320, 0.2, "nms", max_det=3)(np.ascontiguousarray(im0[..., ::-1]))
    h, w = im0.shape[:2]
    xywhn = xyxy2xywh(det[:, :4].round()) / torch.tensor([w, h, w, h])
    expected = torch.cat((det[:, 5:6], xywhn, det[:, 4:5]), 1).numpy()
    key = lambda a: a[np.lexsort(a.T[::-1])]  # noqa: E731
    assert saved.shape == (3, 6) and np.allclose(key(saved), key(expected), atol=1e-4)
    with pytest.raises(UserError, match="--slice-merge"):
        detect.run(weights=FIXTURE, source=image, slice_size=320, slice_merge="wbf", project=tmp_path, device="cpu")


@pytest.mark.usefixtures("one_torch_thread")
def test_val_slice_runs_and_scores_original_pixel_boxes(tmp_path, official_ckpt):
    """val.py --slice on coco8 with the random-weight fixture runs end to end (no candidate above 0.001: zeros),
    and evaluate scores a slicer's boxes as original-image pixels: a slicer returning each image's labels scores
    mAP 1 and AP_small 1."""
    coco8 = ROOT / "data" / "coco8.yaml"
    output = val.run(data=str(coco8), weights=str(official_ckpt), imgsz=160, batch_size=4, device="cpu", workers=0,
                     project=tmp_path, name="exp", plots=False, slice_size=320, slice_overlap=0.2)
    assert output.results[:4] == (0.0,) * 4 and output.by_size is not None

    data = check_dataset(str(coco8))
    loader, dataset = create_dataloader(data["val"], 160, 2, 32, rect=True, pad=0.5, workers=0)
    truth = {}
    for file, (w, h), labels in zip(dataset.im_files, dataset.shapes, dataset.labels):
        im = np.ascontiguousarray(cv2.imread(file)[..., ::-1])
        boxes = xywhn2xyxy(torch.from_numpy(labels[:, 1:5]), w, h)
        det = torch.cat((boxes, torch.ones(len(labels), 1), torch.from_numpy(labels[:, :1])), 1)
        truth[hashlib.sha1(im.tobytes()).hexdigest()] = det
    oracle = lambda im: truth[hashlib.sha1(im.tobytes()).hexdigest()].clone()  # noqa: E731
    names = {i: str(i) for i in range(data["nc"])}
    output = evaluate(nn.Identity(), loader, data["nc"], names, torch.device("cpu"), plots=False, slicer=oracle)
    assert output.results.map50_95 == pytest.approx(1.0, abs=1e-3)
    assert output.by_size.ap_small == pytest.approx(1.0, abs=1e-3)


@pytest.mark.usefixtures("one_torch_thread")
def test_autoshape_slice_size_gives_the_slicers_boxes():
    """AutoShape(model)(image, size, slice_size=...): the Slicer's merged boxes of the image, in its pixels."""
    model = attempt_load(FIXTURE)
    auto = AutoShape(model, verbose=False)
    auto.conf, auto.max_det = 1e-5, 3
    im = np.ascontiguousarray(cv2.imread(str(ROOT / "data" / "images" / "bus.jpg"))[..., ::-1])
    results = auto(im, size=160, slice_size=320, slice_overlap=0.2)
    nms = partial(non_max_suppression, conf_thres=1e-5, iou_thres=0.45, max_det=3)
    with torch.no_grad():
        expected = Slicer(model, nms, 160, 320, 0.2, max_det=3)(im)
    assert len(results.xyxy[0]) == 3 and torch.allclose(results.xyxy[0], expected, atol=1e-4)
    assert results.shape == (1, 3, 160, 160)


def test_large_shapes_scene_and_crops():
    """The large-image shapes mode: a 1920x1080 scene of 8-24 px objects (COCO-small), cut into 320 px crops whose
    labels keep the boxes at least 60% inside, clipped."""
    im, boxes = make_large_image(np.random.default_rng(0))
    assert im.shape == (1080, 1920, 3) and 15 <= len(boxes) <= 40
    w, h = boxes[:, 3] - boxes[:, 1], boxes[:, 4] - boxes[:, 2]
    assert w.min() >= 8 and w.max() <= 24 and (w * h).max() < 32**2
    scene = np.zeros((1080, 1920, 3), np.uint8)
    crops = crop_scene(scene, np.array([[2, 310, 10, 330, 30], [1, 300, 100, 312, 112]], np.float32), 320)
    assert len(crops) == 24 and all(c.shape == (320, 320, 3) for c, _ in crops)  # 6 columns x 4 rows
    first, second = crops[0][1], crops[1][1]  # crops at x 0-320 and 320-640 of the top row
    # the class-2 box has 10 of its 20 px in each of the two crops (50% < 60%): in neither; the class-1 box is whole
    assert first[:, 0].tolist() == [1] and np.allclose(first[0, 1:] * 320, [306, 106, 12, 12])
    assert len(second) == 0
