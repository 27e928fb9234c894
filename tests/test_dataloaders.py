"""Dataset verification, label cache, letterbox/mosaic/flip box consistency, rect batches, loaders, determinism,
and the names official YOLOv5 scripts import from utils.dataloaders."""

import builtins
import errno
import json
import logging
import os
import subprocess
import sys
import types
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

import utils.cache_files
import utils.dataloaders as dl
import utils.labels
import utils.sources
from utils.dataloaders import LoadImagesAndLabels, create_dataloader
from utils.general import LOGGER, UserError
from utils.labels import img2label_paths

NO_AUG = dict(hsv_h=0, hsv_s=0, hsv_v=0, degrees=0, translate=0, scale=0, shear=0, perspective=0, flipud=0,
              fliplr=0, mosaic=0, mixup=0, copy_paste=0)


def _write(root, name, im, label_text=None, split="train"):
    """Write images/<split>/<name>.jpg (or the given raw bytes) and, unless None, its label file."""
    (root / "images" / split).mkdir(parents=True, exist_ok=True)
    (root / "labels" / split).mkdir(parents=True, exist_ok=True)
    path = root / "images" / split / f"{name}.jpg"
    if isinstance(im, bytes):
        path.write_bytes(im)
    else:
        cv2.imwrite(str(path), im, [cv2.IMWRITE_JPEG_QUALITY, 100])
    if label_text is not None:
        (root / "labels" / split / f"{name}.txt").write_text(label_text)
    return path


def _red_box_image(h, w, box):
    """Grey image with a red rectangle at pixel box (x1, y1, x2, y2); returns it and its YOLO label row."""
    im = np.full((h, w, 3), 90, dtype=np.uint8)
    x1, y1, x2, y2 = box
    im[y1:y2, x1:x2] = (0, 0, 255)
    label = f"0 {(x1 + x2) / 2 / w} {(y1 + y2) / 2 / h} {(x2 - x1) / w} {(y2 - y1) / h}\n"
    return im, label


def _red_extent(chw_rgb, box, margin=4):
    """Pixel extent of the red pixels of a (3, H, W) RGB tensor around ``box`` (x1, y1, x2, y2)."""
    im = chw_rgb.numpy().transpose(1, 2, 0).astype(int)
    red = (im[..., 0] > 150) & (im[..., 1] < 100) & (im[..., 2] < 100)
    H, W = red.shape
    x1, y1 = max(int(box[0]) - margin, 0), max(int(box[1]) - margin, 0)
    x2, y2 = min(int(box[2]) + margin, W), min(int(box[3]) + margin, H)
    ys, xs = np.nonzero(red[y1:y2, x1:x2])
    return np.array([xs.min() + x1, ys.min() + y1, xs.max() + x1 + 1, ys.max() + y1 + 1])


def _targets_to_xyxy(targets, w, h):
    x, y, bw, bh = targets[:, 2], targets[:, 3], targets[:, 4], targets[:, 5]
    return torch.stack(((x - bw / 2) * w, (y - bh / 2) * h, (x + bw / 2) * w, (y + bh / 2) * h), 1).numpy()


@pytest.fixture()
def red_dataset(tmp_path):
    """Six 60 x 100 images, each with one red box labelled exactly."""
    for i in range(6):
        im, label = _red_box_image(60, 100, (30 + i, 20, 70 + i, 40))
        _write(tmp_path, f"im{i}", im, label)
    return tmp_path / "images" / "train"


def test_img2label_paths():
    assert img2label_paths([f"{os.sep}d{os.sep}images{os.sep}train{os.sep}a.b.jpg"]) == [
        f"{os.sep}d{os.sep}labels{os.sep}train{os.sep}a.b.txt"]


