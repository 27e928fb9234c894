"""Hostile exported models and API inputs, built here byte by byte, are refused before they can do harm: .onnx files
reading files beside them (from any tensor-bearing field), running control flow or making huge tensors; OpenVINO
folders that are not plain IR; class names writing crops outside the run; huge or FIFO images given to AutoShape.
The project's own exports still pass every check."""

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from test_hostile_inputs import png_header, within

import export
import models.autoshape
from models.autoshape import AutoShape, Detections
from models.backends import DetectMultiBackend, export_metadata, openvino_files
from models.export import export_onnx, prepare_model
from models.yolo import Model
from utils.general import ROOT, UserError, safe_filename
from utils.script_check import check_onnx_file, check_openvino_ir

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402

FIXTURE = ROOT / "tests" / "fixtures" / "yolov5n-v7.0.pt"
needs_openvino = pytest.mark.skipif(not __import__("importlib").util.find_spec("openvino"), reason="openvino missing")
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def external(name, location="secret.bin", dims=(1, 3)):
    """A float tensor whose data ONNX Runtime would read from ``location``, relative to the model's folder."""
    t = helper.make_tensor(name, TensorProto.FLOAT, list(dims), [0.0] * int(np.prod(dims)))
    t.ClearField("float_data")
    t.data_location = TensorProto.EXTERNAL
    t.external_data.add(key="location", value=location)
    t.external_data.add(key="length", value=str(4 * int(np.prod(dims))))
    return t


def io(name, dims=(1, 3), dtype=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, dtype, list(dims))


def save_model(path, nodes, initializer=(), inputs=None, outputs=None, **graph_fields):
    graph = helper.make_graph(nodes, "g", inputs or [io("images")], outputs or [io("out")],
                              initializer=list(initializer))
    for field, items in graph_fields.items():
        getattr(graph, field).extend(items)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(path))
    return model


def add_graph(const):
    """A subgraph returning ``const`` (a tensor) through a Constant node."""
    return helper.make_graph([helper.make_node("Constant", [], ["c"], value=const)], "sub", [], [io("c")])


# --- 1. external data in every tensor-bearing field ----------------------------------------------------------------

def sparse(name, location="secret.bin"):
    values = external(f"{name}_values", location, dims=(1,))
    indices = helper.make_tensor(f"{name}_indices", TensorProto.INT64, [1], [0])
    return helper.make_sparse_tensor(values, indices, [1, 3])


def place_dense_initializer(path):
    return save_model(path, [helper.make_node("Add", ["images", "w"], ["out"])], [external("w")])


def place_sparse_initializer(path):
    return save_model(path, [helper.make_node("Add", ["images", "w"], ["out"])], sparse_initializer=[sparse("w")])


def place_tensor_attribute(path):
    return save_model(path, [helper.make_node("Constant", [], ["w"], value=external("w")),
                             helper.make_node("Add", ["images", "w"], ["out"])])


def place_sparse_attribute(path):
    return save_model(path, [helper.make_node("Constant", [], ["w"], sparse_value=sparse("w")),
                             helper.make_node("Add", ["images", "w"], ["out"])])


def place_tensors_list(path):
    node = helper.make_node("Identity", ["images"], ["out"])
    node.attribute.append(helper.make_attribute("extra", [external("w")]))  # type TENSORS
    return save_model(path, [node])


def place_if_branch(path):
    cond = helper.make_tensor("cond", TensorProto.BOOL, [], [True])
    node = helper.make_node("If", ["cond"], ["w"], then_branch=add_graph(external("w")),
                            else_branch=add_graph(helper.make_tensor("z", TensorProto.FLOAT, [1, 3], [0.0] * 3)))
    return save_model(path, [node, helper.make_node("Add", ["images", "w"], ["out"])], [cond])


def place_loop_body(path):
    body = helper.make_graph([helper.make_node("Constant", [], ["c"], value=external("w")),
                              helper.make_node("Identity", ["cond_in"], ["cond_out"])], "body",
                             [io("i", [], TensorProto.INT64), io("cond_in", [], TensorProto.BOOL)],
                             [io("cond_out", [], TensorProto.BOOL), io("c")])
    trips = helper.make_tensor("n", TensorProto.INT64, [], [1])
    loop = helper.make_node("Loop", ["n", ""], ["w"], body=body)
    return save_model(path, [loop, helper.make_node("Add", ["images", "w"], ["out"])], [trips])


