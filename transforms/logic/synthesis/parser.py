"""The reply parser: every test a test-writer reply holds, whatever its shape (a JSON list,
fenced code, bare asserts, a ``check(candidate)`` function, pytest/unittest functions, doctest
lines), each snippet put through the static checks. Never raises; bounded on hostile input.

Reasons a snippet or reply is dropped here (validation adds oracle/agreement reasons later) are
``TestDropReason`` members: empty_reply, no_tests_in_reply, syntax_error, too_long,
no_entry_point_call, calls_other_function, undefined_name, not_self_contained,
redefines_entry_point, duplicate, over_limit, no_assert.
"""

from __future__ import annotations

import ast
import json
import logging
import re
import textwrap
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from plumline.data_schemas import TestDropReason
from plumline.transforms.logic.readers import RenameName
from plumline.transforms.logic.synthesis.checks import (
    bound_names,
    check_test,
    loaded_names,
    normalize_test,
    safe_parse,
    safe_unparse,
)
from plumline.transforms.logic.synthesis.examples import doctest_asserts

logger = logging.getLogger(__name__)

# Replies longer than this are cut before parsing: parsing cost must stay bounded on hostile input.
MAX_REPLY_CHARS = 50_000
# At most this many snippets are checked per reply, and this many parse attempts spent on the
# line-by-line fallback: a hostile reply cannot make parsing slow.
MAX_SNIPPETS_PER_REPLY = 500
MAX_SCAN_PARSES = 4000


# Drops about a whole reply (or its request), not about one test: they are not candidate tests.
REPLY_DROPS = frozenset({TestDropReason.EMPTY_REPLY, TestDropReason.NO_TESTS,
                         TestDropReason.GENERATION_FAILED})
# The static checks: a snippet dropped for one of these did not "parse" into a usable test.
STATIC_DROPS = frozenset({
    TestDropReason.NO_ASSERT, TestDropReason.SYNTAX_ERROR, TestDropReason.TOO_LONG,
    TestDropReason.NO_ENTRY_CALL, TestDropReason.CALLS_OTHER, TestDropReason.UNDEFINED_NAME,
    TestDropReason.NOT_SELF_CONTAINED, TestDropReason.REDEFINES_ENTRY,
})


@dataclass(frozen=True)
class DroppedTest:
    code: str
    reason: TestDropReason
    detail: str = ""  # the reason in words


@dataclass
class ParsedTests:
    """Snippets a reply yielded: ``kept`` pass every static check; ``dropped`` carry their reason."""

    kept: list[str] = field(default_factory=list)
    dropped: list[DroppedTest] = field(default_factory=list)


_FENCE_RE = re.compile(r"```[ \t]*([\w+.-]*)[^\n]*\n(.*?)(?:\n[ \t]*```|\Z)", re.DOTALL)


def _json_chunks(text: str) -> list[str] | None:
    """Snippets from a JSON reply: a list of strings, a list of objects with a code/test/assert key,
    or of {input, output} pairs, or an object with a "tests" list. None when it is not such JSON."""
    candidates = [text.strip()]
    i, j = text.find("["), text.rfind("]")
    if 0 <= i < j:
        candidates.append(text[i:j + 1])
    i, j = text.find("{"), text.rfind("}")
    if 0 <= i < j:
        candidates.append(text[i:j + 1])
    for cand in candidates:
        if not cand or cand[0] not in "[{":
            continue
        try:
            data = json.loads(cand)
        except (json.JSONDecodeError, RecursionError, ValueError):
            continue
        if isinstance(data, dict):
            data = next((data[k] for k in ("tests", "test_cases", "asserts")
                         if isinstance(data.get(k), list)), None)
        if not isinstance(data, list) or not data:
            continue
        out: list[str] = []
        for item in data:
            if isinstance(item, str):
                out.append(item)
            elif isinstance(item, dict):
                code = next((item[k] for k in ("code", "test", "assert", "assertion")
                             if isinstance(item.get(k), str)), None)
                if code is not None:
                    out.append(code)
                elif "input" in item and ("output" in item or "expected" in item):
                    expected = item.get("output", item.get("expected"))
                    out.append(json.dumps({"__io__": [item["input"], expected]}))
        if out:
            return out
    return None


