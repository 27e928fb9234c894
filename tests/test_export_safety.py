"""Exports and --backend conversions under hostile conditions: a full disk or a read-only folder never truncates
or deletes the previous export, two runs converting the same weights at once both succeed, cached conversions
are checked before reuse, a read-only --project is one error line, and TensorRT engines without this project's
metadata are refused unless the user opts in.

Tests run as root, which ignores permission bits: read-only folders and full disks are simulated by an OSError of
that errno from the writer, and by a real per-process file size limit (RLIMIT_FSIZE) that fails real writes.
"""

import errno
import hashlib
import json
import os
import resource
import shutil
import signal
import threading
from pathlib import Path

import pytest

import detect
import export
from models.backends import DetectMultiBackend, split_engine
from models.export import backend_cache, backend_weights, file_hash
from utils import cache_files
from utils.general import ROOT, UserError, increment_path

FIXTURE = ROOT / "tests" / "fixtures" / "yolov5n-v7.0.pt"
BUS = ROOT / "data" / "images" / "bus.jpg"
IMGSZ = (64, 64)
pytestmark = pytest.mark.usefixtures("one_torch_thread")
needs_openvino = pytest.mark.skipif(not __import__("importlib").util.find_spec("openvino"), reason="openvino missing")


@pytest.fixture
def weights(tmp_path):
    w = tmp_path / "exports" / "m.pt"
    w.parent.mkdir()
    shutil.copyfile(FIXTURE, w)
    return w


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (relative name -> bytes), hidden temporary files included."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


