"""Pull the program out of a model's completion.

Rules, in order:

1. Fenced blocks (```` ``` ```` or ``~~~``, up to 3 spaces of indentation, any info string; an
   unterminated fence runs to the end of the text, as a completion cut by ``max_tokens`` often is).
   Blocks tagged ``python``/``py``/``python3``/``py3`` or untagged are candidates; blocks tagged with
   another language (``bash``, ``text``, ``json``...) are ignored.
   With ``entry_point``: the last candidate that defines it (``def``/``async def``/``class``/assignment).
   Otherwise (or when none defines it): the longest candidate that parses, ties to the last; failing
   that, the longest non-empty candidate (a program that does not compile is still a sample: CodeRL's
   compile-error class).
   When every fence is empty (a model that answered with bare code and then wrote a lone closing
   fence), the text before the first fence is read as in rule 2.
2. No fence: the whole text if it parses as Python with at least one real statement (not a lone
   name or constant, which prose like ``Hello`` would be); else the run of code-looking lines starting
   at the first ``def``/``class``/``import``/``from``/decorator line.
3. Otherwise ``None``: the completion holds no code (prose only).

``if __name__ == "__main__":`` blocks: for function problems (``entry_point`` given) top-level main
guards are removed by default, because the harness calls the function itself and a demo block can only
read stdin, print, or loop, turning a correct solution into a timeout or output failure. For stdin/stdout
programs (no entry point) the guard *is* the program and is kept. ``strip_main_guard`` overrides.
"""

from __future__ import annotations

import ast
import re
import textwrap

PYTHON_TAGS = frozenset({"", "python", "py", "python3", "py3", "pycon", "python-repl", "ipython", "sage"})
_FENCE = re.compile(r"^( {0,3})(`{3,}|~{3,})[ \t]*([^\s`]*)[^`\n]*$")
_CODE_START = re.compile(r"^(?:async\s+def|def|class|import|from)\s+\w|^@\w")
_CODE_LINE = re.compile(
    r"^(?:\s|#|@|def\s|async\s|class\s|import\s|from\s|if\s|elif\s|else\s*:|for\s|while\s|try\s*:|except|"
    r"finally\s*:|with\s|return\b|raise\b|pass\b|break\b|continue\b|assert\s|print\(|[A-Za-z_][\w.]*\s*"
    r"(?:[-+*/%&|^]?=|\(|\[|,)|[\])}])"
)
# Above this size, only fences are parsed with ``ast`` once each; guards against quadratic work.
_MAX_PARSE_CHARS = 200_000


def _parses(code: str) -> bool:
    if len(code) > _MAX_PARSE_CHARS:
        return False
    try:
        ast.parse(code)
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return False
    return True


def _clean(block: str) -> str:
    """Dedent (fences inside list items are indented), drop leading blank lines and trailing space."""
    lines = block.split("\n")
    while lines and not lines[0].strip():
        lines.pop(0)
    text = textwrap.dedent("\n".join(lines))
    return "\n".join(line.rstrip() for line in text.split("\n")).rstrip()


def fenced_blocks(text: str) -> list[tuple[str, str]]:
    """``(tag, body)`` of every fenced block, in order; an unterminated last fence runs to the end."""
    blocks: list[tuple[str, str]] = []
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i].rstrip("\r"))
        if not m:
            i += 1
            continue
        fence, tag = m.group(2), m.group(3).lower()
        body: list[str] = []
        j = i + 1
        while j < len(lines):
            close = lines[j].rstrip("\r").strip()
            if close.startswith(fence[0] * len(fence)) and not close.strip(fence[0]):
                break
            body.append(lines[j].rstrip("\r"))
            j += 1
        blocks.append((tag, "\n".join(body)))
        i = j + 1
    return blocks


def defines(code: str, name: str) -> bool:
    """Whether ``code`` defines ``name`` at top level (by AST; by regex when it does not parse)."""
    if not name:
        return False
    if _parses(code):
        for node in ast.parse(code).body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name == name:
                return True
            if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == name for t in node.targets
            ):
                return True
        return False
    name_re = re.escape(name)
    pat = re.compile(rf"^(?:async\s+def|def|class)\s+{name_re}\b|^{name_re}\s*=", re.MULTILINE)
    return bool(pat.search(code))


def strip_main_guards(code: str) -> str:
    """Remove top-level ``if __name__ == "__main__":`` blocks (only when the code parses)."""
    if not _parses(code):
        return code
    tree = ast.parse(code)
    lines = code.split("\n")
    drop: list[tuple[int, int]] = []
    for node in tree.body:
        if isinstance(node, ast.If) and _is_main_test(node.test):
            drop.append((node.lineno - 1, node.end_lineno or node.lineno))
    if not drop:
        return code
    for start, end in reversed(drop):
        del lines[start:end]
    out = "\n".join(line.rstrip() for line in lines).rstrip()
    return out if _parses(out) else code


def _is_main_test(test: ast.expr) -> bool:
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq)):
        return False
    sides = [test.left, test.comparators[0]]
    has_name = any(isinstance(s, ast.Name) and s.id == "__name__" for s in sides)
    has_main = any(isinstance(s, ast.Constant) and s.value == "__main__" for s in sides)
    return has_name and has_main


def _is_real_program(code: str) -> bool:
    """Parses and holds at least one statement that is not a bare name/constant (prose guard)."""
    if not _parses(code):
        return False
    for node in ast.parse(code).body:
        if isinstance(node, ast.Expr) and isinstance(node.value, (ast.Name, ast.Constant, ast.Attribute)):
            continue
        return True
    return False


def _bare_code(text: str) -> str | None:
    whole = _clean(text)
    if whole and _is_real_program(whole):
        return whole
    lines = text.split("\n")
    for start, line in enumerate(lines):
        if _CODE_START.match(line):
            break
    else:
        return None
    end = start + 1
    while end < len(lines) and (not lines[end].strip() or _CODE_LINE.match(lines[end])):
        end += 1
    code = _clean("\n".join(lines[start:end]))
    return code or None


def _choose(candidates: list[str], entry_point: str | None) -> str | None:
    candidates = [c for c in candidates if c.strip()]
    if not candidates:
        return None
    if entry_point:
        defining = [c for c in candidates if defines(c, entry_point)]
        if defining:
            return defining[-1]
    parsing = [c for c in candidates if _is_real_program(c)]
    pool = parsing or candidates
    best = max(len(c) for c in pool)
    return [c for c in pool if len(c) == best][-1]


def _before_first_fence(text: str) -> str:
    lines = text.split("\n")
    first = next((i for i, line in enumerate(lines) if _FENCE.match(line.rstrip("\r"))), len(lines))
    return "\n".join(lines[:first])


def extract_code(text: str, entry_point: str | None = None, *,
                 strip_main_guard: bool | None = None) -> str | None:
    """The program in ``text``, or ``None`` when it holds no code. Never raises on any string."""
    if not isinstance(text, str) or not text.strip():
        return None
    blocks = fenced_blocks(text)
    code: str | None
    if blocks:
        candidates = [_clean(body) for tag, body in blocks if tag in PYTHON_TAGS]
        code = _choose(candidates, entry_point)
        if code is None:  # only empty fences: e.g. code answered bare, then a stray closing fence
            code = _bare_code(_before_first_fence(text))
    else:
        code = _bare_code(text)
    if code is None:
        return None
    if strip_main_guard is None:
        strip_main_guard = bool(entry_point)
    if strip_main_guard:
        code = strip_main_guards(code)
    return code or None
