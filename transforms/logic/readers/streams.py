"""A source file read as a stream -> located rows, with memory bounded by the longest line, not the file.

JSONL (gzip detected by its magic bytes and decompressed as it streams) is split line by line
(``lines.LineSplitter``); a file whose first byte is ``[`` may hold one JSON list (MBPP's
``sanitized-mbpp.json``) and is read whole, up to ``max_line_bytes``; Parquet is read one row group at
a time. A stream that fails part way (a gzip file cut short, a disk error) keeps every row before the
failure and adds one error naming the line where it stopped. The pure reader (``sources``) passes an
open local file, the Beam read stage the stream of a ``fileio.ReadableFile``: both parse alike.
"""

from __future__ import annotations

import gzip
import io
import zlib
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO

from plumline.data_schemas import ErrorKind
from plumline.transforms.logic.readers.config import SourceConfig, default_source_name
from plumline.transforms.logic.readers.conventions import convert_row
from plumline.transforms.logic.readers.formats import parse_jsonl_bytes, resolve_format
from plumline.transforms.logic.readers.lines import CHUNK_BYTES, LineSplitter, parse_json_line
from plumline.transforms.logic.readers.locations import Located, Location, read_error

GZIP_MAGIC = b"\x1f\x8b"
_BOM = b"\xef\xbb\xbf"
_STREAM_ERRORS = (OSError, EOFError, zlib.error)  # disk errors, gzip cut short or corrupt


class _Prepended:
    """``head`` then the rest of a stream, through ``read(n)`` (what GzipFile and LineSplitter use)."""

    def __init__(self, head: bytes, read: Callable[[int], bytes]):
        self._head, self._read = head, read

    def read(self, n: int = -1) -> bytes:
        if self._head:
            if n is None or n < 0 or n >= len(self._head):
                out, self._head = self._head, b""
            else:
                out, self._head = self._head[:n], self._head[n:]
            return out
        return self._read(CHUNK_BYTES if n is None or n < 0 else n)


def _reader(stream: Any) -> Callable[[int], bytes]:
    """``read1`` where the stream has it (one underlying read per call: a failing gzip stream gives up
    every byte before the failure), else ``read``."""
    return getattr(stream, "read1", None) or stream.read


def parse_file_stream(stream: BinaryIO, origin: str, cfg: SourceConfig,
                      source_index: int = 0) -> Iterator[Located]:
    """Parse one file of a source from an open binary stream, whatever its format. Never raises for bad
    content: each bad row, and a stream that fails part way, becomes an ErrorRecord naming it."""
    try:
        fmt = resolve_format(cfg, origin)
    except ValueError as e:
        yield Location(source_index, origin, 0), read_error(origin, ErrorKind.BAD_INPUT, str(e))
        return
    name = default_source_name(cfg, origin)
    if fmt == "parquet" or (fmt in ("humaneval", "mbpp") and origin.lower().endswith((".parquet", ".pq"))):
        yield from parse_parquet_stream(stream, origin, cfg, "jsonl" if fmt == "parquet" else fmt,
                                        source_index, name)
    elif fmt == "hf_disk":
        yield Location(source_index, origin, 0), read_error(
            origin, ErrorKind.BAD_INPUT, "hf_disk sources are folders, not files")
    else:
        yield from parse_jsonl_stream(stream, origin, cfg, fmt, source_index, name)


def parse_file_bytes(data: bytes, origin: str, cfg: SourceConfig, source_index: int = 0) -> Iterator[Located]:
    """``parse_file_stream`` over bytes already in memory."""
    yield from parse_file_stream(io.BytesIO(data), origin, cfg, source_index)


