"""Input-first synthesis (EvalPlus): the writer model proposes call INPUTS only (argument tuples as
Python literals), never expected values; this module holds the prompt, the reply parser and the seed
inputs found in the problem's examples.

Replies are read as data: every candidate is turned into values with ``ast.literal_eval`` (or
``json.loads`` for JSON spellings such as ``true``/``null``), never ``eval``. Bad lines are dropped
with a ``TestDropReason`` (syntax_error: not a literal; wrong_arity: a number of arguments the
signature does not take; too_long; duplicate; over_limit). Never raises; bounded on hostile input.
"""

from __future__ import annotations

import ast
import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from plumline.data_schemas import Problem, TestDropReason
from plumline.transforms.logic.synthesis.checks import safe_parse
from plumline.transforms.logic.synthesis.parser import DroppedTest
from plumline.transforms.logic.synthesis.prompts import _signature

MAX_REPLY_CHARS = 50_000
MAX_LINES = 500
Args = tuple[Any, ...]

SYSTEM_PROMPT = ("You are an expert Python tester. You propose test INPUTS for a function: valid, varied "
                 "arguments that cover normal cases and edge cases. You never write expected outputs.")


# ---- the signature -------------------------------------------------------------------------------

def arity(problem: Problem) -> tuple[int, int | None] | None:
    """(fewest, most) positional arguments the entry point takes (most None with ``*args``), from its
    ``def`` line; None when there is no signature to read."""
    sig = _signature(problem)
    tree = safe_parse(sig + "\n    pass\n") if sig else None
    fn = tree.body[0] if tree is not None and tree.body else None
    if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return None
    pos = [*fn.args.posonlyargs, *fn.args.args]
    if pos and pos[0].arg in ("self", "cls"):
        pos = pos[1:]
    return len(pos) - len(fn.args.defaults), None if fn.args.vararg else len(pos)


def _arity_ok(n: int, ar: tuple[int, int | None] | None) -> bool:
    return ar is None or (n >= ar[0] and (ar[1] is None or n <= ar[1]))


# ---- the prompt ----------------------------------------------------------------------------------

def build_inputs_prompt(problem: Problem, k: int = 10) -> list[dict[str, str]]:
    """Chat messages asking for ``k`` inputs of ``problem.entry_point``, one argument tuple per line."""
    ep = problem.entry_point
    code = "def " in problem.prompt
    parts = ["Here is a programming problem:", "", "```python" if code else "", problem.prompt.strip(),
             "```" if code else ""]
    sig = _signature(problem)
    if sig and sig not in problem.prompt:
        parts += ["", f"The function signature is: `{sig}`"]
    parts += [
        "",
        (f"Propose {k} different inputs for `{ep}`: typical cases and edge cases (empty values, zero, "
         f"negative numbers, single elements, long values). Write each input as the argument list of "
         f"one call, as Python literals, one call per line, e.g. `{ep}(...)`. Do not write the "
         f"expected results, do not define `{ep}`. Reply with one ```python block holding only the "
         f"{k} calls."),
    ]
    return [{"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": "\n".join(parts)}]


def build_inputs_prompt_text(problem: Problem, k: int = 10) -> str:
    """Plain-text (completion) variant for base models: the problem, then a list of calls to continue."""
    ep = problem.entry_point
    body = problem.prompt.rstrip()
    body = body + "\n    ...\n" if "def " in body else '"""\n' + body.replace('"""', "'''") + '\n"""\n'
    return f"{body}\n\n# {k} different inputs for {ep} (typical and edge cases), one call per line:\n{ep}("


def inputs_reply_prefix(chat: bool, entry_point: str) -> str:
    return "" if chat else f"{entry_point}("


# ---- the reply parser ----------------------------------------------------------------------------

@dataclass
class ParsedInputs:
    """Argument tuples a reply yielded (deduplicated, in order) and the lines dropped with a reason."""

    kept: list[Args] = field(default_factory=list)
    dropped: list[DroppedTest] = field(default_factory=list)


_FENCE_RE = re.compile(r"```[ \t]*([\w+.-]*)[^\n]*\n(.*?)(?:\n[ \t]*```|\Z)", re.DOTALL)
_BULLET_RE = re.compile(r"^\s*(?:[-*•]\s+|\d{1,3}[.)]\s+|(?:input|inputs|args)\s*\d*\s*[:=]\s*)",
                        re.IGNORECASE)
