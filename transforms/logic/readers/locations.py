"""Where a row came from, and the read stage's error records that name it."""

from __future__ import annotations

import reprlib
from dataclasses import dataclass
from typing import Any

from plumline.data_schemas import ErrorKind, ErrorRecord, Problem, Stage

_DETAIL_MAX = 300
_SHORT = reprlib.Repr()  # a bounded repr of a row for ``detail``: a 50 MB row is not copied whole
_SHORT.maxstring = _SHORT.maxother = _DETAIL_MAX
_SHORT.maxdict = _SHORT.maxlist = 8


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


def read_error(loc: Location | str, kind: ErrorKind, reason: str, detail: Any = "",
               problem_id: str | None = None) -> ErrorRecord:
    """An error of the read stage naming where it happened (``<file>:<line>`` or ``<file>#<row>``);
    ``detail`` is the offending input, truncated."""
    text = detail if isinstance(detail, str) else _SHORT.repr(detail)  # never the whole of a huge row
    return ErrorRecord(stage=Stage.READ, kind=kind, reason=reason, input=str(loc), problem_id=problem_id,
                       detail=text[:_DETAIL_MAX])
