"""Official YOLOv5 v7.0's Comet logger package path. Online loggers are not part of this project; only the name
its train.py imports (``comet_utils.check_comet_resume``) is here."""