def _io_to_assert(payload: str, entry_point: str) -> str | None:
    """{"input": ..., "output": ...} -> assert entry_point(input) == output (input as argument source
    text when a string, else the JSON values as Python literals)."""
    try:
        inp, out = json.loads(payload)["__io__"]
    except (ValueError, KeyError, TypeError):
        return None
    if isinstance(inp, str):
        args = inp
    elif isinstance(inp, list):
        args = ", ".join(repr(a) for a in inp)
    else:
        args = repr(inp)
    as_source = isinstance(out, str) and safe_parse(out) is not None and not out.strip().isidentifier()
    expected = out if as_source else repr(out)
    return f"assert {entry_point}({args}) == {expected}"


def _needs_more(line: str) -> bool:
    """Whether a line cannot end a statement (open brackets, a block header, a continuation)."""
    s = line.rstrip()
    opened = sum(s.count(c) for c in "([{") - sum(s.count(c) for c in ")]}")
    return opened > 0 or s.endswith((":", "\\", ",")) or s.count('"""') % 2 == 1 or s.count("'''") % 2 == 1


def _scan_statements(text: str) -> tuple[str, list[str]]:
    """Fallback for text that does not parse as a whole (prose mixed with code, one broken line):
    keep the statements that parse on their own (a line, grown while it is visibly unfinished, at
    most 40 lines), joined into one module; broken lines that start with ``assert`` are returned
    apart so they are reported as syntax errors rather than silently lost."""
    lines = text.splitlines()
    good: list[str] = []
    broken: list[str] = []
    i = 0
    budget = MAX_SCAN_PARSES
    while i < len(lines) and budget > 0:
        line = lines[i]
        if not line.strip() or line[0] in " \t":
            i += 1
            continue
        found = None
        j = i + 1
        while True:
            chunk = "\n".join(lines[i:j])
            budget -= 1
            if safe_parse(chunk) is not None:
                # a block header's body: take the following indented lines too
                k = j
                while k < len(lines) and (not lines[k].strip() or lines[k][0] in " \t"):
                    k += 1
                if k > j and safe_parse("\n".join(lines[i:k])) is not None:
                    j = k
                found = j
                break
            if j >= len(lines) or j - i >= 40 or not (_needs_more(lines[j - 1]) or
                                                       (j < len(lines) and lines[j][:1] in (" ", "\t"))):
                break
            j += 1
        if found is None:
            if line.lstrip().startswith("assert"):
                broken.append(line.strip())
            i += 1
        else:
            good.append("\n".join(lines[i:found]))
            i = found
    return "\n".join(good), broken


def _chunks(reply: str, entry_point: str) -> list[str]:
    """Code chunks of a reply: JSON items, fenced blocks, else the whole reply."""
    js = _json_chunks(reply)
    if js is not None:
        return [_io_to_assert(c, entry_point) or c if c.startswith('{"__io__"') else c for c in js]
    fences = [body for lang, body in _FENCE_RE.findall(reply)
              if lang.lower() not in ("json", "text", "output")]
    json_fences = [body for lang, body in _FENCE_RE.findall(reply) if lang.lower() == "json"]
    if not fences and json_fences:
        for body in json_fences:
            js = _json_chunks(body)
            if js:
                return [_io_to_assert(c, entry_point) or c if c.startswith('{"__io__"') else c for c in js]
    return fences or [reply]


def _is_test_stmt(stmt: ast.stmt) -> bool:
    return any(isinstance(n, ast.Assert) for n in ast.walk(stmt))


