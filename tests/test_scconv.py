"""SCConv: SRU gating as in the paper (informative branch non-zero), CRU fuse, every scale, yamls and the seed's
wrongly shifted "ScConv before SPPF" yaml."""

import pytest
import torch
import torch.nn.functional as F
import yaml

from models.common import CRU, SRU, C3_ScConv, ScConv
from models.yolo import SCALES, Model, check_index_comments, main
from utils.general import ROOT, UserError, make_divisible, yaml_load

YAML_PARAMS = {  # nc=80
    "yolov5s_ScConv.yaml": 7712061,
    "yolov5s_ScConvLast.yaml": 6529341,
    "yolov5s_C3ScConv.yaml": 5381149,
}


def sru_reference(x, gamma, beta, groups, threshold=0.5):
    """SRU written out from the paper's equations."""
    gn = F.group_norm(x, groups, gamma, beta, eps=1e-5)
    r = torch.sigmoid(gn * (gamma / gamma.sum()).view(1, -1, 1, 1))
    w1 = torch.where(r > threshold, 1.0, r)
    w2 = torch.where(r > threshold, 0.0, r)
    x1, x2 = w1 * x, w2 * x
    c = x.shape[1] // 2
    return torch.cat((x1[:, :c] + x2[:, c:], x1[:, c:] + x2[:, :c]), 1)


def test_sru_known_answer():
    """Two channels, one group each: the positive position is informative (weight 1), the negative one gets r."""
    m = SRU(2)
    assert m.gn.num_groups == 2
    x = torch.tensor([[[[1.0, -1.0]], [[2.0, -2.0]]]])  # (1, 2, 1, 2); normalised, both channels are [1, -1]
    r_low = torch.sigmoid(torch.tensor(-0.5)).item()  # w = gamma / sum(gamma) = 1/2
    expected = torch.tensor([[[[1.0 + 0.0 * 2.0, -r_low - 2 * r_low]], [[2.0 + 0.0 * 1.0, -2 * r_low - r_low]]]])
    torch.testing.assert_close(m(x), expected, atol=1e-5, rtol=1e-5)


def test_sru_matches_paper_equations_with_trained_like_gamma():
    torch.manual_seed(0)
    m = SRU(32)
    with torch.no_grad():
        m.gn.weight.uniform_(0.2, 3.0)
        m.gn.bias.uniform_(-0.5, 0.5)
    x = torch.randn(2, 32, 7, 5)
    torch.testing.assert_close(m(x), sru_reference(x, m.gn.weight, m.gn.bias, m.gn.num_groups))


def test_sru_informative_branch_is_not_zero():
    """The seed gated on softmax(gamma) > 0.5, never true for C > 2, so its informative part X1 was always zero."""
    torch.manual_seed(0)
    m = SRU(64)
    x = torch.randn(1, 64, 8, 8)
    assert (torch.softmax(m.gn.weight, 0) <= 0.5).all()  # the seed's mask: empty
    w1, w2 = m.gate_weights(x)
    informative = w1 == 1
    assert 0.2 < informative.float().mean() < 0.8  # about half the positions: GN output > 0
    assert (w1 * x).abs().sum() > 0
    assert (w2[informative] == 0).all() and torch.equal(w1[~informative], w2[~informative])


def test_sru_export_gate_is_the_comparison_bit_for_bit():
    """Exported (NCNN has no comparison layer) the mask r > t is ceil(clamp(r - t, 0, 1)): the same weights at the
    threshold itself, at the floats either side of it, at 0 and 1, and on random values."""
    t = 0.5
    near = [t, torch.nextafter(torch.tensor(t), torch.tensor(1.0)).item(),
            torch.nextafter(torch.tensor(t), torch.tensor(0.0)).item(), 0.0, 1.0]
    torch.manual_seed(0)
    r = torch.cat((torch.tensor(near), torch.rand(10000)))
    w1, w2 = SRU(16, gate_threshold=t).gate_weights_export(r)
    assert torch.equal(w1, torch.where(r > t, 1.0, r)) and torch.equal(w2, torch.where(r > t, 0.0, r))
    assert w1[:3].tolist() == [t, 1.0, near[2]] and w2[:3].tolist() == [t, 0.0, near[2]]


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
def test_scconv_export_form_has_no_comparison_or_unbind_and_same_numbers():
    torch.manual_seed(0)
    m = ScConv(32).eval()
    with torch.no_grad():
        m.sru.gn.weight.uniform_(0.2, 3.0)
    x = torch.randn(2, 32, 6, 5)
    with torch.no_grad():
        expected = m(x)
        traced = torch.jit.trace(m, x)
        got = traced(x)
    graph = str(traced.inlined_graph)
    assert "aten::ceil" in graph and "aten::gt" not in graph and "aten::unbind" not in graph
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-5)


