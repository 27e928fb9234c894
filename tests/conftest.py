"""Shared test set-up: the repository on sys.path, quiet logging, few threads, known fixture paths."""

import logging
import os
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from utils.general import LOGGER  # noqa: E402

LOGGER.setLevel(logging.WARNING)
os.environ["YOLOV5_OFFLINE"] = "1"  # tests never fetch release weights (scripts run as subprocesses inherit it)
# the entry points keep freed memory for the rest of their process (utils/allocator.py); a worker runs many of them
# and resident-memory measurements (bench_scale's) need glibc's behaviour, so a MALLOC_ setting (glibc's default
# value) makes them leave the test processes alone; tests/test_allocator.py clears it for its children
os.environ.setdefault("MALLOC_TRIM_THRESHOLD_", "131072")
# two torch threads for two cores; under pytest-xdist (the README command runs two workers) one per worker
torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else 2)

FIXTURES = ROOT / "tests" / "fixtures"


class LogLines(logging.Handler):
    """Context manager collecting the project logger's messages of ``level`` and above in ``lines`` (the logger is
    opened to that level inside the block: the tests run it at WARNING)."""

    def __init__(self, level=logging.WARNING):
        super().__init__(level)
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())

    def __enter__(self):
        self.logger_level = LOGGER.level
        LOGGER.setLevel(min(self.logger_level, self.level))
        LOGGER.addHandler(self)
        return self

    def __exit__(self, *exc):
        LOGGER.removeHandler(self)
        LOGGER.setLevel(self.logger_level)


@pytest.fixture
def warnings_log():
    """``with warnings_log() as log:`` collects the project's warnings inside the block into ``log.lines``."""
    return LogLines


@pytest.fixture
def info_log():
    """``with info_log() as log:`` collects the project's info messages and warnings inside the block."""
    return lambda: LogLines(logging.INFO)


@pytest.fixture
def one_torch_thread():
    """One torch thread for a test on tiny inputs, where thread-pool overhead dominates on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def official_ckpt():
    """Path of an official-format YOLOv5n v7.0 checkpoint (random weights, real BatchNorm statistics)."""
    return FIXTURES / "yolov5n-v7.0.pt"


@pytest.fixture(scope="session")
def official_io():
    """Reference input and outputs of the official checkpoint, computed by the official v7.0 code."""
    return torch.load(FIXTURES / "yolov5n-v7.0-io.pt", weights_only=True)