def test_bad_images_and_labels_are_reported_and_handled(tmp_path, caplog):
    good = np.full((40, 60, 3), 128, np.uint8)
    _write(tmp_path, "ok", good, "0 0.5 0.5 0.2 0.2\n")
    _write(tmp_path, "no_label", good)  # missing label file: kept as a background image
    _write(tmp_path, "empty_label", good, "")
    _write(tmp_path, "corrupt_image", b"this is not an image", "0 0.5 0.5 0.2 0.2\n")
    _write(tmp_path, "tiny_image", np.zeros((5, 5, 3), np.uint8), "0 0.5 0.5 0.2 0.2\n")
    jpeg = cv2.imencode(".jpg", good)[1].tobytes()
    _write(tmp_path, "truncated_decodable", jpeg[:-2], "0 0.5 0.5 0.2 0.2\n")
    _write(tmp_path, "truncated_header_only", jpeg[:200], "0 0.5 0.5 0.2 0.2\n")
    _write(tmp_path, "four_columns", good, "0 0.5 0.5 0.2\n")
    _write(tmp_path, "not_numeric", good, "person 0.5 0.5 0.2 0.2\n")
    _write(tmp_path, "negative_class", good, "-1 0.5 0.5 0.2 0.2\n")
    _write(tmp_path, "out_of_range", good, "1 0.95 0.5 0.2 0.2\n")  # x from 0.85 to 1.05: clipped
    _write(tmp_path, "negative_coords", good, "0 -0.5 0.5 0.2 0.2\n2 0.5 0.5 0.2 0.2\n")  # first has no area
    _write(tmp_path, "duplicates", good, "0 0.5 0.5 0.2 0.2\n0 0.5 0.5 0.2 0.2\n1 0.3 0.3 0.1 0.1\n")
    _write(tmp_path, "polygon", good, "3 0.1 0.2 0.5 0.2 0.3 0.6\n")

    LOGGER.addHandler(caplog.handler)  # the project logger does not propagate to the root logger
    try:
        with caplog.at_level("INFO", logger="yolov5"):
            ds = LoadImagesAndLabels(tmp_path / "images" / "train", img_size=64)
    finally:
        LOGGER.removeHandler(caplog.handler)
    labels = {Path(f).stem: lb for f, lb in zip(ds.im_files, ds.labels)}
    corrupt = {"corrupt_image", "tiny_image", "truncated_header_only", "four_columns", "not_numeric",
               "negative_class"}
    assert set(labels) == {"ok", "no_label", "empty_label", "truncated_decodable", "out_of_range",
                           "negative_coords", "duplicates", "polygon"}
    summary = "14 images, 13 label files found, 1 missing, 1 empty, 6 corrupt"
    assert summary in caplog.text
    # 10 problems (6 corrupt, 3 repaired, 1 truncated kept); the first 5 in file order are listed, 3 corrupt
    listed = [r.message for r in caplog.records if r.message.startswith("WARNING: ") and ".jpg: " in r.message]
    assert len(listed) == 5 and sum(any(f"{c}.jpg: corrupt" in m for c in corrupt) for m in listed) == 3
    assert "and 5 more files with problems" in caplog.text
    assert labels["no_label"].shape == (0, 5) and labels["empty_label"].shape == (0, 5)
    np.testing.assert_allclose(labels["out_of_range"], [[1, 0.925, 0.5, 0.15, 0.2]], atol=1e-6)
    np.testing.assert_allclose(labels["negative_coords"], [[2, 0.5, 0.5, 0.2, 0.2]])
    np.testing.assert_allclose(labels["duplicates"], [[0, 0.5, 0.5, 0.2, 0.2], [1, 0.3, 0.3, 0.1, 0.1]])
    np.testing.assert_allclose(labels["polygon"], [[3, 0.3, 0.4, 0.4, 0.4]], atol=1e-6)
    for i in range(len(ds)):  # every kept image loads, the truncated one included
        im, targets, _, _ = ds[i]
        assert im.shape == (3, 64, 64) and targets.shape[1] == 6


def test_empty_and_missing_splits_are_user_errors(tmp_path):
    (tmp_path / "images" / "empty").mkdir(parents=True)
    with pytest.raises(UserError, match="no images found"):
        LoadImagesAndLabels(tmp_path / "images" / "empty")
    with pytest.raises(UserError, match="does not exist"):
        LoadImagesAndLabels(tmp_path / "images" / "nowhere")
    _write(tmp_path, "bad", b"garbage", split="broken")
    with pytest.raises(UserError, match="all 1 are corrupt"):
        LoadImagesAndLabels(tmp_path / "images" / "broken")


