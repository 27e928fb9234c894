"""The official model zoo: every official v7.0 detection yaml builds with the official parameter count, its levels
and strides are right, and official-format checkpoints of a P6 and a ghost model load strictly and reproduce the
outputs of the model that was saved."""

import pickle
import pickletools
import zipfile
from copy import deepcopy

import pytest
import torch
import torch.nn as nn

import models.common
import models.yolo
from models.common import Conv
from models.experimental import attempt_load
from models.yolo import Detect, Model, load_model_yaml, parse_model
from utils.general import ROOT, yaml_load

# Official YOLOv5 v7.0 parameter counts at nc=80 (SPEC.md), by yaml path under models/
OFFICIAL_PARAMS = {
    "yolov5n.yaml": 1872157,
    "yolov5s.yaml": 7235389,
    "yolov5m.yaml": 21190557,
    "yolov5l.yaml": 46563709,
    "yolov5x.yaml": 86749405,
    "hub/yolov3-spp.yaml": 62998749,
    "hub/yolov3-tiny.yaml": 8852366,
    "hub/yolov3.yaml": 61949149,
    "hub/yolov5-bifpn.yaml": 46825853,
    "hub/yolov5-fpn.yaml": 41117565,
    "hub/yolov5-p2.yaml": 47493372,
    "hub/yolov5-p34.yaml": 5331518,
    "hub/yolov5-p6.yaml": 76770172,
    "hub/yolov5-p7.yaml": 144281723,
    "hub/yolov5-panet.yaml": 46563709,
    "hub/yolov5l6.yaml": 76770172,
    "hub/yolov5m6.yaml": 35731932,
    "hub/yolov5n6.yaml": 3246940,
    "hub/yolov5s-LeakyReLU.yaml": 7235389,
    "hub/yolov5s-ghost.yaml": 3897605,
    "hub/yolov5s-transformer.yaml": 7235645,
    "hub/yolov5s6.yaml": 12626620,
    "hub/yolov5x6.yaml": 140794780,
}
# detection strides of each hub layout (the scale variants share their layout's)
STRIDES = {
    "yolov3-tiny": [16, 32],
    "yolov5-p34": [8, 16],
    "yolov5-p2": [4, 8, 16, 32],
    "yolov5-p6": [8, 16, 32, 64],
    "yolov5n6": [8, 16, 32, 64],
    "yolov5-p7": [8, 16, 32, 64, 128],
}


def test_every_hub_yaml_is_in_the_table():
    shipped = {f"hub/{p.name}" for p in (ROOT / "models" / "hub").glob("*.yaml")} - {"hub/anchors.yaml"}
    assert shipped == {k for k in OFFICIAL_PARAMS if k.startswith("hub/")}


@pytest.mark.parametrize("cfg", sorted(OFFICIAL_PARAMS))
def test_official_parameter_count(cfg):
    """Built on the meta device: shapes and parameter counts without allocating or initialising weights."""
    with torch.device("meta"):
        layers, _ = parse_model(load_model_yaml(ROOT / "models" / cfg), ch=[3])
    assert sum(p.numel() for p in layers.parameters()) == OFFICIAL_PARAMS[cfg]


