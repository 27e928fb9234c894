"""Release weights fetched by name: from a local HTTP server standing in for the release URL (no test touches the
internet), atomically, refused when offline, implausible or not a release name."""

import http.server
import threading
from pathlib import Path

import pytest

from utils import downloads
from utils.checkpoints import load_checkpoint
from utils.general import UserError

FIXTURE = Path(__file__).parent / "fixtures" / "yolov5n-v7.0.pt"


class _Release(http.server.BaseHTTPRequestHandler):
    files = {}  # name -> bytes served; a name absent answers 404
    cut_short = False  # announce the whole length but send half, then close (a dropped connection)

    def do_GET(self):
        body = self.files.get(self.path.rsplit("/", 1)[-1])
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: len(body) // 2] if self.cut_short else body)

    def log_message(self, *args):
        pass


@pytest.fixture
def release(monkeypatch):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Release)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setattr(downloads, "RELEASE_URL", f"http://127.0.0.1:{server.server_address[1]}/v7.0")
    monkeypatch.delenv("YOLOV5_OFFLINE", raising=False)
    _Release.files, _Release.cut_short = {"yolov5n.pt": FIXTURE.read_bytes()}, False
    yield _Release
    server.shutdown()
    server.server_close()


def test_release_name_is_fetched_atomically_and_loads(release, tmp_path):
    target = tmp_path / "yolov5n.pt"
    ckpt = load_checkpoint(target)  # the loader fetches a missing release file, then reads it as usual
    assert target.read_bytes() == FIXTURE.read_bytes()
    assert ckpt["model"] is not None
    assert [p.name for p in tmp_path.iterdir()] == ["yolov5n.pt"]  # no temporary file left
    assert downloads.attempt_download(target) == target  # present: not fetched again
    release.files = {}
    assert downloads.attempt_download(target) == target


def test_failed_downloads_leave_nothing_and_say_why(release, tmp_path):
    release.cut_short = True
    with pytest.raises(UserError, match=r"ended after \d+ of \d+ bytes|failed"):
        downloads.attempt_download(tmp_path / "yolov5n.pt")
    release.cut_short, release.files = False, {"yolov5n.pt": b"<html>not found</html>" * 100_000}
    with pytest.raises(UserError, match="not a PyTorch checkpoint"):
        downloads.attempt_download(tmp_path / "yolov5n.pt")
    release.files = {}
    with pytest.raises(UserError, match="download of yolov5n.pt failed.*put it at"):
        downloads.attempt_download(tmp_path / "yolov5n.pt")
    assert list(tmp_path.iterdir()) == []


def test_only_release_names_are_fetched_and_offline_is_respected(release, tmp_path, monkeypatch):
    release.files["best.pt"] = FIXTURE.read_bytes()
    with pytest.raises(UserError, match="weights file not found: .*best.pt"):
        downloads.attempt_download(tmp_path / "best.pt")
    monkeypatch.setenv("YOLOV5_OFFLINE", "1")
    with pytest.raises(UserError, match="YOLOV5_OFFLINE is set.*download http://127.0.0.1:.*/v7.0/yolov5n.pt"):
        downloads.attempt_download(tmp_path / "yolov5n.pt")
    assert list(tmp_path.iterdir()) == []


def test_release_url_must_be_https(monkeypatch, tmp_path):
    monkeypatch.delenv("YOLOV5_OFFLINE", raising=False)
    monkeypatch.setattr(downloads, "RELEASE_URL", "http://example.com/v7.0")
    with pytest.raises(UserError, match="https only"):
        downloads.attempt_download(tmp_path / "yolov5s.pt")
    assert downloads.RELEASE_ASSETS >= {"yolov5n.pt", "yolov5x6.pt", "yolov5s-seg.pt"}
    assert len(downloads.RELEASE_ASSETS) == 15
