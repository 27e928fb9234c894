"""Choices made by CPU kind: what ``--half`` exports for OpenVINO, and which runtime ``--backend auto`` takes."""

import importlib.util
from pathlib import Path

import pytest
import yaml

import export
from models.backends import read_metadata
from models.export import backend_cache
from models.export import openvino as ov_export
from models.export.backend_cache import auto_backend
from models.export.openvino import half_precision
from utils.general import ROOT

FIXTURE = ROOT / "tests" / "fixtures" / "yolov5n-v7.0.pt"
needs_openvino = pytest.mark.skipif(importlib.util.find_spec("openvino") is None, reason="openvino missing")


@pytest.mark.parametrize("capabilities, native_bf16, expected", [
    (["BF16", "WINOGRAD", "FP32", "INT8"], True, "bf16"),  # AVX512-BF16 / AMX
    (["BF16", "FP32", "INT8"], False, "fp32"),  # OpenVINO lists BF16 but oneDNN is capped to AVX2 (emulation)
    (["FP16", "FP32", "INT8"], False, "fp16"),  # AVX512-FP16 without bf16
    (["BF16", "FP16", "FP32"], True, "bf16"),
    (["WINOGRAD", "FP32", "INT8", "BIN"], False, "fp32"),  # AVX2 or plain AVX-512: no half arithmetic
])
def test_half_precision_follows_the_cpu(capabilities, native_bf16, expected):
    assert half_precision(capabilities, native_bf16=native_bf16) == expected


@pytest.mark.slow
@needs_openvino
def test_half_export_without_cpu_bf16_is_plain_fp32(tmp_path, monkeypatch):
    monkeypatch.setattr(ov_export, "cpu_has_native_bf16", lambda: False)  # as on an AVX2 CPU
    monkeypatch.setattr(ov_export, "half_precision",
                        lambda caps, native_bf16=None: half_precision([c for c in caps if c != "FP16"], False))
    w = tmp_path / "half.pt"
    w.write_bytes(FIXTURE.read_bytes())
    folder = Path(export.run(weights=w, imgsz=(64, 64), include=("openvino",), half=True)[0])
    meta = read_metadata(yaml.safe_load((folder / "metadata.yaml").read_text()))
    assert meta["precision"] == "fp32"
    assert (folder / "half.bin").stat().st_size > 7e6  # fp32 weights (1.87M parameters); fp16 would be ~3.8 MB


@pytest.mark.parametrize("capability, installed, expected", [
    ("AVX2", {"onnx", "onnxruntime", "openvino"}, "onnx"),
    ("AVX512", {"onnx", "onnxruntime", "openvino"}, "onnx"),
    ("AVX2", {"openvino"}, "openvino"),
    ("AVX2", {"onnx"}, "pytorch"),  # the converter without the runtime is not enough
    ("DEFAULT", set(), "pytorch"),
])
def test_auto_backend_takes_the_fastest_installed_runtime(monkeypatch, capability, installed, expected):
    monkeypatch.setattr(backend_cache.importlib.util, "find_spec", lambda m: object() if m in installed else None)
    assert auto_backend("cpu", capability=capability) == expected


def test_auto_backend_keeps_pytorch_on_gpu():
    assert auto_backend("cuda", capability="AVX2") == "pytorch"
