"""Test synthesis (PLUM stage 1): prompts for a test-writer model, a robust parser of its replies,
example tests taken from the problem text, and the dataset's own tests kept apart.

Everything here is pure (no Beam, no engine), so it is unit-tested on its own. Why so much care in
the parser: a wrong or unusable test turns a correct sample into a "rejected" one and poisons the
preference data, so every snippet that is not a clean, self-contained assert on the entry point is
dropped with a named reason instead of being trusted.

Reasons a synthesized snippet is dropped here (validation adds oracle/agreement reasons later):
``empty_reply``, ``no_tests_in_reply``, ``syntax_error``, ``too_long``, ``no_entry_point_call``,
``calls_other_function``, ``undefined_name``, ``not_self_contained``, ``redefines_entry_point``,
``duplicate``, ``over_limit``, ``no_assert``.
"""

from __future__ import annotations

import ast
import builtins
import doctest
import json
import logging
import math
import re
import textwrap
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from plumline.data_schemas import ErrorRecord, Problem, TestCase, TestKind, TestOrigin, content_id
from plumline.llm.config import BackendConfig  # the light module: no engine import
from plumline.transforms.logic.readers import RenameName

logger = logging.getLogger(__name__)

# Replies longer than this are cut before parsing: parsing cost must stay bounded on hostile input.
MAX_REPLY_CHARS = 50_000
# At most this many snippets are checked per reply, and this many parse attempts spent on the
# line-by-line fallback: a hostile reply cannot make parsing slow.
MAX_SNIPPETS_PER_REPLY = 500
MAX_SCAN_PARSES = 4000

# Drop reasons decided by the parser (validation adds its own).
EMPTY_REPLY = "empty_reply"
NO_TESTS = "no_tests_in_reply"
SYNTAX_ERROR = "syntax_error"
TOO_LONG = "too_long"
NO_ENTRY_CALL = "no_entry_point_call"
CALLS_OTHER = "calls_other_function"
UNDEFINED_NAME = "undefined_name"
NOT_SELF_CONTAINED = "not_self_contained"
REDEFINES_ENTRY = "redefines_entry_point"
DUPLICATE = "duplicate"
OVER_LIMIT = "over_limit"
NO_ASSERT = "no_assert"
GENERATION_FAILED = "generation_failed"
PARSE_REASONS = frozenset({NO_ASSERT, EMPTY_REPLY, NO_TESTS, SYNTAX_ERROR, TOO_LONG, NO_ENTRY_CALL, CALLS_OTHER,
                           UNDEFINED_NAME, NOT_SELF_CONTAINED, REDEFINES_ENTRY, DUPLICATE, OVER_LIMIT})
# The static checks: a snippet dropped for one of these did not "parse" into a usable test.
STATIC_REASONS = frozenset({NO_ASSERT, SYNTAX_ERROR, TOO_LONG, NO_ENTRY_CALL, CALLS_OTHER, UNDEFINED_NAME,
                            NOT_SELF_CONTAINED, REDEFINES_ENTRY})

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


