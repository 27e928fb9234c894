"""segment/predict.py and its writer, with the official-format -seg fixture (random weights: scores ~1e-3, so a low
confidence threshold and a small max_det give a known number of instances)."""

import importlib.util
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from utils.general import ROOT, UserError
from utils.masks import polygons_to_mask
from utils.segment_output import SegmentationWriter, polygon_lines

SEG_CKPT = ROOT / "tests" / "fixtures" / "yolov5n-seg-v7.0.pt"
DET_CKPT = ROOT / "tests" / "fixtures" / "yolov5n-v7.0.pt"
IMAGES = ROOT / "data" / "images"
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _script(path):
    spec = importlib.util.spec_from_file_location(f"script_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


predict = _script(ROOT / "segment" / "predict.py")


def parse_polygon_lines(file):
    rows = []
    for line in Path(file).read_text().splitlines():
        values = [float(v) for v in line.split()]
        assert len(values) % 2 == 1 and len(values) >= 7, line  # cls + at least 3 (x, y) points
        assert values[0] == int(values[0])
        rows.append((int(values[0]), np.array(values[1:]).reshape(-1, 2)))
    return rows


def test_predict_writes_images_and_polygon_labels(tmp_path):
    save_dir = predict.run(weights=SEG_CKPT, source=IMAGES, imgsz=96, conf_thres=1e-4, max_det=4, device="cpu",
                           save_txt=True, save_crop=True, project=tmp_path, name="exp")
    assert save_dir == tmp_path / "exp"
    for stem in ("bus", "zidane"):
        original = cv2.imread(str(IMAGES / f"{stem}.jpg"))
        saved = cv2.imread(str(save_dir / f"{stem}.jpg"))
        assert saved.shape == original.shape and not np.array_equal(saved, original)
        rows = parse_polygon_lines(save_dir / "labels" / f"{stem}.txt")
        assert 1 <= len(rows) <= 4
        for cls, points in rows:
            assert 0 <= cls < 3 and (points >= 0).all() and (points <= 1).all()
    assert any((save_dir / "crops").rglob("*.jpg"))


def test_predict_retina_masks_and_polygons_cover_the_same_region(tmp_path):
    common = dict(weights=SEG_CKPT, source=IMAGES / "zidane.jpg", imgsz=96, conf_thres=1e-4, max_det=4,
                  device="cpu", save_txt=True, nosave=True, project=tmp_path)
    plain = predict.run(**common, name="plain")
    retina = predict.run(**common, name="retina", retina_masks=True)
    assert not (plain / "zidane.jpg").exists()  # --nosave
    h, w = cv2.imread(str(IMAGES / "zidane.jpg")).shape[:2]
    a, b = (parse_polygon_lines(d / "labels" / "zidane.txt") for d in (plain, retina))
    assert len(a) >= 1 and [c for c, _ in a] == [c for c, _ in b]
    for (_, pa), (_, pb) in zip(a, b):  # same instance, masks at two resolutions: nearly the same area
        ma, mb = (polygons_to_mask((h, w), [p * [w, h]]) for p in (pa, pb))
        inter, union = np.logical_and(ma, mb).sum(), np.logical_or(ma, mb).sum()
        assert inter / union > 0.8


def test_predict_refuses_detection_weights_and_detect_refuses_seg_weights(tmp_path):
    with pytest.raises(UserError, match="detection model"):
        predict.run(weights=DET_CKPT, source=IMAGES / "bus.jpg", imgsz=64, device="cpu", project=tmp_path)
    detect = _script(ROOT / "detect.py")
    with pytest.raises(UserError, match="segment/predict.py"):
        detect.run(weights=SEG_CKPT, source=IMAGES / "bus.jpg", imgsz=64, device="cpu", project=tmp_path)


def test_writer_draws_masks_under_boxes_and_writes_official_lines(tmp_path):
    im0 = np.zeros((40, 60, 3), dtype=np.uint8)
    det = torch.tensor([[10.0, 5.0, 30.0, 25.0, 0.9, 1.0]])
    masks = torch.zeros(1, 40, 60, dtype=torch.bool)
    masks[0, 10:20, 15:25] = True
    poly = np.array([[0.25, 0.25], [0.4, 0.25], [0.4, 0.5], [0.25, 0.5]], dtype=np.float32)
    with SegmentationWriter(tmp_path, {0: "a", 1: "b"}, save_txt=True, save_conf=True, hide_labels=True,
                            line_thickness=1) as writer:
        writer.write_instances(tmp_path / "src" / "img.png", im0, det, masks, [poly])
    out = cv2.imread(str(tmp_path / "img.png"))
    assert out[15, 20].any() and not out[35, 50].any() and not out[2, 2].any()  # mask coloured, background kept
    assert (tmp_path / "labels" / "img.txt").read_text() == "1 0.25 0.25 0.4 0.25 0.4 0.5 0.25 0.5 0.9\n"
    assert polygon_lines(det, [np.zeros((0, 2))]) == []  # an empty mask gets no line


# official v7.0 segment/predict.py's flags, each with a value where it takes one
SEG_PREDICT_FLAGS = [
    ["--weights", "a.pt", "b.pt"], ["--source", "data/images"], ["--data", "coco128.yaml"], ["--imgsz", "640"],
    ["--img", "640", "480"], ["--img-size", "640"], ["--conf-thres", "0.3"], ["--iou-thres", "0.5"],
    ["--max-det", "10"], ["--device", "cpu"], ["--view-img"], ["--save-txt"], ["--save-conf"], ["--save-crop"],
    ["--nosave"], ["--classes", "0", "2"], ["--agnostic-nms"], ["--augment"], ["--visualize"], ["--update"],
    ["--project", "p"], ["--name", "n"], ["--exist-ok"], ["--line-thickness", "2"], ["--hide-labels"],
    ["--hide-conf"], ["--half"], ["--dnn"], ["--vid-stride", "2"], ["--retina-masks"],
]


def test_every_official_flag_parses():
    for argv in SEG_PREDICT_FLAGS:
        opt = predict.parse_opt(argv)
        key = {"img": "imgsz", "img_size": "imgsz"}.get(argv[0].lstrip("-").replace("-", "_"),
                                                         argv[0].lstrip("-").replace("-", "_"))
        assert hasattr(opt, key), argv
    opt = predict.parse_opt([x for argv in SEG_PREDICT_FLAGS for x in argv])
    assert opt.retina_masks and opt.imgsz == [640, 640] and str(opt.project) == "p"  # the last size flag wins
    assert str(predict.parse_opt([]).project).endswith("runs/predict-seg")


@pytest.mark.slow  # one feature-map figure per layer
def test_visualize_saves_feature_maps(tmp_path):
    save_dir = predict.run(weights=SEG_CKPT, source=IMAGES / "bus.jpg", imgsz=64, conf_thres=1e-4, max_det=1,
                           device="cpu", visualize=True, nosave=True, project=tmp_path)
    assert any((save_dir / "bus").glob("stage*"))