class FailingFile:
    """A file whose write stores the first half of the data and then fails like a full disk."""

    def __init__(self, f):
        self.f = f

    def write(self, data):
        self.f.write(data[:len(data) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()


@pytest.mark.parametrize("fmt, name", [("torchscript", "m.torchscript"), ("onnx", "m.onnx")])
def test_full_disk_mid_write_keeps_the_previous_export(weights, monkeypatch, fmt, name):
    export.run(weights=weights, imgsz=IMGSZ, include=(fmt,))
    before = snapshot(weights.parent)
    monkeypatch.setattr(cache_files, "open", lambda *a, **k: FailingFile(open(*a, **k)), raising=False)
    with pytest.raises(UserError, match=f"cannot write .*{name}: No space left on device; the previous {name} is "
                                        f"intact"):
        export.run(weights=weights, imgsz=IMGSZ, include=(fmt,))
    assert snapshot(weights.parent) == before  # byte-identical, and no temporary file left behind


def test_failed_first_export_leaves_nothing(weights, monkeypatch):
    monkeypatch.setattr(cache_files, "open", lambda *a, **k: FailingFile(open(*a, **k)), raising=False)
    with pytest.raises(UserError, match="nothing was written"):
        export.run(weights=weights, imgsz=IMGSZ, include=("onnx",))
    assert sorted(p.name for p in weights.parent.iterdir()) == ["m.pt"]


def test_read_only_folder_is_one_line(weights, monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(cache_files, "open", refuse, raising=False)
    with pytest.raises(UserError, match=r"cannot write .*m\.torchscript: Read-only file system; nothing was written"):
        export.run(weights=weights, imgsz=IMGSZ, include=("torchscript",))
    assert export.main(["--weights", str(weights), "--imgsz", "64", "--include", "torchscript"]) == 1


@pytest.fixture
def file_size_limit():
    """Within the block, no file of this process may grow past ``limit`` bytes: writes beyond fail with EFBIG,
    as on a full disk (the kernel's signal for it is ignored, so the write returns the error)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    def limit(nbytes):
        resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, hard))

    yield limit
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    signal.signal(signal.SIGXFSZ, handler)


@pytest.mark.parametrize("fmt", ["torchscript", "onnx", pytest.param("openvino", marks=needs_openvino)])
def test_real_short_write_keeps_the_previous_export(weights, file_size_limit, fmt):
    """Real writes cut short by the kernel: torch's own writer used to abort the interpreter, ONNX left a truncated
    file and OpenVINO an empty xml after deleting the previous folder."""
    export.run(weights=weights, imgsz=IMGSZ, include=(fmt,))
    before = snapshot(weights.parent)
    file_size_limit(1 << 20)  # every export of the model is several MB
    with pytest.raises(UserError, match="cannot write .*; the previous .* is intact"):
        export.run(weights=weights, imgsz=IMGSZ, include=(fmt,))
    assert snapshot(weights.parent) == before


@needs_openvino
def test_openvino_export_replaces_the_folder_whole(weights):
    folder = Path(export.run(weights=weights, imgsz=IMGSZ, include=("openvino",))[0])
    (folder / "stale.txt").write_text("from an older export")
    assert Path(export.run(weights=weights, imgsz=(96, 96), include=("openvino",))[0]) == folder
    assert sorted(p.name for p in folder.iterdir()) == ["m.bin", "m.xml", "metadata.yaml"]
    assert DetectMultiBackend(folder).imgsz == (96, 96)
    assert sorted(p.name for p in weights.parent.iterdir()) == ["m.pt", "m_openvino_model"]


# --backend conversions ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def openvino_model(tmp_path_factory):
    pytest.importorskip("openvino")
    w = tmp_path_factory.mktemp("ov") / "m.pt"
    shutil.copyfile(FIXTURE, w)
    return Path(export.run(weights=w, imgsz=IMGSZ, include=("openvino",))[0])


def fake_converter(openvino_model, barrier=None, seen=None):
    """An export_weights stand-in: records the bytes it was given, waits for the other run, then writes the real
    OpenVINO folder (or a copy of the weights named .onnx) next to the weights, as export.py does."""

    def convert(weights, imgsz, include):
        weights = Path(weights)
        if seen is not None:
            seen.append((weights, weights.read_bytes(), oct(weights.parent.stat().st_mode & 0o777)))
        if barrier is not None:
            barrier.wait(timeout=60)  # both runs are converting before either finishes
        if include == ("onnx",):
            out = weights.with_suffix(".onnx")
            out.write_bytes(b"onnx of " + hashlib.sha256(weights.read_bytes()).hexdigest().encode())
        else:
            out = weights.with_name(f"{weights.stem}_openvino_model")
            out.mkdir()
            for p in openvino_model.iterdir():
                shutil.copyfile(p, out / p.name)
        return [str(out)]

    return convert


@pytest.mark.parametrize("backend", [pytest.param("openvino", marks=needs_openvino), "onnx"])
def test_two_runs_converting_the_same_new_weights_both_succeed(weights, tmp_path, monkeypatch, openvino_model,
                                                                backend):
    monkeypatch.setattr(backend_cache, "export_weights", fake_converter(openvino_model, threading.Barrier(2)))
    results, errors = [], []

    def run():
        try:
            results.append(backend_weights(weights, backend, IMGSZ, project=tmp_path / "runs"))
        except Exception as e:  # reported below: the second run used to die with 'Directory not empty'
            errors.append(e)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(results) == 2 and results[0] == results[1]
    cache = tmp_path / "runs" / "backend-cache"
    assert [p.name for p in cache.iterdir()] == [results[0].parent.name]  # no work folder left behind
    assert results[0].parent.name == f"m-{file_hash(weights)[:16]}-64x64"
    if backend == "openvino":
        assert sorted(p.name for p in results[0].iterdir()) == ["m.bin", "m.xml", "metadata.yaml"]
        assert DetectMultiBackend(results[0]).imgsz == IMGSZ


def test_conversion_reads_one_private_copy_and_is_named_by_its_hash(weights, tmp_path, monkeypatch, openvino_model):
    """The weights are replaced between the cache look-up and the conversion: the entry is named by the hash of the
    bytes actually converted, which were read once into a folder only this user can open."""
    seen = []
    monkeypatch.setattr(backend_cache, "export_weights", fake_converter(openvino_model, seen=seen))
    hash_file = backend_cache.file_hash
    replaced = b"retrained" + FIXTURE.read_bytes()

    def hash_then_swap(path, *args, **kwargs):
        digest = hash_file(path, *args, **kwargs)
        if "copy_to" not in kwargs:  # the look-up: someone rewrites the weights right after it
            Path(path).write_bytes(replaced)
        return digest

    monkeypatch.setattr(backend_cache, "file_hash", hash_then_swap)
    target = backend_weights(weights, "onnx", IMGSZ, project=tmp_path / "runs")
    (copy, converted, mode), = seen
    assert copy.parent != weights.parent and mode == "0o700"
    assert converted == replaced
    assert target.parent.name == f"m-{hashlib.sha256(replaced).hexdigest()[:16]}-64x64"
    assert target.read_bytes() == b"onnx of " + hashlib.sha256(replaced).hexdigest().encode()


def test_cache_lives_in_the_project(weights, tmp_path, monkeypatch, openvino_model):
    monkeypatch.setattr(backend_cache, "export_weights", fake_converter(openvino_model))
    monkeypatch.setattr(backend_cache, "BACKEND_CACHE", tmp_path / "default-cache")
    in_project = backend_weights(weights, "onnx", IMGSZ, project=tmp_path / "proj")
    assert in_project.parent.parent == tmp_path / "proj" / "backend-cache"
    assert backend_weights(weights, "onnx", IMGSZ).parent.parent == tmp_path / "default-cache"


@needs_openvino
def test_a_tampered_cached_openvino_folder_is_refused(weights, tmp_path, monkeypatch, openvino_model):
    monkeypatch.setattr(backend_cache, "export_weights", fake_converter(openvino_model))
    project = tmp_path / "runs"
    target = backend_weights(weights, "openvino", IMGSZ, project=project)
    xml = target / "m.xml"
    xml.write_text(xml.read_text().replace('type="Convolution"', 'type="MyPluginOp"', 1))
    with pytest.raises(UserError, match="is refused: it uses MyPluginOp"):
        backend_weights(weights, "openvino", IMGSZ, project=project)
    shutil.rmtree(target)
    target.symlink_to(openvino_model, target_is_directory=True)  # a link to another model folder
    with pytest.raises(UserError, match="is a link or belongs to another user"):
        backend_weights(weights, "openvino", IMGSZ, project=project)
    target.unlink()
    target.mkdir()  # a folder without a model, as the old check (metadata.yaml only) would have reused
    (target / "metadata.yaml").write_text("stride: 32\n")
    with pytest.raises(UserError, match="refused"):
        backend_weights(weights, "openvino", IMGSZ, project=project)


def refuse_mkdir_under(monkeypatch, folder: Path, code: int = errno.EROFS) -> None:
    """Path.mkdir fails with ``code`` for anything under ``folder``, as on a read-only mount."""
    mkdir = Path.mkdir

    def guarded(self, *args, **kwargs):
        if self == folder or folder in self.parents:
            raise OSError(code, os.strerror(code), str(self))
        return mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", guarded)


def test_read_only_project_is_one_line_for_the_cache(weights, tmp_path, monkeypatch, openvino_model):
    monkeypatch.setattr(backend_cache, "export_weights", fake_converter(openvino_model))
    refuse_mkdir_under(monkeypatch, tmp_path / "ro")
    with pytest.raises(UserError, match=r"cannot write .*ro/backend-cache: Read-only file system; nothing was written"):
        backend_weights(weights, "onnx", IMGSZ, project=tmp_path / "ro")


# read-only --project ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("code", [errno.EROFS, errno.EACCES])
@pytest.mark.parametrize("exist_ok, existing", [(False, False), (False, True), (True, True)])
def test_increment_path_in_a_read_only_project(tmp_path, monkeypatch, code, exist_ok, existing):
    project = tmp_path / "ro"
    if existing:
        project.mkdir()
    refuse_mkdir_under(monkeypatch, project if not existing else project / "exp", code)
    with pytest.raises(UserError, match=f"cannot create the folder {tmp_path}/ro.*: {os.strerror(code)}; choose a "
                                        f"writable --project"):
        increment_path(project / "exp", exist_ok=exist_ok, mkdir=True)


def test_detect_into_a_read_only_project_is_one_line(weights, tmp_path, monkeypatch):
    refuse_mkdir_under(monkeypatch, tmp_path / "ro")
    argv = ["--weights", str(weights), "--source", str(BUS), "--imgsz", "64", "--project", str(tmp_path / "ro")]
    with pytest.raises(UserError, match="choose a writable --project"):
        detect.run(**vars(detect.parse_opt(argv)))
    assert detect.main(argv) == 1


# TensorRT engines -------------------------------------------------------------------------------------------

def engine_file(meta: dict | None, engine: bytes = b"\x00serialized-engine\xff") -> bytes:
    if meta is None:
        return engine
    header = json.dumps(meta).encode()
    return len(header).to_bytes(4, byteorder="little") + header + engine


PROJECT_META = {"stride": 32, "names": {"0": "a"}, "imgsz": [64, 64], "dynamic": False, "precision": "fp32",
                "format": "yolov5-plugins"}
OFFICIAL_META = {"stride": 32, "names": {"0": "a"}}


def test_engine_with_this_projects_metadata_is_split(monkeypatch):
    monkeypatch.delenv("YOLOV5_TRUST_ENGINE", raising=False)
    meta, engine = split_engine(engine_file(PROJECT_META), "m.engine")
    assert meta == PROJECT_META and engine == b"\x00serialized-engine\xff"


@pytest.mark.parametrize("data", [
    engine_file(OFFICIAL_META),  # official YOLOv5's header: no project mark
    engine_file({**PROJECT_META, "format": "other"}),
    engine_file(None),  # a bare engine from trtexec
    engine_file(None, b"\xff\xff\xff\x7f{"),  # a huge length
    engine_file(["format", "yolov5-plugins"]),  # json, but not an object
    b"",
])
def test_engine_without_this_projects_metadata_is_refused(monkeypatch, data):
    monkeypatch.delenv("YOLOV5_TRUST_ENGINE", raising=False)
    with pytest.raises(UserError, match="m.engine is refused: TensorRT engines are programs .* set "
                                        "YOLOV5_TRUST_ENGINE=1"):
        split_engine(data, "m.engine")


def test_engine_opt_in_runs_other_engines(monkeypatch):
    monkeypatch.setenv("YOLOV5_TRUST_ENGINE", "1")
    assert split_engine(engine_file(OFFICIAL_META)) == (OFFICIAL_META, b"\x00serialized-engine\xff")
    assert split_engine(engine_file(None)) == ({}, b"\x00serialized-engine\xff")
    monkeypatch.setenv("YOLOV5_TRUST_ENGINE", "yes")  # only the documented value opts in
    with pytest.raises(UserError, match="refused"):
        split_engine(engine_file(None))


def test_untrusted_engine_is_refused_before_tensorrt_is_needed(tmp_path, monkeypatch):
    monkeypatch.delenv("YOLOV5_TRUST_ENGINE", raising=False)
    f = tmp_path / "other.engine"
    f.write_bytes(engine_file(OFFICIAL_META))
    with pytest.raises(UserError, match="other.engine is refused"):
        DetectMultiBackend(f)