def test_txt_list_and_list_of_sources(tmp_path):
    im = np.full((40, 60, 3), 128, np.uint8)
    for i in range(3):
        _write(tmp_path, f"a{i}", im, "0 0.5 0.5 0.2 0.2\n")
    (tmp_path / "list.txt").write_text("./images/train/a0.jpg\nimages/train/a2.jpg\n")
    assert [Path(f).name for f in LoadImagesAndLabels(tmp_path / "list.txt").im_files] == ["a0.jpg", "a2.jpg"]
    both = LoadImagesAndLabels([tmp_path / "list.txt", tmp_path / "images" / "train"])
    assert len(both) == 5


def test_label_cache_hit_and_rebuild(red_dataset, monkeypatch):
    first = LoadImagesAndLabels(red_dataset, img_size=64)
    cache_file = red_dataset.parents[1] / "labels" / "train.cache"
    assert cache_file.is_file()

    def must_not_verify(*args):
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(utils.labels, "verify_image_label", must_not_verify)
    second = LoadImagesAndLabels(red_dataset, img_size=64)
    assert second.im_files == first.im_files
    for a, b in zip(first.labels, second.labels):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(first.shapes, second.shapes)

    # a label file changes size -> stale hash -> rebuilt (here detected by the patched verifier)
    (red_dataset.parents[1] / "labels" / "train" / "im0.txt").write_text("0 0.5 0.5 0.25 0.25\n")
    with pytest.raises(AssertionError, match="should have been used"):
        LoadImagesAndLabels(red_dataset, img_size=64)
    monkeypatch.undo()
    rebuilt = LoadImagesAndLabels(red_dataset, img_size=64)
    np.testing.assert_allclose(rebuilt.labels[0], [[0, 0.5, 0.5, 0.25, 0.25]])

    cache_file.write_bytes(b"not a cache")  # unreadable -> rebuilt silently, then valid again
    assert len(LoadImagesAndLabels(red_dataset, img_size=64)) == 6
    assert np.load(cache_file, allow_pickle=False)["stats"].tolist() == [0, 6, 0, 0, 6]


def test_letterboxed_item_keeps_box_on_object(red_dataset):
    ds = LoadImagesAndLabels(red_dataset, img_size=96, hyp=NO_AUG)
    im, targets, path, shapes = ds[2]
    # 100 x 60 -> 96 x 58 (ceil) -> letterboxed into 96 x 96 with 19 px on top
    assert im.shape == (3, 96, 96)
    (h0, w0), ((gh, gw), (padw, padh)) = shapes
    assert (h0, w0) == (60, 100) and (gh, gw) == pytest.approx((58 / 60, 96 / 100)) and (padw, padh) == (0, 19)
    box = _targets_to_xyxy(targets, 96, 96)[0]
    np.testing.assert_allclose(box, _red_extent(im, box), atol=1.5)


def test_mosaic_puts_its_image_in_every_quadrant(red_dataset):
    """As official v7.0 (random.shuffle of the four): the item's own image is not always the top-left tile."""
    ds = LoadImagesAndLabels(red_dataset, img_size=64, augment=True, hyp=dict(NO_AUG, mosaic=1.0), seed=0)
    quadrants = set()
    for position in range(40):
        _, tiles = ds.mosaic_canvas(0, np.random.default_rng(position))
        tile_images = [t[0] for t in tiles]
        if tile_images.count(0) == 1:  # partners are drawn with replacement and may repeat it
            quadrants.add(tile_images.index(0))
    assert quadrants == {0, 1, 2, 3}


@pytest.mark.parametrize("flips", [(0.0, 0.0), (1.0, 1.0)])
def test_mosaic_flips_and_scale_keep_boxes_on_objects(red_dataset, flips):
    hyp = dict(NO_AUG, mosaic=1.0, scale=0.5, translate=0.1, flipud=flips[0], fliplr=flips[1])
    ds = LoadImagesAndLabels(red_dataset, img_size=64, augment=True, hyp=hyp, seed=3)
    checked = 0
    for i in range(6):
        im, targets, _, shapes = ds[i]
        assert shapes is None and im.shape == (3, 64, 64)
        for box in _targets_to_xyxy(targets, 64, 64):
            np.testing.assert_allclose(box, _red_extent(im, box), atol=2.0)
            checked += 1
    assert checked >= 6


