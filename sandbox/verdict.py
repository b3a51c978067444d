"""Test preparation and the parent-side verdict: pure functions, no processes.

Every ``assert`` in a test snippet is rewritten into ``__plum_check__(site, (values...))``: the
operands that are Python literals (``ast.literal_eval``-able: the expected values of the usual
``assert f(x) == EXPECTED``) are *withheld* and kept only in the parent and the supervisor; the other
operands are evaluated in the sandbox and cross the boundary as plain tagged data; the comparison is
done outside the candidate's process. Every call inside test code is wrapped in
``__plum_plain__(...)`` so values computed from a candidate's result are plain builtin data
(a rigged ``int``/``float``/``list`` subclass is stripped before the test computes with it).

Guarantees by test shape are documented in ``sandbox/README.md``.
"""

from __future__ import annotations

import ast
import copy
import marshal
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from ._protocol import TREE_CALLS, ExprTooBig, bounded_binop, check_size, decode, encode, evaluate_site

_CMP = {"Eq", "NotEq", "Lt", "LtE", "Gt", "GtE", "Is", "IsNot", "In", "NotIn"}
CHECK_NAME = "__plum_check__"
PLAIN_NAME = "__plum_plain__"


# Stdlib modules the supervisor snapshots; a test that names one gets it restored before it runs.
GUARDED_MODULES = frozenset({"math", "cmath", "re", "collections", "itertools", "functools", "string",
                             "random",
                             "heapq", "bisect", "operator", "copy"})


@dataclass(frozen=True)
class PreparedTest:
    """An assert test ready for the sandbox."""

    source: str  # rewritten snippet sent into the sandbox (no expected literals); "" when compiled
    sites: tuple[dict, ...]  # one per assert: ops, operands (literals encoded), negation, line
    required: frozenset[int]  # sites that run unconditionally: each must be reported for a pass
    error: str | None = None  # the snippet itself is invalid ("SyntaxError: ...")
    guards: tuple[str, ...] = ()  # guarded stdlib modules the test refers to
    code: bytes | None = None  # the rewritten snippet compiled here and marshalled (see prepare_test)

    @property
    def wire_sites(self) -> list[dict]:
        return list(self.sites)

    @property
    def wire_code(self) -> str | list:
        """The test as it travels: source text, or ``["m", hex of marshalled bytecode]``."""
        return ["m", self.code.hex()] if self.code is not None else self.source


def _is_literal(node: ast.AST, consts: _Constants | None = None) -> tuple[bool, Any]:
    try:
        return True, ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        pass
    if consts is None:
        return False, None
    try:
        return True, consts.fold(node, 0)
    except _NotConstant:
        return False, None
    except (ValueError, TypeError, ArithmeticError, MemoryError, RecursionError):
        return False, None


class _NotConstant(Exception):
    pass


# Constructors that are pure and cheap on literal arguments: an expected value spelled with them
# (``float('inf')``, ``set([1, 2])``, ``Fraction(1, 3)``, ``Decimal('0.1')``, ``-math.inf``) is
# computed here and withheld from the sandbox like a literal.
_FOLDABLE_BUILTINS = frozenset({"float", "int", "complex", "set", "frozenset", "tuple", "list", "str", "bool",
                                "abs", "len", "sorted", "min", "max", "sum", "round", "range", "divmod",
                                "pow", "reversed"})
# Arithmetic on constants (``10**9 + 7``, ``2**40``, ``'ab' * 3``, ``[0] * 5``): computed here, within
# size bounds, so the compiler does not put the expected value into the test's constants in the child.
_BINOPS = frozenset({ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow, ast.LShift,
                     ast.RShift, ast.BitOr, ast.BitAnd, ast.BitXor})
MAX_FOLDED_BITS = 1 << 16
MAX_FOLDED_LEN = 100_000


def _bounded_binop(op: type, a: Any, b: Any) -> Any:
    if op is ast.Mod and type(a) in (str, bytes):
        raise _NotConstant  # printf-style formatting: leave it to the test
    try:
        return bounded_binop(op.__name__, a, b, MAX_FOLDED_BITS, MAX_FOLDED_LEN)
    except ExprTooBig:
        raise _NotConstant from None


def _check_size(value: Any) -> None:
    if type(value) is reversed or type(value).__name__.endswith("iterator"):
        raise _NotConstant  # lazy objects: not a value to compare
    try:
        check_size(value, MAX_FOLDED_BITS, MAX_FOLDED_LEN)
    except ExprTooBig:
        raise _NotConstant from None


