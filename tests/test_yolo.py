"""Model core: parameter counts, official state-dict layout, yaml errors, strides, fusing, the structure check."""

import copy
import re
import signal
from contextlib import contextmanager

import pytest
import torch

from models.layers import Conv
from models.yolo import Detect, Model, main, parse_model
from utils.general import LOGGER, ROOT, UserError, yaml_load

OFFICIAL_PARAMS = {"n": 1872157, "s": 7235389, "m": 21190557, "l": 46563709, "x": 86749405}


@pytest.fixture(scope="module")
def v5n_dict():
    return yaml_load(ROOT / "models" / "yolov5n.yaml")


@pytest.mark.parametrize("scale", "nsmlx")
def test_parameter_counts_equal_official(scale):
    model = Model(f"yolov5{scale}.yaml")
    assert sum(p.numel() for p in model.parameters()) == OFFICIAL_PARAMS[scale]


def test_state_dict_keys_equal_official(official_io):
    keys = list(Model("yolov5n.yaml").state_dict().keys())
    assert len(keys) == 349
    assert keys == official_io["state_dict_keys"]


def test_scale_letter_rebuilds_another_scale(tmp_path):
    """yolov5m.yaml exists, so the n model is built from its own file; a missing scale file borrows another's."""
    (tmp_path / "yolov5s_Tiny.yaml").write_text((ROOT / "models" / "yolov5s.yaml").read_text())
    n = Model(tmp_path / "yolov5n_Tiny.yaml")
    assert n.yaml["width_multiple"] == 0.25 and n.yaml["depth_multiple"] == 0.33
    assert sum(p.numel() for p in n.parameters()) == OFFICIAL_PARAMS["n"]


def test_strides_and_anchor_grid_units():
    model = Model("yolov5n.yaml")
    detect = model.model[-1]
    assert detect.stride.tolist() == [8.0, 16.0, 32.0]
    assert torch.allclose(detect.anchors[0, 0], torch.tensor([10 / 8, 13 / 8]))
    assert torch.allclose(detect.anchors[2, 2], torch.tensor([373 / 32, 326 / 32]))


def test_rectangular_input_shapes_and_decode():
    model = Model("yolov5n.yaml").eval()
    x = torch.rand(2, 3, 256, 320)
    with torch.no_grad():
        pred, raw = model(x)
    assert [tuple(r.shape) for r in raw] == [(2, 3, 32, 40, 85), (2, 3, 16, 20, 85), (2, 3, 8, 10, 85)]
    assert pred.shape == (2, 3 * (32 * 40 + 16 * 20 + 8 * 10), 85)
    # decode of one cell by hand: level 1, anchor 2, row 5, col 7
    p = raw[1][0, 2, 5, 7].sigmoid()
    detect = model.model[-1]
    xy = (p[:2] * 2 - 0.5 + torch.tensor([7.0, 5.0])) * 16
    wh = (p[2:4] * 2) ** 2 * detect.anchors[1, 2] * 16
    index = 3 * 32 * 40 + 2 * 16 * 20 + 5 * 20 + 7
    assert torch.allclose(pred[0, index, :4], torch.cat((xy, wh)), atol=1e-4)
    assert torch.allclose(pred[0, index, 4:], p[4:], atol=1e-6)


def test_anchor_order_is_corrected_when_reversed(v5n_dict):
    d = copy.deepcopy(v5n_dict)
    d["anchors"] = d["anchors"][::-1]
    detect = Model(d).model[-1]
    areas = detect.anchors.prod(-1).mean(-1) * detect.stride**2
    assert areas[0] < areas[1] < areas[2]


def test_fused_equals_unfused():
    model = Model("yolov5n.yaml")
    for m in model.modules():  # non-trivial BatchNorm statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
    model.eval()
    x = torch.rand(1, 3, 128, 160)
    with torch.no_grad():
        before = model(x)[0]
        after = copy.deepcopy(model).fuse()(x)[0]
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in copy.deepcopy(model).fuse().modules())
    assert (before - after).abs().max() < 1e-3


def test_nc_and_anchor_override():
    model = Model("yolov5n.yaml", nc=3)
    detect = model.model[-1]
    assert detect.nc == 3 and detect.m[0].out_channels == 3 * 8 and len(model.names) == 3


