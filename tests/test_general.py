"""utils/general.py: run folders taken atomically; the scripts' fast process exit."""

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from utils.general import UserError, increment_path

ROOT = Path(__file__).resolve().parents[1]


def test_concurrent_runs_never_share_a_folder(tmp_path):
    """16 threads ask for runs/exp at the same moment: each gets its own folder, all created."""
    barrier, taken = threading.Barrier(16), []

    def start_run():
        barrier.wait()
        taken.append(increment_path(tmp_path / "exp", mkdir=True))

    threads = [threading.Thread(target=start_run) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(p.name for p in taken) == sorted(["exp"] + [f"exp{n}" for n in range(2, 17)])
    assert all(p.is_dir() for p in taken)


def test_increment_path_skips_a_name_taken_as_a_file_and_keeps_exist_ok(tmp_path):
    (tmp_path / "exp").mkdir()
    (tmp_path / "exp2").write_text("")
    assert increment_path(tmp_path / "exp", mkdir=True) == tmp_path / "exp3"
    assert increment_path(tmp_path / "exp", exist_ok=True, mkdir=True) == tmp_path / "exp"
    assert increment_path(tmp_path / "exp") == tmp_path / "exp4"  # no mkdir: the first free name, nothing made
    assert not (tmp_path / "exp4").exists()


def test_project_naming_a_file_is_a_user_error(tmp_path):
    project = tmp_path / "runs.txt"
    project.write_text("")
    with pytest.raises(UserError, match=r"cannot create the folder .*runs.txt.*is a part of it a file"):
        increment_path(project / "exp", mkdir=True)
    with pytest.raises(UserError, match="exists and is not a folder"):
        increment_path(project, exist_ok=True, mkdir=True)


END_PROCESS_SCRIPT = """
import atexit, ctypes, sys, threading, time
from pathlib import Path
sys.path.insert(0, {root!r})
from utils.general import end_process

out, mode = Path(sys.argv[1]), sys.argv[2]


class Teardown:  # freed during a normal interpreter teardown only
    def __del__(self):
        (out / "teardown.txt").write_text("freed")


marker = Teardown()
atexit.register(lambda: (out / "atexit.txt").write_text("ran"))
text = open(out / "text.txt", "w")  # left open, unflushed, as a careless library might
text.write("text left in the buffer")
binary = open(out / "binary.bin", "wb")
binary.write(b"bytes left in the buffer")
sys.stdout.write("python output without a newline ")
ctypes.CDLL(None).printf(b"C output in stdio's buffer")
if mode == "thread":
    threading.Thread(target=lambda: (time.sleep(0.3), (out / "thread.txt").write_text("done"))).start()
end_process(3)
"""


@pytest.mark.skipif(os.name != "posix", reason="the fast exit is POSIX-only; elsewhere end_process is sys.exit")
@pytest.mark.parametrize("mode", ["plain", "thread"])
def test_end_process_skips_only_the_teardown(tmp_path, mode):
    """end_process exits with the code after the atexit handlers, with every open Python file and both output
    buffers flushed, and skips the interpreter's teardown (the marker object is never freed); with a non-daemon
    thread still running it exits normally, after the thread, as Python does."""
    script = tmp_path / "script.py"
    script.write_text(END_PROCESS_SCRIPT.format(root=str(ROOT)))
    r = subprocess.run([sys.executable, str(script), str(tmp_path), mode], capture_output=True, text=True, timeout=60)
    assert r.returncode == 3, r.stderr
    assert "python output without a newline" in r.stdout and "C output in stdio's buffer" in r.stdout
    assert (tmp_path / "atexit.txt").read_text() == "ran"
    assert (tmp_path / "text.txt").read_text() == "text left in the buffer"
    assert (tmp_path / "binary.bin").read_bytes() == b"bytes left in the buffer"
    assert (tmp_path / "teardown.txt").exists() == (mode == "thread")
    assert (tmp_path / "thread.txt").exists() == (mode == "thread")
