"""Every variant yaml (models/yolov5s_*.yaml) builds at scales n and s through the scale letter, trains one step's
forward and backward at a rectangular 256x320 (every parameter gets a gradient); the variants table's README block."""

import pytest
import torch

from benchmarks.variants_table import END, START, markdown_table, replace_readme_block
from models.yolo import Model, main
from utils.general import ROOT, UserError

VARIANTS = sorted(p.name for p in (ROOT / "models").glob("yolov5s_*.yaml"))


def test_variants_found():
    assert {"yolov5s_ScConv.yaml", "yolov5s_SPDConv.yaml", "yolov5s_ACConv.yaml", "yolov5s_Focal.yaml"} <= set(
        VARIANTS
    )


@pytest.mark.parametrize("scale", "ns")
@pytest.mark.parametrize("name", VARIANTS)
def test_builds_and_trains_at_scale(name, scale):
    torch.manual_seed(0)
    model = Model(name.replace("yolov5s", f"yolov5{scale}", 1)).train()
    assert model.yaml["width_multiple"] == {"n": 0.25, "s": 0.5}[scale]
    x = torch.rand(1, 3, 256, 320)
    outputs = model(x)
    assert [tuple(o.shape) for o in outputs] == [(1, 3, 256 // s, 320 // s, 85) for s in (8, 16, 32)]
    sum(o.float().mean() for o in outputs).backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"{name} at {scale}: parameters without a gradient: {missing[:5]}"


@pytest.mark.parametrize("cfg", ["models/yolov5s_ScConv.yaml", "yolov5n_Focal.yaml"])
def test_yolo_py_cfg(cfg):
    """The structure-check CLI on a variant path and on a scale letter without its own file (the CLI is Model(cfg)
    plus a forward pass, so the build test above covers the other variants)."""
    assert main(["--cfg", cfg, "--img", "64"]) == 0


def test_variants_table_readme_block(tmp_path):
    """benchmarks/variants_table.py: the table replaces only the marked README block, again on a rerun."""
    rows = [("yolov5s.yaml", 7235389, 16.5, 100.0), ("yolov5s_ACConv.yaml", 8776765, 19.6, 150.0)]
    table = markdown_table(rows, 640, 2, 5)
    assert "| yolov5s_ACConv | 8,776,765 | 19.6 | 150 | 1.50x |" in table.splitlines()
    readme = tmp_path / "README.md"
    readme.write_text(f"# title\n\n{START}\nold table\n{END}\n\nafter\n")
    for _ in range(2):
        replace_readme_block(table, readme)
        assert readme.read_text() == f"# title\n\n{START}\n{table}\n{END}\n\nafter\n"
    readme.write_text("no markers\n")
    with pytest.raises(UserError, match="variants-table"):
        replace_readme_block(table, readme)