def place_nested_function(path):
    model = save_model(path, [helper.make_node("Identity", ["images"], ["out"])])
    function = helper.make_function("x.lib", "Leak", ["x"], ["y"],
                                    [helper.make_node("Constant", [], ["y"], value=external("w"))],
                                    [helper.make_opsetid("", 17)])
    model.functions.append(function)
    onnx.save(model, str(path))
    return model


def place_training_graph(path):
    model = save_model(path, [helper.make_node("Identity", ["images"], ["out"])])
    model.training_info.add().initialization.CopyFrom(
        helper.make_graph([], "init", [], [io("w")], initializer=[external("w")]))
    onnx.save(model, str(path))
    return model


PLACEMENTS = [place_dense_initializer, place_sparse_initializer, place_tensor_attribute, place_sparse_attribute,
              place_tensors_list, place_if_branch, place_loop_body, place_nested_function, place_training_graph]


@pytest.mark.parametrize("place", PLACEMENTS, ids=lambda f: f.__name__[6:])
def test_external_data_anywhere_is_refused_before_onnx_runtime_reads_it(tmp_path, place, monkeypatch):
    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.array([1.5, 2.5, 3.5], dtype=np.float32).tobytes())
    weights = tmp_path / "leak.onnx"
    place(weights)
    ort = pytest.importorskip("onnxruntime")
    monkeypatch.setattr(ort, "InferenceSession", lambda *a, **k: pytest.fail("ONNX Runtime was reached"))
    with pytest.raises(UserError, match=r"stored in an external file") as e:
        DetectMultiBackend(str(weights))
    assert "\n" not in str(e.value)


def test_onnx_runtime_alone_would_read_the_secret(tmp_path):
    """The attack is real: without the check ONNX Runtime reads the file beside the model into the output."""
    ort = pytest.importorskip("onnxruntime")
    (tmp_path / "secret.bin").write_bytes(np.array([1.5, 2.5, 3.5], dtype=np.float32).tobytes())
    place_dense_initializer(tmp_path / "leak.onnx")
    out = ort.InferenceSession(str(tmp_path / "leak.onnx")).run(None, {"images": np.zeros((1, 3), np.float32)})[0]
    assert out.tolist() == [[1.5, 2.5, 3.5]]


# --- 2. control flow and unbounded sizes ---------------------------------------------------------------------------

def int64(name, values):
    return helper.make_tensor(name, TensorProto.INT64, [len(values)], values)


def image_input(dims=(1, 3, 64, 64)):
    return [io("images", dims)]


def constant_of_shape(path):
    save_model(path, [helper.make_node("ConstantOfShape", ["shape"], ["out"])], [int64("shape", [100000, 100000])],
               outputs=[io("out", [100000, 100000])])


def range_of_constants(path):
    scalars = [helper.make_tensor(n, TensorProto.INT64, [], [v]) for n, v in (("a", 0), ("b", 10**10), ("d", 1))]
    save_model(path, [helper.make_node("Range", ["a", "b", "d"], ["out"])], scalars, outputs=[io("out", [None])])


def expand_to_constant(path):
    save_model(path, [helper.make_node("Expand", ["images", "shape"], ["out"])],
               [int64("shape", [1, 3, 100000, 100000])], image_input((1, 3, 1, 1)), [io("out", [1, 3, None, None])])


def resize_by_huge_scales(path):
    scales = helper.make_tensor("scales", TensorProto.FLOAT, [4], [1, 1, 1000, 1000])
    save_model(path, [helper.make_node("Resize", ["images", "", "scales"], ["out"])], [scales], image_input(),
               [io("out", [1, 3, None, None])])


def shape_times_a_million(path):
    """The size is computed from the input's shape at run time, not stored as a constant."""
    save_model(path, [helper.make_node("Shape", ["images"], ["s"]), helper.make_node("Mul", ["s", "k"], ["big"]),
                      helper.make_node("ConstantOfShape", ["big"], ["out"])], [int64("k", [1, 1, 1000, 1000])],
               image_input(), [io("out", [None, None, None, None])])


def size_from_pixel_values(path):
    """The size depends on the image's pixel values: nothing can bound it before running."""
    save_model(path, [helper.make_node("ReduceSum", ["images"], ["sum"], keepdims=0),
                      helper.make_node("Cast", ["sum"], ["n"], to=TensorProto.INT64),
                      helper.make_node("Reshape", ["n", "one"], ["shape"]),
                      helper.make_node("ConstantOfShape", ["shape"], ["out"])], [int64("one", [1])],
               image_input(), [io("out", [None])])


