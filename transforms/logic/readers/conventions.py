"""Dataset conventions: one input row -> a validated Problem.

plumline's own rows (or any table, through ``field_map``), HumanEval rows (``check(candidate)``
split into independent asserts) and MBPP rows (entry point inferred from the code and the tests).
A bad row raises ``RecordError`` naming the field; ``convert_row`` turns it into an ErrorRecord.
"""

from __future__ import annotations

import ast
import builtins
import json
import re
from typing import Any

from plumline.data_schemas import ErrorKind, Problem, RecordError
from plumline.transforms.logic.readers.config import SourceConfig, default_source_name
from plumline.transforms.logic.readers.locations import Item, Location, read_error


def _as_test_specs(value: Any) -> list[dict[str, Any]] | Any:
    """Accept tests as a list of dicts (plumline format), a list of assert strings, or one string."""
    if value is None:
        return []
    if isinstance(value, str):
        return [{"code": value}] if value.strip() else []
    if isinstance(value, (list, tuple)):
        return [{"code": v} if isinstance(v, str) else v for v in value]
    if hasattr(value, "tolist"):  # numpy arrays from Parquet/HF
        return _as_test_specs(value.tolist())
    return value  # let Problem.from_dict produce the typed error


def _plain(value: Any) -> Any:
    """numpy scalars/arrays (Arrow conversions give none, but HF datasets may) -> plain Python."""
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        return value.tolist()
    return value


def _apply_field_map(row: dict[str, Any], field_map: dict[str, str]) -> dict[str, Any]:
    missing = [col for col in field_map.values() if col not in row]
    if missing:
        raise RecordError("Problem", "field_map",
                          f"mapped column {missing[0]!r} does not exist in the input "
                          f"(columns: {sorted(row)[:20]})")
    out = {k: v for k, v in row.items() if k not in set(field_map.values())}
    for target, col in field_map.items():
        out[target] = row[col]
    return out


def row_to_problem(row: dict[str, Any], cfg: SourceConfig, input_ref: str, source_name: str = "") -> Problem:
    """A generic row (plumline's own format, or any table with ``field_map``) as a validated Problem.

    Raises ``RecordError`` naming the field; the caller turns it into an ``ErrorRecord``.
    """
    if not isinstance(row, dict):
        raise RecordError("Problem", "<row>", f"expected a JSON object, got {type(row).__name__}")
    row = _apply_field_map(row, cfg.field_map)
    known = set(Problem.field_names())
    extra = {k: _plain(v) for k, v in row.items() if k not in known}
    out: dict[str, Any] = {k: _plain(v) for k, v in row.items() if k in known}
    if extra:
        if cfg.extra_columns == "error":
            raise RecordError("Problem", min(extra), "unknown column (extra_columns='error')")
        if cfg.extra_columns == "metadata":
            meta = out.get("metadata") or {}
            if isinstance(meta, str):
                try:
                    meta = json.loads(meta)
                except json.JSONDecodeError as e:
                    raise RecordError("Problem", "metadata", f"not valid JSON: {e}") from None
            if not isinstance(meta, dict):
                raise RecordError("Problem", "metadata", f"expected an object, got {type(meta).__name__}")
            out["metadata"] = {**extra, **meta}
    for name in ("given_tests", "example_tests"):
        if name in out:
            out[name] = _as_test_specs(out[name])
    if "problem_id" in out and isinstance(out["problem_id"], int) and not isinstance(out["problem_id"], bool):
        out["problem_id"] = str(out["problem_id"])
    if cfg.source or not isinstance(out.get("source"), str) or not out.get("source"):
        out["source"] = source_name or default_source_name(cfg, input_ref.rsplit(":", 1)[0])
    if out.get("problem_id") in (None, ""):
        prompt = out.get("prompt")
        if prompt is None:
            raise RecordError("Problem", "prompt", "missing")
        if not isinstance(prompt, str):
            raise RecordError("Problem", "prompt", f"expected str, got {type(prompt).__name__}")
        if not prompt.strip():
            raise RecordError("Problem", "prompt", "must be a non-empty string")
        entry = out.get("entry_point") or ""
        if not isinstance(entry, str):
            raise RecordError("Problem", "entry_point", f"expected str, got {type(entry).__name__}")
        out["problem_id"] = Problem.make_id(out["source"], prompt, entry)
    return Problem.from_dict(out)


class RenameName(ast.NodeTransformer):
    """Rename one variable everywhere (``candidate`` -> the entry point in check() functions)."""

    def __init__(self, old: str, new: str):
        self.old, self.new = old, new

    def visit_Name(self, node: ast.Name) -> ast.Name:
        if node.id == self.old:
            return ast.copy_location(ast.Name(id=self.new, ctx=node.ctx), node)
        return node


def _mentions(node: ast.AST, name: str) -> bool:
    return any(isinstance(n, ast.Name) and n.id == name for n in ast.walk(node))


def _has_assert(node: ast.AST) -> bool:
    return any(isinstance(n, ast.Assert) for n in ast.walk(node))