def test_detect_bias_prior():
    detect = Model("yolov5n.yaml").model[-1]
    b = detect.m[0].bias.view(3, -1)
    assert torch.allclose(b[:, 4], torch.full((3,), torch.log(torch.tensor(8 / (640 / 8) ** 2)).item()), atol=0.2)


def _broken(d, where, value):
    d = copy.deepcopy(d)
    section, index, field = where
    d[section][index][field] = value
    return d


@pytest.mark.parametrize(
    "where,value,message",
    [
        (("backbone", 3, 2), "NoSuchBlock", "layer 3: unknown module 'NoSuchBlock'"),
        (("head", 2, 0), [-1, 30], "points to layer 30, which is not before it"),
        (("head", 2, 0), [-1, 12], "points to layer 12, which is not before it"),
        (("head", 2, 0), [-1, -20], "out of range"),
        (("head", 2, 0), [-1, 4], "Concat: inputs from [-1, 4] have different spatial sizes"),
        (("head", 0, 3), "oops", "first argument must be the output channels"),
        (("head", 0, 1), 0, "number of repeats must be a positive integer"),
        (("head", 14, 3), ["nc"], "arguments must be [nc, anchors]"),
    ],
)
def test_malformed_yaml_errors_name_the_layer(v5n_dict, where, value, message):
    with pytest.raises(UserError) as e:
        Model(_broken(v5n_dict, where, value))
    assert message in str(e.value)


@pytest.mark.parametrize(
    "key,value,message",
    [
        ("nc", 0, "'nc' must be a positive integer (the number of classes), got 0"),
        ("nc", "abc", "'nc' must be a positive integer (the number of classes), got 'abc'"),
        ("width_multiple", "x", "'width_multiple' must be a positive number up to 10, got 'x'"),
        ("depth_multiple", -1, "'depth_multiple' must be a positive number up to 10, got -1"),
    ],
)
def test_malformed_scalars_are_user_errors(v5n_dict, key, value, message):
    with pytest.raises(UserError) as e:
        Model({**v5n_dict, key: value})
    assert message in str(e.value)


def test_channel_mismatch_names_the_layer(v5n_dict):
    d = copy.deepcopy(v5n_dict)
    d["backbone"].insert(9, [-1, 1, "nn.Conv2d", [128, 256, 1]])  # input has 256 channels, not 128
    for row in d["head"]:  # keep the head's absolute indices right after the insert
        row[0] = [x + 1 if x > 8 else x for x in row[0]] if isinstance(row[0], list) else row[0]
    with pytest.raises(UserError, match=r"layer 9 nn.Conv2d .* fails on input of shape"):
        Model(d)


def test_wrong_channel_rule_blames_the_layer_itself(v5n_dict):
    """nn.Conv2d has no channel rule: booked as channels-unchanged (256) but it outputs 128. The dry run blames it,
    not the next layer that was built for 256."""
    d = copy.deepcopy(v5n_dict)
    d["backbone"].insert(9, [-1, 1, "nn.Conv2d", [256, 128, 1]])
    for row in d["head"]:
        row[0] = [x + 1 if x > 8 else x for x in row[0]] if isinstance(row[0], list) else row[0]
    with pytest.raises(UserError, match=r"layer 9 nn.Conv2d \(from -1\) outputs 128 channels, .* booked 256"):
        Model(d)


def test_channel_preserving_module_with_wrong_width(v5n_dict):
    d = copy.deepcopy(v5n_dict)
    d["backbone"].insert(9, [-1, 1, "nn.BatchNorm2d", []])
    d["head"] = [[[x + 1 if x > 8 else x for x in r[0]] if isinstance(r[0], list) else r[0], *r[1:]] for r in d["head"]]
    Model(d)  # BatchNorm takes its channels from the input
    d["backbone"][9] = [-1, 1, "FocalModulation", [512]]
    with pytest.raises(UserError, match="layer 9 FocalModulation: keeps channels, but its argument 512 scales to 128"):
        parse_model(d, ch=[3])