def test_flip_moves_box_hand_computed(red_dataset):
    plain = LoadImagesAndLabels(red_dataset, img_size=96, augment=True, hyp=NO_AUG)
    flipped = LoadImagesAndLabels(red_dataset, img_size=96, augment=True, hyp=dict(NO_AUG, fliplr=1.0, flipud=1.0))
    (im0, t0, _, _), (im1, t1, _, _) = plain[0], flipped[0]
    np.testing.assert_allclose(t1[:, 2:4], 1 - t0[:, 2:4], atol=1e-6)
    np.testing.assert_allclose(t1[:, 4:], t0[:, 4:])
    assert torch.equal(im1, im0.flip(1).flip(2))


def test_rect_batch_shapes(tmp_path):
    for i, (h, w) in enumerate([(100, 200), (200, 100), (100, 200), (200, 100)]):
        _write(tmp_path, f"r{i}", np.full((h, w, 3), 100, np.uint8), "0 0.5 0.5 0.5 0.5\n")
    loader, ds = create_dataloader(tmp_path / "images" / "train", 64, 2, 32, rect=True, workers=0)
    # sorted by h/w: the two wide images (0.5) first -> 32 x 64, then the tall ones (2.0) -> 64 x 32
    np.testing.assert_array_equal(ds.batch_shapes, [[32, 64], [64, 32]])
    assert [tuple(b[0].shape) for b in loader] == [(2, 3, 32, 64), (2, 3, 64, 32)]
    _, padded = create_dataloader(tmp_path / "images" / "train", 64, 2, 32, rect=True, pad=0.5, workers=0)
    np.testing.assert_array_equal(padded.batch_shapes, [[64, 96], [96, 64]])  # ceil(1.5), ceil(2.5) strides


def test_collate_and_infinite_loader(red_dataset):
    loader, ds = create_dataloader(red_dataset, 64, 4, 32, hyp=NO_AUG, workers=0, shuffle=True)
    assert isinstance(loader, dl.InfiniteDataLoader) and len(loader) == 2
    epochs = [[b for b in loader] for _ in range(2)]
    assert [len(e) for e in epochs] == [2, 2]
    imgs, targets, paths, shapes = epochs[0][0]
    assert imgs.dtype == torch.uint8 and imgs.shape == (4, 3, 64, 64)
    assert targets.shape == (4, 6) and targets[:, 0].tolist() == [0, 1, 2, 3]
    assert len(paths) == 4 and len(shapes) == 4
    assert sorted(p for e in epochs[:1] for b in e for p in b[2]) == sorted(ds.im_files)


def test_same_seed_same_batches(red_dataset):
    hyp = dict(NO_AUG, mosaic=1.0, scale=0.5, translate=0.1, fliplr=0.5, hsv_h=0.015, hsv_s=0.7, hsv_v=0.4)

    def first_batches(seed, workers):
        loader, _ = create_dataloader(red_dataset, 64, 2, 32, hyp=hyp, augment=True, workers=workers, shuffle=True,
                                      seed=seed)
        it = iter(loader)
        return [next(it) for _ in range(2)]

    a, b, c = first_batches(0, 0), first_batches(0, 0), first_batches(1, 0)
    for x, y in zip(a, b):
        assert torch.equal(x[0], y[0]) and torch.equal(x[1], y[1]) and x[2] == y[2]
    assert not all(torch.equal(x[0], z[0]) for x, z in zip(a, c))


def _same_batches(a, b):
    return len(a) == len(b) and all(
        torch.equal(x[0], y[0]) and torch.equal(x[1], y[1]) and x[2] == y[2] for x, y in zip(a, b))


def test_batches_are_a_function_of_seed_and_epoch(red_dataset):
    """Epochs 0 and 1 are identical with 0 and 2 workers; a loader sent straight to epoch 1 (a resumed run) gives
    epoch 1's batches; every item is dataset[(epoch, position)] and the shuffle changes between epochs."""
    hyp = dict(NO_AUG, mosaic=1.0, scale=0.5, translate=0.1, fliplr=0.5, hsv_h=0.015, hsv_s=0.7, hsv_v=0.4)

    def epochs(workers, start=0):
        loader, ds = create_dataloader(red_dataset, 64, 2, 32, hyp=hyp, augment=True, workers=workers, shuffle=True,
                                       seed=5)
        assert loader.num_workers == workers
        loader.set_epoch(start)
        return [list(loader) for _ in range(start, 2)], loader, ds

    if (os.cpu_count() or 1) < 2:
        pytest.skip("needs 2 CPUs for 2 loader workers")
    (serial, loader, ds), (parallel, _, _), (resumed, _, _) = epochs(0), epochs(2), epochs(0, start=1)
    assert all(_same_batches(a, b) for a, b in zip(serial, parallel))
    assert _same_batches(resumed[0], serial[1])
    order = [p for b in serial[1] for p in b[2]]
    assert order != [p for b in serial[0] for p in b[2]] and sorted(order) == sorted(ds.im_files)
    loader.sampler.set_epoch(1)
    positions = list(loader.sampler)
    assert {e for e, _ in positions} == {1}
    assert torch.equal(serial[1][0][0], torch.stack([ds[positions[k]][0] for k in range(2)]))
    assert not torch.equal(ds[(0, positions[0][1])][0], ds[positions[0]][0])  # other epoch, other augmentation
    assert torch.equal(ds[positions[0][1]][0], ds[(0, positions[0][1])][0])  # a plain position is epoch 0