_FOLDABLE_IMPORTS = {("fractions", "Fraction"), ("decimal", "Decimal")}
_MATH_CONSTANTS = frozenset({"pi", "e", "tau", "inf", "nan"})


class _Constants:
    """Which names of a test snippet still mean the stdlib constructor they are named after: builtins
    the test never rebinds, and ``Fraction``/``Decimal``/``math`` that the test imports itself (a name
    the test leaves to the candidate's namespace could be anything)."""

    def __init__(self, tree: ast.Module, entry_point: str | None = None):
        bound: dict[str, int] = {} if not entry_point else {entry_point: 1}  # the candidate's, not a builtin
        self.used: set[str] = set()  # every name the test mentions, and the top modules it imports
        self.as_module: set[str] = set()  # names the test uses like a module (``math.x``) or imports
        self.imported: dict[str, tuple[str, str | None]] = {}  # name -> (module, attribute)
        self.has_loop = False
        for node in ast.walk(tree):
            t = type(node)
            if t is ast.For:
                self.has_loop = True
            if t is ast.Attribute and type(node.value) is ast.Name:
                self.as_module.add(node.value.id)
            elif t is ast.Name:
                self.used.add(node.id)
                if type(node.ctx) is not ast.Load:
                    bound[node.id] = bound.get(node.id, 0) + 1
            elif t in (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef):
                bound[node.name] = bound.get(node.name, 0) + 1
            elif t is ast.arg:
                bound[node.arg] = bound.get(node.arg, 0) + 1
            elif t is ast.Import:
                for a in node.names:
                    self.used.add(a.name.split(".")[0])
                    self.as_module.add(a.name.split(".")[0])
                    name = a.asname or a.name.split(".")[0]
                    bound[name] = bound.get(name, 0) + 1
                    if a.name in ("math", "fractions", "decimal"):
                        self.imported[name] = (a.name, None)
            elif t is ast.ImportFrom:
                if node.module:
                    self.used.add(node.module.split(".")[0])
                    self.as_module.add(node.module.split(".")[0])
                for a in node.names:
                    name = a.asname or a.name
                    bound[name] = bound.get(name, 0) + 1
                    if node.level == 0 and ((node.module, a.name) in _FOLDABLE_IMPORTS
                                            or (node.module == "math" and "math." + a.name in TREE_CALLS)):
                        self.imported[name] = (node.module, a.name)
        self.bound = bound
        # bound exactly once, by the import itself: the name means what was imported everywhere
        self.imported = {k: v for k, v in self.imported.items() if bound.get(k) == 1}
        self.rebound = {k for k in bound if k not in self.imported}

    def tree_callee(self, func: ast.expr) -> str | None:
        """The name in ``_protocol.TREE_CALLS`` that ``func`` surely means, or None."""
        if isinstance(func, ast.Name):
            if func.id in TREE_CALLS and "." not in func.id and func.id not in self.rebound:
                return func.id
            target = self.imported.get(func.id)
            if target is not None and target[0] == "math" and target[1] is not None:
                return "math." + target[1]
        elif (isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id == "math"
              and "math" not in self.rebound and "math." + func.attr in TREE_CALLS):
            return "math." + func.attr  # the test's `math` is the real module (bound by the harness)
        return None

    def _callee(self, func: ast.expr) -> Any:
        if isinstance(func, ast.Name):
            if func.id in _FOLDABLE_BUILTINS and func.id not in self.rebound:
                import builtins

                return getattr(builtins, func.id)
            target = self.imported.get(func.id)
            if target is not None and target[1] is not None and target[0] != "math":
                return _stdlib_attr(*target)
        elif isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
            target = self.imported.get(func.value.id)
            if target is not None and target[1] is None and (target[0], func.attr) in _FOLDABLE_IMPORTS:
                return _stdlib_attr(target[0], func.attr)
        raise _NotConstant

    def fold(self, node: ast.expr, depth: int) -> Any:
        if depth > 20:
            raise _NotConstant
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
            items = [self.fold(e, depth + 1) for e in node.elts]
            return {ast.List: list, ast.Tuple: tuple, ast.Set: set}[type(node)](items)
        if isinstance(node, ast.Dict):
            if any(k is None for k in node.keys):
                raise _NotConstant
            return {self.fold(k, depth + 1): self.fold(v, depth + 1) for k, v in zip(node.keys, node.values)}
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd, ast.Invert, ast.Not)):
            value = self.fold(node.operand, depth + 1)
            if isinstance(node.op, ast.Not):
                return not value
            if type(value) not in (int, float, complex, bool) and not _is_number_type(value):
                raise _NotConstant
            if isinstance(node.op, ast.Invert):
                if type(value) not in (int, bool):
                    raise _NotConstant
                return ~value
            return -value if isinstance(node.op, ast.USub) else +value
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            left, right = self.fold(node.left, depth + 1), self.fold(node.right, depth + 1)
            return _bounded_binop(type(node.op), left, right)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            target = self.imported.get(node.value.id)
            if target == ("math", None) and node.attr in _MATH_CONSTANTS:
                import math

                return getattr(math, node.attr)
            raise _NotConstant
        if isinstance(node, ast.Call) and not node.keywords and len(node.args) <= 3:
            if any(isinstance(a, ast.Starred) for a in node.args):
                raise _NotConstant
            if isinstance(node.func, ast.Name) and node.func.id == PLAIN_NAME and len(node.args) == 1:
                return self.fold(node.args[0], depth + 1)  # the rewriter's wrapper around every call
            fn = self._callee(node.func)
            args = [self.fold(a, depth + 1) for a in node.args]
            for a in args:  # literal-sized inputs only: int("9" * 10**6) never gets here
                if type(a) is int and a.bit_length() > 4096:
                    raise _NotConstant
            if fn is range:
                if len(range(*args)) > MAX_FOLDED_LEN:
                    raise _NotConstant
                return range(*args)  # only ever an argument of list/tuple/set/sorted/sum/... below
            if fn is pow and len(args) == 2:
                return _bounded_binop(ast.Pow, *args)
            result = fn(*args)
            if type(result) is range:
                raise _NotConstant
            _check_size(result)
            return result
        raise _NotConstant


