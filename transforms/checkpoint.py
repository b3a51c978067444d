"""Element checkpoints for long stages: a crash late in a 10-hour sampling or execution stage loses
the elements in flight, not the stage.

A checkpointed DoFn saves everything one element (a batch of problems, or one problem's group)
produced as one small shard in the stage's checkpoint folder, written to a temporary name and renamed,
so a shard is either whole or absent. When the stage runs again with the same key (the folder name
holds it), the elements whose ids are in a shard are not processed again: their records are read
back from the shards and join the new ones. Elements that failed in a way a retry may fix (the engine
failed, an internal error) are not saved, so a rerun retries them.

Shards are JSON lines of records (exact round trip through ``Record.to_dict``/``from_dict``); the
stage's final Parquet file is written as before, and the folder is removed once the stage is done.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import apache_beam as beam
from plumline.data_schemas import ErrorKind, ErrorRecord, Record, RecordError

# Errors a rerun may not repeat: such an element is not checkpointed, so it is processed again.
RETRYABLE = {ErrorKind.ENGINE_FAILED.value, ErrorKind.INTERNAL.value}
MAIN = "main"


class CheckpointStore:
    """The shards of one stage run (one folder per stage key)."""

    def __init__(self, folder: str | Path, record_types: dict[str, type[Record]]):
        self.folder = Path(folder)
        self.record_types = dict(record_types)  # output tag -> record type ("main" for the main output)
        self._loaded: tuple[set[str], list[tuple[str, Record]]] | None = None

    def save(self, element_ids: Iterable[str], outputs: Iterable[tuple[str, Record]]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        lines = [json.dumps({"ids": sorted(element_ids)})]
        lines += [json.dumps({"tag": tag, "record": rec.to_dict()}, ensure_ascii=False)
                  for tag, rec in outputs]
        name = uuid.uuid4().hex
        tmp = self.folder / f".{name}.tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write("\n".join(lines) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.folder / f"{name}.jsonl")

    def load(self) -> tuple[set[str], list[tuple[str, Record]]]:
        """The ids of the elements saved whole, and every (tag, record) they produced. A shard with
        any unreadable line counts as absent: its elements are processed again."""
        if self._loaded is None:
            done: set[str] = set()
            records: list[tuple[str, Record]] = []
            for path in sorted(self.folder.glob("*.jsonl")) if self.folder.is_dir() else ():
                try:
                    lines = path.read_text(encoding="utf-8").splitlines()
                    ids = json.loads(lines[0])["ids"]
                    shard = []
                    for line in lines[1:]:
                        row = json.loads(line)
                        shard.append((row["tag"], self.record_types[row["tag"]].from_dict(row["record"])))
                except (OSError, IndexError, ValueError, KeyError, TypeError, RecordError):
                    continue
                done.update(ids)
                records.extend(shard)
            self._loaded = (done, records)
        return self._loaded

    def done_ids(self) -> set[str]:
        return self.load()[0]


class CheckpointedDoFn(beam.DoFn):
    """Runs ``inner`` on each element, saves what it produced as one shard, then emits it."""

    def __init__(self, inner: beam.DoFn, store: CheckpointStore, element_ids: Callable[[Any], list[str]]):
        self._inner, self._store, self._ids = inner, store, element_ids

    def setup(self):
        self._inner.setup()

    def teardown(self):
        self._inner.teardown()

    def process(self, element):
        produced: list[tuple[str, Record]] = []
        for out in self._inner.process(element) or ():
            if isinstance(out, beam.pvalue.TaggedOutput):
                produced.append((out.tag, out.value))
            else:
                produced.append((MAIN, out))
        retry = any(isinstance(rec, ErrorRecord) and rec.kind in RETRYABLE for _, rec in produced)
        if not retry:
            self._store.save(self._ids(element), produced)
        for tag, rec in produced:
            yield rec if tag == MAIN else beam.pvalue.TaggedOutput(tag, rec)


def checkpointed(inner: beam.DoFn, store: CheckpointStore | None,
                 element_ids: Callable[[Any], list[str]]) -> beam.DoFn:
    """``inner`` wrapped in a checkpoint when a store is given (stages run outside a round have none)."""
    return inner if store is None else CheckpointedDoFn(inner, store, element_ids)


def with_restored(pcoll: beam.PCollection, store: CheckpointStore, tag: str, label: str) -> beam.PCollection:
    """``pcoll`` plus the records of ``tag`` that an interrupted run of the stage saved."""
    records = [rec for t, rec in store.load()[1] if t == tag]
    saved = pcoll.pipeline | f"Restore{label}" >> beam.Create(records, reshuffle=False)
    return (pcoll, saved) | f"All{label}" >> beam.Flatten()
