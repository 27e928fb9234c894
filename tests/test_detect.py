"""detect.py, utils/sources.py and the weight loading of models/backends.py, with the random-weight v7.0 fixture.

The fixture's top confidences are about 2e-4 (objectness and class priors of an untrained head), so the tests use
conf_thres 1e-5 and a small max_det to get a known number of boxes per image.
"""

import logging
import os
import re
import shutil
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import detect
from models.backends import newest_trained_weights
from models.experimental import attempt_load
from utils.augmentations import letterbox
from utils.boxes import non_max_suppression, scale_boxes, xyxy2xywh
from utils.detection_output import DetectionWriter, OutputNames
from utils.general import LOGGER, ROOT, UserError
from utils.sources import LoadImages, LoadStreams, is_stream_source, list_source_files

FIXTURE = ROOT / "tests" / "fixtures" / "yolov5n-v7.0.pt"
IMAGES = ROOT / "data" / "images"
CONF = 1e-5
MAX_DET = 3
IMGSZ = (160, 160)
pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny inputs (conftest.py)


def run_detect(tmp_path, **kwargs):
    args = dict(weights=FIXTURE, source=IMAGES, imgsz=IMGSZ, conf_thres=CONF, max_det=MAX_DET, device="cpu",
                project=tmp_path / "runs", name="exp")
    args.update(kwargs)
    return detect.run(**args)


def read_labels(file):
    return np.array([[float(v) for v in line.split()] for line in Path(file).read_text().splitlines()])


def expected_labels(model, image_file, classes=None, max_det=MAX_DET):
    """Reference pipeline written out here: letterbox, RGB 0-1, model, NMS, boxes back to the image, xywhn."""
    im0 = cv2.imread(str(image_file))
    im = letterbox(im0, IMGSZ, stride=32, auto=True)[0][:, :, ::-1].transpose(2, 0, 1).copy()
    x = torch.from_numpy(im).float()[None] / 255
    with torch.no_grad():
        det = non_max_suppression(model(x)[0], CONF, 0.45, classes=classes, max_det=max_det)[0]
    det[:, :4] = scale_boxes(x.shape[2:], det[:, :4], im0.shape).round()
    h, w = im0.shape[:2]
    xywhn = xyxy2xywh(det[:, :4]) / torch.tensor([w, h, w, h])
    return torch.cat((det[:, 5:6], xywhn, det[:, 4:5]), 1).numpy()


def sort_rows(a):
    return a[np.lexsort(a.T[::-1])]


@pytest.fixture(scope="module")
def model():
    return attempt_load(FIXTURE)


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    """A 6-frame 128x96 MJPG clip with a moving white square."""
    file = tmp_path_factory.mktemp("video") / "clip.avi"
    writer = cv2.VideoWriter(str(file), cv2.VideoWriter_fourcc(*"MJPG"), 10, (128, 96))
    for i in range(6):
        frame = np.full((96, 128, 3), 40, np.uint8)
        frame[20:60, 10 + 10 * i : 50 + 10 * i] = 255
        writer.write(frame)
    writer.release()
    assert cv2.VideoCapture(str(file)).get(cv2.CAP_PROP_FRAME_COUNT) == 6
    return file


def test_images_write_annotated_images_labels_and_crops(tmp_path, model):
    save_dir = run_detect(tmp_path, save_txt=True, save_conf=True, save_crop=True)
    assert save_dir == tmp_path / "runs" / "exp"
    for name in ("bus", "zidane"):
        original = cv2.imread(str(IMAGES / f"{name}.jpg"))
        annotated = cv2.imread(str(save_dir / f"{name}.jpg"))
        assert annotated.shape == original.shape
        assert np.abs(annotated.astype(int) - original.astype(int)).max() > 100  # boxes were drawn
        got = read_labels(save_dir / "labels" / f"{name}.txt")
        want = expected_labels(model, IMAGES / f"{name}.jpg")
        assert got.shape == want.shape == (MAX_DET, 6)
        np.testing.assert_allclose(sort_rows(got)[:, :5], sort_rows(want)[:, :5], atol=2e-6)
        np.testing.assert_allclose(sort_rows(got)[:, 5], sort_rows(want)[:, 5], rtol=1e-4)
        crops = list((save_dir / "crops").glob(f"*/{name}*.jpg"))
        assert len(crops) == MAX_DET
    # a second run does not overwrite the first
    assert run_detect(tmp_path, nosave=True) == tmp_path / "runs" / "exp2"
    assert list((tmp_path / "runs" / "exp2").iterdir()) == []


