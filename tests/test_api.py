"""The Python API: AutoShape inputs, Detections results, torch.hub loading from this folder, official import paths.

The random-weight v7.0 fixture gives confidences around 2e-4, so AutoShape runs with conf 1e-5 and a small max_det
(as tests/test_detect.py does) to get a known number of boxes.
"""

import socket
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import detect
from models.autoshape import AutoShape, Detections
from models.backends import DetectMultiBackend
from utils.boxes import xyxy2xywh
from utils.general import ROOT, UserError

FIXTURE = ROOT / "tests" / "fixtures" / "yolov5n-v7.0.pt"
IMAGES = ROOT / "data" / "images"
BUS, ZIDANE = IMAGES / "bus.jpg", IMAGES / "zidane.jpg"
SIZE = 160
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def model():
    m = AutoShape(DetectMultiBackend(FIXTURE), verbose=False)
    m.conf, m.max_det = 1e-5, 3
    return m


@pytest.fixture(scope="module")
def results(model):
    return model([BUS, ZIDANE], size=SIZE)


def rgb(path):
    return np.asarray(Image.open(path).convert("RGB"))


def test_every_input_kind_gives_the_same_boxes(model):
    want = model(str(BUS), size=SIZE).xyxy[0]
    assert len(want) == 3
    for x in (BUS, [str(BUS)], Image.open(BUS), rgb(BUS), [rgb(BUS)]):
        torch.testing.assert_close(model(x, size=SIZE).xyxy[0], want, atol=1.0, rtol=0)  # JPEG decoders may differ
    torch.testing.assert_close(model(rgb(BUS), size=SIZE).xyxy[0],
                               model(np.asarray(Image.open(BUS)), size=SIZE).xyxy[0])


def test_mixed_list_and_batch_shape(model):
    out = model([BUS, Image.open(ZIDANE), rgb(BUS)[:, :, 0]], size=SIZE)  # a grayscale array is accepted too
    assert len(out) == 3 and out.shape == (3, 3, SIZE, SIZE)  # portrait + landscape pad to one square batch
    assert all(len(p) == 3 for p in out.xyxy)


def test_tensor_input_goes_straight_through(model):
    x = torch.rand(2, 3, 64, 96)
    raw = model(x)
    assert isinstance(raw, torch.Tensor) and raw.shape == (2, 3 * (8 * 12 + 4 * 6 + 2 * 3), 85)


def test_boxes_equal_detect_py(model, tmp_path):
    out_dir = detect.run(weights=FIXTURE, source=IMAGES, imgsz=(SIZE, SIZE), conf_thres=1e-5, max_det=3,
                         device="cpu", save_txt=True, save_conf=True, nosave=True, project=tmp_path)
    for image in (BUS, ZIDANE):
        got = model(image, size=SIZE)
        boxes = got.xyxy[0][:, :4]
        assert (boxes != boxes.round()).any()  # AutoShape keeps fractional pixels, as official; detect.py rounds
        h, w = got.ims[0].shape[:2]
        xywhn = torch.cat((xyxy2xywh(boxes.round()) / torch.tensor([w, h, w, h]), got.xyxy[0][:, 4:]), 1)
        rows = torch.cat((xywhn[:, 5:6], xywhn[:, :4], xywhn[:, 4:5]), 1).numpy()
        want = np.loadtxt(out_dir / "labels" / f"{image.stem}.txt", ndmin=2)
        order = lambda a: a[np.lexsort(a.T[::-1])]  # noqa: E731
        np.testing.assert_allclose(order(rows), order(want), atol=1e-5)


def test_pandas_columns_and_values(results):
    frames = results.pandas()
    xyxy, xywh = frames.xyxy[0], frames.xywhn[1]
    assert list(xyxy.columns) == ["xmin", "ymin", "xmax", "ymax", "confidence", "class", "name"]
    assert list(xywh.columns) == ["xcenter", "ycenter", "width", "height", "confidence", "class", "name"]
    assert len(xyxy) == 3 and str(xyxy["class"].dtype) == "int64"
    np.testing.assert_allclose(xyxy[["xmin", "ymin", "xmax", "ymax"]].to_numpy(), results.xyxy[0][:, :4].numpy())
    assert xyxy["name"].tolist() == [results.names[int(c)] for c in results.xyxy[0][:, 5]]
    assert (frames.xyxyn[0][["xmin", "xmax"]].to_numpy() <= 1).all()
    empty = Detections([rgb(BUS)], [torch.zeros((0, 6))], ["e.jpg"], names={0: "a"}).pandas().xyxy[0]
    assert empty.empty and str(empty["confidence"].dtype) == "float64"


def test_box_forms_agree(results):
    h, w = results.ims[0].shape[:2]
    torch.testing.assert_close(results.xyxyn[0][:, :4] * torch.tensor([w, h, w, h]), results.xyxy[0][:, :4])
    torch.testing.assert_close(results.xywh[0][:, 2:4], results.xyxy[0][:, 2:4] - results.xyxy[0][:, :2])


