"""Augmentations against hand-computed answers: letterbox geometry, perspective corners, HSV, mixup, copy-paste."""

import cv2
import numpy as np
import pytest

from utils.augmentations import (
    augment_hsv,
    box_candidates,
    copy_paste,
    letterbox,
    mixup,
    random_perspective,
    warp_boxes,
)


class HighRNG:
    """Stand-in random generator: every uniform draw returns its upper bound, beta 0.5, permutations in order."""

    def uniform(self, low=0.0, high=1.0, size=None):
        return high if size is None else np.full(size, high, dtype=float)

    def beta(self, a, b):
        return 0.5

    def permutation(self, n):
        return np.arange(n)


def _rect_image(h, w, box, value=255):
    im = np.zeros((h, w, 3), dtype=np.uint8)
    x1, y1, x2, y2 = box
    im[y1:y2, x1:x2] = value
    return im


def _bright_extent(im, thr=128):
    ys, xs = np.nonzero(im[..., 0] > thr)
    return xs.min(), ys.min(), xs.max() + 1, ys.max() + 1


def test_letterbox_fixed_shape_ratio_and_padding():
    im = np.zeros((100, 150, 3), dtype=np.uint8)
    out, ratio, pad = letterbox(im, 640, auto=False)
    r = 640 / 150  # the long side (width) fills the square
    assert out.shape == (640, 640, 3)
    assert ratio == pytest.approx((r, r))
    assert pad == pytest.approx((0.0, (640 - 427) / 2))  # height 100 * 4.267 = 426.7 -> 427
    assert (out[:106] == 114).all() and (out[-107:] == 114).all() and (out[107:533] == 0).all()


def test_letterbox_auto_pads_to_stride_multiple():
    out, _, pad = letterbox(np.zeros((100, 150, 3), dtype=np.uint8), 640, auto=True, stride=32)
    # 640 - 427 = 213 rows of padding, 213 % 32 = 21 kept: 10 on top, 11 at the bottom
    assert out.shape == (448, 640, 3)
    assert pad == pytest.approx((0.0, 10.5))
    assert (out[:10] == 114).all() and (out[10] == 0).all() and (out[-11:] == 114).all() and (out[-12] == 0).all()


def test_letterbox_keeps_a_sliver_image_one_pixel_wide():
    # 2000x3 at 64: the width 3 * 64 / 2000 = 0.096 rounds to 0, which cv2.resize refuses; it stays 1 px
    out, ratio, pad = letterbox(np.zeros((2000, 3, 3), dtype=np.uint8), 64, auto=False)
    assert out.shape == (64, 64, 3) and ratio == pytest.approx((0.032, 0.032)) and pad == (31.5, 0.0)
    assert (out[:, 31] == 0).all() and (out[:, :31] == 114).all() and (out[:, 32:] == 114).all()


def test_letterbox_no_scaleup_and_scalefill():
    small = np.zeros((100, 150, 3), dtype=np.uint8)
    out, ratio, pad = letterbox(small, 640, auto=False, scaleup=False)
    assert ratio == (1.0, 1.0) and pad == (245.0, 270.0) and out.shape == (640, 640, 3)
    out, ratio, pad = letterbox(small, (320, 480), auto=False, scaleFill=True)
    assert out.shape == (320, 480, 3) and ratio == pytest.approx((480 / 150, 320 / 100)) and pad == (0.0, 0.0)


def test_box_survives_letterbox():
    box = (30, 20, 90, 60)  # x1, y1, x2, y2 in a 100 x 120 image
    out, (rw, rh), (dw, dh) = letterbox(_rect_image(100, 120, box), 256, auto=False)
    expected = np.array(box) * [rw, rh, rw, rh] + [dw, dh, dw, dh]
    assert np.abs(np.array(_bright_extent(out)) - expected).max() <= 1


def test_random_perspective_identity():
    im = _rect_image(60, 80, (10, 10, 30, 50))
    targets = np.array([[2, 10, 10, 30, 50]], dtype=np.float32)
    out, new = random_perspective(im.copy(), targets, degrees=0, translate=0, scale=0, shear=0, perspective=0)
    assert (out == im).all()
    np.testing.assert_allclose(new, targets)


def test_random_perspective_rotation_and_scale_hand_computed():
    # degrees=90 and scale=0.5 with a generator returning upper bounds: rotate +90 deg (counter-clockwise on
    # screen) about the centre (50, 50) and scale by 1.5: x' = 1.5 (y - 50) + 50, y' = -1.5 (x - 50) + 50.
    # Box x 10..30, y 20..60 -> x' 5..65, y' 80..110, clipped to the 100 px image -> 80..100.
    im = _rect_image(100, 100, (10, 20, 30, 60))
    targets = np.array([[1, 10, 20, 30, 60]], dtype=np.float32)
    out, new = random_perspective(im, targets, degrees=90, translate=0, scale=0.5, shear=0, perspective=0,
                                  rng=HighRNG())
    np.testing.assert_allclose(new, [[1, 5, 80, 65, 100]], atol=1e-4)
    assert np.abs(np.array(_bright_extent(out)) - [5, 80, 65, 100]).max() <= 1


