"""check_dataset: path resolution, names/nc, missing data messages, opt-in download, the synthetic generator."""

import io
import threading
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml

from data.synthetic import generate_shapes, make_image
from utils.dataset_yaml import check_dataset
from utils.general import ROOT, UserError


def _yaml(file, **content):
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(yaml.safe_dump(content))
    return file


def _split(root, name):
    (root / "images" / name).mkdir(parents=True, exist_ok=True)


def test_bundled_coco8():
    data = check_dataset("coco8.yaml")
    assert data["path"] == str(ROOT / "data" / "coco8")
    assert data["train"] == str(ROOT / "data" / "coco8" / "images" / "train")
    assert data["val"] == str(ROOT / "data" / "coco8" / "images" / "val")
    assert data["test"] is None
    assert data["nc"] == 80 and data["names"][0] == "person" and data["names"][79] == "toothbrush"
    assert len(list(Path(data["train"]).glob("*.jpg"))) == 4


def test_relative_path_is_relative_to_the_yaml_folder(tmp_path):
    _split(tmp_path / "ds", "a")
    _split(tmp_path / "ds", "b")
    (tmp_path / "ds" / "list.txt").write_text("./images/a/x.jpg\n")
    f = _yaml(tmp_path / "cfg" / "d.yaml", path="../ds", train=["images/a", "images/b"], val="list.txt",
              test=str(tmp_path / "ds" / "images" / "b"), names=["cat", "dog"])
    data = check_dataset(f)
    root = tmp_path / "ds"
    assert data["path"] == str(root)
    assert data["train"] == [str(root / "images" / "a"), str(root / "images" / "b")]
    assert data["val"] == str(root / "list.txt") and data["test"] == str(root / "images" / "b")
    assert data["names"] == {0: "cat", 1: "dog"} and data["nc"] == 2


def test_names_forms_and_nc_check(tmp_path):
    _split(tmp_path, "t")
    base = dict(path=str(tmp_path), train="images/t", val="images/t")
    assert check_dataset(dict(base, names={"1": "b", "0": "a"}))["names"] == {0: "a", 1: "b"}
    assert check_dataset(dict(base, nc=2))["names"] == {0: "class0", 1: "class1"}
    with pytest.raises(UserError, match="nc=3 but 2 names"):
        check_dataset(dict(base, names=["a", "b"], nc=3))
    for bad_nc in (0, -2, "two"):
        with pytest.raises(UserError, match=f"'nc' must be a positive integer .*, got {bad_nc!r}"):
            check_dataset(dict(base, nc=bad_nc))
    with pytest.raises(UserError, match="without gaps"):
        check_dataset(dict(base, names={0: "a", 2: "c"}))
    with pytest.raises(UserError, match="'val' is missing"):
        check_dataset(dict(path=str(tmp_path), train="images/t", names=["a"]))
    with pytest.raises(UserError, match="not found"):
        check_dataset(tmp_path / "no_such.yaml")