class TestSynthesisConfig(BaseModel):
    """How tests are written by the test-writer model and which ones are considered."""

    __test__ = False  # not a pytest class
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    enabled: bool = Field(True, description="Ask the test-writer model for tests (off: only example and "
                                            "given tests are used).")
    writer: BackendConfig | None = Field(None, description="Backend of the test-writer model; null uses the "
                                                           "policy's backend.")
    tests_per_problem: int = Field(10, ge=1, le=100, description="Tests (K) asked for in each reply.")
    num_replies: int = Field(1, ge=1, le=32, description="Replies sampled per problem; their tests are "
                                                         "merged and deduplicated.")
    temperature: float = Field(0.2, ge=0.0, description="Sampling temperature of the test writer "
                                                        "(0 with one reply = greedy).")
    top_p: float = Field(0.95, gt=0.0, le=1.0, description="Nucleus sampling threshold of the test writer.")
    max_tokens: int = Field(768, ge=16, description="Maximum new tokens per reply.")
    seed: int | None = Field(1234, description="Seed of the test writer's sampling (per problem it is offset "
                                               "deterministically); null: unseeded.")
    max_test_chars: int = Field(1000, ge=16, description="Longest test snippet kept (characters); longer "
                                                         "ones are dropped as too_long.")
    max_tests_per_problem: int = Field(30, ge=1, description="Most synthesized tests kept per problem "
                                                             "after deduplication; the rest are over_limit.")
    use_examples: bool = Field(True, description="Turn examples in the problem text (docstring >>> lines, "
                                                 "'f(x) -> y' lines) into tests of origin 'example'.")
    given_tests_role: Literal["train", "eval", "both"] = Field(
        "eval", description="How a dataset's own tests are used: eval = reserved for evaluation only "
                            "(never training signal); train/both = also used as training tests.")
    chat: bool | None = Field(None, description="Prompt through the chat template; false: a plain-text prompt "
                                                "for base models; null: the writer backend's own choice.")
    batch_size: int = Field(64, ge=1, description="Problems sent to the test writer in one generate call.")


# --------------------------------------------------------------------------------------------
# Prompts


SYSTEM_PROMPT = ("You are an expert Python tester. You write correct, self-contained unit tests as "
                 "assert statements. You never write the solution itself.")


def _signature(problem: Problem) -> str:
    """The entry point's `def` line, from the starter code or the prompt, when there is one."""
    for text in (problem.starter_code, problem.prompt):
        m = re.search(rf"^\s*(?:async\s+)?def\s+{re.escape(problem.entry_point)}\s*\(.*?\)\s*(?:->[^:]*)?:",
                      text or "", re.MULTILINE | re.DOTALL) if problem.entry_point else None
        if m:
            return m.group(0).strip()
    return ""


def build_test_prompt(problem: Problem, k: int = 10) -> list[dict[str, str]]:
    """Chat messages asking for ``k`` assert tests of ``problem.entry_point``."""
    ep = problem.entry_point
    parts = ["Here is a programming problem:", "", "```python" if "def " in problem.prompt else "",
             problem.prompt.strip(), "```" if "def " in problem.prompt else ""]
    sig = _signature(problem)
    if sig and sig not in problem.prompt:
        parts += ["", f"The function signature is: `{sig}`"]
    examples = [t.code.strip() for t in problem.example_tests if t.code.strip()]
    if examples:
        parts += ["", "Examples:", "```python", *examples, "```"]
    parts += [
        "",
        (f"Write {k} different unit tests for `{ep}` as Python assert statements, for example "
         f"`assert {ep}(...) == ...`. Each assert calls `{ep}` directly and checks one exact expected "
         f"result; cover normal cases and edge cases. Do not define `{ep}`, do not use input(), files, "
         f"random numbers or printing. Reply with one ```python block that holds only the asserts."),
    ]
    return [{"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": "\n".join(p for p in parts if p is not None)}]


def build_test_prompt_text(problem: Problem, k: int = 10) -> str:
    """Plain-text (completion) variant for base models: the problem, then the start of a test block
    the model continues with asserts."""
    ep = problem.entry_point
    body = problem.prompt.rstrip()
    if "def " in body:
        body += "\n    ...\n"
    else:
        body = '"""\n' + body.replace('"""', "'''") + '\n"""\n'
    return (f"{body}\n\n# {k} unit tests for {ep}: each is one assert that calls {ep} and checks the exact "
            f"expected result.\nassert {ep}(")


def reply_prefix(chat: bool, entry_point: str) -> str:
    """What the plain-text prompt already wrote of the first test (prepended to the reply)."""
    return "" if chat else f"assert {entry_point}("


# --------------------------------------------------------------------------------------------
# Parsing


@dataclass(frozen=True)
class DroppedTest:
    code: str
    reason: str
    detail: str = ""


