"""File formats: a source file's bytes (JSONL, a JSON list such as MBPP's ``sanitized-mbpp.json``,
gzip, Parquet) or a saved HF dataset folder -> located rows, each converted by the dataset convention
of its source. Every bad file or row becomes an ErrorRecord naming its location; the rest of the
input is still read."""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Iterable, Iterator
from typing import Any

from plumline.data_schemas import ErrorKind
from plumline.transforms.logic.readers.config import SourceConfig, default_source_name
from plumline.transforms.logic.readers.conventions import convert_row
from plumline.transforms.logic.readers.lines import parse_json_line
from plumline.transforms.logic.readers.locations import Located, Location, read_error


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


def parse_jsonl_bytes(data: bytes, origin: str, cfg: SourceConfig, fmt: str = "jsonl",
                      source_index: int = 0, source_name: str = "") -> Iterator[Located]:
    """Parse a whole JSONL file (gzip detected by magic bytes). Each line is decoded on its own, so a
    non-UTF-8 or malformed line becomes an error and the others are still read."""
    source_name = source_name or default_source_name(cfg, origin)
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as e:
            yield Location(source_index, origin, 0), read_error(
                origin, ErrorKind.BAD_INPUT, f"corrupt gzip file: {e}")
            return
    if not data.strip():
        yield Location(source_index, origin, 0), read_error(
            f"{origin}:0", ErrorKind.MISSING_INPUT, "empty input: the file holds no rows")
        return
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    if data.lstrip()[:1] == b"[":
        rows = _json_list(data)
        if rows is not None or origin.lower().endswith((".json", ".json.gz")):
            yield from _list_rows(rows, data, origin, cfg, fmt, source_index, source_name)
            return
    for lineno, raw in enumerate(data.split(b"\n"), start=1):
        loc = Location(source_index, origin, lineno)
        item = parse_json_line(raw, loc, cfg, fmt, source_name)
        if item is not None:
            yield loc, item


def _json_list(data: bytes) -> list[Any] | None:
    """The rows of a file holding one JSON list (MBPP's ``sanitized-mbpp.json``), or None."""
    try:
        value = json.loads(data.decode("utf-8"))
    except (ValueError, RecursionError):  # not UTF-8, malformed, digit limit, nested too deeply
        return None
    return value if isinstance(value, list) else None


def _list_rows(rows: list[Any] | None, data: bytes, origin: str, cfg: SourceConfig, fmt: str,
               source_index: int, source_name: str) -> Iterator[Located]:
    """A JSON-list file's rows, located by index (``file#i``); a file that is not one list is an error."""
    if rows is None:
        try:
            json.loads(data.decode("utf-8"))
            reason = "expected a JSON list of objects"
        except UnicodeDecodeError as e:
            reason = f"not UTF-8: {e.reason} at byte {e.start}"
        except json.JSONDecodeError as e:
            reason = f"malformed JSON: {e.msg} (line {e.lineno}, column {e.colno})"
        except (ValueError, RecursionError) as e:
            reason = f"malformed JSON: {type(e).__name__}"
        yield Location(source_index, origin, 0, False), read_error(origin, ErrorKind.BAD_INPUT, reason)
        return
    if not rows:
        yield Location(source_index, origin, 0, False), read_error(
            f"{origin}#0", ErrorKind.MISSING_INPUT, "empty input: the JSON list holds no rows")
        return
    for i, row in enumerate(rows):
        loc = Location(source_index, origin, i, False)
        if not isinstance(row, dict):
            yield loc, read_error(loc, ErrorKind.BAD_INPUT,
                                  f"expected a JSON object per list item, got {type(row).__name__}", row)
            continue
        yield loc, convert_row(row, cfg, fmt, loc, source_name)


def _rows_to_items(rows: Iterable[dict[str, Any]], origin: str, cfg: SourceConfig, fmt: str,
                   source_index: int, source_name: str) -> Iterator[Located]:
    for i, row in enumerate(rows):
        loc = Location(source_index, origin, i, False)
        yield loc, convert_row(row, cfg, "jsonl" if fmt in ("parquet", "hf_disk") else fmt, loc, source_name)


def read_hf_disk(cfg: SourceConfig, path: str, source_index: int = 0) -> Iterator[Located]:
    """A dataset saved with ``save_to_disk`` (Dataset, or DatasetDict with ``split``)."""
    try:
        import datasets
    except ImportError:
        yield Location(source_index, path, 0, False), read_error(
            path, ErrorKind.BAD_INPUT, "hf_disk needs the 'datasets' package")
        return
    try:
        ds = datasets.load_from_disk(path)
    except (FileNotFoundError, ValueError, OSError) as e:
        yield Location(source_index, path, 0, False), read_error(
            path, ErrorKind.BAD_INPUT, f"cannot load saved dataset: {e}")
        return
    origin = path
    if isinstance(ds, datasets.DatasetDict):
        split = cfg.split
        if split is None:
            split = "test" if "test" in ds else (next(iter(ds)) if len(ds) == 1 else None)
        if split is None or split not in ds:
            yield Location(source_index, path, 0, False), read_error(
                path, ErrorKind.BAD_INPUT,
                f"split {cfg.split!r} not in the DatasetDict (splits: {sorted(ds)}); set split")
            return
        ds = ds[split]
        origin = f"{path}[{split}]"
    if len(ds) == 0:
        yield Location(source_index, origin, 0, False), read_error(
            f"{origin}#0", ErrorKind.MISSING_INPUT, "empty input: no rows")
        return
    fmt = cfg.format if cfg.format in ("humaneval", "mbpp") else "hf_disk"
    yield from _rows_to_items(iter(ds), origin, cfg, fmt, source_index, default_source_name(cfg, path))