def _stdlib_attr(module: str, attr: str) -> Any:
    import importlib

    return getattr(importlib.import_module(module), attr)


def _is_number_type(value: Any) -> bool:
    from decimal import Decimal
    from fractions import Fraction

    return type(value) in (Fraction, Decimal)


def _site(test: ast.expr, line: int, consts: _Constants | None = None) -> tuple[dict, list[ast.expr]]:
    neg = False
    while isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
        neg = not neg
        test = test.operand
    if isinstance(test, ast.Compare) and all(type(op).__name__ in _CMP for op in test.ops):
        nodes = [test.left, *test.comparators]
        ops = [type(op).__name__ for op in test.ops]
    else:
        nodes = [test]
        ops = []
    operands: list[list] = []
    exprs: list[ast.expr] = []
    for n in nodes:
        tree = _skeleton(n, consts, exprs, 0)
        if tree[0] == "c":
            operands.append(["lit", tree[1]])
        elif tree[0] == "h":
            operands.append(["val"])
        else:
            operands.append(["expr", tree])
    site = {"ops": ops, "operands": operands, "neg": neg, "line": line}
    if not ops and not exprs and len(operands) == 1 and not _truth(operands[0][1], neg):
        # ``assert False`` (the "should have raised" idiom): a test passes by never reaching it
        site["never"] = True
    return site, exprs


def _skeleton(node: ast.expr, consts: _Constants | None, holes: list[ast.expr], depth: int) -> list:
    """The part of an assert operand the parent can compute: a constant ``["c", enc]``, or arithmetic /
    numeric calls (``abs``, ``round``, ``math.isclose`` ... see ``_protocol.TREE_CALLS``) over
    constants and *holes* ``["h"]``, the maximal sub-expressions that only the child can evaluate
    (appended to ``holes`` in evaluation order). ``abs(f(x) - 0.5) < 1e-6`` sends only ``f(x)``."""
    ok, value = _is_literal(node, consts)
    if ok:
        return ["c", encode(value)]
    if consts is None or depth > 32:
        holes.append(node)
        return ["h"]
    inner = node
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == PLAIN_NAME
            and len(node.args) == 1):
        inner = node.args[0]  # the rewriter's wrapper around every call
    if isinstance(inner, ast.BinOp) and type(inner.op) in _BINOPS:
        return ["bin", type(inner.op).__name__, _skeleton(inner.left, consts, holes, depth + 1),
                _skeleton(inner.right, consts, holes, depth + 1)]
    if isinstance(inner, ast.UnaryOp) and isinstance(inner.op, (ast.USub, ast.UAdd, ast.Invert)):
        return ["un", type(inner.op).__name__, _skeleton(inner.operand, consts, holes, depth + 1)]
    if isinstance(inner, ast.Call) and inner is not node:
        name = consts.tree_callee(inner.func)
        if (name is not None and not any(isinstance(a, ast.Starred) for a in inner.args)
                and all(k.arg is not None for k in inner.keywords)):
            return ["call", name, [_skeleton(a, consts, holes, depth + 1) for a in inner.args],
                    [[k.arg, _skeleton(k.value, consts, holes, depth + 1)] for k in inner.keywords]]
    holes.append(node)
    return ["h"]