def test_unused_layer_is_a_structure_error(v5n_dict):
    """Inserting a layer without shifting the head's indices leaves a layer nobody reads: rejected."""
    d = copy.deepcopy(v5n_dict)
    d["backbone"].insert(9, [-1, 1, "C3", [1024]])
    with pytest.raises(UserError, match="never used by a later layer"):
        parse_model(d, ch=[3])


def test_cli_structure_check(capsys):
    assert main(["--cfg", "yolov5n.yaml", "--img", "128"]) == 0
    assert main(["--cfg", "does_not_exist.yaml"]) == 1


def test_detect_train_mode_returns_raw_maps():
    model = Model("yolov5n.yaml").train()
    out = model(torch.rand(1, 3, 64, 96))
    assert isinstance(out, list) and len(out) == 3 and out[2].shape == (1, 3, 2, 3, 85)
    assert isinstance(model.model[-1], Detect)


def test_augmented_inference_shape():
    model = Model("yolov5n.yaml").eval()
    with torch.no_grad():
        pred, _ = model(torch.rand(1, 3, 128, 128), augment=True)
    assert pred.ndim == 3 and pred.shape[-1] == 85 and pred.shape[1] > 0


@pytest.fixture
def warnings_logged(caplog):
    """The project logger's records (it does not propagate to the root logger)."""
    LOGGER.addHandler(caplog.handler)
    with caplog.at_level("WARNING", logger=LOGGER.name):
        yield caplog
    LOGGER.removeHandler(caplog.handler)


def test_wrong_index_comment_is_a_warning_naming_the_row_and_an_error_with_strict(tmp_path, warnings_logged):
    """As in official yolov5s-transformer.yaml, whose '# 9' sits on layer 8: the model is right, the comment not."""
    text = (ROOT / "models" / "yolov5n.yaml").read_text()
    assert "[-1, 1, SPPF, [1024, 5]],  # 9" in text
    wrong = text.replace("[-1, 1, SPPF, [1024, 5]],  # 9", "[-1, 1, SPPF, [1024, 5]],  # 8")
    (tmp_path / "comment.yaml").write_text(wrong)
    model = Model(tmp_path / "comment.yaml")
    assert sum(p.numel() for p in model.parameters()) == OFFICIAL_PARAMS["n"]
    assert re.search(r"comment.yaml line \d+: layer 9 \(SPPF\) is commented '# 8'", warnings_logged.text)
    assert main(["--cfg", str(tmp_path / "comment.yaml"), "--img", "64"]) == 0
    warnings_logged.clear()
    assert main(["--cfg", str(tmp_path / "comment.yaml"), "--img", "64", "--strict"]) == 1
    assert "ERROR: comment.yaml line" in warnings_logged.text
    assert "layer 9 (SPPF) is commented '# 8'" in warnings_logged.text


def test_stale_index_comments_with_stale_indices_still_fail_the_structure_check(tmp_path, warnings_logged):
    """A row inserted above '# 9' without renumbering: the comments (and the indices) are stale."""
    text = (ROOT / "models" / "yolov5n.yaml").read_text()
    sppf = "   [-1, 1, SPPF, [1024, 5]],  # 9"
    text = text.replace(sppf, "   [-1, 1, C3, [1024]],\n" + sppf)
    (tmp_path / "yolov5n_Inserted.yaml").write_text(text)
    with pytest.raises(UserError, match=r"layer\(s\) 24 \(C3\) is never used"):
        Model(tmp_path / "yolov5n_Inserted.yaml")
    assert "layer 10 (SPPF) is commented '# 9' (and 4 more rows)" in warnings_logged.text


@pytest.mark.parametrize("act,cls,slope", [("nn.LeakyReLU(0.1)", torch.nn.LeakyReLU, 0.1),
                                           ("nn.ReLU()", torch.nn.ReLU, None),
                                           ("nn.LeakyReLU(-2e-1)", torch.nn.LeakyReLU, -0.2)])