def test_classes_filter_keeps_only_those_classes(tmp_path, model):
    # NMS keeps each box's best class only: filter on classes that win somewhere, other than the strongest one
    found = expected_labels(model, IMAGES / "bus.jpg", max_det=300)[:, 0].astype(int)
    wanted = [int(c) for c in np.unique(found) if c != found[0]][:2]
    assert len(wanted) == 2
    save_dir = run_detect(tmp_path, classes=wanted, save_txt=True, nosave=True)
    got = read_labels(save_dir / "labels" / "bus.txt")
    assert set(got[:, 0].astype(int)) <= set(wanted) and len(got) == MAX_DET
    want = expected_labels(model, IMAGES / "bus.jpg", classes=wanted)
    np.testing.assert_allclose(sort_rows(got), sort_rows(want[:, :5]), atol=2e-6)
    with pytest.raises(UserError, match="classes 0-79"):
        run_detect(tmp_path, classes=[80])


def test_video_writes_annotated_video_and_per_frame_labels(tmp_path, video):
    save_dir = run_detect(tmp_path, source=video, save_txt=True, vid_stride=2)
    assert sorted(p.name for p in (save_dir / "labels").iterdir()) == ["clip_1.txt", "clip_2.txt", "clip_3.txt"]
    assert all(len(read_labels(p)) == MAX_DET for p in (save_dir / "labels").iterdir())
    out = cv2.VideoCapture(str(save_dir / "clip.mp4"))
    frames = []
    while True:
        ok, frame = out.read()
        if not ok:
            break
        frames.append(frame)
    assert len(frames) == 3 and frames[0].shape == (96, 128, 3)


def test_load_images_video_stride_and_frames(video):
    frames = [(im.shape, im0.shape, s) for _, im, im0, cap, s in LoadImages(video, img_size=128, vid_stride=2)]
    assert len(frames) == 3
    assert frames[0][0] == (3, 96, 128) and frames[0][1] == (96, 128, 3)  # letterboxed to a stride-32 rectangle
    assert frames[-1][2].startswith("video 1/1 (3/3)")


def test_load_images_letterbox_is_rgb_chw(tmp_path):
    im0 = np.zeros((40, 80, 3), np.uint8)
    im0[..., 0] = 255  # blue in BGR
    cv2.imwrite(str(tmp_path / "blue.png"), im0)
    path, im, got0, cap, s = next(iter(LoadImages(tmp_path / "blue.png", img_size=64, stride=32, auto=False)))
    assert im.shape == (3, 64, 64) and cap is None and s == f"image 1/1 {tmp_path / 'blue.png'}: "
    assert im[2, 32, 32] == 255 and im[0, 32, 32] == 0  # RGB order: blue is the last channel
    assert im[0, 5, 32] == 114  # grey padding above the 32-pixel-high resized image


def test_load_streams_reads_a_video_as_a_stream(video):
    streams = LoadStreams(str(video), img_size=128, stride=32)
    batches = list(streams)
    assert 1 <= len(batches) <= 6
    sources, im, im0, cap, s = batches[0]
    assert im.shape == (1, 3, 96, 128) and len(im0) == 1 and im0[0].shape == (96, 128, 3)


