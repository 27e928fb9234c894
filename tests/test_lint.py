"""Code hygiene: ``ruff check`` passes over the repository (rules in pyproject.toml), and every public function and
method of models/*.py and utils/*.py carries type hints."""

import ast
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from utils.general import ROOT

# methods checked although their names start with '_' (forward is public anyway)
CHECKED_DUNDERS = {"__init__", "__call__"}


def _ruff_command():
    """The ruff executable on PATH, else ``python -m ruff`` where the package is installed, else None."""
    if exe := shutil.which("ruff"):
        return [exe]
    if importlib.util.find_spec("ruff") is not None:
        return [sys.executable, "-m", "ruff"]
    return None


def unhinted_functions(source, filename="<source>"):
    """``file:line qualified.name`` of every public function or method in ``source`` with no annotation on its
    return nor on any parameter beyond self/cls.

    Public: module-level functions and the methods of module-level public classes (and their nested classes) whose
    name does not start with '_', plus ``__init__`` and ``__call__``. Functions nested in functions are skipped.
    """
    offenders = []

    def hinted(fn):
        a = fn.args
        params = [*a.posonlyargs, *a.args, *a.kwonlyargs, *(p for p in (a.vararg, a.kwarg) if p)]
        if params and params[0].arg in ("self", "cls"):
            params = params[1:]
        return fn.returns is not None or any(p.annotation is not None for p in params)

    def visit(body, prefix):
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                public = not node.name.startswith("_") or node.name in CHECKED_DUNDERS
                if public and not hinted(node):
                    offenders.append(f"{filename}:{node.lineno} {prefix}{node.name}")
            elif isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                visit(node.body, f"{prefix}{node.name}.")

    visit(ast.parse(source).body, "")
    return offenders


RUFF = _ruff_command()


@pytest.mark.skipif(RUFF is None, reason="ruff is not installed (pip install -r requirements-extra.txt)")
def test_ruff_check_passes():
    result = subprocess.run([*RUFF, "check", "--no-cache", "."], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"ruff check found problems:\n{result.stdout[-6000:]}{result.stderr[-2000:]}"


def test_unhinted_functions_finds_exactly_the_public_unhinted_ones():
    source = '''
def bare(x):
    def nested(y):
        return y
    return nested(x)

def hinted_param(x: int, y):
    return x

def hinted_return(x) -> int:
    return x

def _private(x):
    return x

class Block:
    def __init__(self, c):
        self.c = c

    def forward(self, x: int):
        return x

    def fuse(self):
        return self

    def __repr__(self):
        return "Block"

    @staticmethod
    def yaml_c2(c1, args):
        return c1

    @classmethod
    def build(cls, c) -> "Block":
        return cls(c)

class _Hidden:
    def run(self, x):
        return x
'''
    assert unhinted_functions(source, "m.py") == [
        "m.py:2 bare",
        "m.py:17 Block.__init__",
        "m.py:23 Block.fuse",
        "m.py:30 Block.yaml_c2",
    ]


_MODELS = sorted((ROOT / "models").glob("*.py"))


@pytest.mark.parametrize(
    "files",
    [
        pytest.param(_MODELS, id="models"),
        pytest.param(sorted((ROOT / "models" / "export").rglob("*.py")), id="models-export"),
        pytest.param(sorted((ROOT / "utils").rglob("*.py")), id="utils"),
        pytest.param([ROOT / f"{s}.py" for s in ("train", "val", "detect", "export", "hubconf")], id="scripts"),
    ],
)
def test_public_functions_have_type_hints(files: list[Path]):
    assert files, "no files to check: the layout changed"
    offenders = [o for f in files for o in unhinted_functions(f.read_text(), str(f.relative_to(ROOT)))]
    assert not offenders, f"{len(offenders)} public functions without type hints:\n" + "\n".join(offenders)
