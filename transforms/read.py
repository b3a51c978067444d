"""Read stage: sources -> {"problems": PCollection[Problem], "errors": PCollection[ErrorRecord]}.

Thin Beam wrapper around ``plumline.transforms.logic.readers``: files are matched with ``fileio`` (so
GCS and other Beam filesystems work) and each file is streamed (``readers.streams``: one line, or one
Parquet row group, in memory at a time; lines longer than ``max_line_bytes`` rejected unparsed), its
lines counted as they pass, so line numbers in errors are exact. Saved HF datasets and bundled sets
are read locally in one element. Problem ids are deduplicated globally (the first by location wins,
the others become errors naming both places), then the problems are reshuffled so later stages spread
over workers.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator, Sequence

import apache_beam as beam
from apache_beam.io import fileio
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.metrics import Metrics
from plumline.data_schemas import ErrorKind, Problem
from plumline.transforms.logic.readers import (
    Located,
    Location,
    SourceConfig,
    apply_limit,
    duplicate_error,
    iter_located,
    parse_file_stream,
    read_error,
)

log = logging.getLogger(__name__)
PROBLEMS, ERRORS = "problems", "errors"


def _reads_locally(cfg: SourceConfig) -> bool:
    """Bundled sets and saved HF datasets (folders) are read by the pure reader in one element."""
    return cfg.path.startswith("bundled:") or cfg.format == "hf_disk" or (
        cfg.format == "auto" and os.path.isdir(cfg.path))


class _ParseFile(beam.DoFn):
    """One matched file -> (Location, Problem | ErrorRecord), per-file limit applied early."""

    def __init__(self, cfg: SourceConfig, source_index: int):
        self._cfg, self._index = cfg, source_index
        self._rows = Metrics.counter("plumline", "read_rows")

    def process(self, readable: fileio.ReadableFile) -> Iterator[Located]:
        path = readable.metadata.path
        try:
            # our own gzip detection (by magic bytes, as the pure reader): a gzip file cut short keeps
            # the lines before the cut, and errors read the same on both paths
            stream = readable.open(compression_type=CompressionTypes.UNCOMPRESSED)
        except Exception as exc:  # noqa: BLE001  any Beam filesystem error; permission, vanished file: an error row
            yield Location(self._index, path, 0), read_error(
                path, ErrorKind.BAD_INPUT, f"cannot read file: {type(exc).__name__}: {exc}")
            return
        kept = 0
        last: Location | None = None
        try:
            with stream:
                for loc, item in parse_file_stream(stream, path, self._cfg, self._index):
                    if isinstance(item, Problem):
                        if self._cfg.limit is not None and kept >= self._cfg.limit:
                            return
                        kept += 1
                    self._rows.inc()
                    last = loc
                    yield loc, item
        except Exception as exc:  # noqa: BLE001  a filesystem's own error type part way: the rows before it stay
            where = (Location(self._index, path, last.row + 1, last.line_based) if last
                     else Location(self._index, path, 0))
            yield where, read_error(where, ErrorKind.BAD_INPUT,
                                    f"reading stopped at {where}: {type(exc).__name__}: {exc}")


def _no_match_errors(count: int, cfg: SourceConfig, index: int) -> Iterator[Located]:
    if count == 0:
        yield Location(index, cfg.path, 0), read_error(cfg.path, ErrorKind.MISSING_INPUT,
                                                       "no file matches this path")


def _limit_group(element: tuple[int, Sequence[Located]], limits: dict[int, int | None]) -> Iterator[Located]:
    index, items = element
    yield from apply_limit(items, limits.get(index))


def _first_of_duplicates(element: tuple[str, Iterable[Location]]) -> Iterator[tuple[str, Location]]:
    problem_id, locations = element
    locations = list(locations)
    if len(locations) > 1:
        yield problem_id, min(locations)


def _drop_duplicate(located: Located, firsts: dict[str, Location]) -> Iterator[Located]:
    loc, item = located
    first = firsts.get(item.problem_id)  # type: ignore[union-attr]  only problems come here
    if first is None or first == loc:
        yield located
    else:
        yield loc, duplicate_error(loc, item.problem_id, first)  # type: ignore[union-attr]


def _route(located: Located):
    _, item = located
    if isinstance(item, Problem):
        yield item
    else:
        yield beam.pvalue.TaggedOutput(ERRORS, item)


class ReadProblems(beam.PTransform):
    """Read every source; returns ``{"problems": ..., "errors": ...}``."""

    def __init__(self, sources: Sequence[SourceConfig], reshuffle: bool = True):
        super().__init__()
        if not sources:
            raise ValueError("ReadProblems needs at least one source")
        self._sources = list(sources)
        self._reshuffle = reshuffle

    def _one_source(self, p: beam.Pipeline, cfg: SourceConfig, i: int) -> beam.PCollection:
        label = f"Source{i}"
        if _reads_locally(cfg):
            return (p | f"{label}Start" >> beam.Create([i])
                    | f"{label}ReadLocal" >> beam.FlatMap(lambda idx, c=cfg: iter_located(c, idx)))
        matches = p | f"{label}Match" >> fileio.MatchFiles(
            cfg.path, empty_match_treatment=fileio.EmptyMatchTreatment.ALLOW)
        missing = (matches
                   | f"{label}Count" >> beam.combiners.Count.Globally()
                   | f"{label}NoMatch" >> beam.FlatMap(_no_match_errors, cfg, i))
        parsed = (matches
                  | f"{label}ReadMatches" >> fileio.ReadMatches()
                  | f"{label}Parse" >> beam.ParDo(_ParseFile(cfg, i)))
        return (parsed, missing) | f"{label}Merge" >> beam.Flatten()

    def expand(self, pbegin):
        p = pbegin.pipeline
        per_source = [self._one_source(p, cfg, i) for i, cfg in enumerate(self._sources)]
        located = per_source | "AllSources" >> beam.Flatten()

        limits = {i: c.limit for i, c in enumerate(self._sources)}
        if any(c.limit is not None for c in self._sources):
            # the first `limit` problems of a source across all its files, by location
            located = (located
                       | "KeyBySource" >> beam.Map(lambda li: (li[0].source_index, li))
                       | "GroupBySource" >> beam.GroupByKey()
                       | "ApplyLimit" >> beam.FlatMap(_limit_group, limits))

        routed_in = located | "SplitErrors" >> beam.Partition(
            lambda li, n: 0 if isinstance(li[1], Problem) else 1, 2)
        problems_located, early_errors = routed_in[0], routed_in[1]
        # Only (id, location) pairs are grouped: the ids seen twice and where each was first seen form a
        # small side input, and the problems themselves are not shuffled (a 50 MB prompt is not copied
        # through a grouping). Same rule and same errors as drop_duplicate_ids.
        firsts = (problems_located
                  | "KeyById" >> beam.Map(lambda li: (li[1].problem_id, li[0]))
                  | "GroupById" >> beam.GroupByKey()
                  | "FirstOfDuplicates" >> beam.FlatMap(_first_of_duplicates))
        deduped = problems_located | "DropDuplicateIds" >> beam.FlatMap(
            _drop_duplicate, firsts=beam.pvalue.AsDict(firsts))
        routed = ((deduped, early_errors) | "Rejoin" >> beam.Flatten()
                  | "Route" >> beam.FlatMap(_route).with_outputs(ERRORS, main=PROBLEMS))
        problems = routed[PROBLEMS]
        if self._reshuffle:
            problems = problems | "Spread" >> beam.Reshuffle()
        return {PROBLEMS: problems, ERRORS: routed[ERRORS]}


__all__ = ["ReadProblems"]
