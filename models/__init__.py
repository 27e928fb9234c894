"""Models: building blocks (layers.py, the leaf, and one file per module family), the public face common.py,
Detect/Model/parse_model (yolo.py), checkpoint loading (experimental.py)."""
