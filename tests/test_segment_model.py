"""Segmentation model (issue 24): Segment/Proto, SegmentationModel, the -seg yamls (official parameter counts), the
-seg form of every plug-in variant, official v7.0 -seg checkpoints (restricted unpickler, official outputs), and the
backends/export of -seg models."""

import io
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

import models.common
import models.yolo
from models.backends import DetectMultiBackend
from models.experimental import attempt_load
from models.export.pipeline import export_model
from models.yolo import (
    Detect,
    Model,
    Segment,
    SegmentationModel,
    is_segmentation_model,
    load_model_yaml,
    parse_model,
    segmentation_yaml,
)
from utils.checkpoints import load_checkpoint
from utils.general import ROOT, UserError

FIXTURES = Path(__file__).parent / "fixtures"
SEG_CKPT = FIXTURES / "yolov5n-seg-v7.0.pt"  # built by official v7.0 code: tests/fixtures/make_official_seg_fixture.py
OFFICIAL_PARAMS = {"n": 1_991_549, "s": 7_621_277, "m": 21_990_397, "l": 47_924_957, "x": 88_819_517}
VARIANTS = sorted(p.name for p in (ROOT / "models").glob("yolov5s_*.yaml"))


@pytest.mark.parametrize("scale", "nsmlx")
def test_seg_yamls_have_official_parameter_counts(scale):
    with torch.device("meta"):  # counts only: nothing allocated
        layers, _ = parse_model(load_model_yaml(f"yolov5{scale}-seg.yaml"), [3])
    assert sum(p.numel() for p in layers.parameters()) == OFFICIAL_PARAMS[scale]
    head = layers[-1]
    assert isinstance(head, Segment) and head.nm == 32
    assert head.proto.cv1.conv.out_channels == {"n": 64, "s": 128, "m": 192, "l": 256, "x": 320}[scale]  # npr scaled


def test_official_names_and_state_dict_keys():
    assert models.common.Proto is models.yolo.Proto
    model = SegmentationModel("yolov5n-seg.yaml", nc=3)
    keys = list(model.state_dict())
    assert "model.24.proto.cv1.conv.weight" in keys and "model.24.proto.cv3.bn.running_var" in keys
    assert "model.24.m.0.weight" in keys and "model.24.anchors" in keys
    assert model.model[-1].m[0].out_channels == 3 * (5 + 3 + 32)
    assert is_segmentation_model(model) and not is_segmentation_model(Model("yolov5n.yaml", nc=3))


def test_forward_shapes_train_eval_export():
    model = SegmentationModel("yolov5n-seg.yaml", nc=2)
    x = torch.rand(2, 3, 64, 96)
    levels, proto = model.train()(x)
    assert [tuple(t.shape) for t in levels] == [(2, 3, 8, 12, 39), (2, 3, 4, 6, 39), (2, 3, 2, 3, 39)]
    assert tuple(proto.shape) == (2, 32, 16, 24)
    model.eval()
    with torch.no_grad():
        pred, proto_eval, raw = model(x)
        assert tuple(pred.shape) == (2, 3 * (96 + 24 + 6), 39) and len(raw) == 3
        assert proto_eval.shape == proto.shape
        model.model[-1].export = True
        exported = model(x)
    assert isinstance(exported, tuple) and len(exported) == 2
    torch.testing.assert_close(exported[0], pred)
    # coefficients are raw (not sigmoid): decoded columns 0..6 match Detect's decoding of the same raw levels
    assert (pred[..., 4:7] >= 0).all() and (pred[..., 4:7] <= 1).all()
    torch.testing.assert_close(pred[..., 7:], torch.cat([r[..., 7:].reshape(2, -1, 32) for r in raw], 1))


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_plug_in_variant_builds_as_seg(variant):
    """The rule: yolov5<scale>-seg_<Variant>.yaml is yolov5<scale>_<Variant>.yaml with its Detect turned into
    Segment [nc, anchors, 32, 256]; SegmentationModel applies the same switch to a detection yaml."""
    name = variant.replace("yolov5s_", "yolov5n-seg_")
    model = SegmentationModel(name, nc=2)
    assert isinstance(model.model[-1], Segment) and model.yaml_file == name
    with torch.device("meta"):
        detection, _ = parse_model(load_model_yaml(variant.replace("yolov5s_", "yolov5n_")) | {"nc": 2}, [3])
    extra = sum(p.numel() for p in model.parameters()) - sum(p.numel() for p in detection.parameters())
    head = model.model[-1]
    proto = sum(p.numel() for p in head.proto.parameters())
    assert extra == proto + sum(m.in_channels * 3 * 32 + 3 * 32 for m in head.m)  # Proto + 32 coefficients/anchor
    x = torch.rand(1, 3, 64, 64)
    levels, proto_map = model.train()(x)
    assert len(levels) == 3 and tuple(proto_map.shape) == (1, 32, 16, 16)
    with torch.no_grad():
        pred, proto_map, _ = model.eval()(x)
    assert pred.shape[-1] == 5 + 2 + 32 and pred.isfinite().all()


def test_segmentation_yaml_switch_and_errors():
    d = load_model_yaml("yolov5n.yaml")
    seg = segmentation_yaml(d, nm=16, npr=64)
    assert seg["head"][-1][2:] == ["Segment", ["nc", "anchors", 16, 64]] and d["head"][-1][2] == "Detect"
    assert segmentation_yaml(seg) == seg
    assert isinstance(SegmentationModel("yolov5n.yaml", nc=2).model[-1], Segment)
    bad = dict(d, head=d["head"][:-1] + [[-1, 1, "Conv", [8, 1]]])
    with pytest.raises(UserError, match="Detect"):
        segmentation_yaml(bad)
    with pytest.raises(UserError, match="not found"):
        SegmentationModel("yolov5n-seg_NoSuchVariant.yaml")