def test_cru_fuse_is_a_per_channel_softmax_of_the_two_branches():
    a = torch.tensor([0.5, -1.0, 2.0]).view(1, 3, 1, 1)
    b = torch.tensor([1.5, 3.0, -2.0]).view(1, 3, 1, 1)
    y1, y2 = a.expand(1, 3, 4, 6), b.expand(1, 3, 4, 6)
    expected = (a.exp() * a + b.exp() * b) / (a.exp() + b.exp())
    torch.testing.assert_close(CRU.fuse_branches(y1, y2), expected.expand(1, 3, 4, 6))


def test_cru_parameter_count_by_hand():
    # c=32: squeeze 16->8 twice, group-wise 3x3 8->32 (2 groups, bias), point-wise 8->32, point-wise 8->24
    assert sum(p.numel() for p in CRU(32).parameters()) == 2 * 16 * 8 + (4 * 32 * 9 + 32) + 8 * 32 + 8 * 24


def test_c3_scconv_holds_n_scconv_blocks():
    m = C3_ScConv(32, 64, n=3, shortcut=False)
    assert len(m.m) == 3 and all(isinstance(b, ScConv) for b in m.m)
    assert m(torch.randn(1, 32, 5, 6)).shape == (1, 64, 5, 6)


@pytest.mark.parametrize("scale", "nsmlx")
def test_groupnorm_divides_channels_at_every_scale(scale):
    """Every channel count the three ScConv yamls produce: ScConv on 1024 * w, C3_ScConv blocks on c2 / 2."""
    width = SCALES[scale][1]
    for c in (128, 256, 512, 1024):
        c2 = make_divisible(c * width, 8)
        for channels in {c2, int(c2 * 0.5)}:
            m = ScConv(channels).eval()
            assert channels % m.sru.gn.num_groups == 0
            assert m(torch.randn(1, channels, 3, 5)).shape == (1, channels, 3, 5)


def test_bad_channel_counts_are_clear_errors():
    with pytest.raises(ValueError, match="divisible by 2"):
        SRU(7)
    with pytest.raises(ValueError, match="CRU"):
        CRU(6)  # upper part 3 is not divisible by the squeeze ratio 2


@pytest.mark.parametrize("name", sorted(YAML_PARAMS))
def test_yaml_param_counts(name):
    assert sum(p.numel() for p in Model(name).parameters()) == YAML_PARAMS[name]


def drop_layer(d, index):
    """Model dict with layer ``index`` removed and the absolute 'from' indices after it shifted back."""
    rows = d["backbone"] + d["head"]
    out = []
    for i, (f, n, m, args) in enumerate(rows):
        if i == index:
            continue
        fs = [x - 1 if x > index else x for x in ([f] if isinstance(f, int) else f)]
        out.append([fs[0] if isinstance(f, int) else fs, n, m, args])
    nb = len(d["backbone"]) - (index < len(d["backbone"]))
    return out[:nb], out[nb:]


def test_scconv_before_sppf_is_stock_yolov5s_plus_one_layer():
    """Removing the inserted ScConv (layer 9) and shifting indices back gives exactly yolov5s: every later index in
    models/yolov5s_ScConv.yaml is shifted correctly."""
    variant, stock = yaml_load(ROOT / "models" / "yolov5s_ScConv.yaml"), yaml_load(ROOT / "models" / "yolov5s.yaml")
    assert variant["backbone"][9][2] == "ScConv"
    assert drop_layer(variant, 9) == (stock["backbone"], stock["head"])