_DATA_START = tuple("([{'\"-+.0123456789") + ("True", "False", "None", "true", "false", "null")
_JSON_NAMES = {"true": "True", "false": "False", "null": "None"}


def _literal(text: str) -> tuple[bool, Any]:
    try:
        return True, ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, RecursionError, MemoryError):
        pass
    try:
        return True, json.loads(text)
    except (ValueError, RecursionError):
        return False, None


def literal_round_trips(value: Any) -> bool:
    """Whether ``repr(value)`` reads back (``ast.literal_eval``) as an equal value of the same type:
    the condition for writing it into a test (no nan, no objects, no generators)."""
    try:
        text = repr(value)
        back = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, RecursionError, MemoryError):
        return False
    return _same(back, value)


def _same(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return a == b


def _call_args(node: ast.expr, entry_point: str) -> tuple[bool, Args | None]:
    """(is a call of the entry point, its positional arguments as values or None when one is not a
    literal or keywords are used)."""
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == entry_point):
        return False, None
    if node.keywords or any(isinstance(a, ast.Starred) for a in node.args):
        return True, None
    out = []
    for a in node.args:
        try:
            out.append(ast.literal_eval(a))
        except (ValueError, SyntaxError, TypeError, RecursionError, MemoryError):
            return True, None
    return True, tuple(out)


def _line_args(text: str, entry_point: str, ar: tuple[int, int | None] | None
               ) -> tuple[Args | None, TestDropReason | None, str]:
    """One line -> (args, None, "") or (None, reason, detail)."""
    tree = safe_parse(text)
    if tree is not None and len(tree.body) == 1 and isinstance(tree.body[0], ast.Expr):
        expr = tree.body[0].value
        # `f(1, 2) == 3` or `f(1, 2) -> 3`-like lines: the call's arguments only
        if isinstance(expr, ast.Compare):
            expr = expr.left
        is_call, args = _call_args(expr, entry_point)
        if is_call:
            if args is None:
                return None, TestDropReason.SYNTAX_ERROR, "arguments are not Python literals"
            if not _arity_ok(len(args), ar):
                return None, TestDropReason.WRONG_ARITY, f"{len(args)} arguments for {ar}"
            return args, None, ""
        bare_tuple = isinstance(expr, ast.Tuple) and not text.lstrip().startswith("(")
    else:
        bare_tuple = False
    ok, value = _literal(text)
    if not ok:
        return None, TestDropReason.SYNTAX_ERROR, "not a Python literal"
    if ar is not None and ar[1] == 1 and ar[0] <= 1:
        # one parameter: the line is its value, unless written as a one-element tuple `(x,)`
        if bare_tuple:
            return None, TestDropReason.WRONG_ARITY, f"{len(value)} arguments for {ar}"
        if isinstance(value, tuple) and len(value) == 1 and text.strip().endswith(",)"):
            return value, None, ""
        return (value,), None, ""
    if isinstance(value, (tuple, list)) and (ar is None or _arity_ok(len(value), ar)):
        return tuple(value), None, ""
    if ar is None or _arity_ok(1, ar):
        return (value,), None, ""
    n = len(value) if isinstance(value, (tuple, list)) else 1
    return None, TestDropReason.WRONG_ARITY, f"{n} arguments for {ar}"


def _strip_comment(line: str) -> str:
    """A trailing `# ...` comment removed when the line still parses without it."""
    if "#" not in line:
        return line
    i = line.rfind("#")
    head = line[:i].rstrip()
    return head if head and safe_parse(head) is not None else line


def _bodies(reply: str) -> list[str]:
    fences = [body for lang, body in _FENCE_RE.findall(reply) if lang.lower() not in ("text", "output")]
    return fences or [reply]


def _body_items(body: str, entry_point: str) -> list[str] | None:
    """A body that is one multi-line list (JSON or Python), or ``{"inputs": [...]}``: its items as
    source lines; None when it is not one."""
    s = body.strip()
    if not s or s[0] not in "[{" or "\n" not in s:
        return None
    ok, data = _literal(s)
    if not ok:
        return None
    if isinstance(data, dict):
        data = next((data[k] for k in ("inputs", "tests", "args", "cases") if isinstance(data.get(k), list)),
                    None)
    if not isinstance(data, list):
        return None
    out = []
    for item in data:
        if isinstance(item, dict):
            item = next((item[k] for k in ("input", "inputs", "args") if k in item), None)
            if item is None:
                continue
        if isinstance(item, str) and item.lstrip().startswith(f"{entry_point}("):
            out.append(item)  # a call written as a string
        else:
            out.append(repr(tuple(item)) if isinstance(item, list) else repr(item))
    return out


