"""utils/general.py: run folders taken atomically, results.csv started fresh or trimmed on resume."""

import threading

import pytest

from utils.general import UserError, increment_path, start_results_csv


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


HEADER = "               epoch,      train/box_loss"


def test_new_run_starts_a_fresh_results_csv(tmp_path):
    f = tmp_path / "results.csv"
    f.write_text(f"{HEADER}\n                   0,                 0.1\n")
    start_results_csv(f)  # an --exist-ok rerun in the same folder
    assert not f.exists()


def test_resume_drops_rows_after_the_checkpoint_epoch(tmp_path):
    """A kill between writing the row of epoch 2 and saving its last.pt: the checkpoint is of epoch 1, so the
    resumed run rewrites epoch 2; a half-written line goes too."""
    f = tmp_path / "results.csv"
    rows = [f"{e:>20},{0.1 * e:>20.5g}" for e in range(3)]
    f.write_text("\n".join([HEADER, *rows, "                   3,   0.0"[:12]]) + "\n")
    start_results_csv(f, resume_epoch=1)
    assert f.read_text() == "\n".join([HEADER, *rows[:2]]) + "\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.csv"]
    start_results_csv(tmp_path / "none.csv", resume_epoch=1)  # resuming without a csv is fine
    assert not (tmp_path / "none.csv").exists()