SEED_SCCONV_BEFORE_SPPF = """
nc: 80
depth_multiple: 0.33
width_multiple: 0.50
anchors:
  - [10,13, 16,30, 33,23]
  - [30,61, 62,45, 59,119]
  - [116,90, 156,198, 373,326]
backbone:
  [[-1, 1, Conv, [64, 6, 2, 2]],  # 0-P1/2
   [-1, 1, Conv, [128, 3, 2]],  # 1-P2/4
   [-1, 3, C3, [128]],
   [-1, 1, Conv, [256, 3, 2]],  # 3-P3/8
   [-1, 6, C3, [256]],
   [-1, 1, Conv, [512, 3, 2]],  # 5-P4/16
   [-1, 9, C3, [512]],
   [-1, 1, Conv, [1024, 3, 2]],  # 7-P5/32
   [-1, 3, C3, [1024]],
   [-1, 3, ScConv, [1024]],
   [-1, 1, SPPF, [1024, 5]],  # 9
  ]
head:
  [[-1, 1, Conv, [512, 1, 1]],
   [-1, 1, nn.Upsample, [None, 2, 'nearest']],
   [[-1, 6], 1, Concat, [1]],  # cat backbone P4
   [-1, 3, C3, [512]],  # 13
   [-1, 1, Conv, [256, 1, 1]],
   [-1, 1, nn.Upsample, [None, 2, 'nearest']],
   [[-1, 4], 1, Concat, [1]],  # cat backbone P3
   [-1, 3, C3, [256, False]],  # 17 (P3/8-small)
   [-1, 1, Conv, [256, 3, 2]],
   [[-1, 14], 1, Concat, [1]],  # cat head P4
   [-1, 3, C3, [512, False]],  # 20 (P4/16-medium)
   [-1, 1, Conv, [512, 3, 2]],
   [[-1, 10], 1, Concat, [1]],  # cat head P5
   [-1, 3, C3, [1024, False]],  # 23 (P5/32-large)
   [[18, 21, 24], 1, Detect, [nc, anchors]],  # Detect(P3, P4, P5)
  ]
"""


def test_seed_scconv_yaml_is_not_yolov5s_plus_one_layer():
    """The seed's yaml shifts Detect but not the head's Concats: they read the P4 C3 (14) and SPPF (10) instead of the
    lateral 1x1 Convs (15, 11). Dropping the inserted layer does not give back yolov5s."""
    seed = yaml.safe_load(SEED_SCCONV_BEFORE_SPPF)
    stock = yaml_load(ROOT / "models" / "yolov5s.yaml")
    backbone, head = drop_layer(seed, 9)
    assert backbone == stock["backbone"]
    wrong = [i for i, (a, b) in enumerate(zip(head, stock["head"])) if a[0] != b[0]]
    assert [len(backbone) + i for i in wrong] == [19, 22]  # the two PAN Concats (stock numbering)


def test_seed_scconv_yaml_is_flagged_by_the_structure_check(tmp_path):
    """Its index comments were not renumbered after the insert, and neither were the Concat indices: it builds
    (wired to the wrong layers) with a warning naming the first stale row (tests/test_yolo.py), and is rejected
    with --strict."""
    path = tmp_path / "yolov5s_SeedScConv.yaml"
    path.write_text(SEED_SCCONV_BEFORE_SPPF)
    Model(path)
    assert main(["--cfg", str(path), "--img", "64", "--strict"]) == 1
    with pytest.raises(UserError, match=r"layer 10 \(SPPF\) is commented '# 9'.*from layer 9 on"):
        check_index_comments(SEED_SCCONV_BEFORE_SPPF, path, strict=True)


def test_seed_scconv_yaml_changes_the_architecture_silently():
    """What the gap costs: the seed's yaml builds with a different head. Its P4 and P5 C3s read 128 + 256 and
    256 + 512 channels instead of 128 + 128 and 256 + 256, so their cv1 and cv2 (1x1 to 128 and 256) grow by
    2 * 128 * 128 + 2 * 256 * 256 parameters."""
    seed = yaml.safe_load(SEED_SCCONV_BEFORE_SPPF)
    n_seed = sum(p.numel() for p in Model(seed).parameters())
    assert n_seed - YAML_PARAMS["yolov5s_ScConv.yaml"] == 2 * 128 * 128 + 2 * 256 * 256
