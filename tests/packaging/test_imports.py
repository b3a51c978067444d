"""No import cycles among plumline's modules, and every package ships (read from source, fast)."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

from import_graph import ROOT, find_cycles, import_graph, modules, package_dirs


def _show(cycles: list[list[str]]) -> str:
    return "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_no_import_cycles_among_plumline_modules():
    """Module-level imports (what runs on ``import``) form no cycle: a cycle makes the import order
    matter and breaks ``from x import name`` when ``name`` is defined after the import."""
    cycles = find_cycles(import_graph(module_level=True))
    assert not cycles, _show(cycles)


def test_no_cycles_through_lazy_imports_either():
    """Imports inside functions (kept lazy for start-up time) still make a dependency: two modules
    that reach into each other are one idea in two files (the trainer CLI <-> dpo/kto was one).
    ``if TYPE_CHECKING:`` imports are annotations only and do not count."""
    cycles = find_cycles(import_graph(module_level=False))
    assert not cycles, _show(cycles)


def test_the_checker_finds_a_cycle(tmp_path: Path):
    (tmp_path / "pyproject.toml").write_text('[tool.setuptools]\npackage-dir = { "pkg" = "src" }\n')
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "__init__.py").write_text("")
    (src / "a.py").write_text("from .sub import b\n")
    (src / "sub" / "__init__.py").write_text("")
    (src / "sub" / "b.py").write_text("import os\nif True:\n    from pkg.sub.c import f\n")
    (src / "sub" / "c.py").write_text("from .. import a\n\ndef f():\n    from . import d\n")
    (src / "sub" / "d.py").write_text("from typing import TYPE_CHECKING\n"
                                      "if TYPE_CHECKING:\n    from .. import a\n"
                                      "def g():\n    from pkg.sub import c\n")
    graph = import_graph(module_level=True, root=tmp_path)
    assert graph["pkg.a"] == {"pkg.sub.b"} and graph["pkg.sub.c"] == {"pkg.a"}
    assert graph["pkg.sub.d"] == set()  # TYPE_CHECKING and function-level imports do not run on import
    assert find_cycles(graph) == [["pkg.a", "pkg.sub.b", "pkg.sub.c", "pkg.a"]]
    lazy = import_graph(module_level=False, root=tmp_path)  # every import statement counts
    assert lazy["pkg.sub.c"] == {"pkg.a", "pkg.sub.d"} and lazy["pkg.sub.d"] == {"pkg.sub.c"}
    (src / "sub" / "c.py").write_text("def f():\n    from . import d\n")
    assert find_cycles(import_graph(module_level=True, root=tmp_path)) == []


def test_every_package_is_listed_in_pyproject():
    """A folder with ``__init__.py`` missing from ``packages`` is left out of the wheel."""
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    missing = sorted(set(package_dirs()) - listed)
    assert not missing, f"packages missing from pyproject's [tool.setuptools] packages: {missing}"


def test_trainer_modules_import_alone():
    """Each trainer module imports first in a fresh interpreter (no hidden order dependence)."""
    names = sorted(m for m in modules() if m.startswith("plumline.trainers") and not m.endswith("__main__"))
    code = "import importlib, sys\nfor m in sys.argv[1:]:\n    importlib.import_module(m)\n"
    for name in names:
        r = subprocess.run([sys.executable, "-c", code, name], check=False, capture_output=True, text=True,
                           timeout=60)
        assert r.returncode == 0, f"{name}: {r.stderr[-2000:]}"