def test_random_perspective_drops_boxes_moved_out_and_crops_border():
    # translate=0.4 at its upper bound shifts by +40 px: the second box leaves the 100 px image entirely.
    targets = np.array([[0, 10, 10, 40, 40], [0, 60, 60, 80, 80]], dtype=np.float32)
    _, new = random_perspective(np.zeros((100, 100, 3), np.uint8), targets, degrees=0, translate=0.4, scale=0,
                                shear=0, rng=HighRNG())
    np.testing.assert_allclose(new, [[0, 50, 50, 80, 80]])
    # a negative border crops a 200 px canvas to 100 px around its centre: shift by -50
    targets = np.array([[0, 60, 70, 120, 110]], dtype=np.float32)
    out, new = random_perspective(np.zeros((200, 200, 3), np.uint8), targets, degrees=0, translate=0, scale=0,
                                  shear=0, border=(-50, -50))
    assert out.shape == (100, 100, 3)
    np.testing.assert_allclose(new, [[0, 10, 20, 70, 60]])


def test_warp_boxes_translation_and_box_candidates():
    M = np.array([[1.0, 0, 5], [0, 1, -3], [0, 0, 1]])
    np.testing.assert_allclose(warp_boxes(np.array([[0.0, 10, 20, 30]]), M, 100, 100), [[5, 7, 25, 27]])
    before = np.array([[0, 0, 100, 100], [0, 0, 100, 100], [0, 0, 100, 100], [0, 0, 10, 10]], float).T
    after = np.array([[0, 0, 50, 50], [0, 0, 1.5, 80], [0, 0, 30, 30], [0, 0, 10, 10]], float).T
    # kept: 25% area left; too thin (1.5 px); 9% area < 10%; unchanged
    assert box_candidates(before, after).tolist() == [True, False, False, True]


def test_augment_hsv_value_gain():
    im = np.full((4, 4, 3), 100, dtype=np.uint8)  # grey: hue and saturation 0, value 100
    augment_hsv(im, hgain=0.0, sgain=0.0, vgain=0.2, rng=HighRNG())  # value gain 1 + 0.2
    assert (im == 120).all()
    unchanged = np.full((4, 4, 3), 100, dtype=np.uint8)
    augment_hsv(unchanged, 0, 0, 0)
    assert (unchanged == 100).all()


@pytest.mark.parametrize("seed", range(5))
def test_augment_hsv_equals_a_lookup_per_hsv_channel(seed):
    """The jitter is OpenCV's HSV round trip with one lookup table per channel: hue x gain mod 180, saturation and
    value x gain clipped to 255 (the known answer, computed channel by channel)."""
    rng = np.random.default_rng(seed)
    im = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    original = im.copy()
    gains = np.random.default_rng(seed + 100).uniform(-1, 1, 3) * [0.5, 0.7, 0.9] + 1
    hue, sat, val = cv2.split(cv2.cvtColor(im, cv2.COLOR_BGR2HSV))
    x = np.arange(256)
    tables = ((x * gains[0]) % 180, np.clip(x * gains[1], 0, 255), np.clip(x * gains[2], 0, 255))
    channels = [table.astype(np.uint8)[c] for table, c in zip(tables, (hue, sat, val))]
    expected = cv2.cvtColor(cv2.merge(channels), cv2.COLOR_HSV2BGR)
    augment_hsv(im, 0.5, 0.7, 0.9, rng=np.random.default_rng(seed + 100))
    np.testing.assert_array_equal(im, expected)
    assert (im != original).mean() > 0.5  # the gains really changed the image


def test_mixup_blends_and_concatenates():
    im1, im2 = np.full((8, 8, 3), 100, np.uint8), np.full((8, 8, 3), 200, np.uint8)
    l1, l2 = np.array([[0, 1, 1, 2, 2]], np.float32), np.array([[1, 3, 3, 5, 5]], np.float32)
    out, labels = mixup(im1, l1, im2, l2, rng=HighRNG())
    assert (out == 150).all()
    np.testing.assert_array_equal(labels, np.concatenate((l1, l2)))


def test_copy_paste_mirrors_patch():
    im = np.zeros((50, 100, 3), dtype=np.uint8)
    im[20:40, 10:30] = np.arange(20, dtype=np.uint8)[None, :, None] * 10  # horizontal ramp shows the mirroring
    original = im.copy()
    out, labels = copy_paste(im, np.array([[3, 10, 20, 30, 40]], np.float32), p=1.0, rng=HighRNG())
    np.testing.assert_array_equal(labels, [[3, 10, 20, 30, 40], [3, 70, 20, 90, 40]])
    np.testing.assert_array_equal(out[20:40, 70:90], original[20:40, 10:30][:, ::-1])
    # a spot already covered by another box is left alone
    blocked = np.array([[3, 10, 20, 30, 40], [4, 68, 18, 92, 42]], np.float32)
    _, labels = copy_paste(original.copy(), blocked, p=0.5, rng=HighRNG())
    assert len(labels) == 2