def conv_with_huge_pads(path):
    weight = helper.make_tensor("w", TensorProto.FLOAT, [1, 3, 1, 1], [1.0] * 3)
    save_model(path, [helper.make_node("Conv", ["images", "w"], ["out"], pads=[50000] * 4)], [weight],
               image_input(), [io("out", [1, 1, None, None])])


@pytest.mark.parametrize("build, message", [
    (constant_of_shape, r"ConstantOfShape 'out' of 10,000,000,000 elements"),
    (range_of_constants, r"Range 'out' of 10,000,000,000 elements"),
    (expand_to_constant, r"Expand 'out' of 30,000,000,000 elements"),
    (resize_by_huge_scales, r"Resize 'out' of 12,288,000,000 elements"),
    (shape_times_a_million, r"ConstantOfShape 'out' of 12,288,000,000 elements"),
    (size_from_pixel_values, r"ConstantOfShape 'out' whose size cannot be worked out before running"),
    (conv_with_huge_pads, r"Conv 'out' of 10,012,804,096 elements"),
], ids=lambda x: getattr(x, "__name__", ""))
def test_tensors_larger_than_the_input_justifies_are_refused(tmp_path, build, message):
    weights = tmp_path / "big.onnx"
    build(weights)
    with pytest.raises(UserError, match=message):
        within(60, DetectMultiBackend, str(weights))


@pytest.mark.parametrize("op", ["If", "Loop", "Scan", "RandomNormal", "Tile"])
def test_control_flow_and_other_operators_are_refused(tmp_path, op):
    sub = add_graph(helper.make_tensor("z", TensorProto.FLOAT, [1, 3], [0.0] * 3))
    attrs = {"If": dict(then_branch=sub, else_branch=sub), "Loop": dict(body=sub),
             "Scan": dict(body=sub, num_scan_inputs=1), "RandomNormal": dict(shape=[100000, 100000]), "Tile": {}}[op]
    save_model(tmp_path / "m.onnx", [helper.make_node(op, ["images"], ["out"], **attrs)])
    kind = "control flow " if op in ("If", "Loop", "Scan") else ""
    with pytest.raises(UserError, match=f"{kind}operator {op}"):
        check_onnx_file(tmp_path / "m.onnx")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The fixture exported to ONNX (static and --dynamic) and OpenVINO at 64 px."""
    folder = tmp_path_factory.mktemp("exports")
    shutil.copy(FIXTURE, folder / "w.pt")
    shutil.copy(FIXTURE, folder / "d.pt")
    files = {"onnx": Path(export.run(weights=folder / "w.pt", imgsz=(64, 64), include=("onnx",))[0]),
             "dynamic": Path(export.run(weights=folder / "d.pt", imgsz=(64, 64), include=("onnx",), dynamic=True)[0])}
    if __import__("importlib").util.find_spec("openvino"):
        files["openvino"] = Path(export.run(weights=folder / "w.pt", imgsz=(64, 64), include=("openvino",))[0])
    return files


@pytest.mark.parametrize("yaml_name, dynamic", [("hub/yolov3-tiny.yaml", False), ("hub/yolov5s-transformer.yaml", True),
                                                ("hub/yolov5-p7.yaml", True), ("yolov5s_ScConv.yaml", False)])
def test_project_exports_pass_the_onnx_checks(tmp_path, yaml_name, dynamic):
    """Zero-padding arithmetic (yolov3-tiny), attention, P7 strides and ScConv's group norm, static and dynamic."""
    import yaml

    cfg = yaml.safe_load((ROOT / "models" / yaml_name).read_text())
    cfg.update(depth_multiple=0.33, width_multiple=0.25, nc=3)
    model = prepare_model(Model(cfg))
    im = torch.rand(1, 3, 128, 128)
    metadata = export_metadata(model, (128, 128), dynamic)
    file = export_onnx(model, im, tmp_path / "m.onnx", metadata, dynamic=dynamic)
    backend = DetectMultiBackend(str(file))
    with torch.no_grad():
        expected = model(im)
    expected = expected[0] if isinstance(expected, (list, tuple)) else expected
    torch.testing.assert_close(backend(im), expected, atol=1e-3, rtol=0)