def test_unreadable_files_in_a_folder_are_skipped(tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    shutil.copy(IMAGES / "zidane.jpg", folder / "a.jpg")
    (folder / "broken.jpg").write_bytes(b"not an image")
    (folder / "broken.mp4").write_bytes(b"not a video")
    (folder / "notes.txt").write_text("ignored")
    dataset = LoadImages(folder, img_size=64)
    assert [Path(p).name for p, *_ in dataset] == ["a.jpg"]
    assert sorted(Path(p).name for p in dataset.skipped) == ["broken.jpg", "broken.mp4"]
    save_dir = run_detect(tmp_path, source=folder)
    assert sorted(p.name for p in save_dir.iterdir()) == ["a.jpg"]


def test_source_lists_globs_and_kinds(tmp_path):
    (tmp_path / "list.txt").write_text(f"{IMAGES / 'bus.jpg'}\nzidane.jpg\n")
    shutil.copy(IMAGES / "zidane.jpg", tmp_path / "zidane.jpg")
    assert [Path(p).name for p in list_source_files(tmp_path / "list.txt")] == ["bus.jpg", "zidane.jpg"]
    assert [Path(p).name for p in list_source_files(str(IMAGES / "*.jpg"))] == ["bus.jpg", "zidane.jpg"]
    assert [is_stream_source(s) for s in ("0", "rtsp://host/live", "http://host/x.mp4", "data/images")] == [
        True, True, True, False]


@pytest.mark.parametrize(
    "source, message",
    [
        ("missing_folder/x.jpg", "no such file or directory"),
        ("data/images/*.png", "matches no files"),
        ("README.md", "unsupported file type"),
        ("https://example.com/bus.jpg", "not downloaded"),
    ],
)
def test_bad_sources_are_user_errors(tmp_path, source, message):
    with pytest.raises(UserError, match=message):
        run_detect(tmp_path, source=ROOT / source if "://" not in source else source)


@pytest.mark.parametrize("flags, message", [
    (dict(imgsz=0), "--img-size [0, 0] must be a positive"),
    (dict(imgsz=(-3, 5)), "--img-size [-3, 5] must be a positive"),
    (dict(conf_thres=2.0), "--conf-thres 2.0 and --iou-thres 0.45 must both be between 0 and 1"),
    (dict(iou_thres=1.5), "--conf-thres 1e-05 and --iou-thres 1.5 must both be between 0 and 1"),
])
def test_out_of_range_flags_are_user_errors(tmp_path, flags, message):
    with pytest.raises(UserError, match=re.escape(message)):
        run_detect(tmp_path, **flags)


def test_all_unreadable_and_cli_errors(tmp_path):
    (tmp_path / "bad.jpg").write_bytes(b"\x00")
    with pytest.raises(UserError, match="could be read"):
        run_detect(tmp_path, source=tmp_path / "bad.jpg")
    assert detect.main(["--weights", str(FIXTURE), "--source", str(tmp_path / "none.jpg")]) == 1
    assert detect.main(["--weights", str(tmp_path / "none.pt")]) == 1


def test_default_weights_are_the_newest_trained(tmp_path):
    with pytest.raises(UserError, match="python train.py"):
        newest_trained_weights(tmp_path)
    old, new = tmp_path / "exp" / "weights" / "best.pt", tmp_path / "exp2" / "weights" / "best.pt"
    for i, f in enumerate((new, old)):
        f.parent.mkdir(parents=True)
        f.write_bytes(b"")
        os.utime(f, (time.time() - 100 * i, time.time() - 100 * i))
    assert newest_trained_weights(tmp_path) == new


def test_exported_onnx_weights_give_the_same_labels(tmp_path):
    import export

    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    weights = tmp_path / "fixture.pt"
    shutil.copy(FIXTURE, weights)
    onnx_file = export.run(weights=weights, imgsz=IMGSZ, include=("onnx",), dynamic=True)[0]
    pt_dir = run_detect(tmp_path, save_txt=True, save_conf=True, nosave=True)
    onnx_dir = run_detect(tmp_path, weights=onnx_file, save_txt=True, save_conf=True, nosave=True)
    for name in ("bus", "zidane"):
        got, want = read_labels(onnx_dir / "labels" / f"{name}.txt"), read_labels(pt_dir / "labels" / f"{name}.txt")
        np.testing.assert_allclose(sort_rows(got)[:, :5], sort_rows(want)[:, :5], atol=1e-4)


def test_augment_runs_tta(tmp_path):
    save_dir = run_detect(tmp_path, source=IMAGES / "bus.jpg", augment=True, save_txt=True, nosave=True)
    assert len(read_labels(save_dir / "labels" / "bus.txt")) == MAX_DET


def test_streams_list_runs_through_detect(tmp_path, video):
    """A .streams file goes to LoadStreams (a video file stands in for a camera): frames, labels, a video out."""
    streams = tmp_path / "cams.streams"
    streams.write_text(f"{video}\n")
    save_dir = run_detect(tmp_path, source=streams, save_txt=True)
    labels = sorted((save_dir / "labels").iterdir())
    assert 1 <= len(labels) <= 6 and all(len(read_labels(p)) == MAX_DET for p in labels)
    assert (save_dir / "clip_0.mp4").stat().st_size > 0


def test_log_has_a_line_per_image_with_class_counts_and_a_summary(tmp_path):
    lines = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())
    level = LOGGER.level
    LOGGER.addHandler(handler)
    LOGGER.setLevel(logging.INFO)  # tests run quiet (conftest); this one reads the log
    try:
        save_dir = run_detect(tmp_path, nosave=True, save_txt=True)
    finally:
        LOGGER.removeHandler(handler)
        LOGGER.setLevel(level)
    log = "\n".join(lines)
    for i, name in enumerate(("bus", "zidane"), 1):
        line = re.search(rf"image {i}/2 \S*{name}\.jpg: (\d+)x(\d+) (.*), ([\d.]+)ms", log)
        assert line, log
        counts = re.findall(r"(\d+) (class\d+)s?", line.group(3))
        labels = read_labels(save_dir / "labels" / f"{name}.txt")
        assert sorted((f"class{c}", n) for c, n in zip(*np.unique(labels[:, 0].astype(int), return_counts=True))) == \
            sorted((c, int(n)) for n, c in counts)
    assert "2 image(s) processed, 2 label file(s) saved" in log and "Results saved to" in log and str(save_dir) in log
    assert re.search(r"Speed: [\d.]+ms pre-process, [\d.]+ms inference, [\d.]+ms NMS per image", log)


