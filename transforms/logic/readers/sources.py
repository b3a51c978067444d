"""Reading whole sources without Beam: paths matched, each file streamed (``streams``), rows located
and converted, the limit applied, problem ids deduplicated across sources (the first by location wins).
The Beam read stage (``plumline.transforms.read``) reuses ``iter_located``, ``parse_file_stream``,
``apply_limit`` and ``drop_duplicate_ids`` so both paths behave the same. ``read_problems`` is a
stream too: it holds the ids seen, not the rows."""

from __future__ import annotations

import glob as _glob
import os
from collections.abc import Iterable, Iterator

from plumline.data_schemas import ErrorKind, Problem
from plumline.transforms.logic.readers.bundled import bundled_path
from plumline.transforms.logic.readers.config import SourceConfig
from plumline.transforms.logic.readers.formats import read_hf_disk
from plumline.transforms.logic.readers.locations import Item, Located, Location, read_error
from plumline.transforms.logic.readers.streams import parse_file_stream


def expand_paths(cfg: SourceConfig) -> list[str]:
    """Local files matched by the source (sorted, so reading order is stable). Beam uses fileio instead."""
    if cfg.path.startswith("bundled:"):
        return [bundled_path(cfg.path.split(":", 1)[1])]
    if any(ch in cfg.path for ch in "*?["):
        return sorted(_glob.glob(cfg.path, recursive=True))
    return [cfg.path]


def iter_located(cfg: SourceConfig, source_index: int = 0) -> Iterator[Located]:
    """Every row of one source with its location, in reading order, limit applied (no dedupe)."""
    try:
        paths = expand_paths(cfg)
    except (FileNotFoundError, ValueError) as e:
        kind = ErrorKind.MISSING_INPUT if isinstance(e, FileNotFoundError) else ErrorKind.BAD_INPUT
        yield Location(source_index, cfg.path, 0), read_error(cfg.path, kind, str(e))
        return
    if not paths:
        yield Location(source_index, cfg.path, 0), read_error(
            cfg.path, ErrorKind.MISSING_INPUT, "no file matches this path")
        return
    kept = 0
    for path in paths:
        if cfg.format == "hf_disk" or (cfg.format == "auto" and os.path.isdir(path)):
            items: Iterator[Located] = read_hf_disk(cfg, path, source_index)
        elif not os.path.isfile(path):
            yield Location(source_index, path, 0), read_error(path, ErrorKind.MISSING_INPUT, "no such file")
            continue
        else:
            items = _read_file(cfg, path, source_index)
        for loc, item in items:
            if isinstance(item, Problem):
                if cfg.limit is not None and kept >= cfg.limit:
                    return
                kept += 1
            yield loc, item


def _read_file(cfg: SourceConfig, path: str, source_index: int) -> Iterator[Located]:
    try:
        stream = open(path, "rb")  # noqa: SIM115  closed below, after the generator is drained
    except OSError as e:
        yield Location(source_index, path, 0), read_error(path, ErrorKind.BAD_INPUT, f"cannot read: {e}")
        return
    with stream:
        yield from parse_file_stream(stream, path, cfg, source_index)


def drop_duplicate_ids(items: Iterable[Located]) -> Iterator[Located]:
    """Keep the first problem of each id (by location); later ones become errors naming both places.
    Errors pass through. Sorts its input, so the result does not depend on arrival order."""
    yield from _drop_duplicates_in_order(sorted(items, key=lambda li: li[0]))


def _drop_duplicates_in_order(items: Iterable[Located]) -> Iterator[Located]:
    """``drop_duplicate_ids`` of items already in location order, streaming (holds the ids only)."""
    first: dict[str, Location] = {}
    for loc, item in items:
        if isinstance(item, Problem):
            if item.problem_id in first:
                yield loc, duplicate_error(loc, item.problem_id, first[item.problem_id])
                continue
            first[item.problem_id] = loc
        yield loc, item


def duplicate_error(loc: Location, problem_id: str, first: Location):
    """The error of a problem whose id was first seen at ``first``."""
    return read_error(loc, ErrorKind.DUPLICATE_ID,
                      f"duplicate problem id {problem_id!r}: first seen at {first}", problem_id=problem_id)


def read_problems(cfg: SourceConfig | list[SourceConfig]) -> Iterator[Item]:
    """Read one or several sources without Beam: problems and errors, ids deduplicated across sources.
    Sources, files and rows are read in location order, so this streams: memory holds one line (or
    Parquet row group) and the ids seen, however large the input."""
    cfgs = cfg if isinstance(cfg, list) else [cfg]
    located = (li for i, c in enumerate(cfgs) for li in iter_located(c, i))
    for _, item in _drop_duplicates_in_order(located):
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