def test_fixture_exports_pass_and_runtime_errors_are_one_line(exported):
    for key in ("onnx", "dynamic"):
        check_onnx_file(exported[key])
    backend = DetectMultiBackend(str(exported["dynamic"]))
    assert backend(torch.zeros(1, 3, 64, 96)).shape[-1] == 85
    with pytest.raises(UserError, match=r"ONNX Runtime could not run \S+\.onnx on a \(1, 4, 64, 64\) input") as e:
        backend(torch.zeros(1, 4, 64, 64))
    assert "\n" not in str(e.value)


# --- 3. OpenVINO folders -------------------------------------------------------------------------------------------

IR = """<?xml version="1.0"?>
<net name="m" version="11">
  <layers>
    <layer id="0" name="x" type="Parameter" version="opset1"><data shape="1,3" element_type="f32"/></layer>
    <layer id="1" name="w" type="Const" version="opset1">
      <data element_type="f32" shape="1,3" offset="0" size="12"/>
    </layer>
    <layer id="2" name="add" type="{op}" version="{version}"><data{attrs}/></layer>
    <layer id="3" name="out" type="Result" version="opset1"/>
  </layers>
</net>
"""


def ir_folder(tmp_path, op="Add", version="opset1", attrs="", text=None, bin_bytes=bytes(12)):
    folder = tmp_path / "m_openvino_model"
    folder.mkdir()
    (folder / "m.xml").write_text(text if text is not None else IR.format(op=op, version=version, attrs=attrs))
    if bin_bytes is not None:
        (folder / "m.bin").write_bytes(bin_bytes)
    return folder


LAUGHS = ('<?xml version="1.0"?>\n<!DOCTYPE net [<!ENTITY a "aaaaaaaaaa">'
          + "".join(f'<!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">' for i in range(8))
          + ']>\n<net name="&i;"><layers/></net>\n')


@pytest.mark.parametrize("change, message", [
    (dict(op="MyCustomOp"), r"uses MyCustomOp \(opset1\)"),
    (dict(version="extension"), r"uses Add \(extension\)"),
    (dict(attrs=' library="libevil.so"'), "refers to an extension library"),
    (dict(text=LAUGHS), "declares a DOCTYPE or entities"),
    (dict(text='<?xml version="1.0"?><graph><layers/></graph>'), r"root element is <graph>"),
    (dict(text="<net><layers>"), "not well-formed XML"),
    (dict(bin_bytes=bytes(4096)), r"holds 4,096 bytes but m.xml addresses 12"),
    (dict(bin_bytes=bytes(4)), r"holds 4 bytes but m.xml addresses 12"),
])
def test_hostile_openvino_xml_is_refused(tmp_path, change, message):
    folder = ir_folder(tmp_path, **change)
    with pytest.raises(UserError, match=message) as e:
        openvino_files(folder)
    assert "\n" not in str(e.value)


def test_openvino_bin_must_be_a_regular_file_in_the_folder(tmp_path):
    outside = tmp_path / "secret.bin"
    outside.write_bytes(bytes(12))
    folder = ir_folder(tmp_path, bin_bytes=None)
    (folder / "m.bin").symlink_to(outside)
    with pytest.raises(UserError, match="must be a regular file inside"):
        openvino_files(folder)
    (folder / "m.bin").unlink()
    (folder / "m.bin").symlink_to("/dev/zero")
    with pytest.raises(UserError, match="no OpenVINO model|must be a regular file inside"):
        openvino_files(folder)
    (folder / "m.bin").unlink()
    if hasattr(os, "mkfifo"):
        os.mkfifo(folder / "m.bin")
        with pytest.raises(UserError, match="no OpenVINO model"):
            within(30, openvino_files, folder)


def test_oversized_openvino_xml_is_refused_unread(tmp_path, monkeypatch):
    import utils.script_check

    folder = ir_folder(tmp_path)
    monkeypatch.setattr(utils.script_check, "MAX_IR_XML_BYTES", 100)
    with pytest.raises(UserError, match="far more than an IR graph needs"):
        openvino_files(folder)


@needs_openvino
def test_onnx_renamed_xml_is_refused_before_openvino_reads_it(tmp_path, exported, monkeypatch):
    folder = tmp_path / "renamed_openvino_model"
    folder.mkdir()
    shutil.copy(exported["onnx"], folder / "model.xml")
    (folder / "model.bin").write_bytes(bytes(16))
    import openvino

    monkeypatch.setattr(openvino.Core, "read_model", lambda *a, **k: pytest.fail("OpenVINO was reached"))
    with pytest.raises(UserError, match=r"not an XML file \(an ONNX or other binary model renamed"):
        DetectMultiBackend(str(folder))
    with pytest.raises(UserError, match="not an XML file"):
        DetectMultiBackend(str(folder / "model.xml"))