def _truth(encoded: Any, neg: bool) -> bool:
    try:
        value = bool(decode(encoded))
    except Exception:  # noqa: BLE001 - an odd literal: treat it as a normal assert
        return True
    return not value if neg else value


def _tail_assert_ids(tree: ast.Module) -> set[int]:
    """Asserts after which the test ends anyway: the module's last statement, or the last statement of
    a top-level function that the module's last statement calls. Their verdict can be sent without
    waiting for it (fail-fast changes nothing), which saves a round trip per test."""
    if not tree.body:
        return set()
    last = tree.body[-1]
    if isinstance(last, ast.Assert):
        return {id(last)}
    defs = {s.name: s for s in tree.body if isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef))}
    if (isinstance(last, ast.Expr) and isinstance(last.value, ast.Call)
            and isinstance(last.value.func, ast.Name)
            and last.value.func.id in defs and isinstance(defs[last.value.func.id], ast.FunctionDef)):
        body = defs[last.value.func.id].body
        if body and isinstance(body[-1], ast.Assert):
            return {id(body[-1])}
    return set()


def _required_assert_ids(tree: ast.Module) -> set[int]:
    """Asserts that run whenever the test runs: top-level ones, and those directly in the body of a
    top-level function that the test calls at top level (HumanEval's ``check(candidate)``)."""
    ids = {id(s) for s in tree.body if isinstance(s, ast.Assert)}
    defs = {s.name: s for s in tree.body if isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef))}
    for s in tree.body:
        if (isinstance(s, ast.Expr) and isinstance(s.value, ast.Call)
                and isinstance(s.value.func, ast.Name) and s.value.func.id in defs):
            ids.update(id(b) for b in defs[s.value.func.id].body if isinstance(b, ast.Assert))
    return ids


class _Rewriter(ast.NodeTransformer):
    def __init__(self, required_ids: set[int], tail_ids: set[int], consts: _Constants | None = None):
        self.consts = consts
        self.sites: list[dict] = []
        self.required: set[int] = set()
        self.required_ids = required_ids
        self.tail_ids = tail_ids

    def visit_Assert(self, node: ast.Assert) -> ast.stmt | list[ast.stmt]:
        if isinstance(node.test, ast.BoolOp) and isinstance(node.test.op, ast.And):
            # `assert A and B` is `assert A; assert B` (B runs only when A holds): each part gets its own
            # site, so the pure part of each can be decided outside the sandbox
            parts = []
            for k, value in enumerate(node.test.values):
                part = _at(ast.Assert(test=value, msg=node.msg), node)
                if id(node) in self.required_ids:
                    self.required_ids.add(id(part))
                if id(node) in self.tail_ids and k == len(node.test.values) - 1:
                    self.tail_ids.add(id(part))
                parts.append(part)
            out: list[ast.stmt] = []
            for part in parts:
                res = self.visit_Assert(part)
                out.extend(res if isinstance(res, list) else [res])
            return out
        is_required = id(node) in self.required_ids
        is_tail = id(node) in self.tail_ids
        test = self.visit(node.test)
        site, exprs = _site(test, getattr(node, "lineno", 0), self.consts)
        sid = len(self.sites)
        self.sites.append(site)
        if is_required:
            self.required.add(sid)
        args = [_at(ast.Constant(sid), node), _at(ast.Tuple(elts=exprs, ctx=ast.Load()), node)]
        if is_tail:
            args.append(_at(ast.Constant(True), node))
        func = _at(ast.Name(id=CHECK_NAME, ctx=ast.Load()), node)
        call = _at(ast.Call(func=func, args=args, keywords=[]), node)
        return _at(ast.Expr(value=call), node)

    def _literal_container(self, node: ast.expr) -> ast.expr:
        # Big literal inputs and expected values (HumanEval's lists) have nothing to rewrite: skip them
        # instead of visiting every element.
        elts = node.values if isinstance(node, ast.Dict) else node.elts
        if all(type(e) is ast.Constant for e in elts):
            return node
        return self.generic_visit(node)

    visit_List = visit_Tuple = visit_Set = visit_Dict = _literal_container

    def visit_Constant(self, node: ast.Constant) -> ast.expr:
        return node

    def visit_Call(self, node: ast.Call) -> ast.expr:
        self.generic_visit(node)
        func = _at(ast.Name(id=PLAIN_NAME, ctx=ast.Load()), node)
        return _at(ast.Call(func=func, args=[node], keywords=[]), node)


