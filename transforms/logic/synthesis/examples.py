"""Tests taken from the problem text: docstring ``>>>`` examples, ``f(x) -> y`` lines and
``Input:``/``Output:`` pairs, as assert snippets that pass the same static checks as synthesized
tests. An example becomes a test only when its expected value is a Python literal (unambiguous)."""

from __future__ import annotations

import ast
import doctest
import math
import re
from typing import Any

from plumline.data_schemas import Problem
from plumline.transforms.logic.synthesis.checks import check_test, normalize_test, safe_parse, safe_unparse


def doctest_asserts(text: str, entry_point: str) -> list[str]:
    """``>>> f(x)`` followed by its printed value -> ``assert f(x) == value`` (only when the value is a
    Python literal, so the assert is unambiguous)."""
    try:
        examples = doctest.DocTestParser().get_examples(text)
    except (ValueError, RecursionError):
        examples = []
        lines = text.splitlines()
        for k, line in enumerate(lines):
            s = line.strip()
            if s.startswith(">>> ") and k + 1 < len(lines) and not lines[k + 1].strip().startswith(">>>"):
                examples.append(doctest.Example(s[4:] + "\n", lines[k + 1].strip() + "\n"))
    out = []
    for ex in examples:
        src = ex.source.strip()
        want_lines = []
        for wl in ex.want.splitlines():
            if wl.strip().startswith(('"""', "'''")):
                break  # the docstring's closing quotes sit at the example's indentation
            want_lines.append(wl)
        want = "\n".join(want_lines).strip()
        if not want or "\n" in want or want.startswith("Traceback"):
            continue
        a = make_equality_assert(src, want, entry_point)
        if a:
            out.append(a)
    return out


def _literal(text: str) -> tuple[bool, Any]:
    try:
        return True, ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, RecursionError, MemoryError):
        return False, None


def make_equality_assert(call_src: str, value_src: str, entry_point: str) -> str | None:
    """``assert <call> == <value>`` when the call is a direct call of the entry point and the value a
    literal; floats compare with a tolerance (printed floats are rounded)."""
    tree = safe_parse(call_src)
    if tree is None or len(tree.body) != 1 or not isinstance(tree.body[0], ast.Expr):
        return None
    call = tree.body[0].value
    if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == entry_point):
        return None
    ok, value = _literal(value_src)
    if not ok:
        return None
    call_text = safe_unparse(call)
    if call_text is None:
        return None
    if isinstance(value, float) and math.isfinite(value):
        return f"assert abs({call_text} - {value!r}) < 1e-06"
    if value is None:
        return f"assert {call_text} is None"
    return f"assert {call_text} == {value!r}"


_ARROW_SEPS = r"(?:==>|=>|->|➞|==|=|\breturns\b|\bshould\s+return\b|\bshould\s+be\b)"


def _balanced_call_end(text: str, start: int) -> int | None:
    """Index just past the ')' closing the '(' at ``start`` (quotes respected), or None."""
    depth = 0
    quote: str | None = None
    i = start
    while i < len(text):
        c = text[i]
        if quote:
            if c == "\\":
                i += 2
                continue
            if c == quote:
                quote = None
        elif c in "'\"":
            quote = c
        elif c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return None


def _arrow_examples(text: str, entry_point: str) -> list[str]:
    """Lines such as ``f(x) -> y``, ``f(x) == y``, ``f(x) ➞ y``, ``f(x) returns y``: kept only when y is
    a literal (so "19 - 5 - 6 = 8" or "true" are skipped: they are ambiguous)."""
    out = []
    pat = re.compile(rf"(?<![\w.]){re.escape(entry_point)}\s*\(")
    for line in text.splitlines():
        if ">>>" in line or re.match(r"^\s*(?:async\s+)?def\s", line):
            continue
        for m in pat.finditer(line):
            end = _balanced_call_end(line, m.end() - 1)
            if end is None:
                continue
            rest = line[end:]
            sm = re.match(rf"\s*(?:#\s*)?{_ARROW_SEPS}\s*(.+)$", rest)
            if not sm:
                continue
            value = re.sub(r"\s+#.*$", "", sm.group(1)).strip().rstrip(".,;").strip()
            a = make_equality_assert(line[m.start():end], value, entry_point)
            if a:
                out.append(a)
    return out


def _io_examples(text: str, entry_point: str) -> list[str]:
    """``Input: ...`` / ``Output: ...`` pairs: the input as arguments (``a = 1, b = 2`` keywords or
    literals), the output a literal."""
    out = []
    lines = text.splitlines()
    for k, line in enumerate(lines):
        m = re.match(r"^\s*Input\s*:\s*(.+)$", line, re.IGNORECASE)
        if not m:
            continue
        for nxt in lines[k + 1:k + 3]:
            om = re.match(r"^\s*Output\s*:\s*(.+)$", nxt, re.IGNORECASE)
            if om:
                call = f"{entry_point}({m.group(1).strip()})"
                a = make_equality_assert(call, om.group(1).strip(), entry_point)
                if a:
                    out.append(a)
                break
    return out


def extract_example_tests(problem: Problem) -> list[str]:
    """Example tests in the problem text (docstring ``>>>`` examples, arrow lines, Input/Output pairs),
    as assert snippets that pass the same static checks as synthesized tests, deduplicated."""
    ep = problem.entry_point
    if not ep:
        return []
    text = problem.prompt or ""
    found = doctest_asserts(text, ep) + _arrow_examples(text, ep) + _io_examples(text, ep)
    out, seen = [], set()
    for code in found:
        reason, code, _ = check_test(code, ep, 10_000)
        if reason is not None:
            continue
        norm = normalize_test(code)
        if norm not in seen:
            seen.add(norm)
            out.append(norm)
    return out