def parse_inputs_reply(reply: str, entry_point: str, ar: tuple[int, int | None] | None = None, *,
                       max_chars: int = 400, seen: set[str] | None = None) -> ParsedInputs:
    """Argument tuples in a reply: one per line (``f(1, [2])``, ``1, [2]``, ``(1, [2])``, a JSON
    array), fenced or not, or one multi-line list of them. Prose lines are skipped silently; lines
    that look like data but are not literals, or do not fit the signature ``ar`` (see ``arity``), are
    dropped with a reason. ``seen`` (reprs) shares duplicate collapse across replies. Never raises."""
    try:
        return _parse(reply, entry_point, ar, max_chars, set() if seen is None else seen)
    except (RecursionError, MemoryError) as exc:
        return ParsedInputs(dropped=[DroppedTest(str(reply)[:max_chars], TestDropReason.SYNTAX_ERROR,
                                                 f"the parser gave up: {type(exc).__name__}")])


def _parse(reply: str, entry_point: str, ar: tuple[int, int | None] | None, max_chars: int,
           seen: set[str]) -> ParsedInputs:
    out = ParsedInputs()
    if not isinstance(reply, str) or not reply.strip():
        out.dropped.append(DroppedTest("", TestDropReason.EMPTY_REPLY, "the reply is empty"))
        return out
    reply = reply[:MAX_REPLY_CHARS]
    lines: list[str] = []
    for body in _bodies(reply):
        items = _body_items(body, entry_point)
        lines.extend(items if items is not None else body.splitlines())
    for raw in lines[:MAX_LINES]:
        line = _BULLET_RE.sub("", raw.strip(), count=1).strip().rstrip(";").strip()
        if not line:
            continue
        line = _strip_comment(line)
        looks_like_data = line.startswith((*_DATA_START, f"{entry_point}("))
        if not looks_like_data:
            continue  # prose
        if len(line) > max_chars:
            out.dropped.append(DroppedTest(line[:max_chars], TestDropReason.TOO_LONG,
                                           f"{len(line)} chars > {max_chars}"))
            continue
        args, reason, detail = _line_args(line, entry_point, ar)
        if args is not None and not all(literal_round_trips(a) for a in args):
            args, reason = None, TestDropReason.SYNTAX_ERROR
            detail = "a value does not read back as a literal"
        if args is None:
            out.dropped.append(DroppedTest(line, reason or TestDropReason.SYNTAX_ERROR, detail))
            continue
        key = input_key(args)
        if key in seen:
            out.dropped.append(DroppedTest(line, TestDropReason.DUPLICATE, "an input seen before"))
            continue
        seen.add(key)
        out.kept.append(args)
    if not out.kept and not out.dropped:
        out.dropped.append(DroppedTest(reply[:max_chars], TestDropReason.NO_TESTS, "no inputs in the reply"))
    return out


def input_key(args: Args) -> str:
    """Identity of an input for deduplication (repr keeps 1, 1.0 and True apart)."""
    return repr(tuple(args))


def call_source(entry_point: str, args: Args) -> str:
    return f"{entry_point}({', '.join(repr(a) for a in args)})"


# ---- seeds from the problem's examples -----------------------------------------------------------

def example_inputs(problem: Problem, example_codes: Iterable[str] = ()) -> list[Args]:
    """Inputs of the calls of the entry point in the problem's example tests (``example_codes``: the
    example asserts, e.g. from ``extract_example_tests``, plus the dataset's ``example_tests``)."""
    ep = problem.entry_point
    out: list[Args] = []
    seen: set[str] = set()
    codes: Sequence[str] = [*example_codes, *(t.code for t in problem.example_tests if t.code)]
    for code in codes:
        tree = safe_parse(code)
        if tree is None:
            continue
        for node in ast.walk(tree):
            _, args = _call_args(node, ep) if isinstance(node, ast.Call) else (False, None)
            if args is not None and all(literal_round_trips(a) for a in args) and input_key(args) not in seen:
                seen.add(input_key(args))
                out.append(args)
    return out
