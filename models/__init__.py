"""Models: building blocks (common.py and one file per module family), Detect/Model/parse_model (yolo.py),
checkpoint loading (experimental.py)."""

from models import common  # noqa: F401  (import first: module-family files import their basics from it)
