"""One hostile file per loader, through the loader a user reaches: each is refused with a one-line UserError (and
its payload never runs), or warned about and skipped with the good part kept. The detailed cases of each loader
live in test_hostile_inputs.py, test_untrusted_models.py, test_hostile_round3.py and test_export_safety.py."""

import json
import os
import pickle
from pathlib import Path

import pytest
import torch
import yaml

from benchmarks import ablate
from models.autoshape import AutoShape
from models.backends import DetectMultiBackend, weights_format
from models.yolo import Model
from utils.dataset_yaml import check_dataset
from utils.evolve import append_evolve_csv, read_evolve_csv
from utils.general import ROOT, UserError
from utils.sources import LoadImages

onnx = pytest.importorskip("onnx")
from test_untrusted_models import place_dense_initializer  # noqa: E402

PAYLOAD = "payload_ran"  # the file a payload would create if it ever ran


class _RunsAShellCommand:
    def __reduce__(self):
        return os.system, (f"touch {PAYLOAD}",)


def pickle_payload(tmp: Path) -> Path:
    """A torch.save zip whose pickle would run a shell command when unpickled."""
    path = tmp / "yolov5s.pt"
    torch.save({"model": _RunsAShellCommand(), "epoch": -1}, path, pickle_protocol=pickle.HIGHEST_PROTOCOL)
    return path


class _AllocatesGigabytes(torch.nn.Module):
    def forward(self, x):
        return x + torch.arange(10**9).sum()


def torchscript_allocating(tmp: Path) -> Path:
    path = tmp / "m.torchscript"
    torch.jit.trace(_AllocatesGigabytes(), torch.rand(1, 3, 8, 8), check_trace=False).save(str(path))
    return path


def onnx_reading_a_file_beside_it(tmp: Path) -> Path:
    """An ONNX model whose weight is 'stored' in secret.bin: ONNX Runtime alone would read that file."""
    (tmp / "secret.bin").write_bytes(b"private key bytes")
    path = tmp / "m.onnx"
    place_dense_initializer(path)
    return path


def openvino_folder_holding_onnx(tmp: Path) -> Path:
    """An OpenVINO folder whose model.xml is really an ONNX file (OpenVINO would hand it to its ONNX reader)."""
    folder = tmp / "m_openvino_model"
    folder.mkdir()
    (folder / "m.xml").write_bytes(onnx_reading_a_file_beside_it(tmp).read_bytes())
    (folder / "m.bin").write_bytes(bytes(12))
    return folder


def engine_without_metadata(tmp: Path) -> Path:
    path = tmp / "m.engine"
    path.write_bytes(b"\x00" * 64)
    return path


def model_yaml_of_billions(tmp: Path) -> Path:
    d = yaml.safe_load((ROOT / "models" / "yolov5n.yaml").read_text())
    d["depth_multiple"], d["width_multiple"] = 1.0, 1.0
    d["backbone"] = [[-1, 1, "Conv", [8192, 3]] for _ in range(12)]  # 12 x 604M parameters
    d["head"] = [[[3, 6, 11], 1, "Detect", ["nc", "anchors"]]]
    path = tmp / "huge.yaml"
    path.write_text(yaml.safe_dump(d))
    return path


def dataset_yaml_fetching_a_local_file(tmp: Path) -> Path:
    path = tmp / "data.yaml"
    path.write_text(yaml.safe_dump({"path": str(tmp / "ds"), "train": "images", "val": "images", "names": ["a"],
                                    "download": "file:///etc/passwd"}))
    return path


def image_fifo(tmp: Path) -> Path:
    path = tmp / "x.jpg"
    os.mkfifo(path)
    return path


WEIGHTS_FORMATS = ("pt", "torchscript", "onnx", "openvino", "engine")  # every format DetectMultiBackend reads
REFUSED = {  # loader: (hostile file builder, how the loader is called, what the one-line error says)
    "pt": (pickle_payload, DetectMultiBackend, r"names objects this loader does not admit"),
    "torchscript": (torchscript_allocating, DetectMultiBackend, r"is refused: it makes an arange"),
    "onnx": (onnx_reading_a_file_beside_it, DetectMultiBackend, r"refused.*extern|extern.*refused"),
    "openvino": (openvino_folder_holding_onnx, DetectMultiBackend, r"not (an )?XML|not a readable OpenVINO"),
    "engine": (engine_without_metadata, DetectMultiBackend, r"refused: TensorRT engines are programs"),
    "model yaml": (model_yaml_of_billions, Model, r"parameters|YOLOV5_MAX_PARAMS"),
    "dataset yaml": (dataset_yaml_fetching_a_local_file, lambda p: check_dataset(p, autodownload=True),
                     r"only http:// and https:// URLs are fetched"),
    "image": (image_fifo, lambda p: AutoShape(Model(ROOT / "models" / "yolov5n.yaml", nc=1).eval())(str(p)),
              r"not a readable image file"),
}


@pytest.mark.parametrize("loader", sorted(REFUSED))
def test_hostile_file_is_refused_in_one_line(tmp_path, monkeypatch, loader):
    if loader == "image" and not hasattr(os, "mkfifo"):
        pytest.skip("needs FIFOs")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("YOLOV5_TRUST_ENGINE", raising=False)
    build, load, message = REFUSED[loader]
    path = build(tmp_path)
    if load is DetectMultiBackend:  # the file is taken for the format it is the hostile case of
        assert weights_format(path) == loader
    with pytest.raises(UserError, match=message) as error:
        load(path)
    assert "\n" not in str(error.value).strip()
    assert not (tmp_path / PAYLOAD).exists()


def test_undecodable_video_is_skipped_with_a_warning(tmp_path, warnings_log):
    video = tmp_path / "clip.mp4"
    video.write_bytes(os.urandom(4096))
    (tmp_path / "frame.jpg").write_bytes((ROOT / "data" / "images" / "bus.jpg").read_bytes())
    with warnings_log() as log:
        items = list(LoadImages(str(tmp_path), img_size=64))
    assert [Path(item[0]).name for item in items] == ["frame.jpg"]
    assert any("clip.mp4" in line and "cannot open the video" in line for line in log.lines)


def test_damaged_evolve_csv_keeps_its_good_rows(tmp_path, warnings_log):
    csv_file = tmp_path / "evolve.csv"
    append_evolve_csv(csv_file, [0.5, 0.5, 0.5, 0.4, 0, 0, 0], {"lr0": 0.01})
    with open(csv_file, "a") as f:
        f.write("text,,\n")
    with warnings_log() as log:
        assert [row["lr0"] for row in read_evolve_csv(csv_file)] == [0.01]
    assert len(log.lines) == 1 and "skipped 1 damaged row" in log.lines[0]


def test_damaged_ablation_state_is_rebuilt(tmp_path, warnings_log):
    path = tmp_path / ablate.STATE_FILE
    path.write_text(json.dumps({"version": ablate.STATE_VERSION, "rows": "not rows"}))
    with warnings_log() as log:
        assert ablate.load_state(path) == {}
    assert log.lines == [f"WARNING: {path} is unreadable; measuring every configuration again"]


def test_every_weights_format_has_its_hostile_case(tmp_path):
    (tmp_path / "a_openvino_model").mkdir()
    names = ("a.pt", "a.torchscript", "a.onnx", "a_openvino_model", "a.engine")
    assert {weights_format(tmp_path / name) for name in names} == set(WEIGHTS_FORMATS) <= set(REFUSED)
