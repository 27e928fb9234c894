"""Measurement scripts (``python benchmarks/<name>.py``) and, as in official YOLOv5, ``benchmarks.run``: the root
benchmarks.py's export, validation and timing of every format (models/export/benchmark.py). A folder with this file
is a regular package, which Python prefers over the root module of the same name, so ``import benchmarks.ablate``
and ``import benchmarks`` keep meaning this folder while ``python benchmarks.py`` runs the script."""

from models.export.benchmark import benchmark as run

__all__ = ["run"]