def test_official_seg_checkpoint_gives_official_outputs():
    io_ref = torch.load(FIXTURES / "yolov5n-seg-v7.0-io.pt", weights_only=True)
    model = attempt_load(SEG_CKPT, fuse=False)
    assert type(model) is SegmentationModel and model.names == {0: "circle", 1: "square", 2: "triangle"}
    with torch.no_grad():
        pred, proto, _ = model(io_ref["input"])
    torch.testing.assert_close(pred, io_ref["pred"], atol=1e-4, rtol=0)
    torch.testing.assert_close(proto, io_ref["proto"], atol=1e-4, rtol=0)
    fused = attempt_load(SEG_CKPT, fuse=True)
    with torch.no_grad():
        pred_fused, proto_fused, _ = fused(io_ref["input"])
    torch.testing.assert_close(pred_fused, io_ref["pred"], atol=1e-3, rtol=0)  # pixels
    torch.testing.assert_close(proto_fused, io_ref["proto"], atol=1e-4, rtol=0)


def _rewrite_pickle(src, dst, old: bytes, new: bytes):
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename.endswith("data.pkl"):
                assert old in data
                data = data.replace(old, new)
            zout.writestr(item, data)


def test_official_seg_pickle_getattr_is_restricted(tmp_path):
    """Official Segment pickles getattr(models.yolo.Detect, 'forward'); any other getattr is refused."""
    ckpt = load_checkpoint(SEG_CKPT)
    head = ckpt["model"].__dict__["_modules"]["model"].__dict__["_modules"]["24"]
    assert type(head).__name__ == "Segment" and head.__dict__["detect"] == "models.yolo.Detect.forward"  # inert
    hostile = tmp_path / "hostile.pt"
    _rewrite_pickle(SEG_CKPT, hostile, b"forward", b"__init_")  # same length: getattr(Detect, '__init_')
    with pytest.raises(UserError, match="does not admit"):
        load_checkpoint(hostile)


def test_detectmultibackend_pt_returns_proto():
    backend = DetectMultiBackend(SEG_CKPT)
    assert backend.segmentation and backend.nc == 3
    pred, proto = backend(torch.rand(1, 3, 64, 64))
    assert pred.shape == (1, 252, 40) and proto.shape == (1, 32, 16, 16)


@pytest.mark.slow
def test_seg_export_parity_torchscript_onnx_openvino(tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("openvino")
    onnx = pytest.importorskip("onnx")
    model = attempt_load(SEG_CKPT, fuse=False)
    im = torch.rand(1, 3, 64, 96)
    files, diffs = export_model(model, im, tmp_path / "seg.pt", include=["torchscript", "onnx", "openvino"])
    assert len(files) == 3 and all(d is not None and d < 1e-3 for d in diffs.values()), diffs
    assert [o.name for o in onnx.load(str(tmp_path / "seg.onnx")).graph.output] == ["output0", "output1"]
    with torch.no_grad():
        ref_pred, ref_proto, _ = model(im)
    for f in files:
        backend = DetectMultiBackend(f)
        pred, proto = backend(im)
        assert backend.segmentation and backend.names == model.names and backend.nc == 3
        torch.testing.assert_close(pred, ref_pred, atol=1e-3, rtol=0)
        torch.testing.assert_close(proto, ref_proto, atol=1e-4, rtol=0)


def test_detection_backends_unchanged(official_ckpt):
    backend = DetectMultiBackend(official_ckpt)
    assert not backend.segmentation
    assert isinstance(backend(torch.rand(1, 3, 64, 64)), torch.Tensor)
    assert not issubclass(Detect, Segment)


def test_pickle_module_paths_in_fixture():
    """The fixture really is a release-style pickle: official module paths, not the pip package's."""
    with zipfile.ZipFile(SEG_CKPT) as z:
        data = z.read(next(n for n in z.namelist() if n.endswith("data.pkl")))
    globals_ = {f"{a} {b}" for op, arg, _ in __import__("pickletools").genops(io.BytesIO(data))
                if op.name == "GLOBAL" for a, b in [arg.split(" ", 1)]}
    assert {"models.yolo SegmentationModel", "models.yolo Segment", "models.common Proto"} <= globals_
    assert not any(g.startswith("yolov5.") for g in globals_)
    assert pickle.HIGHEST_PROTOCOL >= 2


def test_hub_custom_on_seg_checkpoint_returns_masks_in_original_pixels(tmp_path):
    import hubconf

    model = hubconf.custom(SEG_CKPT, _verbose=False)
    model.conf = 1e-4  # random weights: scores around 1e-3
    im = (np.random.default_rng(0).random((50, 90, 3)) * 255).astype(np.uint8)
    results = model([im, im[:30]], size=64)
    assert results.masks is not None and len(results.masks) == 2
    for det, masks, shape in zip(results.xyxy, results.masks, [(50, 90), (30, 90)]):
        assert det.shape[1] == 6 and masks.dtype == torch.bool and tuple(masks.shape) == (len(det), *shape)
        for box, m in zip(det, masks):  # every mask lies inside its box (cropped in original pixels)
            ys, xs = np.nonzero(m.numpy())
            if len(xs):
                assert xs.min() >= int(box[0]) - 1 and xs.max() <= box[2] + 1 and ys.max() <= box[3] + 1
    assert len(results.xyxy[0]) > 0 and results.masks[0].any()
    rendered = results.render()[0]
    assert not np.array_equal(rendered, im)
    assert results.tolist()[1].masks[0] is results.masks[1]
    # detection weights keep masks None
    det_results = hubconf.custom(FIXTURES / "yolov5n-v7.0.pt", _verbose=False)(im, size=64)
    assert det_results.masks is None
