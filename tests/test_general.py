"""utils/general.py: run folders taken atomically."""

import threading

import pytest

from utils.general import UserError, increment_path


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
