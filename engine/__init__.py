"""The engine layer: procedures the scripts share (training phases), between the scripts and models/."""
