"""The import graph: every models/ file (the export package's included) imports alone (no cycle hidden by import
order), the module files depend only on torch and the leaf models/layers.py (users copy them), models/export
builds on models/backends and never the reverse, no chain of project imports loops, nothing under utils/
imports models/, and no root script imports another."""

import ast
import json
import subprocess
import sys

from utils.general import ROOT

# the scripts at the repository root; what they share lives in utils/ or models/
ROOT_SCRIPTS = ("train", "val", "detect", "export", "hubconf")
# models/*.py files that may import other project modules; every other models/*.py is a module file. The export
# package (models/export/) builds on the whole project: none of its files is a module file.
NOT_LEAF_DEPENDENT = {"__init__", "common", "yolo", "experimental", "backends", "edge_runtimes", "autoshape"}

# In one fresh interpreter: for each module, forget every project module, import it, and record which project
# modules that import loaded (torch stays loaded: it is not what is checked and is slow to import).
PROBE = """
import importlib, json, sys
sys.path.insert(0, {root!r})
loaded = {{}}
for module in {modules!r}:
    for name in [m for m in sys.modules if m.split(".")[0] in ("models", "utils")]:
        del sys.modules[name]
    try:
        importlib.import_module(module)
    except Exception as e:
        loaded[module] = "FAILED: " + repr(e)
        continue
    loaded[module] = sorted(m for m in sys.modules if m.split(".")[0] in ("models", "utils"))
print(json.dumps(loaded))
"""


def _module_name(path):
    """Dotted module name of a project file: models/export/onnx.py -> models.export.onnx, models/__init__.py ->
    models."""
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_each_models_file_imports_alone_and_module_files_need_only_the_leaf():
    files = {_module_name(p): p for p in (ROOT / "models").rglob("*.py")}
    assert {"models.layers", "models.common", "models.yolo", "models.spd", "models.akconv", "models.export",
            "models.export.core", "models.export.onnx", "models.export.backend_cache"} <= set(files)
    modules = sorted(files)
    out = subprocess.run([sys.executable, "-c", PROBE.format(root=str(ROOT), modules=modules)], capture_output=True,
                         text=True, timeout=300, check=True).stdout
    loaded = json.loads(out.strip().splitlines()[-1])
    failed = {k: v for k, v in loaded.items() if isinstance(v, str)}
    assert not failed
    assert loaded["models.layers"] == ["models", "models.layers"]  # the leaf: torch only
    module_files = [m for m, p in files.items() if p.parent == ROOT / "models" and p.stem not in NOT_LEAF_DEPENDENT]
    assert len(module_files) > 5
    for module in module_files:
        assert set(loaded[module]) <= {"models", "models.layers", module}, module
    assert "models.export.onnx" in loaded["models.export.tensorrt"]  # the probe sees submodule imports
    assert not [m for m in loaded["models.backends"] if m.startswith("models.export")]  # one direction only


def _imported_modules(path):
    """Top-level names of every module a Python file imports (at any depth in the file)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def _project_imports(path, modules):
    """The project modules (names in ``modules``) a file imports at any depth; ``from package import name`` counts
    as importing the submodule where ``name`` is one, else the package."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name in modules)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module in modules:
            for a in node.names:
                found.add(f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module)
    return found


def _find_cycle(graph):
    """One import cycle of ``graph`` ({module: imported modules}) as [a, b, ..., a], or None."""
    state = {}  # module -> "open" while on the current path, "done" once all it reaches is cycle-free

    def visit(node, path):
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt, path + [nxt])
                if cycle:
                    return cycle
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state:
            cycle = visit(start, [start])
            if cycle:
                return cycle
    return None


def test_project_imports_have_no_cycle():
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None
    files = {_module_name(p): p for folder in ("models", "utils", "engine") for p in (ROOT / folder).rglob("*.py")}
    graph = {m: _project_imports(p, files) - {m} for m, p in files.items()}
    assert graph["models.export.tensorrt"] >= {"models.export.core", "models.export.onnx"}  # edges are found
    assert graph["models.export"] >= {"models.export.formats", "models.export.pipeline"}
    cycle = _find_cycle(graph)
    assert cycle is None, " -> ".join(cycle)


def test_utils_never_imports_models():
    files = sorted((ROOT / "utils").rglob("*.py"))
    assert len(files) > 5
    offenders = [p.name for p in files if "models" in _imported_modules(p)]
    assert not offenders


def test_no_script_imports_another():
    """Scripts are entry points: one importing another would run its module-level code and tie them together.
    The task scripts (segment/*.py) and benchmarks.py share train.py's phases through engine/, not train.py."""
    scripts = [ROOT / f"{s}.py" for s in (*ROOT_SCRIPTS, "benchmarks")] + sorted((ROOT / "segment").glob("*.py"))
    assert len(scripts) >= 9
    offenders = {p.relative_to(ROOT).as_posix(): sorted(_imported_modules(p) & set(ROOT_SCRIPTS) - {p.stem})
                 for p in scripts}
    assert {s: m for s, m in offenders.items() if m} == {}


def test_engine_sits_between_scripts_and_models():
    """engine/ imports models/ and utils/, never a script; models/ and utils/ never import engine/."""
    engine_files = sorted((ROOT / "engine").rglob("*.py"))
    assert engine_files
    script_imports = {p.name: sorted(_imported_modules(p) & set(ROOT_SCRIPTS)) for p in engine_files}
    assert {k: v for k, v in script_imports.items() if v} == {}
    assert "models" in _imported_modules(ROOT / "engine" / "training.py")  # the edge the layering allows is seen
    lower = sorted((ROOT / "models").rglob("*.py")) + sorted((ROOT / "utils").rglob("*.py"))
    assert [p.relative_to(ROOT).as_posix() for p in lower if "engine" in _imported_modules(p)] == []