def test_sources_sharing_a_file_name_get_unique_outputs(tmp_path, model):
    """a/bus.jpg, b/bus.jpg (really zidane) and c/bus.png: three annotated images and label files, none
    overwritten, each holding its own image's detections."""
    for folder, src, name in (("a", "bus.jpg", "bus.jpg"), ("b", "zidane.jpg", "bus.jpg"), ("c", "bus.jpg", "bus.png")):
        (tmp_path / folder).mkdir()
        cv2.imwrite(str(tmp_path / folder / name), cv2.imread(str(IMAGES / src)))
    (tmp_path / "list.txt").write_text("a/bus.jpg\nb/bus.jpg\nc/bus.png\n")
    save_dir = run_detect(tmp_path, source=tmp_path / "list.txt", save_txt=True)
    assert sorted(p.name for p in save_dir.glob("*.*")) == ["bus.jpg", "bus_2.jpg", "bus_3.png"]
    assert sorted(p.name for p in (save_dir / "labels").iterdir()) == ["bus.txt", "bus_2.txt", "bus_3.txt"]
    zidane = expected_labels(model, tmp_path / "b" / "bus.jpg")
    np.testing.assert_allclose(sort_rows(read_labels(save_dir / "labels" / "bus_2.txt"))[:, :5],
                               sort_rows(zidane)[:, :5], atol=2e-6)
    assert cv2.imread(str(save_dir / "bus_2.jpg")).shape == cv2.imread(str(IMAGES / "zidane.jpg")).shape


