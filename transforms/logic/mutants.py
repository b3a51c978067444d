"""A small deterministic mutant generator: wrong variants of a correct program, to measure how many
bugs a test suite catches (its recall). Used by ``bench/bench_test_quality.py``.

Each mutant changes one site: a comparison operator (< <=, > >=, == !=, in / not in), an arithmetic
operator (+ -, * //, // %, ...), an integer constant (+1 / -1), a boolean constant, ``and``/``or``,
a negated ``if`` condition, or an early ``return`` of a neutral value at the top of the function.
Some mutants are equivalent to the original (no test can catch them); recall is reported for the
synthesized tests beside the dataset's own tests on the same mutants, so both see the same ones.
"""

from __future__ import annotations

import ast
import copy
from collections.abc import Callable
from dataclasses import dataclass

_CMP_SWAP: dict[type, type] = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt,
                               ast.Eq: ast.NotEq, ast.NotEq: ast.Eq, ast.In: ast.NotIn, ast.NotIn: ast.In,
                               ast.Is: ast.IsNot, ast.IsNot: ast.Is}
_BIN_SWAP: dict[type, type] = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.FloorDiv,
                               ast.FloorDiv: ast.Mult, ast.Div: ast.Mult, ast.Mod: ast.FloorDiv,
                               ast.Pow: ast.Mult}


@dataclass(frozen=True)
class Mutant:
    name: str  # e.g. "cmp Lt->LtE @12:8"
    code: str


def _sites(tree: ast.AST) -> list[tuple[str, ast.AST, int]]:
    """(kind, node, option) for every mutable site, in source order."""
    out: list[tuple[str, ast.AST, int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            out += [("cmp", node, i) for i, op in enumerate(node.ops) if type(op) in _CMP_SWAP]
        elif isinstance(node, (ast.BinOp, ast.AugAssign)) and type(node.op) in _BIN_SWAP:
            out.append(("bin", node, 0))
        elif isinstance(node, ast.Constant) and type(node.value) is int:
            out += [("int", node, 1), ("int", node, -1)]
        elif isinstance(node, ast.Constant) and type(node.value) is bool:
            out.append(("bool", node, 0))
        elif isinstance(node, ast.BoolOp):
            out.append(("boolop", node, 0))
        elif isinstance(node, (ast.If, ast.While)):
            out.append(("negate", node, 0))
        elif isinstance(node, ast.FunctionDef) and node.body:
            out.append(("early_return", node, 0))
    out.sort(key=lambda s: (getattr(s[1], "lineno", 0), getattr(s[1], "col_offset", 0), s[0], s[2]))
    return out


def _apply(kind: str, node: ast.AST, opt: int) -> str:
    if kind == "cmp":
        old = node.ops[opt]  # type: ignore[attr-defined]
        node.ops[opt] = _CMP_SWAP[type(old)]()  # type: ignore[attr-defined]
        return f"cmp {type(old).__name__}->{type(node.ops[opt]).__name__}"  # type: ignore[attr-defined]
    if kind == "bin":
        old = node.op  # type: ignore[attr-defined]
        node.op = _BIN_SWAP[type(old)]()  # type: ignore[attr-defined]
        return f"bin {type(old).__name__}->{type(node.op).__name__}"  # type: ignore[attr-defined]
    if kind == "int":
        node.value = node.value + opt  # type: ignore[attr-defined]
        return f"int {'+1' if opt > 0 else '-1'}"
    if kind == "bool":
        node.value = not node.value  # type: ignore[attr-defined]
        return "bool flip"
    if kind == "boolop":
        node.op = ast.Or() if isinstance(node.op, ast.And) else ast.And()  # type: ignore[attr-defined]
        return "and<->or"
    if kind == "negate":
        node.test = ast.UnaryOp(op=ast.Not(), operand=node.test)  # type: ignore[attr-defined]
        return "negate condition"
    if kind == "early_return":
        node.body.insert(0, ast.Return(value=ast.Constant(None)))  # type: ignore[attr-defined]
        return "early return None"
    raise ValueError(kind)


def generate_mutants(code: str, max_mutants: int = 20, *,
                     only_function: str | None = None,
                     keep: Callable[[str], bool] | None = None) -> list[Mutant]:
    """Up to ``max_mutants`` distinct one-site mutants of ``code`` (deterministic: sites in source order,
    evenly spread when there are more than wanted). ``only_function`` restricts sites to one function
    (e.g. the entry point, not the prompt's imports). Code that does not parse gives no mutants."""
    try:
        tree = ast.parse(code)
        original = ast.unparse(tree)
    except (SyntaxError, ValueError, RecursionError):
        return []
    scope: ast.AST = tree
    if only_function:
        fn = next((n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == only_function),
                  None)
        if fn is None:
            return []
        scope = fn
    sites = _sites(scope)
    # map each site to its index in a walk of a fresh copy, so every mutant starts from the original
    all_nodes = list(ast.walk(tree))
    index = {id(n): i for i, n in enumerate(all_nodes)}
    out: list[Mutant] = []
    seen = {original}
    for kind, node, opt in sites:
        fresh = copy.deepcopy(tree)
        target = list(ast.walk(fresh))[index[id(node)]]
        label = _apply(kind, target, opt)
        try:
            text = ast.unparse(ast.fix_missing_locations(fresh))
        except (ValueError, RecursionError):
            continue
        if text in seen or (keep is not None and not keep(text)):
            continue
        seen.add(text)
        out.append(Mutant(name=f"{label} @{getattr(node, 'lineno', 0)}:{getattr(node, 'col_offset', 0)}",
                          code=text))
    if len(out) > max_mutants:
        step = len(out) / max_mutants
        out = [out[int(i * step)] for i in range(max_mutants)]
    return out