@dataclass
class ParsedTests:
    """Snippets a reply yielded: ``kept`` pass every static check; ``dropped`` carry their reason."""

    kept: list[str] = field(default_factory=list)
    dropped: list[DroppedTest] = field(default_factory=list)

    @property
    def written(self) -> int:
        """Candidate tests found (reply-level drops such as empty replies are not tests)."""
        return len(self.kept) + sum(d.reason not in (EMPTY_REPLY, NO_TESTS, GENERATION_FAILED)
                                    for d in self.dropped)


_FENCE_RE = re.compile(r"```[ \t]*([\w+.-]*)[^\n]*\n(.*?)(?:\n[ \t]*```|\Z)", re.DOTALL)
_DOCTEST_RE = re.compile(r"^\s*>>>")


def _safe_parse(code: str) -> ast.Module | None:
    try:
        return ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError, OverflowError):
        return None


def _safe_unparse(node: ast.AST) -> str | None:
    try:
        return ast.unparse(node)
    except (RecursionError, ValueError, AttributeError, TypeError, MemoryError):
        return None


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
            data = next((data[k] for k in ("tests", "test_cases", "asserts") if isinstance(data.get(k), list)),
                        None)
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
                    out.append(json.dumps({"__io__": [item["input"], item.get("output", item.get("expected"))]}))
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
    expected = out if isinstance(out, str) and _safe_parse(out) is not None and not out.strip().isidentifier() \
        else repr(out)
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
            if _safe_parse(chunk) is not None:
                # a block header's body: take the following indented lines too
                k = j
                while k < len(lines) and (not lines[k].strip() or lines[k][0] in " \t"):
                    k += 1
                if k > j and _safe_parse("\n".join(lines[i:k])) is not None:
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


def _doctest_asserts(text: str, entry_point: str) -> list[str]:
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
        a = _make_equality_assert(src, want, entry_point)
        if a:
            out.append(a)
    return out


def _literal(text: str) -> tuple[bool, Any]:
    try:
        return True, ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, RecursionError, MemoryError):
        return False, None


def _make_equality_assert(call_src: str, value_src: str, entry_point: str) -> str | None:
    """``assert <call> == <value>`` when the call is a direct call of the entry point and the value a
    literal; floats compare with a tolerance (printed floats are rounded)."""
    tree = _safe_parse(call_src)
    if tree is None or len(tree.body) != 1 or not isinstance(tree.body[0], ast.Expr):
        return None
    call = tree.body[0].value
    if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == entry_point):
        return None
    ok, value = _literal(value_src)
    if not ok:
        return None
    call_text = _safe_unparse(call)
    if call_text is None:
        return None
    if isinstance(value, float) and math.isfinite(value):
        return f"assert abs({call_text} - {value!r}) < 1e-06"
    if value is None:
        return f"assert {call_text} is None"
    return f"assert {call_text} == {value!r}"


def _chunks(reply: str, entry_point: str) -> list[str]:
    """Code chunks of a reply: JSON items, fenced blocks, else the whole reply."""
    js = _json_chunks(reply)
    if js is not None:
        return [_io_to_assert(c, entry_point) or c if c.startswith('{"__io__"') else c for c in js]
    fences = [body for lang, body in _FENCE_RE.findall(reply) if lang.lower() not in ("json", "text", "output")]
    json_fences = [body for lang, body in _FENCE_RE.findall(reply) if lang.lower() == "json"]
    if not fences and json_fences:
        for body in json_fences:
            js = _json_chunks(body)
            if js:
                return [_io_to_assert(c, entry_point) or c if c.startswith('{"__io__"') else c for c in js]
    return fences or [reply]


def _bound_names(node: ast.AST) -> set[str]:
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
        elif isinstance(n, ast.ExceptHandler) and n.name or isinstance(n, (ast.MatchAs, ast.MatchStar)) and n.name:
            bound.add(n.name)
        elif isinstance(n, ast.MatchMapping) and n.rest:
            bound.add(n.rest)
        elif isinstance(n, (ast.Global, ast.Nonlocal)):
            bound.update(n.names)
    return bound


