"""Reading problems (datatrove-style): a source's files in their format -> rows -> Problems by the
dataset's convention; every bad file or row an ``ErrorRecord`` (stage ``read``) naming its location
(``<file>:<line>`` for JSONL, ``<file>#<row>`` for Parquet/HF) and the reason, the rest still read.

Modules: ``config`` (SourceConfig), ``bundled`` (bundled:<name> sets), ``locations`` (Location and the
read stage's errors), ``formats`` (JSONL/gzip/Parquet bytes and saved HF datasets -> located rows),
``conventions`` (plumline/HumanEval/MBPP row -> Problem), ``lines`` (a byte stream -> bounded numbered
lines -> rows), ``streams`` (one file as a stream, memory bounded by a line or a row group),
``sources`` (whole sources without Beam, limit, id deduplication). Pure functions, no Beam;
``plumline.transforms.read`` wraps them.
"""

from plumline.transforms.logic.readers.bundled import BUNDLED, bundled_path
from plumline.transforms.logic.readers.config import SourceConfig, default_source_name
from plumline.transforms.logic.readers.conventions import (
    RenameName,
    convert_row,
    humaneval_row_to_problem,
    infer_entry_point,
    mbpp_row_to_problem,
    row_to_problem,
    split_check_function,
)
from plumline.transforms.logic.readers.formats import parse_jsonl_bytes, read_hf_disk, resolve_format
from plumline.transforms.logic.readers.lines import LineSplitter, parse_json_line
from plumline.transforms.logic.readers.locations import Item, Located, Location, read_error
from plumline.transforms.logic.readers.sources import (
    apply_limit,
    drop_duplicate_ids,
    duplicate_error,
    expand_paths,
    iter_located,
    read_problems,
)
from plumline.transforms.logic.readers.streams import (
    parse_file_bytes,
    parse_file_stream,
    parse_jsonl_stream,
    parse_parquet_stream,
)

__all__ = [
    "BUNDLED", "Item", "LineSplitter", "Located", "Location", "RenameName", "SourceConfig", "apply_limit",
    "bundled_path", "convert_row", "default_source_name", "drop_duplicate_ids", "duplicate_error",
    "expand_paths", "humaneval_row_to_problem", "infer_entry_point", "iter_located", "mbpp_row_to_problem",
    "parse_file_bytes", "parse_file_stream", "parse_json_line", "parse_jsonl_bytes", "parse_jsonl_stream",
    "parse_parquet_stream", "read_error", "read_hf_disk", "read_problems", "resolve_format",
    "row_to_problem", "split_check_function",
]