def _unittest_to_asserts(stmt: ast.stmt) -> ast.stmt:
    """``self.assertEqual(a, b)`` and friends -> plain asserts (unittest-style replies)."""

    class T(ast.NodeTransformer):
        def visit_Expr(self, node: ast.Expr) -> ast.AST:
            c = node.value
            if (isinstance(c, ast.Call) and isinstance(c.func, ast.Attribute)
                    and isinstance(c.func.value, ast.Name) and c.func.value.id == "self"):
                a, name = c.args, c.func.attr
                ops = {"assertEqual": ast.Eq, "assertNotEqual": ast.NotEq, "assertIn": ast.In,
                       "assertNotIn": ast.NotIn, "assertIs": ast.Is, "assertIsNot": ast.IsNot,
                       "assertLess": ast.Lt, "assertLessEqual": ast.LtE, "assertGreater": ast.Gt,
                       "assertGreaterEqual": ast.GtE}
                if name in ops and len(a) >= 2:
                    test: ast.expr = ast.Compare(left=a[0], ops=[ops[name]()], comparators=[a[1]])
                elif name == "assertTrue" and a:
                    test = a[0]
                elif name == "assertFalse" and a:
                    test = ast.UnaryOp(op=ast.Not(), operand=a[0])
                elif name == "assertIsNone" and a:
                    test = ast.Compare(left=a[0], ops=[ast.Is()], comparators=[ast.Constant(None)])
                elif name == "assertAlmostEqual" and len(a) >= 2:
                    test = ast.Compare(left=ast.Call(ast.Name("abs", ast.Load()),
                                                     [ast.BinOp(a[0], ast.Sub(), a[1])], []),
                                       ops=[ast.Lt()], comparators=[ast.Constant(1e-6)])
                else:
                    return node
                return ast.copy_location(ast.Assert(test=test, msg=None), node)
            return node

    return ast.fix_missing_locations(T().visit(stmt))


def _snippets_from_module(mod: ast.Module, entry_point: str, source: str = "") -> list[str]:
    """Split a parsed chunk into one snippet per test statement, each with the setup (imports,
    assignments, helper defs) it needs. A definition of the entry point itself (a reply that also
    wrote the solution) is left out: a test must run against the candidate, not its own copy."""
    out: list[str] = []

    def walk(body: Sequence[ast.stmt], setup: list[ast.stmt]) -> None:
        setup = list(setup)
        for stmt in body:
            if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
                if stmt.name == entry_point:
                    continue
                if stmt.name == "check" or stmt.name.startswith("test"):
                    inner = list(stmt.body)
                    if stmt.name == "check" and stmt.args.args:
                        inner = [RenameName(stmt.args.args[0].arg, entry_point).visit(s) for s in inner]
                    walk(inner, setup)
                    continue
                setup.append(stmt)
                continue
            if isinstance(stmt, ast.ClassDef):
                methods = [s for s in stmt.body
                           if isinstance(s, ast.FunctionDef) and s.name.startswith("test")]
                if methods:
                    for meth in methods:
                        walk([_unittest_to_asserts(s) for s in meth.body], setup)
                    continue
                setup.append(stmt)
                continue
            if isinstance(stmt, ast.Expr):
                # `f(x) == y` written without `assert` is meant as a test; anything else (docstrings,
                # print(...), check(f) calls) is not one
                v = stmt.value
                if isinstance(v, ast.Compare) and any(
                        isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == entry_point
                        for n in ast.walk(v)):
                    stmt = ast.fix_missing_locations(ast.copy_location(ast.Assert(test=v, msg=None), stmt))
                else:
                    continue
            if isinstance(stmt, ast.If) and safe_unparse(stmt.test) == "__name__ == '__main__'":
                walk(stmt.body, setup)
                continue
            if _is_test_stmt(stmt):
                needed = loaded_names(stmt)
                picked: list[ast.stmt] = []
                for s in reversed(setup):  # the latest binding first; pull in what it needs too
                    if bound_names(s) & needed:
                        picked.append(s)
                        needed |= loaded_names(s)
                parts = [safe_unparse(s) or (ast.get_source_segment(source, s) if source else None)
                         for s in [*reversed(picked), stmt]]
                text = "\n".join(p for p in parts if p)
                if text:
                    out.append(text)
                continue
            if isinstance(stmt, (ast.Import, ast.ImportFrom, ast.Assign, ast.AnnAssign, ast.AugAssign)):
                setup.append(stmt)

    walk(mod.body, [])
    return out


