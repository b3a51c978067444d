"""The import graph of plumline's own modules, read from the source with ``ast`` (nothing imported).

Module names come from pyproject's ``package-dir`` mapping (``plumline.trainers`` -> ``trainers/``),
so the graph is the installed package's, whatever the folder names.
"""

from __future__ import annotations

import ast
import tomllib
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def package_dirs(root: Path = ROOT) -> dict[str, Path]:
    """Every package (a folder with ``__init__.py``) under the mapped folders: name -> folder."""
    tool = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    out: dict[str, Path] = {}
    for name, rel in tool["package-dir"].items():
        base = root / rel
        for init in sorted(base.rglob("__init__.py")):
            parts = init.parent.relative_to(base).parts
            if any(p.startswith(".") or p == "__pycache__" for p in parts):
                continue
            out[".".join((name, *parts))] = init.parent
    return out


def modules(root: Path = ROOT) -> dict[str, Path]:
    """Every module: dotted name -> file (a package is its ``__init__.py``)."""
    out: dict[str, Path] = {}
    for pkg, folder in package_dirs(root).items():
        for f in sorted(folder.glob("*.py")):
            out[pkg if f.name == "__init__.py" else f"{pkg}.{f.stem}"] = f
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(node: ast.AST, module_level: bool) -> Iterator[ast.Import | ast.ImportFrom]:
    """Import statements under ``node`` that run: never those under ``if TYPE_CHECKING:`` (type
    annotations only); with ``module_level`` only those that run on import (not inside functions)."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            yield child
        elif module_level and isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        elif isinstance(child, ast.If) and _is_type_checking(child.test):
            for n in child.orelse:
                yield from _imports(ast.Module([n], []), module_level)
        else:
            yield from _imports(child, module_level)


def _targets(stmt: ast.Import | ast.ImportFrom, name: str, is_package: bool, known: set[str]) -> set[str]:
    if isinstance(stmt, ast.Import):
        return {a.name for a in stmt.names if a.name in known}
    if stmt.level:
        base = name.split(".") if is_package else name.split(".")[:-1]
        base = base[: len(base) - (stmt.level - 1)]
        source = ".".join(base + ([stmt.module] if stmt.module else []))
    else:
        source = stmt.module or ""
    out = set()
    for alias in stmt.names:
        sub = f"{source}.{alias.name}"
        if sub in known:
            out.add(sub)  # from pkg import module
        elif source in known:
            out.add(source)
    return out


def import_graph(module_level: bool = True, root: Path = ROOT) -> dict[str, set[str]]:
    """module -> the plumline modules it imports."""
    mods = modules(root)
    known = set(mods)
    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        is_package = path.name == "__init__.py"
        edges: set[str] = set()
        for stmt in _imports(tree, module_level):
            edges |= _targets(stmt, name, is_package, known)
        edges.discard(name)
        graph[name] = edges
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (as a path a -> ... -> a) per strongly connected component with more than one
    module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    sccs: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                sccs.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [_cycle_in(graph, comp) for comp in sccs]


def _cycle_in(graph: dict[str, set[str]], comp: list[str]) -> list[str]:
    """A concrete cycle through the component's first module (breadth-first, shortest)."""
    members = set(comp)
    start = comp[0]
    paths = {start: [start]}
    queue = [start]
    while queue:
        v = queue.pop(0)
        for w in sorted(graph[v] & members):
            if w == start:
                return paths[v] + [start]
            if w not in paths:
                paths[w] = paths[v] + [w]
                queue.append(w)
    return comp
