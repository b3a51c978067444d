"""Static checks of one test snippet (shared by the reply parser and the problem-text examples),
and the canonical form used to collapse duplicates.

A wrong or unusable test turns a correct sample into a "rejected" one and poisons the preference
data, so a snippet that is not a clean, self-contained assert on the entry point is dropped with a
``TestDropReason`` (and words in the detail) instead of being trusted.
"""

from __future__ import annotations

import ast
import builtins

from plumline.data_schemas import TestDropReason
from plumline.transforms.logic.readers import RenameName

# Modules a test may import: deterministic, side-effect free. Anything else (os, sys, socket,
# subprocess, random, time...) makes a test depend on the world outside the candidate.
ALLOWED_MODULES = frozenset({
    "math", "cmath", "re", "collections", "itertools", "functools", "typing", "string", "fractions",
    "decimal", "heapq", "bisect", "statistics", "operator", "copy", "json", "numbers", "dataclasses",
    "enum", "hashlib", "datetime", "unicodedata", "array", "textwrap",
})
# Builtins a test must not call: they read the world (input, open), run code, or end the process.
BANNED_BUILTINS = frozenset({
    "input", "open", "exec", "eval", "compile", "__import__", "breakpoint", "exit", "quit", "help",
    "globals", "locals", "vars", "memoryview", "setattr", "delattr", "getattr",
})
_BUILTIN_NAMES = frozenset(n for n in dir(builtins) if n not in BANNED_BUILTINS)


def safe_parse(code: str) -> ast.Module | None:
    try:
        return ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError, OverflowError):
        return None


def safe_unparse(node: ast.AST) -> str | None:
    try:
        return ast.unparse(node)
    except (RecursionError, ValueError, AttributeError, TypeError, MemoryError):
        return None


def bound_names(node: ast.AST) -> set[str]:
    """Every name the snippet binds anywhere (assignments, loop/comprehension targets, defs, imports,
    arguments, except/with targets). Scopes are flattened: a test is tiny, this is a lint, not Python."""
    bound: set[str] = set()
    for n in ast.walk(node):
        if isinstance(n, ast.Name) and isinstance(n.ctx, (ast.Store, ast.Del)):
            bound.add(n.id)
        elif isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(n.name)
        elif isinstance(n, ast.arg):
            bound.add(n.arg)
        elif isinstance(n, (ast.Import, ast.ImportFrom)):
            for a in n.names:
                bound.add((a.asname or a.name).split(".")[0])
        elif isinstance(n, (ast.ExceptHandler, ast.MatchAs, ast.MatchStar)) and n.name:
            bound.add(n.name)
        elif isinstance(n, ast.MatchMapping) and n.rest:
            bound.add(n.rest)
        elif isinstance(n, (ast.Global, ast.Nonlocal)):
            bound.update(n.names)
    return bound


def loaded_names(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


def check_test(code: str, entry_point: str, max_chars: int) -> tuple[TestDropReason | None, str, str]:
    """Static checks of one snippet. Returns (reason or None, repaired code, detail).

    Repairs are only the unambiguous ones: an unbound ``candidate`` is the entry point (HumanEval's
    convention) and an allowed stdlib module used without its import gets the import."""
    try:
        return _check_test(code, entry_point, max_chars)
    except (RecursionError, MemoryError):
        return TestDropReason.SYNTAX_ERROR, code, "too deeply nested"


def _check_test(code: str, entry_point: str, max_chars: int) -> tuple[TestDropReason | None, str, str]:
    if not code.strip():
        return TestDropReason.SYNTAX_ERROR, code, "empty snippet"
    if len(code) > max_chars:
        return TestDropReason.TOO_LONG, code, f"{len(code)} chars > {max_chars}"
    tree = safe_parse(code)
    if tree is None:
        return TestDropReason.SYNTAX_ERROR, code, "does not parse"
    if not any(isinstance(n, ast.Assert) for n in ast.walk(tree)):
        return TestDropReason.NO_ASSERT, code, "no assert statement"
    bound = bound_names(tree)
    loaded = loaded_names(tree)
    if "candidate" in loaded and "candidate" not in bound and entry_point != "candidate":
        tree = RenameName("candidate", entry_point).visit(tree)
        code = safe_unparse(tree) or code
        loaded = loaded_names(tree)
    if entry_point in bound:
        return TestDropReason.REDEFINES_ENTRY, code, f"the snippet binds {entry_point!r}"
    if not any(isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == entry_point
               for n in ast.walk(tree)):
        return TestDropReason.NO_ENTRY_CALL, code, f"no call of {entry_point}()"
    for n in ast.walk(tree):
        if isinstance(n, (ast.Import, ast.ImportFrom)):
            mods = [a.name for a in n.names] if isinstance(n, ast.Import) else [n.module or ""]
            for m in mods:
                if m.split(".")[0] not in ALLOWED_MODULES or (isinstance(n, ast.ImportFrom) and n.level):
                    return TestDropReason.NOT_SELF_CONTAINED, code, f"imports {m or '.'}"
        elif isinstance(n, ast.Attribute) and n.attr.startswith("__") and n.attr != "__name__":
            return TestDropReason.NOT_SELF_CONTAINED, code, f"uses {n.attr}"
        elif isinstance(n, ast.Name) and n.id in BANNED_BUILTINS and n.id not in bound:
            return TestDropReason.NOT_SELF_CONTAINED, code, f"uses {n.id}()"
        elif isinstance(n, (ast.Global, ast.Nonlocal, ast.AsyncFunctionDef, ast.Await, ast.Yield,
                            ast.YieldFrom)):
            return TestDropReason.NOT_SELF_CONTAINED, code, f"uses {type(n).__name__.lower()}"
    free = sorted(loaded - bound - _BUILTIN_NAMES - {entry_point})
    auto_imports = [m for m in free if m in ALLOWED_MODULES]
    free = [m for m in free if m not in ALLOWED_MODULES]
    if free:
        called = {n.func.id for n in ast.walk(tree)
                  if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
        other = [f for f in free if f in called]
        if other:
            return TestDropReason.CALLS_OTHER, code, f"calls undefined {other[0]}()"
        return TestDropReason.UNDEFINED_NAME, code, f"undefined name {free[0]}"
    if auto_imports:
        code = "".join(f"import {m}\n" for m in auto_imports) + code
        if len(code) > max_chars:
            return TestDropReason.TOO_LONG, code, f"{len(code)} chars > {max_chars}"
    return None, code, ""


def normalize_test(code: str) -> str:
    """Canonical form for duplicate collapse: the AST unparsed (formatting, quotes and comments vanish),
    assert messages dropped, docstring-like bare strings dropped. Unparsable code is returned stripped."""
    tree = safe_parse(code)
    if tree is None:
        return code.strip()

    class Strip(ast.NodeTransformer):
        def visit_Assert(self, node: ast.Assert) -> ast.AST:
            return ast.copy_location(ast.Assert(test=self.visit(node.test), msg=None), node)

        def visit_Expr(self, node: ast.Expr) -> ast.AST | None:
            if isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
                return None
            return self.generic_visit(node)

    try:
        tree = ast.fix_missing_locations(Strip().visit(tree))
    except RecursionError:
        return code.strip()
    return safe_unparse(tree) or code.strip()