def _loaded_names(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


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
                methods = [s for s in stmt.body if isinstance(s, ast.FunctionDef) and s.name.startswith("test")]
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
            if isinstance(stmt, ast.If) and _safe_unparse(stmt.test) == "__name__ == '__main__'":
                walk(stmt.body, setup)
                continue
            if _is_test_stmt(stmt):
                needed = _loaded_names(stmt)
                picked: list[ast.stmt] = []
                for s in reversed(setup):  # the latest binding first; pull in what it needs too
                    if _bound_names(s) & needed:
                        picked.append(s)
                        needed |= _loaded_names(s)
                parts = [_safe_unparse(s) or (ast.get_source_segment(source, s) if source else None)
                         for s in [*reversed(picked), stmt]]
                text = "\n".join(p for p in parts if p)
                if text:
                    out.append(text)
                continue
            if isinstance(stmt, (ast.Import, ast.ImportFrom, ast.Assign, ast.AnnAssign, ast.AugAssign)):
                setup.append(stmt)

    walk(mod.body, [])
    return out


def check_test(code: str, entry_point: str, max_chars: int) -> tuple[str | None, str, str]:
    """Static checks of one snippet. Returns (reason or None, repaired code, detail).

    Repairs are only the unambiguous ones: an unbound ``candidate`` is the entry point (HumanEval's
    convention) and an allowed stdlib module used without its import gets the import."""
    try:
        return _check_test(code, entry_point, max_chars)
    except (RecursionError, MemoryError):
        return SYNTAX_ERROR, code, "too deeply nested"


def _check_test(code: str, entry_point: str, max_chars: int) -> tuple[str | None, str, str]:
    if not code.strip():
        return SYNTAX_ERROR, code, "empty snippet"
    if len(code) > max_chars:
        return TOO_LONG, code, f"{len(code)} chars > {max_chars}"
    tree = _safe_parse(code)
    if tree is None:
        return SYNTAX_ERROR, code, "does not parse"
    if not any(isinstance(n, ast.Assert) for n in ast.walk(tree)):
        return NO_ASSERT, code, "no assert statement"
    bound = _bound_names(tree)
    loaded = _loaded_names(tree)
    if "candidate" in loaded and "candidate" not in bound and entry_point != "candidate":
        tree = RenameName("candidate", entry_point).visit(tree)
        code = _safe_unparse(tree) or code
        loaded = _loaded_names(tree)
    if entry_point in bound:
        return REDEFINES_ENTRY, code, f"the snippet binds {entry_point!r}"
    if not any(isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == entry_point
               for n in ast.walk(tree)):
        return NO_ENTRY_CALL, code, f"no call of {entry_point}()"
    for n in ast.walk(tree):
        if isinstance(n, (ast.Import, ast.ImportFrom)):
            mods = [a.name for a in n.names] if isinstance(n, ast.Import) else [n.module or ""]
            for m in mods:
                if m.split(".")[0] not in ALLOWED_MODULES or (isinstance(n, ast.ImportFrom) and n.level):
                    return NOT_SELF_CONTAINED, code, f"imports {m or '.'}"
        elif isinstance(n, ast.Attribute) and n.attr.startswith("__") and n.attr != "__name__":
            return NOT_SELF_CONTAINED, code, f"uses {n.attr}"
        elif isinstance(n, ast.Name) and n.id in BANNED_BUILTINS and n.id not in bound:
            return NOT_SELF_CONTAINED, code, f"uses {n.id}()"
        elif isinstance(n, (ast.Global, ast.Nonlocal, ast.AsyncFunctionDef, ast.Await, ast.Yield,
                            ast.YieldFrom)):
            return NOT_SELF_CONTAINED, code, f"uses {type(n).__name__.lower()}"
    free = sorted(loaded - bound - _BUILTIN_NAMES - {entry_point})
    auto_imports = [m for m in free if m in ALLOWED_MODULES]
    free = [m for m in free if m not in ALLOWED_MODULES]
    if free:
        called = {n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
        other = [f for f in free if f in called]
        if other:
            return CALLS_OTHER, code, f"calls undefined {other[0]}()"
        return UNDEFINED_NAME, code, f"undefined name {free[0]}"
    if auto_imports:
        code = "".join(f"import {m}\n" for m in auto_imports) + code
        if len(code) > max_chars:
            return TOO_LONG, code, f"{len(code)} chars > {max_chars}"
    return None, code, ""


def normalize_test(code: str) -> str:
    """Canonical form for duplicate collapse: the AST unparsed (formatting, quotes and comments vanish),
    assert messages dropped, docstring-like bare strings dropped. Unparsable code is returned stripped."""
    tree = _safe_parse(code)
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
    return _safe_unparse(tree) or code.strip()


def parse_test_reply(reply: str, entry_point: str, max_chars: int = 1000, *,
                     seen: set[str] | None = None) -> ParsedTests:
    """Every test a model reply holds, whatever its shape: a JSON list, fenced code, bare asserts,
    a ``check(candidate)`` function, pytest/unittest functions, doctest lines. Never raises.

    ``seen`` (normalized forms) lets several replies of one problem share duplicate collapse."""
    try:
        return _parse_test_reply(reply, entry_point, max_chars, set() if seen is None else seen)
    except (RecursionError, MemoryError) as exc:  # the guards below should make this unreachable
        logger.warning("test reply parser gave up: %s", type(exc).__name__)
        return ParsedTests(dropped=[DroppedTest(str(reply)[:max_chars], SYNTAX_ERROR, type(exc).__name__)])


def _parse_test_reply(reply: str, entry_point: str, max_chars: int, seen: set[str]) -> ParsedTests:
    result = ParsedTests()
    if not isinstance(reply, str) or not reply.strip():
        result.dropped.append(DroppedTest("", EMPTY_REPLY))
        return result
    reply = reply[:MAX_REPLY_CHARS]
    snippets: list[str] = []
    for chunk in _chunks(reply, entry_point):
        if not isinstance(chunk, str) or not chunk.strip():
            continue
        mod = _safe_parse(chunk)
        if mod is None:
            mod = _safe_parse(textwrap.dedent(chunk))
        if mod is not None:
            found = _snippets_from_module(mod, entry_point, chunk)
            if not found and ">>>" in chunk:
                found = _doctest_asserts(chunk, entry_point)
            snippets.extend(found)
            continue
        found = _doctest_asserts(chunk, entry_point) if ">>>" in chunk else []
        code, broken = _scan_statements(chunk)
        scanned = _safe_parse(code) if code else None
        if scanned is not None:
            found.extend(_snippets_from_module(scanned, entry_point, code))
        found.extend(broken)  # reported as syntax_error by check_test
        snippets.extend(found)
    if not snippets:
        result.dropped.append(DroppedTest(reply[:max_chars], NO_TESTS, "no assert statement found"))
        return result
    if len(snippets) > MAX_SNIPPETS_PER_REPLY:
        result.dropped.append(DroppedTest("", OVER_LIMIT, f"{len(snippets) - MAX_SNIPPETS_PER_REPLY} more "
                                                         f"snippets in the reply were not read"))
        snippets = snippets[:MAX_SNIPPETS_PER_REPLY]
    for snip in snippets:
        reason, code, detail = check_test(snip, entry_point, max_chars)
        if reason is not None:
            result.dropped.append(DroppedTest(code[: max_chars * 2], reason, detail))
            continue
        norm = normalize_test(code)
        if norm in seen:
            result.dropped.append(DroppedTest(code, DUPLICATE))
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
        merged.dropped.extend(DroppedTest(c, OVER_LIMIT) for c in merged.kept[max_tests:])
        merged.kept = merged.kept[:max_tests]
    return merged


# --------------------------------------------------------------------------------------------
# Tests from the problem text, and the dataset's own tests

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
            a = _make_equality_assert(line[m.start():end], value, entry_point)
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
                a = _make_equality_assert(f"{entry_point}({m.group(1).strip()})", om.group(1).strip(), entry_point)
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
    found = _doctest_asserts(text, ep) + _arrow_examples(text, ep) + _io_examples(text, ep)
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


def make_test_cases(problem: Problem, parsed: ParsedTests, origin: str = TestOrigin.SYNTHESIZED.value,
                    writer: str = "", *, exclude_ids: Iterable[str] = ()) -> list[TestCase]:
    """Rows for the tests of one problem: kept ones and dropped ones with their reason.

    Duplicates are counted (see ``problem_test_stats``) but get no row: their id (a content hash)
    would be the id of the test they duplicate. Ids in ``exclude_ids`` (tests of another origin)
    are skipped the same way."""
    pid, kind = problem.problem_id, TestKind.ASSERT.value
    rows: dict[str, TestCase] = {}
    excluded = set(exclude_ids)
    for code in parsed.kept:
        tid = TestCase.make_id(pid, kind, code)
        if tid not in excluded and tid not in rows:
            rows[tid] = TestCase(test_id=tid, problem_id=pid, kind=kind, code=code, origin=origin,
                                 kept=True, drop_reason=None, for_training=True, writer=writer)
    for d in parsed.dropped:
        if d.reason == DUPLICATE:
            continue
        code = d.code if d.code.strip() else f"# {d.reason}"
        tid = TestCase.make_id(pid, kind, code)
        if tid in excluded or tid in rows:
            continue
        reason = d.reason if not d.detail else f"{d.reason}: {d.detail}"[:300]
        rows[tid] = TestCase(test_id=tid, problem_id=pid, kind=kind, code=code, origin=origin, kept=False,
                             drop_reason=reason, for_training=True, writer=writer)
    return list(rows.values())


def given_test_cases(problem: Problem, role: str = "eval") -> list[TestCase]:
    """The dataset's own tests as rows of origin ``given``. With role ``eval`` they are reserved
    (for_training False: evaluation only, never training signal); ``train``/``both`` use them for
    training too (the record has one flag, so both mean "also training")."""
    if role not in ("train", "eval", "both"):
        raise ValueError(f"given_tests_role must be train, eval or both, got {role!r}")
    out: dict[str, TestCase] = {}
    for spec in problem.given_tests:
        tid = TestCase.make_id(problem.problem_id, spec.kind, spec.code, spec.stdin, spec.expected_stdout)
        out.setdefault(tid, TestCase(
            test_id=tid, problem_id=problem.problem_id, kind=spec.kind, code=spec.code,
            origin=TestOrigin.GIVEN.value, stdin=spec.stdin, expected_stdout=spec.expected_stdout,
            kept=True, for_training=role != "eval", writer=problem.source))
    return list(out.values())


def example_test_cases(problem: Problem, use_text: bool = True) -> list[TestCase]:
    """Example tests: those the dataset lists as shown in the prompt, plus (``use_text``) those
    extracted from the problem text; origin ``example``, usable for training."""
    out: dict[str, TestCase] = {}
    seen: set[str] = set()
    for spec in problem.example_tests:
        tid = TestCase.make_id(problem.problem_id, spec.kind, spec.code, spec.stdin, spec.expected_stdout)
        seen.add(normalize_test(spec.code))
        out.setdefault(tid, TestCase(
            test_id=tid, problem_id=problem.problem_id, kind=spec.kind, code=spec.code,
            origin=TestOrigin.EXAMPLE.value, stdin=spec.stdin, expected_stdout=spec.expected_stdout,
            kept=True, writer=problem.source))
    if use_text:
        for code in extract_example_tests(problem):
            if code in seen:
                continue
            seen.add(code)
            tid = TestCase.make_id(problem.problem_id, TestKind.ASSERT.value, code)
            out.setdefault(tid, TestCase(test_id=tid, problem_id=problem.problem_id, kind=TestKind.ASSERT.value,
                                         code=code, origin=TestOrigin.EXAMPLE.value, kept=True,
                                         writer="problem_text"))
    return list(out.values())


@dataclass
class ProblemTests:
    """All tests of one problem after synthesis, plus counts that have no row (duplicates)."""

    tests: list[TestCase]
    stats: dict[str, Any]


def assemble_problem_tests(problem: Problem, replies: Sequence[str] | None, cfg: TestSynthesisConfig,
                           writer: str = "", generation_error: str | None = None) -> ProblemTests:
    """Given, example and synthesized tests of one problem, deduplicated across origins (a synthesized
    test equal to a given or example one is a duplicate: given tests stay reserved, examples keep their
    origin). ``replies`` None means synthesis was off or impossible (no entry point); each reply is
    the full text to parse (a plain-text prompt's prefix already prepended, see ``reply_prefix``)."""
    given = given_test_cases(problem, cfg.given_tests_role)
    examples = example_test_cases(problem, cfg.use_examples and bool(problem.entry_point))
    seen = {normalize_test(t.code) for t in given + examples if t.kind == TestKind.ASSERT.value}
    synthesized: list[TestCase] = []
    parsed = ParsedTests()
    if generation_error is not None:
        parsed.dropped.append(DroppedTest("", GENERATION_FAILED, generation_error[:200]))
    elif replies is not None:
        parsed = parse_replies(list(replies), problem.entry_point, cfg.max_test_chars,
                               cfg.max_tests_per_problem, seen=seen)
        synthesized = make_test_cases(problem, parsed, TestOrigin.SYNTHESIZED.value, writer,
                                      exclude_ids=[t.test_id for t in given + examples])
    tests = given + examples + synthesized
    # identical snippets collapse into one row (same content id): count the extra ones as duplicates
    reply_level = (EMPTY_REPLY, NO_TESTS, GENERATION_FAILED)
    rows_wanted = len(parsed.kept) + sum(d.reason not in (DUPLICATE, *reply_level) for d in parsed.dropped)
    collapsed = rows_wanted - sum(t.drop_reason is None or t.drop_reason.split(":")[0] not in reply_level
                                  for t in synthesized)
    duplicates = sum(d.reason == DUPLICATE for d in parsed.dropped) + max(0, collapsed)
    reply_drops = Counter(d.reason for d in parsed.dropped if d.reason in (EMPTY_REPLY, NO_TESTS, GENERATION_FAILED))
    stats = problem_test_stats(problem.problem_id, tests, duplicates=duplicates,
                               replies=len(replies) if replies is not None else 0,
                               reply_drops=dict(reply_drops))
    return ProblemTests(tests=tests, stats=stats)


# --------------------------------------------------------------------------------------------
# Statistics


def problem_test_stats(problem_id: str, tests: Sequence[TestCase], *, duplicates: int = 0, replies: int = 0,
                       reply_drops: Mapping[str, int] | None = None,
                       skipped_reason: str | None = None) -> dict[str, Any]:
    """Per-problem counts for the manifest.

    written: synthesized candidate tests found in the replies (duplicates included);
    parsed: those that passed the static checks (duplicates and over_limit included); kept: tests kept after validation (all origins);
    dropped_by_reason: every drop, by reason keyword (details after ':' are cut);
    by_origin: {origin: {total, kept}}. Reply-level drops (empty reply, no tests, generation failed)
    are counted in dropped_by_reason but are not tests, so not in written."""
    reply_drops = dict(reply_drops or {})
    dropped: Counter[str] = Counter()
    by_origin: dict[str, dict[str, int]] = {}
    written = parsed = duplicates  # a duplicate passed the static checks
    for t in tests:
        o = by_origin.setdefault(t.origin, {"total": 0, "kept": 0})
        reason = (t.drop_reason or "").split(":")[0].strip()
        is_reply_row = t.origin == TestOrigin.SYNTHESIZED.value and reason in (EMPTY_REPLY, NO_TESTS,
                                                                               GENERATION_FAILED)
        if is_reply_row:
            continue  # counted through reply_drops
        o["total"] += 1
        if t.kept:
            o["kept"] += 1
        else:
            dropped[reason or "unknown"] += 1
        if t.origin == TestOrigin.SYNTHESIZED.value:
            written += 1
            if t.kept or reason not in STATIC_REASONS:
                parsed += 1
    if duplicates:
        dropped[DUPLICATE] += duplicates
    for r, n in reply_drops.items():
        dropped[r] += n
    kept = sum(t.kept for t in tests)
    return {
        "problem_id": problem_id,
        "replies": replies,
        "written": written,
        "parsed": parsed,
        "kept": kept,
        "kept_training": sum(t.kept and t.for_training for t in tests),
        "dropped_by_reason": dict(sorted(dropped.items())),
        "by_origin": dict(sorted(by_origin.items())),
        "duplicates": duplicates,
        "reply_drops": dict(sorted(reply_drops.items())),
        "skipped_reason": skipped_reason,
    }


def request_seed(base: int, problem_id: str) -> int:
    """Per-problem seed: stable across reruns, different between problems."""
    return (base + int(content_id("tests-seed", problem_id), 16)) % (2 ** 31)


def synthesize_batch(problems: Sequence[Problem], cfg: TestSynthesisConfig, *, generate: Any,
                     render_chat: Any = None, chat: bool = True, writer: str = "",
                     stage: str = "synthesize_tests") -> tuple[list[ProblemTests], list[ErrorRecord]]:
    """Tests of a batch of problems with ONE ``generate`` call (the engine batches the prompts).

    ``generate`` is a backend's ``generate``; ``render_chat`` its chat renderer (used when ``chat``).
    A failed request (prompt too long, engine error) costs that problem its synthesized tests only:
    it still gets its example and given tests, and an ErrorRecord says why."""
    from plumline.llm.types import GenerationRequest  # plain dataclasses, no engine import

    errors: list[ErrorRecord] = []
    requests: list[Any] = []
    wanted: dict[str, int] = {}
    for i, p in enumerate(problems):
        if not (cfg.enabled and p.entry_point):
            continue
        try:
            if chat:
                prompt = render_chat(build_test_prompt(p, cfg.tests_per_problem))
            else:
                prompt = build_test_prompt_text(p, cfg.tests_per_problem)
        except Exception as exc:  # a template that cannot render this problem
            errors.append(ErrorRecord(stage=stage, reason=f"test prompt failed: {type(exc).__name__}: {exc}"[:300],
                                      input=p.problem_id, problem_id=p.problem_id))
            continue
        rid = f"{i}:{p.problem_id}"
        wanted[rid] = i
        requests.append(GenerationRequest(
            request_id=rid, prompt=prompt, n=cfg.num_replies, temperature=cfg.temperature,
            top_p=cfg.top_p if cfg.temperature > 0 else 1.0, max_tokens=cfg.max_tokens,
            seed=None if cfg.seed is None else request_seed(cfg.seed, p.problem_id)))
    replies: dict[int, list[str]] = {}
    failures: dict[int, str] = {}
    if requests:
        try:
            results = list(generate(requests))
        except Exception as exc:  # the engine failed the whole batch: every problem says so
            logger.exception("test writer failed for a batch of %d problems", len(requests))
            results = []
            for rid, i in wanted.items():
                failures[i] = f"engine failed: {type(exc).__name__}: {exc}"
        for res in results:
            i = wanted.get(getattr(res, "request_id", None))
            if i is None:
                continue
            if res.error is not None:
                failures[i] = str(res.error)
            else:
                prefix = reply_prefix(chat, problems[i].entry_point)  # what a plain prompt already wrote
                replies[i] = [prefix + c.text for c in res.completions]
        for rid, i in wanted.items():
            if i not in replies and i not in failures:
                failures[i] = "no result for this request"
    out: list[ProblemTests] = []
    for i, p in enumerate(problems):
        err = failures.get(i)
        if err is not None:
            errors.append(ErrorRecord(stage=stage, reason=f"test generation failed: {err}"[:300],
                                      input=p.problem_id, problem_id=p.problem_id))
        try:
            out.append(assemble_problem_tests(p, replies.get(i), cfg, writer=writer, generation_error=err))
        except Exception as exc:  # never lose the batch to one odd problem
            logger.exception("tests of %s could not be assembled", p.problem_id)
            errors.append(ErrorRecord(stage=stage, reason=f"tests not assembled: {type(exc).__name__}: {exc}"[:300],
                                      input=p.problem_id, problem_id=p.problem_id))
    return out, errors