@needs_openvino
def test_real_openvino_export_passes(exported):
    folder = exported["openvino"]
    xml = next(folder.glob("*.xml"))
    assert check_openvino_ir(xml, xml.with_suffix(".bin")) is None
    backend = DetectMultiBackend(str(folder))
    assert backend(torch.zeros(1, 3, 64, 64)).shape == (1, 252, 85)


# --- 4. and 5. the Python API --------------------------------------------------------------------------------------

HOSTILE_NAMES = {0: "../../x", 1: "/etc/evil", 2: "..", 3: "a/../../b", 4: ""}


def files_under(folder):
    return {p for p in Path(folder).rglob("*") if p.is_file()}


def test_detections_crop_and_save_stay_in_the_run_folder(tmp_path):
    im = np.full((64, 64, 3), 127, np.uint8)
    pred = torch.tensor([[4.0, 4, 30, 30, 0.9, c] for c in HOSTILE_NAMES])
    before = files_under(tmp_path)
    det = Detections([im], [pred], ["../../evil.jpg"], names=HOSTILE_NAMES)
    run = tmp_path / "runs" / "a" / "b" / "exp"
    assert len(det.crop(save=True, save_dir=run)) == len(HOSTILE_NAMES)
    assert det.save(save_dir=run, exist_ok=True) == run
    new = files_under(tmp_path) - before
    assert len(new) == len(HOSTILE_NAMES) + 1 and all(run in p.parents for p in new)
    assert {p.parent for p in new} == {run} | {run / "crops" / safe_filename(n, default=str(c))
                                               for c, n in HOSTILE_NAMES.items()}
    assert (run / ".._.._evil.jpg").is_file()


@pytest.fixture(scope="module")
def model():
    m = AutoShape(DetectMultiBackend(FIXTURE), verbose=False)
    return m


def refuse_decoding(monkeypatch, folder):
    """Fail the test if any image in ``folder`` reaches the decoder."""
    imread = models.autoshape.cv2.imread

    def guarded(path, *args):
        if Path(path).parent == folder:
            pytest.fail(f"{path} was decoded")
        return imread(path, *args)

    monkeypatch.setattr(models.autoshape.cv2, "imread", guarded)


def test_huge_images_are_refused_from_their_header(tmp_path, model, monkeypatch):
    (tmp_path / "huge.png").write_bytes(png_header(30000, 30000))
    (tmp_path / "big.png").write_bytes(png_header(12000, 12000))
    refuse_decoding(monkeypatch, tmp_path)
    with pytest.raises(UserError, match=r"huge.png: Image size \(900000000 pixels\).*refused before decoding"):
        within(60, model, str(tmp_path / "huge.png"))
    with pytest.raises(UserError, match=r"big.png: 12000x12000 = 144,000,000 pixels, over the limit of 100,000,000"):
        within(60, model, [ROOT / "data" / "images" / "bus.jpg", tmp_path / "big.png"])
    from PIL import Image

    with pytest.warns(Image.DecompressionBombWarning):
        lazy = Image.open(tmp_path / "big.png")  # opened, not decoded
    with pytest.raises(UserError, match="input 0: 12000x12000 = 144,000,000 pixels"):
        within(60, model, lazy)
    monkeypatch.setenv("YOLOV5_MAX_PIXELS", "2e8")  # allowed now: the decoder runs (and finds no pixel data)
    with pytest.raises(pytest.fail.Exception, match="big.png was decoded"):
        model(str(tmp_path / "big.png"))


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_fifo_named_like_an_image_is_refused_without_blocking(tmp_path, model):
    os.mkfifo(tmp_path / "x.jpg")
    with pytest.raises(UserError, match="x.jpg: not a readable image file .*not a regular file"):
        within(30, model, str(tmp_path / "x.jpg"))
    with pytest.raises(UserError, match="not a regular file"):
        within(30, model, [tmp_path])  # a folder


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/x.jpg", "https://example.com/bus.png", "rtsp://h/s"])
def test_urls_are_refused_without_a_connection(model, url, monkeypatch):
    import socket

    monkeypatch.setattr(socket.socket, "connect", lambda *a: pytest.fail("a connection was attempted"))
    with pytest.raises(UserError, match="URLs are not fetched"):
        model(url)