def test_activation_key_sets_every_conv_of_that_model_only(v5n_dict, act, cls, slope):
    model = Model({**v5n_dict, "activation": act})
    convs = [m for m in model.modules() if isinstance(m, Conv)]
    assert len(convs) == 57 and all(isinstance(m.act, cls) for m in convs)
    if slope is not None:
        assert convs[0].act.negative_slope == pytest.approx(slope)
    assert sum(p.numel() for p in model.parameters()) == OFFICIAL_PARAMS["n"]  # parameter-free activations
    assert all(isinstance(m.act, torch.nn.SiLU) for m in Model(v5n_dict).modules() if isinstance(m, Conv))
    assert isinstance(Conv.default_act, torch.nn.SiLU) and isinstance(Conv(3, 4).act, torch.nn.SiLU)


@pytest.mark.parametrize("act", ["eval('1')", "nn.LeakyReLU(__import__('os'))", "nn.Linear(3, 4)", "nn.PReLU()",
                                 "nn.LeakyReLU(0.1); import os", "nn.NoSuchAct()", 0.1, "nn.Softmax(dim=1)"])
def test_activation_key_is_parsed_without_eval(v5n_dict, act):
    with pytest.raises(UserError, match="'activation' must be a torch activation"):
        Model({**v5n_dict, "activation": act})
    assert isinstance(Conv.default_act, torch.nn.SiLU)  # restored after a failure too


def test_unknown_yaml_keys_are_a_warning(v5n_dict, warnings_logged):
    Model({**v5n_dict, "depth_multiplier": 0.5, "activations": "nn.ReLU()"})
    assert "unknown key(s) depth_multiplier, activations ignored" in warnings_logged.text
    warnings_logged.clear()
    Model(v5n_dict)
    assert "unknown key" not in warnings_logged.text


@contextmanager
def time_limit(seconds):
    """Fail instead of hanging (SIGALRM interrupts the Python loops that build modules)."""
    def fail(*_):
        raise TimeoutError(f"took more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, fail)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _row(d, index, row):
    d = copy.deepcopy(d)
    d["backbone"][index] = row
    return d


@pytest.mark.parametrize(
    "change,message",
    [
        (dict(depth_multiple=1e5), "'depth_multiple' must be a positive number up to 10, got 100000.0"),
        (dict(width_multiple=1e5), "'width_multiple' must be a positive number up to 10, got 100000.0"),
        (dict(width_multiple=float("nan")), "'width_multiple' must be a positive number up to 10, got nan"),
        (dict(nc=10**9), "'nc' is 1000000000; at most 10000 classes"),
        (dict(anchors=10**6), "'anchors' must be a count from 1 to 16"),
        (dict(anchors=[[10, 13, 16]]), "'anchors' must be a count from 1 to 16"),
        (dict(ch=10**7), "input channels must be integers from 1 to 8192, got [10000000]"),
        (dict(head={"a": 1}), "'backbone' and 'head' must be lists"),
        (dict(head=[[-1, 1, "Conv", [8]]] * 2000), "at most 1000"),
        (dict(row=[-1, 10**8, "C3", [128]]), "layer 2 C3: 33000000 repeats (after depth_multiple); at most 100"),
        (dict(row=[-1, 1, "Conv", [10**9, 3]]), "layer 2 Conv: argument 1000000000 is out of range"),
        (dict(row=[-1, 1, "Conv", [128, 10**6]]), "layer 2 Conv: argument 1000000 is out of range"),
        (dict(row=[-1, 1, "SPP", [128, [5, 10**6]]]), "layer 2 SPP: argument 1000000 is out of range"),
        (dict(width_multiple=8, row=[-1, 1, "Conv", [2048]]), "layer 2 Conv: 16384 output channels (after width"),
    ],
)
def test_hostile_yaml_numbers_fail_fast(v5n_dict, change, message):
    """Each of these would allocate for minutes to hours (or forever) without the bounds."""
    change = dict(change)
    d = _row(v5n_dict, 2, change.pop("row")) if "row" in change else v5n_dict
    with time_limit(20), pytest.raises(UserError) as e:
        Model({**d, **change})
    assert message in str(e.value)


def test_module_value_error_becomes_a_user_error_naming_the_layer(v5n_dict):
    with pytest.raises(UserError,
                       match=r"layer 2 ACConv: cannot build with arguments \[32, 32, 2\]: ACConv needs an odd"):
        Model(_row(v5n_dict, 2, [-1, 1, "ACConv", [128, 2]]))