def split_check_function(test_code: str, entry_point: str) -> tuple[list[str], dict[str, Any]]:
    """Split HumanEval's ``def check(candidate): ...`` into independent assert snippets.

    Each snippet calls the entry point directly (``candidate(`` -> ``entry_point(``). Module-level lines
    other than ``check`` and ``METADATA`` (imports, helpers) are prepended to every snippet. Setup lines
    inside ``check`` (imports, assignments) are kept before each later snippet; a snippet with setup or a
    loop is wrapped in a function so its names stay local, as in the original (HumanEval/38 binds
    ``str``, which must not leak into the candidate's globals). ``assert True`` and bare non-candidate
    expressions (``print``) are dropped: they test nothing. Returns (snippets, METADATA dict).

    Raises ValueError if the code does not parse or has no ``check`` function.
    """
    try:
        tree = ast.parse(test_code)
    except SyntaxError as e:
        raise ValueError(f"test code does not parse: {e.msg} (line {e.lineno})") from None
    metadata: dict[str, Any] = {}
    preamble: list[ast.stmt] = []
    check: ast.FunctionDef | None = None
    for stmt in tree.body:
        if isinstance(stmt, ast.FunctionDef) and stmt.name == "check":
            check = stmt
        elif (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1
              and isinstance(stmt.targets[0], ast.Name) and stmt.targets[0].id == "METADATA"):
            try:
                value = ast.literal_eval(stmt.value)
                if isinstance(value, dict):
                    metadata = {str(k): v for k, v in value.items()}
            except ValueError:
                pass
        elif isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant):
            continue  # module docstring
        else:
            preamble.append(stmt)
    if check is None:
        raise ValueError("test code has no 'def check(candidate)' function")
    if not check.args.args:
        raise ValueError("check() takes no argument to rename to the entry point")
    param = check.args.args[0].arg
    renamer = RenameName(param, entry_point)
    pre_src = "".join(ast.unparse(s) + "\n" for s in preamble)

    snippets: list[str] = []
    setup: list[ast.stmt] = []
    for stmt in check.body:
        stmt = renamer.visit(stmt)
        is_test = _has_assert(stmt) or (isinstance(stmt, ast.Expr) and _mentions(stmt, entry_point))
        if isinstance(stmt, ast.Assert) and isinstance(stmt.test, ast.Constant):
            continue  # `assert True, "..."`
        if not is_test:
            if isinstance(stmt, ast.Expr):
                continue  # print(...), docstrings
            setup.append(stmt)
            continue
        if not setup and isinstance(stmt, (ast.Assert, ast.Expr)):
            snippets.append(pre_src + ast.unparse(stmt))
            continue
        body = "".join(ast.unparse(s) + "\n" for s in [*setup, stmt])
        indented = "".join("    " + line + "\n" if line.strip() else "\n" for line in body.splitlines())
        snippets.append(pre_src + "def _plumline_check():\n" + indented + "_plumline_check()")
    if not snippets and any(_mentions(st, entry_point) for st in setup):
        # no assert at all, but it calls the function: running the body without an error is the test
        body = "".join(ast.unparse(s) + "\n" for s in setup)
        indented = "".join("    " + line + "\n" for line in body.splitlines())
        snippets.append(pre_src + "def _plumline_check():\n" + indented + "_plumline_check()")
    return snippets, metadata


def _take(row: dict[str, Any], cfg: SourceConfig, column: str, required: bool = True) -> Any:
    col = cfg.field_map.get(column, column)
    if col not in row:
        if column in cfg.field_map:
            raise RecordError("Problem", column, f"mapped column {col!r} does not exist in the input")
        if required:
            raise RecordError("Problem", column, "missing")
        return None
    return _plain(row[col])


def _need_str(value: Any, column: str) -> str:
    if not isinstance(value, str):
        raise RecordError("Problem", column, f"expected str, got {type(value).__name__}")
    return value


def humaneval_row_to_problem(row: dict[str, Any], cfg: SourceConfig, input_ref: str,
                             source_name: str = "humaneval") -> Problem:
    """HumanEval row (task_id, prompt, canonical_solution, test, entry_point) -> Problem.

    The reference solution is prompt + canonical_solution (the prompt holds the signature and any
    helpers); given tests are the split ``check`` asserts; the task id is kept as problem id."""
    if not isinstance(row, dict):
        raise RecordError("Problem", "<row>", f"expected a JSON object, got {type(row).__name__}")
    task_id = _take(row, cfg, "task_id")
    if isinstance(task_id, int) and not isinstance(task_id, bool):
        task_id = str(task_id)
    task_id = _need_str(task_id, "task_id")
    prompt = _need_str(_take(row, cfg, "prompt"), "prompt")
    entry = _need_str(_take(row, cfg, "entry_point"), "entry_point")
    if not entry.isidentifier():
        raise RecordError("Problem", "entry_point", f"{entry!r} is not a Python identifier")
    solution = _take(row, cfg, "canonical_solution", required=False)
    test = _need_str(_take(row, cfg, "test"), "test")
    try:
        snippets, meta = split_check_function(test, entry)
    except ValueError as e:
        raise RecordError("Problem", "test", str(e)) from None
    if not snippets:
        raise RecordError("Problem", "test", "check() holds no assert")
    metadata: dict[str, Any] = {"task_id": task_id}
    if meta:
        metadata["humaneval_metadata"] = meta
    return Problem.from_dict({
        "problem_id": task_id,
        "source": source_name,
        "prompt": prompt,
        "entry_point": entry,
        "starter_code": prompt,
        "reference_solution": (None if solution is None
                               else prompt + _need_str(solution, "canonical_solution")),
        "given_tests": [{"code": s} for s in snippets],
        "metadata": metadata,
    })


