"""JSON lines, memory bounded: a byte stream split into numbered lines without holding the file, a
line over ``max_line_bytes`` skipped unparsed, and one line -> a Problem or an ErrorRecord naming it.

Memory: a short line is a slice of one read chunk; a line that spans chunks is gathered in one
``bytearray`` (about 1.1x its size) and handed over; ``parse_json_line`` clears that buffer once the
text is decoded, so a huge line is held at most twice at any moment (bytes + text while decoding, text
+ parsed value while parsing), never the whole file.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from plumline.data_schemas import ErrorKind
from plumline.transforms.logic.readers.config import SourceConfig
from plumline.transforms.logic.readers.conventions import convert_row
from plumline.transforms.logic.readers.locations import Item, Location, read_error

CHUNK_BYTES = 1 << 20  # one read from the stream
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")  # a \uD800-\uDFFF escape: maybe a lone surrogate


@dataclass(frozen=True)
class LineTooLong:
    """Stands for a line longer than the limit: its length, its bytes were never kept."""

    nbytes: int


Line = bytes | bytearray | LineTooLong


class LineSplitter:
    """Numbered lines (1-based, split on ``\\n``) of a stream read ``chunk`` bytes at a time.

    ``lineno`` is the number of the last line handed out, so after a read error the line that was
    cut is ``lineno + 1``; ``pending`` is how many bytes of it had arrived."""

    def __init__(self, read: Callable[[int], bytes], max_line_bytes: int, chunk: int = CHUNK_BYTES):
        self._read, self._max, self._chunk = read, max_line_bytes, chunk
        self.lineno = 0
        self.pending = 0

    def __iter__(self) -> Iterator[tuple[int, Line]]:
        buf: bytearray | None = None  # the start of a line that spans chunks
        skipped = -1  # >= 0: bytes of an over-long line seen so far (its bytes are dropped)
        while True:
            data = self._read(self._chunk)
            if not data:
                break
            parts = data.split(b"\n")
            del data
            last = parts.pop()  # the part after the final newline: the start of the next line
            for part in parts:
                self.lineno += 1
                if skipped >= 0:
                    line: Line = LineTooLong(skipped + len(part))
                elif buf is not None:
                    line = _fits(buf, part, self._max)
                else:
                    line = part if len(part) <= self._max else LineTooLong(len(part))
                buf, skipped, self.pending = None, -1, 0
                yield self.lineno, line
            if skipped >= 0:
                skipped += len(last)
            elif buf is not None or last:
                size = (len(buf) if buf is not None else 0) + len(last)
                if size > self._max:
                    buf, skipped = None, size
                elif buf is None:
                    buf = bytearray(last)
                else:
                    buf += last
            self.pending = skipped if skipped >= 0 else len(buf or b"")
        if skipped >= 0 or buf:
            self.lineno += 1
            self.pending = 0
            yield self.lineno, LineTooLong(skipped) if skipped >= 0 else buf  # type: ignore[misc]


def _fits(buf: bytearray, tail: bytes, limit: int) -> Line:
    if len(buf) + len(tail) > limit:
        return LineTooLong(len(buf) + len(tail))
    buf += tail
    return buf


def too_long_error(loc: Location, nbytes: int, cfg: SourceConfig):
    return read_error(loc, ErrorKind.BAD_INPUT,
                      f"line too long: {nbytes:,} bytes, over max_line_bytes={cfg.max_line_bytes:,} "
                      "(not parsed)")


def parse_json_line(raw: Line, loc: Location, cfg: SourceConfig, fmt: str, source_name: str) -> Item | None:
    """One JSONL line -> a Problem (by the source's convention) or an ErrorRecord naming ``loc``; None for
    a blank line. A ``bytearray`` line is cleared once decoded (the caller hands it over)."""
    if isinstance(raw, LineTooLong):
        return too_long_error(loc, raw.nbytes, cfg)
    if len(raw) > cfg.max_line_bytes:
        return too_long_error(loc, len(raw), cfg)
    if not raw.strip():
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        return read_error(loc, ErrorKind.BAD_INPUT, f"not UTF-8: {e.reason} at byte {e.start}",
                          raw[max(0, e.start - 40):e.start + 40].decode("utf-8", "replace"))
    maybe_surrogate = _SURROGATE_ESCAPE.search(raw) is not None
    if isinstance(raw, bytearray):
        raw.clear()  # the text holds the line now
    del raw
    try:
        row = json.loads(text)
    except (ValueError, RecursionError) as e:  # JSONDecodeError, int digit limit, deep nesting
        if isinstance(e, json.JSONDecodeError):
            reason = f"malformed JSON: {e.msg} (column {e.colno})"
        elif isinstance(e, RecursionError):
            reason = "malformed JSON: nested too deeply"
        else:
            reason = f"malformed JSON: {e}"
        return read_error(loc, ErrorKind.BAD_INPUT, reason, text)
    if not isinstance(row, dict):
        return read_error(loc, ErrorKind.BAD_INPUT,
                          f"expected a JSON object per line, got {type(row).__name__}", text[:300])
    del text
    if maybe_surrogate and (where := lone_surrogate(row)):
        return read_error(loc, ErrorKind.BAD_INPUT,
                          f"invalid text: lone surrogate (\\ud800-\\udfff escape) in {where}, which cannot "
                          "be stored as UTF-8")
    return convert_row(row, cfg, fmt, loc, source_name)


def lone_surrogate(value: Any, where: str = "") -> str:
    """The path of the first string (key or value) holding a lone surrogate, or ''."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return where or "<row>"
        return ""
    if isinstance(value, dict):
        for k, v in value.items():
            if hit := lone_surrogate(k, f"{where}.<key>" if where else "<key>"):
                return hit
            if hit := lone_surrogate(v, f"{where}.{k}" if where else str(k)):
                return hit
    elif isinstance(value, list):
        for i, v in enumerate(value):
            if hit := lone_surrogate(v, f"{where}[{i}]"):
                return hit
    return ""