def parse_jsonl_stream(stream: BinaryIO, origin: str, cfg: SourceConfig, fmt: str = "jsonl",
                       source_index: int = 0, source_name: str = "") -> Iterator[Located]:
    """JSONL (or gzip JSONL, or a JSON list) from a stream, one line in memory at a time."""
    source_name = source_name or default_source_name(cfg, origin)
    read = _reader(stream)
    gzipped = False
    try:
        head = read(CHUNK_BYTES)
        if head[:2] == GZIP_MAGIC:
            gzipped = True
            gz = gzip.GzipFile(fileobj=_Prepended(head, read), mode="rb")  # type: ignore[arg-type]
            read = gz.read1
            head = read(CHUNK_BYTES)
    except _STREAM_ERRORS as e:
        what = "corrupt gzip file" if gzipped else "cannot read file"
        yield Location(source_index, origin, 1), read_error(
            f"{origin}:1", ErrorKind.BAD_INPUT, f"{what}: {type(e).__name__}: {e}; no line could be read")
        return
    if head.startswith(_BOM):
        head = head[3:]
    if head.lstrip()[:1] == b"[":
        # Maybe one JSON list: that is one document, parsed whole if it fits in max_line_bytes.
        try:
            data, complete = _read_upto(head, read, cfg.max_line_bytes)
        except _STREAM_ERRORS as e:
            yield Location(source_index, origin, 1), read_error(
                f"{origin}:1", ErrorKind.BAD_INPUT, f"cannot read file: {type(e).__name__}: {e}")
            return
        if complete:
            yield from parse_jsonl_bytes(data, origin, cfg, fmt, source_index, source_name)
            return
        if origin.lower().endswith((".json", ".json.gz")):
            yield Location(source_index, origin, 0, False), read_error(
                f"{origin}#0", ErrorKind.BAD_INPUT,
                f"a JSON list file over max_line_bytes={cfg.max_line_bytes:,} bytes (not parsed); "
                "write it as JSONL, one object per line")
            return
        head = data  # not a list file: its lines are read one by one like any JSONL file
    splitter = LineSplitter(_Prepended(head, read).read, cfg.max_line_bytes)
    del head
    seen = False
    try:
        for lineno, raw in splitter:
            loc = Location(source_index, origin, lineno)
            item = parse_json_line(raw, loc, cfg, fmt, source_name)
            del raw
            if item is not None:
                seen = True
                yield loc, item
    except _STREAM_ERRORS as e:
        cut = splitter.lineno + 1
        what = "gzip file cut short or corrupt" if gzipped else "file unreadable"
        yield Location(source_index, origin, cut), read_error(
            f"{origin}:{cut}", ErrorKind.BAD_INPUT,
            f"{what} at line {cut} ({splitter.pending:,} bytes of it arrived, not parsed): "
            f"{type(e).__name__}: {e}; lines 1-{cut - 1} were read")
        return
    if not seen:
        yield Location(source_index, origin, 0), read_error(
            f"{origin}:0", ErrorKind.MISSING_INPUT, "empty input: the file holds no rows")


def _read_upto(head: bytes, read: Callable[[int], bytes], limit: int) -> tuple[bytes, bool]:
    """``head`` and what follows, up to ``limit`` bytes; True when that is the whole stream."""
    parts, size = [head], len(head)
    while size <= limit:
        chunk = read(min(CHUNK_BYTES, limit + 1 - size))
        if not chunk:
            return b"".join(parts), True
        parts.append(chunk)
        size += len(chunk)
    return b"".join(parts), False


def parse_parquet_stream(source: Any, origin: str, cfg: SourceConfig, fmt: str = "jsonl",
                         source_index: int = 0, source_name: str = "") -> Iterator[Located]:
    """Parquet rows (row index as location) from a seekable stream, bytes or a path, one row group in
    memory at a time. A file that cannot be opened (cut short: no footer) is one error; a row group that
    cannot be decoded is one error naming its first row, and the other row groups are still read."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    source_name = source_name or default_source_name(cfg, origin)
    row_fmt = "jsonl" if fmt in ("parquet", "hf_disk") else fmt
    if isinstance(source, (bytes, bytearray)):
        source = pa.BufferReader(source)
    whole = Location(source_index, origin, 0, False)
    if _stream_size(source) == 0:
        yield whole, read_error(f"{origin}#0", ErrorKind.MISSING_INPUT, "empty input: the file is empty")
        return
    try:
        pf = pq.ParquetFile(source)
    except (pa.ArrowException, OSError, ValueError) as e:
        yield whole, read_error(origin, ErrorKind.BAD_INPUT, f"not a readable Parquet file: {e}")
        return
    if pf.metadata.num_rows == 0:
        yield whole, read_error(f"{origin}#0", ErrorKind.MISSING_INPUT, "empty input: no rows")
        return
    start = 0
    for group in range(pf.num_row_groups):
        size = pf.metadata.row_group(group).num_rows
        row = start
        try:
            for batch in pf.iter_batches(batch_size=1024, row_groups=[group]):
                for values in batch.to_pylist():
                    loc = Location(source_index, origin, row, False)
                    yield loc, convert_row(values, cfg, row_fmt, loc, source_name)
                    row += 1
        except (pa.ArrowException, OSError, ValueError) as e:
            loc = Location(source_index, origin, row, False)
            yield loc, read_error(loc, ErrorKind.BAD_INPUT,
                                  f"unreadable Parquet row group {group} (rows {row}-{start + size - 1} not "
                                  f"read): {type(e).__name__}: {e}")
        start += size


def _stream_size(source: Any) -> int | None:
    """The size of a seekable stream (position kept), None when it cannot tell."""
    try:
        if hasattr(source, "size") and not hasattr(source, "seekable"):
            return int(source.size())  # pyarrow NativeFile
        pos = source.tell()
        end = source.seek(0, io.SEEK_END)
        source.seek(pos)
        return int(end)
    except (OSError, AttributeError, ValueError, TypeError):
        return None