_BUILTIN_NAMES = frozenset(dir(builtins))
_DEF_RE = re.compile(r"^\s*def\s+([A-Za-z_]\w*)\s*\(", re.MULTILINE)


def infer_entry_point(code: str, tests: list[str]) -> str:
    """The function the tests call that the solution defines; else the first called name; else the
    last top-level def of the solution (helpers usually come first)."""
    defined: list[str] = []
    try:
        defined = [n.name for n in ast.parse(code).body
                   if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    except SyntaxError:
        defined = _DEF_RE.findall(code)
    called: list[str] = []
    for t in tests:
        try:
            for node in ast.walk(ast.parse(t)):
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                    called.append(node.func.id)
        except SyntaxError:
            continue
    for name in called:
        if name in defined:
            return name
    for name in called:
        if name not in _BUILTIN_NAMES:
            return name
    if defined:
        return defined[-1]
    raise RecordError("Problem", "entry_point", "cannot infer the entry point from the code or the tests")


def mbpp_row_to_problem(row: dict[str, Any], cfg: SourceConfig, input_ref: str,
                        source_name: str = "mbpp") -> Problem:
    """MBPP row (text or prompt, code, test_list, test_imports, task_id) -> Problem.

    Test imports are prepended to every test. With ``mbpp_example_in_prompt`` the first test is
    appended to the prompt (the standard MBPP prompt, which pins the function name) and recorded as an
    example test; all tests are given tests."""
    if not isinstance(row, dict):
        raise RecordError("Problem", "<row>", f"expected a JSON object, got {type(row).__name__}")
    text = _take(row, cfg, "text", required=False)
    if text is None:
        text = _take(row, cfg, "prompt", required=False)
    if text is None:
        raise RecordError("Problem", "text", "missing (neither 'text' nor 'prompt')")
    text = _need_str(text, "text")
    code = _need_str(_take(row, cfg, "code"), "code")
    tests = _take(row, cfg, "test_list")
    if not isinstance(tests, list) or not all(isinstance(t, str) for t in tests) or not tests:
        raise RecordError("Problem", "test_list", "expected a non-empty list of strings")
    imports = _take(row, cfg, "test_imports", required=False) or []
    if not isinstance(imports, list) or not all(isinstance(t, str) for t in imports):
        raise RecordError("Problem", "test_imports", "expected a list of strings")
    task_id = _take(row, cfg, "task_id", required=False)
    entry = infer_entry_point(code, tests)
    pre = "".join(i.strip() + "\n" for i in imports if i.strip())
    prompt = text
    example: list[dict[str, str]] = []
    if cfg.mbpp_example_in_prompt:
        prompt = f"{text.rstrip()}\nYour code should pass this test:\n{tests[0].strip()}\n"
        example = [{"code": pre + tests[0].strip()}]
    if task_id is None:
        pid = Problem.make_id(source_name, prompt, entry)
    elif isinstance(task_id, (int, str)) and not isinstance(task_id, bool):
        pid = f"MBPP/{task_id}" if isinstance(task_id, int) else task_id
    else:
        raise RecordError("Problem", "task_id", f"expected int or str, got {type(task_id).__name__}")
    return Problem.from_dict({
        "problem_id": pid,
        "source": source_name,
        "prompt": prompt,
        "entry_point": entry,
        "reference_solution": code,
        "given_tests": [{"code": pre + t.strip()} for t in tests if t.strip()],
        "example_tests": example,
        "metadata": {"task_id": task_id},
    })


def convert_row(row: Any, cfg: SourceConfig, fmt: str, loc: Location, source_name: str) -> Item:
    """One input row -> Problem, or an ErrorRecord naming the row and the reason (never raises)."""
    try:
        if fmt == "humaneval":
            return humaneval_row_to_problem(row, cfg, str(loc), source_name)
        if fmt == "mbpp":
            return mbpp_row_to_problem(row, cfg, str(loc), source_name)
        return row_to_problem(row, cfg, str(loc), source_name)
    except RecordError as e:
        return read_error(loc, ErrorKind.BAD_INPUT, f"invalid row: {e}", row)
    except (ValueError, TypeError, AttributeError, RecursionError) as e:  # hostile values
        return read_error(loc, ErrorKind.BAD_INPUT, f"invalid row: {type(e).__name__}: {e}", row)