def _at(new: ast.AST, old: ast.AST) -> ast.AST:
    """Give a node made by the rewriter its source location (so no fix_missing_locations walk)."""
    new.lineno = old.lineno
    new.col_offset = old.col_offset
    new.end_lineno = old.end_lineno
    new.end_col_offset = old.end_col_offset
    return new


@lru_cache(maxsize=65536)
def prepare_test(code: str, compiled: bool = False, entry_point: str | None = None) -> PreparedTest:
    """Rewrite one assert snippet (cached: the same tests run against many samples).

    ``compiled``: also compile the rewritten tree here and ship it as marshalled bytecode instead of
    source, when the sandbox's interpreter reads this interpreter's bytecode (same magic number). The
    parent then skips ``ast.unparse`` and every child skips compiling the test (for a HumanEval
    ``check()`` ~0.3 ms and ~0.2 ms), and errors keep the test's own line numbers. ``entry_point``: the
    function under test, which tests see even when it is named like a builtin (``sum(...)`` is then not
    folded as the builtin)."""
    try:
        tree = ast.parse(code, "<test>", "exec")
    except (SyntaxError, ValueError, MemoryError, RecursionError) as exc:
        return PreparedTest(source="", sites=(), required=frozenset(), error=f"{type(exc).__name__}: {exc}")
    consts = _Constants(tree, entry_point)  # one walk: bindings, names used, imports
    reserved = consts.used & {CHECK_NAME, PLAIN_NAME}
    if reserved:
        return PreparedTest(source="", sites=(), required=frozenset(),
                            error=f"ValueError: test uses the reserved name {min(reserved)}")
    try:
        _propagate_literals(tree, consts)
    except (RecursionError, MemoryError, ValueError):
        pass  # best effort: the test runs as written
    # Guarded modules the test uses as modules: restored from the snapshot, and bound under their name
    # in the test's globals (a test calling a candidate's function named ``copy`` keeps that function).
    guards = tuple(sorted(consts.as_module & GUARDED_MODULES))
    rw = _Rewriter(_required_assert_ids(tree), _tail_assert_ids(tree), consts)
    try:
        rewritten = rw.visit(tree)
    except (RecursionError, MemoryError, ValueError) as exc:
        return PreparedTest(source="", sites=(), required=frozenset(), error=f"{type(exc).__name__}: {exc}")
    done = {"sites": tuple(rw.sites), "required": frozenset(rw.required), "guards": guards}
    if compiled:
        try:
            bytecode = marshal.dumps(compile(rewritten, "<test>", "exec"))
            return PreparedTest(source="", code=bytecode, **done)
        except (SyntaxError, ValueError, TypeError, RecursionError, MemoryError):
            pass  # e.g. a construct only the source compiler accepts: ship the source
    try:
        source = ast.unparse(rewritten)
    except (RecursionError, MemoryError, ValueError) as exc:
        return PreparedTest(source="", sites=(), required=frozenset(), error=f"{type(exc).__name__}: {exc}")
    return PreparedTest(source=source, **done)


MAX_UNROLL = 50  # literal rows of a loop that is unrolled so its expected values can be withheld


