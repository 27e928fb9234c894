"""The import graph: every models/*.py imports alone (no cycle hidden by import order), the module files depend
only on torch and the leaf models/layers.py (users copy them), nothing under utils/ imports models/, and no root
script imports another."""

import ast
import json
import subprocess
import sys

import pytest

from utils.general import ROOT

# the scripts at the repository root; what they share lives in utils/ or models/
ROOT_SCRIPTS = ("train", "val", "detect", "export", "hubconf")
# models/ files that may import other project modules; every other models/*.py is a module file
NOT_LEAF_DEPENDENT = {"__init__", "common", "yolo", "experimental", "backends", "autoshape"}

# In one fresh interpreter: for each file, forget every project module, import the file, and record which project
# modules that import loaded (torch stays loaded: it is not what is checked and is slow to import).
PROBE = """
import importlib, json, sys
sys.path.insert(0, {root!r})
loaded = {{}}
for stem in {stems!r}:
    for name in [m for m in sys.modules if m.split(".")[0] in ("models", "utils")]:
        del sys.modules[name]
    try:
        importlib.import_module("models." + stem)
    except Exception as e:
        loaded[stem] = "FAILED: " + repr(e)
        continue
    loaded[stem] = sorted(m for m in sys.modules if m.split(".")[0] in ("models", "utils"))
print(json.dumps(loaded))
"""


def test_each_models_file_imports_alone_and_module_files_need_only_the_leaf():
    stems = sorted(p.stem for p in (ROOT / "models").glob("*.py"))
    assert {"layers", "common", "yolo", "spd", "akconv"} <= set(stems)
    out = subprocess.run([sys.executable, "-c", PROBE.format(root=str(ROOT), stems=stems)], capture_output=True,
                         text=True, timeout=300, check=True).stdout
    loaded = json.loads(out.strip().splitlines()[-1])
    failed = {k: v for k, v in loaded.items() if isinstance(v, str)}
    assert not failed
    assert loaded["layers"] == ["models", "models.layers"]  # the leaf: torch only
    for stem in set(stems) - NOT_LEAF_DEPENDENT:
        assert set(loaded[stem]) <= {"models", "models.layers", f"models.{stem}"}, stem


def _imported_modules(path):
    """Top-level names of every module a Python file imports (at any depth in the file)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_utils_never_imports_models():
    files = sorted((ROOT / "utils").rglob("*.py"))
    assert len(files) > 5
    offenders = [p.name for p in files if "models" in _imported_modules(p)]
    assert not offenders


EXPORT_MOVE = pytest.mark.xfail(strict=False, reason="export move in progress: it still imports export")


@pytest.mark.parametrize("script", [pytest.param(s, marks=EXPORT_MOVE) if s in ("detect", "val") else s
                                    for s in ROOT_SCRIPTS])
def test_no_root_script_imports_another(script):
    """Scripts are entry points: one importing another would run its module-level code and tie them together."""
    imported = _imported_modules(ROOT / f"{script}.py") & set(ROOT_SCRIPTS) - {script}
    assert not imported, f"{script}.py imports the root script(s) {sorted(imported)}"