def parse_test_reply(reply: str, entry_point: str, max_chars: int = 1000, *,
                     seen: set[str] | None = None) -> ParsedTests:
    """Every test a model reply holds, whatever its shape: a JSON list, fenced code, bare asserts,
    a ``check(candidate)`` function, pytest/unittest functions, doctest lines. Never raises.

    ``seen`` (normalized forms) lets several replies of one problem share duplicate collapse."""
    try:
        return _parse_test_reply(reply, entry_point, max_chars, set() if seen is None else seen)
    except (RecursionError, MemoryError) as exc:  # the guards below should make this unreachable
        logger.warning("test reply parser gave up: %s", type(exc).__name__)
        return ParsedTests(dropped=[DroppedTest(str(reply)[:max_chars], TestDropReason.SYNTAX_ERROR,
                                                f"the parser gave up: {type(exc).__name__}")])


def _parse_test_reply(reply: str, entry_point: str, max_chars: int, seen: set[str]) -> ParsedTests:
    result = ParsedTests()
    if not isinstance(reply, str) or not reply.strip():
        result.dropped.append(DroppedTest("", TestDropReason.EMPTY_REPLY, "the reply is empty"))
        return result
    reply = reply[:MAX_REPLY_CHARS]
    snippets: list[str] = []
    for chunk in _chunks(reply, entry_point):
        if not isinstance(chunk, str) or not chunk.strip():
            continue
        mod = safe_parse(chunk)
        if mod is None:
            mod = safe_parse(textwrap.dedent(chunk))
        if mod is not None:
            found = _snippets_from_module(mod, entry_point, chunk)
            if not found and ">>>" in chunk:
                found = doctest_asserts(chunk, entry_point)
            snippets.extend(found)
            continue
        found = doctest_asserts(chunk, entry_point) if ">>>" in chunk else []
        code, broken = _scan_statements(chunk)
        scanned = safe_parse(code) if code else None
        if scanned is not None:
            found.extend(_snippets_from_module(scanned, entry_point, code))
        found.extend(broken)  # reported as syntax_error by check_test
        snippets.extend(found)
    if not snippets:
        result.dropped.append(DroppedTest(reply[:max_chars], TestDropReason.NO_TESTS,
                                          "no assert statement found"))
        return result
    if len(snippets) > MAX_SNIPPETS_PER_REPLY:
        extra = len(snippets) - MAX_SNIPPETS_PER_REPLY
        result.dropped.append(DroppedTest("", TestDropReason.OVER_LIMIT,
                                          f"{extra} more snippets in the reply were not read"))
        snippets = snippets[:MAX_SNIPPETS_PER_REPLY]
    for snip in snippets:
        reason, code, detail = check_test(snip, entry_point, max_chars)
        if reason is not None:
            result.dropped.append(DroppedTest(code[: max_chars * 2], reason, detail))
            continue
        norm = normalize_test(code)
        if norm in seen:
            result.dropped.append(DroppedTest(code, TestDropReason.DUPLICATE, "same test as one seen before"))
            continue
        seen.add(norm)
        result.kept.append(norm)
    return result


def parse_replies(replies: Iterable[str], entry_point: str, max_chars: int, max_tests: int,
                  seen: set[str] | None = None) -> ParsedTests:
    """All replies of one problem merged: duplicates collapsed across replies, at most ``max_tests``
    kept (the rest ``over_limit``, in reply order so the choice is deterministic)."""
    seen = set() if seen is None else seen
    merged = ParsedTests()
    for reply in replies:
        p = parse_test_reply(reply, entry_point, max_chars, seen=seen)
        merged.kept.extend(p.kept)
        merged.dropped.extend(p.dropped)
    if len(merged.kept) > max_tests:
        merged.dropped.extend(DroppedTest(c, TestDropReason.OVER_LIMIT, f"more than {max_tests} tests kept")
                              for c in merged.kept[max_tests:])
        merged.kept = merged.kept[:max_tests]
    return merged