def test_exif_orientation_is_applied(tmp_path):
    stored = np.zeros((20, 40, 3), np.uint8)  # 40 wide, 20 tall; left half red, right half blue (RGB)
    stored[:, :20] = (255, 0, 0)
    stored[:, 20:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6  # displayed rotated 90 degrees clockwise: 20 wide, 40 tall, red on top
    path = tmp_path / "images" / "train" / "rotated.jpg"
    path.parent.mkdir(parents=True)
    Image.fromarray(stored).save(path, exif=exif, quality=100)
    ds = LoadImagesAndLabels(path.parent, img_size=40, hyp=NO_AUG)
    assert ds.shapes.tolist() == [[20, 40]]
    im = ds.load_image(0)[0]  # BGR
    assert im.shape == (40, 20, 3)
    assert im[5, 10, 2] > 200 and im[35, 10, 0] > 200  # red top, blue bottom


def test_auto_cache_keeps_small_sets_in_ram_only(red_dataset, monkeypatch):
    """cache 'auto' caches in RAM when the decoded images take at most AUTO_RAM_FRACTION of the free memory (6
    images of 60x100 resized to 39x64, 3 channels: 44,928 bytes); augmented items read from the cache equal
    uncached ones, twice."""
    need = 6 * 39 * 64 * 3
    pages = {"SC_PAGE_SIZE": 1, "SC_AVPHYS_PAGES": round(need / dl.AUTO_RAM_FRACTION)}  # exactly at the limit
    def sysconf(name):
        if name not in pages:
            raise ValueError(f"unrecognized configuration name {name!r}")
        return pages[name]

    monkeypatch.setattr(os, "sysconf", sysconf)
    hyp = {**NO_AUG, "hsv_h": 0.5, "hsv_s": 0.5, "hsv_v": 0.5, "fliplr": 0.5}  # in-place HSV must not touch the cache
    cached = LoadImagesAndLabels(red_dataset, img_size=64, augment=True, hyp=hyp, cache_images="auto")
    plain = LoadImagesAndLabels(red_dataset, img_size=64, augment=True, hyp=hyp)
    assert cached.cache == "ram" and all(im is not None for im in cached.ims)
    for i in range(6):
        first, again = cached[i][0], cached[i][0]
        assert torch.equal(first, plain[i][0]) and torch.equal(again, first)
    pages["SC_AVPHYS_PAGES"] -= 1  # one byte short: no cache, and no warning (auto is not a request)
    small = LoadImagesAndLabels(red_dataset, img_size=64, augment=True, hyp=hyp, cache_images="auto")
    assert small.cache is None and all(im is None for im in small.ims)
    del pages["SC_AVPHYS_PAGES"]  # a system that does not report free memory (macOS): no automatic cache
    unknown = LoadImagesAndLabels(red_dataset, img_size=64, augment=True, hyp=hyp, cache_images="auto")
    assert unknown.cache is None


@pytest.mark.parametrize("where", ["ram", "disk"])
def test_image_cache_gives_same_items(red_dataset, where):
    plain = LoadImagesAndLabels(red_dataset, img_size=64, hyp=NO_AUG)
    cached = LoadImagesAndLabels(red_dataset, img_size=64, hyp=NO_AUG, cache_images=where)
    if where == "ram":
        assert all(im is not None for im in cached.ims)
    else:
        assert all(Path(f).is_file() for f in cached.npy_files)
    assert torch.equal(plain[1][0], cached[1][0])


def test_image_weights_indices_and_single_cls(tmp_path):
    for i in range(3):
        _write(tmp_path, f"c{i}", np.full((40, 40, 3), 60 * i, np.uint8), f"{i + 1} 0.5 0.5 0.2 0.2\n")
    ds = LoadImagesAndLabels(tmp_path / "images" / "train", img_size=32, hyp=NO_AUG, single_cls=True)
    assert all(lb[0, 0] == 0 for lb in ds.labels)
    ds.indices = [2, 2, 2]
    assert {ds[i][2] for i in range(3)} == {ds.im_files[2]}


def test_distributed_sampler(red_dataset, tmp_path):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    try:
        loader, _ = create_dataloader(red_dataset, 64, 2, 32, hyp=NO_AUG, rank=0, workers=0, shuffle=True)
        assert isinstance(loader.sampler, torch.utils.data.distributed.DistributedSampler)
        loader.sampler.set_epoch(1)
        assert len(loader) == 3
    finally:
        dist.destroy_process_group()


def test_same_length_label_edit_rebuilds_the_cache(red_dataset):
    """class 4 -> 7: same size, so only the modification time tells the cache is stale."""
    label = red_dataset.parents[1] / "labels" / "train" / "im0.txt"
    label.write_text("4 0.5 0.5 0.25 0.25\n")
    assert LoadImagesAndLabels(red_dataset, img_size=64).labels[0][0, 0] == 4
    before = label.stat()
    label.write_text("7 0.5 0.5 0.25 0.25\n")
    os.utime(label, ns=(before.st_atime_ns, before.st_mtime_ns + 10**9))  # saved a second later
    assert label.stat().st_size == before.st_size
    assert LoadImagesAndLabels(red_dataset, img_size=64).labels[0][0, 0] == 7


@pytest.fixture()
def caplog_lines():
    """Messages the project logger emits during the test (it does not propagate to pytest's caplog)."""
    lines, handler, level = [], logging.Handler(), LOGGER.level
    handler.emit = lambda record: lines.append(record.getMessage())
    LOGGER.addHandler(handler)
    LOGGER.setLevel(logging.INFO)
    yield lines
    LOGGER.removeHandler(handler)
    LOGGER.setLevel(level)


class ReadOnlyFileSystem:
    """Every write, rename or delete under ``root`` fails with EROFS, like a dataset on a read-only mount (tests
    run as root in CI, where chmod does not stop writes)."""

    def __init__(self, root, monkeypatch):
        self.root, self.attempts = str(root), []
        real_open, real_replace, real_unlink = open, os.replace, os.unlink

        def guard(path, op):
            if str(path).startswith(self.root):
                self.attempts.append(op)
                raise OSError(errno.EROFS, "Read-only file system", str(path))

        def ro_open(file, mode="r", *args, **kwargs):
            if any(c in mode for c in "wax+"):
                guard(file, "open")
            return real_open(file, mode, *args, **kwargs)

        monkeypatch.setattr(builtins, "open", ro_open)
        monkeypatch.setattr(os, "replace", lambda a, b, **kw: guard(b, "replace") or real_replace(a, b, **kw))
        monkeypatch.setattr(os, "unlink", lambda p, **kw: guard(p, "unlink") or real_unlink(p, **kw))
        monkeypatch.setattr(utils.cache_files, "_warned_unwritable", set())


@pytest.mark.parametrize("cache", [None, "disk"])
def test_read_only_dataset_works_and_warns_once(red_dataset, monkeypatch, cache, caplog_lines):
    ro = ReadOnlyFileSystem(red_dataset.parents[1], monkeypatch)
    first = LoadImagesAndLabels(red_dataset, img_size=64, hyp=NO_AUG, cache_images=cache)
    second = LoadImagesAndLabels(red_dataset, img_size=64, hyp=NO_AUG, cache_images=cache)  # e.g. the val split
    assert ro.attempts and len(first) == len(second) == 6 and first[1][0].shape == (3, 64, 64)
    warnings = [x for x in caplog_lines if "not saved" in x]
    kinds = ["label cache"] + (["image cache"] if cache else [])
    assert len(warnings) == len(kinds) and all(any(k in w for w in warnings) for k in kinds), warnings
    assert "Read-only file system" in warnings[0]
    assert not list(red_dataset.parents[1].rglob("*.npy")) and not list(red_dataset.parents[1].rglob("*.cache"))


@pytest.mark.skipif(os.name == "nt" or os.geteuid() == 0, reason="root ignores folder permissions")
def test_read_only_dataset_folder_really_read_only(red_dataset):
    folders = [red_dataset.parents[1] / "labels", red_dataset]
    for f in folders:
        f.chmod(0o555)
    try:
        assert len(LoadImagesAndLabels(red_dataset, img_size=64, cache_images="disk")) == 6
    finally:
        for f in folders:
            f.chmod(0o755)


def _flat_dataset(tmp_path):
    """a.jpg (red) and a.png (blue) in one folder: two images with the same stem."""
    folder = tmp_path / "images"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.jpg"), np.full((60, 100, 3), (0, 0, 255), np.uint8))
    cv2.imwrite(str(folder / "a.png"), np.full((60, 100, 3), (255, 0, 0), np.uint8))
    return folder


def test_disk_cache_is_full_resolution_per_file_and_only_used_with_cache_disk(tmp_path):
    folder = _flat_dataset(tmp_path)
    small = LoadImagesAndLabels(folder, img_size=64, hyp=NO_AUG, cache_images="disk")
    assert sorted(p.name for p in folder.iterdir()) == ["a.jpg", "a.jpg.npy", "a.png", "a.png.npy"]
    assert np.load(folder / "a.jpg.npy").shape == np.load(folder / "a.png.npy").shape == (60, 100, 3)
    colours = {Path(f).suffix: small.load_image(i)[0][30, 32].tolist() for i, f in enumerate(small.im_files)}
    assert colours[".jpg"][2] > 200 and colours[".png"][0] > 200  # red and blue: no shared a.npy
    assert small.load_image(0)[0].shape == (39, 64, 3)
    large = LoadImagesAndLabels(folder, img_size=128, hyp=NO_AUG, cache_images="disk")
    assert large.load_image(0)[0].shape == (77, 128, 3)  # the same files serve any --imgsz
    np.save(folder / "a.jpg.npy", np.zeros((60, 100, 3), np.uint8))  # a cache file that lies
    os.utime(folder / "a.jpg.npy", ns=(0, (folder / "a.jpg").stat().st_mtime_ns + 10**9))
    plain = LoadImagesAndLabels(folder, img_size=64, hyp=NO_AUG)  # no --cache: .npy files are never read
    assert plain.load_image(plain.im_files.index(str(folder / "a.jpg")))[0][30, 32, 2] > 200


def test_truncated_disk_cache_file_is_rebuilt(tmp_path):
    folder = _flat_dataset(tmp_path)
    LoadImagesAndLabels(folder, img_size=64, hyp=NO_AUG, cache_images="disk")
    npy = folder / "a.jpg.npy"
    npy.write_bytes(npy.read_bytes()[:5000])  # killed mid-write by an older version
    ds = LoadImagesAndLabels(folder, img_size=64, hyp=NO_AUG, cache_images="disk")
    assert np.load(npy).shape == (60, 100, 3) and ds.load_image(0)[0].shape == (39, 64, 3)
    assert not list(folder.glob("*.tmp"))


def test_official_names_import_from_dataloaders_and_labels_never_imports_it():
    """Official YOLOv5 scripts import these from utils.dataloaders: each is the object of its own module. The label
    modules are imported by the loaders, never the reverse (a fresh interpreter shows what they pull in)."""
    for name in ("img2label_paths", "verify_image_label", "exif_size"):
        assert getattr(dl, name) is getattr(utils.labels, name), name
    for name in ("IMG_FORMATS", "VID_FORMATS", "LoadImages", "LoadStreams"):
        assert getattr(dl, name) is getattr(utils.sources, name), name
    for name in ("LoadImagesAndLabels", "create_dataloader", "InfiniteDataLoader", "seed_worker"):
        assert callable(getattr(dl, name)), name
    probe = ("import json, sys, utils.labels, utils.cache_files; "
             "print(json.dumps([m for m in sys.modules if m.startswith('utils.')]))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True,
                         cwd=Path(dl.__file__).parents[1]).stdout
    loaded = json.loads(out.strip().splitlines()[-1])
    assert "utils.labels" in loaded and "utils.dataloaders" not in loaded, loaded


def test_ram_cache_that_does_not_fit_warns_once_and_streams(red_dataset, monkeypatch, caplog):
    """--cache ram needs 1.5x the decoded images free (6 x 39x64x3 = 44,928 bytes -> 67,392): one byte less and it
    warns once, caches nothing and streams the same items from the image files; at exactly that it caches."""
    need = 6 * 39 * 64 * 3
    free = {"bytes": need * 3 // 2 - 1}
    monkeypatch.setattr(dl, "free_memory", lambda: free["bytes"])
    LOGGER.addHandler(caplog.handler)  # the project logger does not propagate to the root logger
    try:
        with caplog.at_level("INFO", logger="yolov5"):
            streamed = LoadImagesAndLabels(red_dataset, img_size=64, hyp=NO_AUG, cache_images="ram")
    finally:
        LOGGER.removeHandler(caplog.handler)
    warnings = [r.message for r in caplog.records if "not caching images in RAM" in r.message]
    assert len(warnings) == 1 and "\n" not in warnings[0] and "use --cache disk or no cache" in warnings[0]
    assert streamed.cache is None and all(im is None for im in streamed.ims)
    plain = LoadImagesAndLabels(red_dataset, img_size=64, hyp=NO_AUG)
    assert all(torch.equal(streamed[i][0], plain[i][0]) for i in range(6))
    free["bytes"] += 1
    cached = LoadImagesAndLabels(red_dataset, img_size=64, hyp=NO_AUG, cache_images="ram")
    assert cached.cache == "ram" and all(im is not None for im in cached.ims)


@pytest.mark.parametrize("limit_file, usage_file, limit, room", [
    ("memory.max", "memory.current", "1000000000", 600_000_000),  # cgroup v2 with a limit
    ("memory.max", "memory.current", "max", None),  # v2, no limit
    ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes", "2000000000", 1_600_000_000),  # v1
    ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes", "9223372036854771712", None),  # v1, none
])
def test_free_memory_counts_the_container_limit(tmp_path, monkeypatch, limit_file, usage_file, limit, room):
    """A container's memory limit caps the free memory the RAM cache may plan with (the host's may be far larger)."""
    (tmp_path / "memory").mkdir()
    (tmp_path / limit_file).write_text(limit + "\n")
    (tmp_path / usage_file).write_text("400000000\n")
    assert dl.cgroup_memory_room(tmp_path) == room
    assert dl.cgroup_memory_room(tmp_path / "absent") is None
    monkeypatch.setattr(dl, "cgroup_memory_room", lambda: room)
    monkeypatch.setattr(os, "sysconf", lambda name: {"SC_PAGE_SIZE": 4096, "SC_AVPHYS_PAGES": 10**6}[name])
    assert dl.free_memory() == min(4096 * 10**6, room if room is not None else 1 << 62)


@pytest.mark.parametrize("batch_size", [1, 3, 7, 64])
def test_rect_batch_shapes_match_a_per_batch_computation(batch_size):
    """The rect batch shapes (one pass over all images) equal the rule applied batch by batch: all images wider
    than tall -> (h_max/w, 1), all taller -> (1, w/h_min), mixed -> square; times img_size over stride, ceiled."""
    rng = np.random.default_rng(batch_size)
    n = 50
    stub = types.SimpleNamespace(n=n, shapes=rng.integers(20, 400, (n, 2)), im_files=[f"{i}.jpg" for i in range(n)],
                                 label_files=[""] * n, labels=[np.zeros((0, 5))] * n, segments=[[]] * n,
                                 img_size=320, stride=32)
    stub.shapes[:3] = 100  # square images too
    LoadImagesAndLabels._sort_for_rect(stub, batch_size, 0.5)
    aspect = stub.shapes[:, 1] / stub.shapes[:, 0]
    assert (np.diff(aspect) >= 0).all()
    for b, start in enumerate(range(0, n, batch_size)):
        ar = aspect[start:start + batch_size]
        rel = (ar.max(), 1) if ar.max() < 1 else (1, 1 / ar.min()) if ar.min() > 1 else (1, 1)
        expected = np.ceil(np.array(rel) * 320 / 32 + 0.5).astype(int) * 32
        assert stub.batch_shapes[b].tolist() == expected.tolist()
        assert (stub.batch[start:start + batch_size] == b).all()
    assert len(stub.batch_shapes) == -(-n // batch_size)
