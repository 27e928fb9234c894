"""benchmarks/deploy_matrix.py: three variants x the formats installed here, at 64 px without timing; every fp32
format that exports must match PyTorch to 1e-3 of the output scale, and the table names each refusal's reason."""

import importlib.util

import pytest

from benchmarks import deploy_matrix
from benchmarks.deploy_matrix import FP32_REL_TOL, markdown, run

pytestmark = pytest.mark.usefixtures("one_torch_thread")
VARIANTS = ["yolov5n.yaml", "yolov5n_GSConv.yaml", "yolov5n_AKConv.yaml"]
FAST = ["ONNX", "NCNN fp32", "MNN"]  # the quick converters: no INT8 calibration, no TFLite conversion


@pytest.mark.slow
def test_matrix_three_variants_installed_formats(tmp_path):
    rows = run(cfg=VARIANTS, formats=FAST, imgsz=64, runs=0, calib=2, out=tmp_path / "m")
    assert [r["cfg"] for r in rows[:: len(FAST)]] == VARIANTS and len(rows) == 3 * len(FAST)
    for r in rows:
        fmt = next(f for f in deploy_matrix.FORMATS if f.label == r["format"])
        if not all(importlib.util.find_spec(m) for m in fmt.needs):
            assert r["status"] == "not installed"
            continue
        assert r["status"] == "ok", r  # every variant runs in every installed fp32 format here
        assert float(r["rel_diff"]) <= FP32_REL_TOL
    text = (tmp_path / "m.md").read_text()
    assert text.startswith("| variant (scale n) | ONNX | NCNN fp32 | MNN |") and "yolov5n_AKConv" in text
    assert (tmp_path / "m.csv").read_text().count("\n") == len(rows) + 1


def test_markdown_numbers_refusals_once():
    rows = [{"cfg": "a.yaml", "format": "NCNN fp32", "status": "refused", "reason": "X needs op Y", "rel_diff": "",
             "ms": "", "map_diff": ""},
            {"cfg": "b.yaml", "format": "NCNN fp32", "status": "refused", "reason": "X needs op Y", "rel_diff": "",
             "ms": "", "map_diff": ""},
            {"cfg": "b.yaml", "format": "ONNX", "status": "ok", "reason": "", "rel_diff": "1.0e-07", "ms": "12.3",
             "map_diff": ""}]
    formats = [f for f in deploy_matrix.FORMATS if f.label in ("ONNX", "NCNN fp32")]
    table = markdown(rows, formats, threads=2, imgsz=640)
    assert "| a |  | ❌ [1] |" in table and "| b | ✅ 1.0e-07 12 ms | ❌ [1] |" in table
    assert table.count("1. refused: X needs op Y") == 1


def test_from_csv_renders_saved_cells_in_matrix_order(tmp_path):
    first, second = tmp_path / "a.csv", tmp_path / "b.csv"
    head = "cfg,format,precision,status,rel_diff,ms,map_diff,reason\n"
    first.write_text(head + "yolov5n_GSConv.yaml,MNN,fp32,ok,2.0e-07,,,\nyolov5n.yaml,MNN,fp32,off,5.0e-02,,,\n")
    second.write_text(head + "yolov5n.yaml,MNN,fp32,ok,1.0e-07,,,\nyolov5n.yaml,ONNX,fp32,ok,3.0e-07,,,\n")
    readme = tmp_path / "README.md"
    readme.write_text(f"x\n{deploy_matrix.START}\nold\n{deploy_matrix.END}\ny\n")
    table = deploy_matrix.from_csv([first, second], imgsz=64, write_readme=True, readme=readme)
    lines = table.splitlines()
    assert lines[0] == "| variant (scale n) | ONNX | MNN |"  # matrix column order, not file order
    assert lines[2] == "| yolov5n | ✅ 3.0e-07 | ✅ 1.0e-07 |"  # the later file's cell wins
    assert lines[3] == "| yolov5n_GSConv |  | ✅ 2.0e-07 |"
    assert "old" not in readme.read_text() and table in readme.read_text()


def test_from_csv_merges_fields_of_runs_at_two_sizes(tmp_path):
    """Latency and output difference from a 640 px run, mAP differences from a run at the training size: one cell
    keeps both, the verdict is taken again on the merged fields, and the caption names each measure's size."""
    head = "cfg,format,precision,imgsz,status,rel_diff,ms,map_diff,reason\n"
    at640, at256 = tmp_path / "640.csv", tmp_path / "256.csv"
    at640.write_text(head + "yolov5n.yaml,ONNX,fp32,640,ok,1.0e-07,95.9,,\n"
                            "yolov5n.yaml,ONNX INT8,int8,640,ok,2.0e-03,60.2,,\n"
                            "yolov5n.yaml,MNN,fp32,640,ok,2.0e-07,80.0,,\n"
                            "yolov5n.yaml,NCNN fp32,fp32,640,ok,2.0e-07,70.0,,\n")
    at256.write_text(head + "yolov5n.yaml,ONNX,fp32,256,ok,3.0e-07,,+0.0010,\n"
                            "yolov5n.yaml,ONNX INT8,int8,256,ok,4.0e-03,,-0.0300,\n"
                            "yolov5n.yaml,MNN,fp32,256,not installed,,,,needs MNN\n"
                            "yolov5n.yaml,NCNN fp32,fp32,256,refused,,,,X needs op Y\n")
    lines = deploy_matrix.from_csv([at640, at256]).splitlines()
    assert lines[0] == "| variant (scale n) | ONNX | ONNX INT8 | NCNN fp32 | MNN |"
    # the later run's output difference, the earlier's latency (MNN's stays at 640: the later run lacks the
    # package); INT8 mAP -0.03 is outside 0.02: off; the later refusal replaces the NCNN cell
    assert lines[2] == ("| yolov5n | ✅ 3.0e-07 96 ms mAP +0.0010 | ⚠️ 4.0e-03 60 ms mAP -0.0300 | ❌ [1] "
                        "| ✅ 2.0e-07 80 ms |")
    assert "; output difference at 256/640 px, latency at 640 px, mAP50-95 difference at 256 px;" in lines[4]
    assert lines[5] == "1. refused: X needs op Y"