def _propagate_literals(tree: ast.Module, consts: _Constants) -> None:
    """Turn the two common ways of naming an expected value into literal asserts (shape 1), in place:

    - ``expected = <literal>`` at top level, bound nowhere else, used only inside asserts: the
      assignment goes and each use becomes the literal;
    - ``for x, want in [(1, 55), (2, 66)]: <body>``: unrolled, one copy of the body per row; a loop
      name used only inside the body's asserts is replaced by the row's literal, the others are
      assigned as before (``x = 1``).

    Otherwise the value would be a constant of the test's code in the child, where a candidate can read
    it from its caller's frame. Only rewrites that keep the test's meaning: no other binding of the
    name, no break/continue in an unrolled body, uses only in pure positions of an assert."""
    if not consts.has_loop and not any(type(st) is ast.Assign for st in tree.body):
        return  # nothing to propagate (most tests): skip the walks
    parents: dict[int, ast.AST] = {}
    loads: dict[str, list[ast.Name]] = {}
    for node in ast.walk(tree):
        for child in ast.iter_child_nodes(node):
            parents[id(child)] = node
        if type(node) is ast.Name and type(node.ctx) is ast.Load:
            loads.setdefault(node.id, []).append(node)

    def in_assert(name: ast.Name) -> bool:
        cur: ast.AST = name
        while True:
            par = parents.get(id(cur))
            if isinstance(par, ast.Assert):
                return par.test is cur
            if isinstance(par, (ast.Compare, ast.BinOp, ast.UnaryOp, ast.BoolOp)):
                cur = par
                continue
            if isinstance(par, ast.keyword):
                par = parents.get(id(par))
                if isinstance(par, ast.Call) and consts.tree_callee(par.func):
                    cur = par
                    continue
                return False
            if isinstance(par, ast.Call) and cur is not par.func and consts.tree_callee(par.func):
                cur = par
                continue
            return False

    subst: dict[str, ast.expr] = {}
    keep: list[ast.stmt] = []
    for stmt in tree.body:
        if (type(stmt) is ast.Assign and len(stmt.targets) == 1 and type(stmt.targets[0]) is ast.Name
                and consts.bound.get(stmt.targets[0].id) == 1 and _is_literal(stmt.value, consts)[0]):
            name = stmt.targets[0].id
            uses = loads.get(name, [])
            if uses and all(in_assert(u) for u in uses):
                subst[name] = stmt.value
                continue
        keep.append(stmt)
    tree.body = keep

    def body_ids(stmts: list[ast.stmt]) -> set[int]:
        return {id(n) for st in stmts for n in ast.walk(st)}

    def unroll(loop: ast.For) -> list[ast.stmt] | None:
        if loop.orelse or type(loop.iter) not in (ast.List, ast.Tuple) or len(loop.iter.elts) > MAX_UNROLL:
            return None
        if type(loop.target) is ast.Name:
            names = [loop.target.id]
            rows = [[e] for e in loop.iter.elts]
        elif type(loop.target) in (ast.Tuple, ast.List) and all(type(t) is ast.Name
                                                                for t in loop.target.elts):
            names = [t.id for t in loop.target.elts]
            rows = []
            for e in loop.iter.elts:
                if type(e) not in (ast.Tuple, ast.List) or len(e.elts) != len(names):
                    return None
                rows.append(list(e.elts))
        else:
            return None
        if len(set(names)) != len(names) or not all(_is_literal(e, consts)[0] for row in rows for e in row):
            return None
        inside = body_ids(loop.body)
        for n in ast.walk(ast.Module(body=loop.body, type_ignores=[])):
            if isinstance(n, (ast.Break, ast.Continue, ast.Yield, ast.YieldFrom, ast.Await)):
                return None
            if type(n) is ast.Name and n.id in names and type(n.ctx) is not ast.Load:
                return None  # rebound inside the body
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef, ast.For,
                              ast.AsyncFor, ast.While)):
                return None  # closures over the loop name, nested loops: keep the loop
        # uses inside the body's asserts become the row's literal; a name used anywhere else too (an input,
        # `f(x)`) is still assigned, its value is in the child anyway
        marked = False
        for nm in names:
            for u in loads.get(nm, []):
                if id(u) in inside and in_assert(u):
                    u._plum_literal = True  # survives deepcopy
                    marked = True
        if not marked:
            return None
        assigned = {nm for nm in names
                    if any(not getattr(u, "_plum_literal", False) for u in loads.get(nm, []))}
        out: list[ast.stmt] = []
        for row in rows:
            for nm, value in zip(names, row):
                if nm in assigned:
                    out.append(_at(ast.Assign(targets=[_at(ast.Name(id=nm, ctx=ast.Store()), loop)],
                                              value=copy.deepcopy(value)), loop))
            swap = _Substitute(dict(zip(names, row)), only_marked=True)
            out.extend(swap.visit(copy.deepcopy(st)) for st in loop.body)
        return out

    class _Unroll(ast.NodeTransformer):
        def visit_For(self, node: ast.For) -> ast.AST | list[ast.stmt]:
            out = unroll(node)  # innermost loops only (a body with a loop is kept as it is)
            if out is None:
                self.generic_visit(node)
                return node
            return out

    if subst:
        _Substitute(subst).visit(tree)
    _Unroll().visit(tree)