def test_missing_data_says_where_and_never_downloads_unasked(tmp_path, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("no download may be attempted without autodownload=True")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    f = _yaml(tmp_path / "d.yaml", path="ds", train="images/train", val="images/val", names=["a"],
              download="https://example.com/ds.zip")
    with pytest.raises(UserError) as e:
        check_dataset(f)
    message = str(e.value)
    assert str(tmp_path / "ds") in message and "Put the images" in message and "--download" in message


def test_autodownload_offline_is_a_clear_error(tmp_path, monkeypatch):
    calls = []

    def offline(url, timeout=None):
        calls.append((url, timeout))
        raise urllib.error.URLError("Temporary failure in name resolution")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    f = _yaml(tmp_path / "d.yaml", path="ds", train="images/train", val="images/val", names=["a"],
              download="https://example.com/ds.zip")
    with pytest.raises(UserError, match="offline"):
        check_dataset(f, autodownload=True)
    assert calls == [("https://example.com/ds.zip", 30)]


def test_generator_makes_missing_data(tmp_path, monkeypatch):
    made = []

    def small_shapes(path):
        made.append(path)
        return generate_shapes(path, n_train=3, n_val=2, size=64)

    import data.synthetic

    monkeypatch.setattr(data.synthetic, "generate_shapes", small_shapes)
    f = _yaml(tmp_path / "s.yaml", path="shapes", train="images/train", val="images/val",
              names=["circle", "square", "triangle"], generator="data.synthetic.generate_shapes")
    data = check_dataset(f)
    assert made == [tmp_path / "shapes"]
    assert len(list(Path(data["train"]).glob("*.jpg"))) == 3 and len(list(Path(data["val"]).glob("*.jpg"))) == 2
    check_dataset(f)
    assert len(made) == 1  # present now: not generated again
    with pytest.raises(UserError, match="data/ package"):
        check_dataset(dict(path=str(tmp_path / "x"), train="a", val="b", nc=1, generator="os.system"))


def test_generator_is_deterministic_and_labels_match_pixels(tmp_path):
    a = generate_shapes(tmp_path / "a", n_train=2, n_val=1, size=64, seed=5)
    b = generate_shapes(tmp_path / "b", n_train=2, n_val=1, size=64, seed=5)
    files = sorted(p.relative_to(a) for p in a.rglob("*.*"))
    assert files == sorted(p.relative_to(b) for p in b.rglob("*.*")) and len(files) == 6
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    # a square's label is its tight box: the pixels just inside differ from those just outside
    rng = np.random.default_rng(0)
    for _ in range(20):
        im, labels = make_image(rng, size=128)
        assert len(labels) and labels[:, 0].max() <= 2 and ((labels[:, 1:] > 0) & (labels[:, 1:] <= 1)).all()
        for cls, x, y, w, h in labels:
            if cls == 1:
                x1, y1 = round((x - w / 2) * 128), round((y - h / 2) * 128)
                inside, outside = im[y1 + 1, x1 + 1].astype(int), im[y1 + 1, max(x1 - 2, 0)].astype(int)
                assert x1 < 2 or np.abs(inside - outside).max() > 40


def test_concurrent_generation_is_safe(tmp_path):
    target, errors = tmp_path / "shapes", []

    def run():
        try:
            generate_shapes(target, n_train=20, n_val=5, size=64)
        except Exception as e:  # collected, then asserted empty
            errors.append(e)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(list((target / "images" / "train").glob("*.jpg"))) == 20
    assert len(list((target / "labels" / "val").glob("*.txt"))) == 5
    assert [p.name for p in tmp_path.iterdir()] == ["shapes"]  # no temporary folders left behind


class FakeResponse(io.BytesIO):
    headers = {}  # no Content-Length, as a chunked reply

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _zip_bytes(members):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        for name, text in members.items():
            z.writestr(name, text)
    return buffer.getvalue()


@pytest.mark.parametrize("download, match", [
    ("file:///etc/passwd", "only http:// and https://"),
    ({"url": "ftp://example.com/ds.zip"}, "only http:// and https://"),
    ({"url": "https://example.com/ds.zip", "dir": "../../.."}, "outside the dataset folder"),
    ({"url": "https://example.com/ds.zip", "dir": "/tmp"}, "relative to the dataset path"),
    ([{"url": "https://example.com/ok.zip", "dir": "images"}, "file:///x.zip"], "only http"),
])
def test_download_refuses_other_schemes_and_targets_outside_the_dataset(tmp_path, monkeypatch, download, match):
    calls = []
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: calls.append(a) or 1 / 0)
    f = _yaml(tmp_path / "cfg" / "d.yaml", path="ds", train="images/train", val="images/val", names=["a"],
              download=download)
    before = sorted(tmp_path.rglob("*"))
    with pytest.raises(UserError, match=match):
        check_dataset(f, autodownload=True)
    assert calls == [] and sorted(tmp_path.rglob("*")) == before  # every entry is checked before any fetch


def test_download_unzips_only_inside_the_dataset(tmp_path, monkeypatch):
    """The official default (unzip beside the dataset folder) keeps only the members under '<name>/'; a member
    named '../x' lands inside the target, never above it."""
    archive = _zip_bytes({"ds/images/train/a.txt": "1", "ds/images/val/b.txt": "2", "other/x.txt": "3",
                          "../escape.txt": "4"})
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout: FakeResponse(archive))
    f = _yaml(tmp_path / "d.yaml", path="ds", train="images/train", val="images/val", names=["a"],
              download="https://example.com/ds.zip")
    data = check_dataset(f, autodownload=True)
    assert Path(data["train"], "a.txt").read_text() == "1"
    assert not (tmp_path / "other").exists() and not (tmp_path.parent / "escape.txt").exists()


def test_relative_path_beside_the_yaml_then_the_official_rule(tmp_path, monkeypatch):
    """'../datasets/x' is looked up from the yaml's folder first, then from the repository root (official)."""
    import utils.dataset_yaml

    repo = tmp_path / "repo"
    monkeypatch.setattr(utils.dataset_yaml, "ROOT", repo)
    _split(tmp_path / "datasets" / "x", "t")  # beside the repo: official YOLOv5's place
    f = _yaml(tmp_path / "cfgs" / "sub" / "x.yaml", path="../datasets/x", train="images/t", val="images/t", nc=1)
    logged = []
    monkeypatch.setattr(utils.dataset_yaml.LOGGER, "info", logged.append)
    assert check_dataset(f)["path"] == str(tmp_path / "datasets" / "x")
    assert "relative to the repository root" in logged[0]
    _split(tmp_path / "cfgs" / "datasets" / "x", "t")  # now beside the yaml too: that one wins
    assert check_dataset(f)["path"] == str(tmp_path / "cfgs" / "datasets" / "x")
    assert "relative to the yaml's folder" in logged[-1]


def test_home_folder_is_expanded(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    _split(tmp_path / "data", "t")
    data = check_dataset(dict(path="~/data", train="images/t", val="~/data/images/t", nc=1))
    assert data["path"] == str(tmp_path / "data") and data["val"] == str(tmp_path / "data" / "images" / "t")