def test_output_names_are_stable_per_source_and_unique():
    names = OutputNames()
    assert [names(p) for p in ("a/x.jpg", "b/x.jpg", "x_2.jpg", "a/x.jpg", "c/x.mp4")] == \
        ["x", "x_2", "x_2_2", "x", "x_3"]


def test_detection_writer_writes_each_output_and_leaves_the_image_alone(tmp_path):
    """One box (x 20-60, y 10-50) of class 'b/c' on a flat 200x100 image, written as a still image, as a still image
    without detections from another folder, and as frame 3 of a video."""
    im0 = np.full((100, 200, 3), 40, np.uint8)
    det = torch.tensor([[20.0, 10.0, 60.0, 50.0, 0.9, 1.0]])
    with DetectionWriter(tmp_path, {0: "a", 1: "b/c"}, save_txt=True, save_conf=True, save_crop=True) as writer:
        writer.write("x/img.png", im0, det)
        writer.write("y/img.png", im0, det[:0])
        writer.write("clip.avi", im0, det, frame=3, fps=10.0)
    assert (im0 == 40).all()  # drawn on a copy
    assert writer.labels_saved == 2 and writer.videos.writers == {}
    assert sorted(p.name for p in (tmp_path / "labels").iterdir()) == ["clip_3.txt", "img.txt"]
    assert read_labels(tmp_path / "labels" / "img.txt").tolist() == [[1, 0.2, 0.3, 0.2, 0.4, 0.9]]
    crops = sorted((tmp_path / "crops" / "b_c").iterdir())
    assert [p.name for p in crops] == ["clip_3.jpg", "img.jpg"]
    crop = cv2.imread(str(crops[1]))
    assert crop.shape == (51, 51, 3) and np.abs(crop.astype(int) - 40).max() <= 3  # cut from the unannotated image
    annotated, plain = cv2.imread(str(tmp_path / "img.png")), cv2.imread(str(tmp_path / "img_2.png"))
    assert (annotated != 40).any(axis=2)[10:51, 20:61].any() and (annotated[70:, 100:] == 40).all()
    assert (plain == 40).all()
    video = cv2.VideoCapture(str(tmp_path / "clip.mp4"))
    assert video.read()[0] and not video.read()[0]


def test_three_image_sizes_are_a_user_error(tmp_path):
    with pytest.raises(UserError, match="--imgsz 64 32 16: give one size"):
        run_detect(tmp_path, imgsz=[64, 32, 16])
    assert detect.main(["--weights", str(FIXTURE), "--imgsz", "64", "32", "16"]) == 1


def test_txt_source_lists_naming_themselves_are_user_errors(tmp_path):
    (tmp_path / "self.txt").write_text(f"{IMAGES / 'bus.jpg'}\nself.txt\n")
    with pytest.raises(UserError, match=r"self.txt: the .txt list names itself"):
        list_source_files(tmp_path / "self.txt")
    (tmp_path / "a.txt").write_text("b.txt\n")
    (tmp_path / "b.txt").write_text(f"{IMAGES / 'zidane.jpg'}\na.txt\n")
    with pytest.raises(UserError, match=r"names itself \(.*a.txt -> .*b.txt -> .*a.txt\)"):
        list_source_files(tmp_path / "a.txt")
    (tmp_path / "c.txt").write_text("b2.txt\nb2.txt\n")  # the same list twice is fine
    (tmp_path / "b2.txt").write_text(f"{IMAGES / 'zidane.jpg'}\n")
    assert len(list_source_files(tmp_path / "c.txt")) == 2