@pytest.mark.parametrize("name", sorted(STRIDES) + ["yolov3", "yolov5-bifpn"])
def test_levels_strides_and_forward_at_small_width(name):
    """The full Model (dry run, strides, anchors) at width 0.125 and depth 0.33, so that even P7 builds fast.
    (yolov3's '-2' rows and bifpn's three-way Concat need the dry run; ghost and transformer build below.)"""
    d = load_model_yaml(ROOT / "models" / "hub" / f"{name}.yaml")
    d["depth_multiple"], d["width_multiple"] = 0.33, 0.125
    model = Model(d).eval()
    strides = STRIDES.get(name, [8, 16, 32])
    assert model.stride.tolist() == strides
    detect = model.model[-1]
    assert isinstance(detect, Detect) and detect.nl == len(strides) and detect.anchors.shape == (len(strides), 3, 2)
    g = max(strides[-1], 32)  # the backbones of P3-P4 and P4-P5 models still downsample to 32
    h, w = g, 2 * g
    with torch.no_grad():
        pred, raw = model(torch.rand(1, 3, h, w))
    assert pred.shape == (1, 3 * sum((h // s) * (w // s) for s in strides), 85)
    assert [tuple(r.shape[2:4]) for r in raw] == [(h // s, w // s) for s in strides]


def test_anchor_sets_and_the_p6_yamls_use_the_p6_1280_set():
    sets = yaml_load(ROOT / "models" / "hub" / "anchors.yaml")
    assert list(sets) == ["anchors_p5_640"] + [f"anchors_p{p}_{s}" for p in (6, 7) for s in (640, 1280, 1920)]
    for name, levels in sets.items():
        assert len(levels) == int(name[9]) - 2 and all(len(pairs) == 6 for pairs in levels)
        areas = [sum(lv[0::2][i] * lv[1::2][i] for i in range(3)) for lv in levels]
        assert areas == sorted(areas), f"{name}: levels must go from small to large anchors"
    for letter in "nsmlx":
        assert yaml_load(ROOT / "models" / "hub" / f"yolov5{letter}6.yaml")["anchors"] == sets["anchors_p6_1280"]
    assert sets["anchors_p5_640"] == yaml_load(ROOT / "models" / "yolov5s.yaml")["anchors"]


# --- official-format checkpoints -------------------------------------------------------------------------------

def official_name(cls):
    """(module, name) under which official YOLOv5 v7.0 pickles a class of this project."""
    if cls is Model:
        return "models.yolo", "DetectionModel"
    if cls is Detect:
        return "models.yolo", "Detect"
    if cls.__module__.startswith("models."):
        assert getattr(models.common, cls.__name__) is cls, f"{cls} is not re-exported by models.common"
        return ("models.experimental" if cls.__name__ == "MixConv2d" else "models.common"), cls.__name__
    return None


class OfficialNamesPickler(pickle._Pickler):  # the pure-Python pickler, whose save_global can be overridden
    """Pickles the project's classes under the names official YOLOv5 uses (models.common.GhostConv, ...)."""

    def save_global(self, obj, name=None):
        official = official_name(obj) if isinstance(obj, type) else None
        if official is None:
            return super().save_global(obj, name)
        self.write(pickle.GLOBAL + f"{official[0]}\n{official[1]}\n".encode())
        self.memoize(obj)


class OfficialPickleModule:
    """The ``pickle_module`` torch.save takes: pickle with OfficialNamesPickler."""

    Pickler = OfficialNamesPickler
    Unpickler = pickle.Unpickler
    __name__ = "pickle"


def save_official(model, path):
    """Write ``model`` as an official released checkpoint: the whole module in fp16, stripped of EMA/optimizer."""
    ckpt = {"epoch": -1, "best_fitness": None, "model": deepcopy(model).half(), "ema": None, "updates": None,
            "optimizer": None, "opt": {}, "git": None, "date": "2022-11-22T00:00:00"}
    torch.save(ckpt, path, pickle_module=OfficialPickleModule, pickle_protocol=2)
    return path


def pickled_globals(path):
    """The 'module.name' globals a torch.save file's pickle refers to."""
    with zipfile.ZipFile(path) as z:
        data = z.read(next(n for n in z.namelist() if n.endswith("/data.pkl")))
    return {arg.replace(" ", ".") for op, arg, _ in pickletools.genops(data) if op.name == "GLOBAL"}


def randomize_batchnorm(model):
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)


@pytest.mark.parametrize(
    "cfg, scale, classes",
    [
        ("hub/yolov5n6.yaml", (0.33, 0.125), ["models.common.C3", "models.common.SPPF"]),
        ("hub/yolov5s-ghost.yaml", (0.33, 0.125), ["models.common.GhostConv", "models.common.C3Ghost"]),
        ("hub/yolov5s-transformer.yaml", (0.33, 0.125),
         ["models.common.C3TR", "torch.nn.modules.activation.MultiheadAttention"]),
    ],
)
def test_official_format_checkpoint_loads_strictly_and_matches(tmp_path, cfg, scale, classes):
    torch.manual_seed(0)
    d = load_model_yaml(ROOT / "models" / cfg)
    d["depth_multiple"], d["width_multiple"] = scale  # narrower than the official scales: the same code, faster
    model = Model(d, nc=3)
    model.names = {0: "cat", 1: "dog", 2: "bird"}
    randomize_batchnorm(model)
    path = save_official(model.eval(), tmp_path / "official.pt")
    names = pickled_globals(path)
    assert {"models.yolo.DetectionModel", "models.yolo.Detect", "models.common.Conv", *classes} <= names
    assert not any(n.startswith(("models.layers", "models.ghost", "models.transformer")) for n in names)
    with pytest.raises(pickle.UnpicklingError):  # a real pickle of modules: plain weights_only refuses it
        torch.load(path, weights_only=True)

    reference = deepcopy(model).half().float().eval()  # what the fp16 file holds
    x = torch.rand(1, 3, 64, 128)
    with torch.no_grad():
        expected = reference(x)[0]
        loaded = attempt_load(path, fuse=False)  # the restricted unpickler, then a strict state-dict load
        assert loaded.names == model.names and loaded.nc == 3
        assert loaded.stride.tolist() == model.stride.tolist()
        assert loaded.state_dict().keys() == model.state_dict().keys()
        torch.testing.assert_close(loaded(x)[0], expected, atol=1e-4, rtol=1e-4)
        loaded.fuse(verbose=False)  # what attempt_load(fuse=True) does, without building the model again
        torch.testing.assert_close(loaded(x)[0], expected, atol=2e-3, rtol=1e-3)


def test_leaky_relu_yaml_sets_every_conv_activation():
    d = load_model_yaml(ROOT / "models" / "hub" / "yolov5s-LeakyReLU.yaml")
    d["depth_multiple"], d["width_multiple"] = 0.33, 0.125
    model = Model(d)
    acts = [m.act for m in model.modules() if isinstance(m, Conv)]
    assert len(acts) == 57 and all(isinstance(a, nn.LeakyReLU) and a.negative_slope == 0.1 for a in acts)
    assert not any(isinstance(m, nn.SiLU) for m in model.modules())