def test_crops_save_print_len_tolist(results, tmp_path):
    crops = results.crop(save=True, save_dir=tmp_path / "exp")
    assert len(crops) == 6 and {"box", "conf", "cls", "label", "im"} <= set(crops[0])
    x1, y1, x2, y2 = (int(v) for v in crops[0]["box"])
    assert crops[0]["im"].ndim == 3 and crops[0]["im"].shape[2] == 3 and crops[0]["im"].shape[0] >= y2 - y1
    assert len(list((tmp_path / "exp" / "crops").rglob("*.jpg"))) >= 2
    assert results.crop(save=False)[0]["im"].shape == crops[0]["im"].shape
    saved = results.save(save_dir=tmp_path / "exp")
    assert saved == tmp_path / "exp2" and sorted(p.name for p in saved.iterdir()) == ["bus.jpg", "zidane.jpg"]
    text = str(results)
    assert "image 1/2: 1080x810 " in text and "image 2/2: 720x1280 " in text and "Speed:" in text
    assert len(results) == 2 and [len(r) for r in results.tolist()] == [1, 1]
    rendered = results.tolist()[0].render()
    assert rendered[0].shape == results.ims[0].shape and not np.array_equal(rendered[0], results.ims[0])


def test_show_without_display_saves(results, tmp_path, monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert results.show(save_dir=tmp_path / "exp") == tmp_path / "exp"
    assert len(list((tmp_path / "exp").glob("*.jpg"))) == 2


@pytest.mark.parametrize("bad, message", [
    ("https://example.com/bus.jpg", "no network"),
    ("missing.jpg", "not a readable image"),
    (np.zeros((4, 4, 5)), "1, 3 or 4 channels"),
    (42, "unsupported type"),
])
def test_bad_inputs_are_user_errors(model, bad, message):
    with pytest.raises(UserError, match=message):
        model(bad)


def test_settable_attributes(model):
    base = model(BUS, size=SIZE).xyxy[0]
    keep = int(base[0, 5])
    model.classes = [keep]
    try:
        assert (model(BUS, size=SIZE).xyxy[0][:, 5] == keep).all()
    finally:
        model.classes = None
    model.max_det = 1
    try:
        assert len(model(BUS, size=SIZE).xyxy[0]) == 1
    finally:
        model.max_det = 3


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError(f"network connection attempted: {args[:2]}")

    monkeypatch.setattr(socket.socket, "connect", lambda self, *a: refuse(*a))
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_torch_hub_load_local(no_network):
    m = torch.hub.load(str(ROOT), "custom", path=str(FIXTURE), source="local", _verbose=False)
    assert isinstance(m, AutoShape) and m.names == DetectMultiBackend(FIXTURE).names
    m.conf, m.max_det = 1e-5, 3
    assert len(m(BUS, size=SIZE).xyxy[0]) == 3
    small = torch.hub.load(str(ROOT), "yolov5n", pretrained=False, classes=3, source="local", _verbose=False)
    assert isinstance(small, AutoShape) and small(torch.zeros(1, 3, 64, 64)).shape[-1] == 8
    bare = torch.hub.load(str(ROOT), "yolov5s", pretrained=False, autoshape=False, source="local",
                          _verbose=False)
    assert sum(p.numel() for p in bare.parameters()) == 7235389  # SPEC: yolov5s, 80 classes
    with pytest.raises(UserError, match=r"yolov5m\.pt' \(YOLOV5_OFFLINE is set, so it is not downloaded\)"):
        torch.hub.load(str(ROOT), "yolov5m", source="local")  # pretrained by default, as official


def test_hub_pretrained_from_a_local_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "yolov5n.pt").write_bytes(FIXTURE.read_bytes())
    import hubconf

    full = hubconf.yolov5n(pretrained=True, _verbose=False)
    assert isinstance(full.model, DetectMultiBackend)
    few = hubconf.yolov5n(pretrained=True, classes=3, autoshape=False, _verbose=False)
    reference = DetectMultiBackend(FIXTURE, fuse=False).model.state_dict()
    k = "model.0.conv.weight"
    torch.testing.assert_close(few.state_dict()[k], reference[k])  # backbone transferred, head re-initialised


def test_official_import_paths_in_a_fresh_interpreter():
    code = (
        "from models.common import DetectMultiBackend, AutoShape, Conv\n"
        "from utils.general import non_max_suppression, scale_boxes, xyxy2xywh, xywh2xyxy, check_img_size\n"
        "from utils.metrics import bbox_iou, box_iou\n"
        "from utils.augmentations import letterbox\n"
        "from utils.torch_utils import select_device\n"
        "import models.backends, models.autoshape, utils.boxes\n"
        "assert DetectMultiBackend is models.backends.DetectMultiBackend and AutoShape is models.autoshape.AutoShape\n"
        "assert non_max_suppression is utils.boxes.non_max_suppression and bbox_iou is utils.boxes.bbox_iou\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_unknown_names_still_raise_attribute_errors():
    import models.common
    import utils.general

    with pytest.raises(AttributeError):
        models.common.NotAModule  # noqa: B018
    with pytest.raises(AttributeError):
        utils.general.not_a_helper  # noqa: B018