class _Substitute(ast.NodeTransformer):
    def __init__(self, values: dict[str, ast.expr], only_marked: bool = False):
        self.values = values
        self.only_marked = only_marked

    def visit_Name(self, node: ast.Name) -> ast.expr:
        value = self.values.get(node.id)
        if value is None or type(node.ctx) is not ast.Load:
            return node
        if self.only_marked and not getattr(node, "_plum_literal", False):
            return node
        return copy.deepcopy(value)


def judge_test(prepared: PreparedTest, record: dict) -> tuple[str, str | None, str | None]:
    """Re-decide one test from the supervisor's report, in the trusted parent.

    Returns (status, error_type, message): "passed" only when the test ran to its end, every reported check
    passes when re-evaluated here, every unconditional assert was reported, and at least one check
    was reported when the test has any assert."""
    checks = record.get("checks") or []
    seen: set[int] = set()
    for item in checks:
        try:
            site_id, raw = item
            if type(site_id) is not int or not 0 <= site_id < len(prepared.sites):
                return "error", "ProtocolViolation", "check for an unknown assert"
            values = [decode(v) for v in raw]
            verdict = evaluate_site(prepared.sites[site_id], values)
        except (ValueError, TypeError, RecursionError, OverflowError):
            return "error", "ProtocolViolation", "malformed check values"
        seen.add(site_id)
        if verdict == "fail":
            return "failed", "AssertionError", _describe(prepared.sites[site_id], values)
        if verdict.startswith("error:"):
            return "error", verdict.split(":", 1)[1], _describe(prepared.sites[site_id], values)
    if not record.get("ok"):
        et = record.get("type") or "Error"
        msg = record.get("msg")
        return ("failed", et, msg) if et == "AssertionError" else ("error", et, msg)
    checkable = any(not site.get("never") for site in prepared.sites)
    if not prepared.required <= seen or (checkable and not seen):
        return "failed", "UnverifiedPass", "the test ended without reporting all of its asserts"
    return "passed", None, None


def _describe(site: dict, values: list) -> str:
    try:
        text = ", ".join(repr(v)[:300] for v in values)
    except Exception:  # noqa: BLE001 - repr of plain data should not fail; never let it crash us
        text = "?"
    return f"assert at test line {site.get('line')}: got {text}"


def split_tests(source: str, shared: bool = True) -> list[str]:
    """Split a tests file into one test per top-level ``assert``, for results reported per assert.

    ``shared`` (for a sandbox that runs its tests in their own process, the default): the parts are
    consecutive pieces of the file -- each ends with a top-level assert and holds the statements since
    the previous one; whatever follows the last assert (a loop of asserts, a ``check(f)`` call) stays in
    the last part -- and they run once, in order, in one namespace, so the file keeps its meaning.
    ``shared=False`` (the earlier design, which runs each test in a fresh namespace): every part repeats
    the non-assert statements seen so far as its preamble. A file without a top-level assert, or that does
    not parse, is one test."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return [source] if source.strip() else []
    if not any(isinstance(s, ast.Assert) for s in tree.body):
        return [source] if source.strip() else []
    lines = source.splitlines(keepends=True)

    def seg(node: ast.stmt) -> str:
        start = node.lineno - 1
        if getattr(node, "decorator_list", None):
            start = min(d.lineno for d in node.decorator_list) - 1
        text = "".join(lines[start:node.end_lineno])
        return text if text.endswith("\n") else text + "\n"

    preamble: list[str] = []
    tests: list[str] = []
    for stmt in tree.body:
        if isinstance(stmt, ast.Assert):
            tests.append("".join(preamble) + seg(stmt))
            if shared:
                preamble = []
        else:
            preamble.append(seg(stmt))
    if shared and preamble:
        tests[-1] += "".join(preamble)
    return tests
