"""Reading and writing records between stages: Parquet with the record's Arrow schema,
optional JSON-lines copies, and error lines."""

from __future__ import annotations

import json
from typing import Any

import apache_beam as beam
from apache_beam.io import parquetio
from apache_beam.io.textio import WriteToText
from plumline.data_schemas import ErrorKind, ErrorRecord, Record, RecordError, Stage


class ReadRecords(beam.PTransform):
    """Parquet rows back into records (validated: a corrupt row becomes an error, not a crash)."""

    ERRORS = "errors"

    def __init__(self, path: str, cls: type[Record], stage: Stage):
        super().__init__()
        self._path, self._cls, self._stage = path, cls, stage

    def expand(self, pbegin):
        rows = pbegin | "ReadParquet" >> parquetio.ReadFromParquet(self._path)
        to_records = beam.ParDo(_RowToRecord(self._cls, self._stage, self._path))
        return rows | "ToRecords" >> to_records.with_outputs(self.ERRORS, main="records")


class _RowToRecord(beam.DoFn):
    def __init__(self, cls: type[Record], stage: Stage, origin: str):
        self._cls, self._stage, self._origin = cls, stage, origin

    def process(self, row: dict[str, Any]):
        try:
            yield self._cls.from_dict(row)
        except RecordError as exc:
            yield beam.pvalue.TaggedOutput(ReadRecords.ERRORS, ErrorRecord(
                stage=self._stage, kind=ErrorKind.CORRUPT_RECORD,
                reason=f"corrupt {self._cls.__name__} row: {exc}", input=self._origin))


class WriteRecords(beam.PTransform):
    """Records to one Parquet file (``<stem>.parquet``); the round puts its rows in canonical order
    and writes the JSON-lines copy afterwards (``pipeline/round.py``).

    One shard keeps the run folder of DESIGN.md; Beam writes to a temporary file and renames it
    when the stage finishes, so a crash never leaves half a file. Every record is validated as it is
    written: one that could not be read back (e.g. a model's NUL byte in a completion) becomes an
    error of the stage that produced it instead of a crash in a later stage. Returns those errors."""

    def __init__(self, path_no_ext: str, cls: type[Record], stage: Stage):
        super().__init__()
        self._path, self._cls, self._stage = path_no_ext, cls, stage

    def expand(self, pcoll):
        checked = pcoll | "Validate" >> beam.ParDo(_ValidRow(self._stage)).with_outputs(
            ReadRecords.ERRORS, main="rows")
        rows = checked.rows
        rows | "WriteParquet" >> parquetio.WriteToParquet(
            self._path, self._cls.arrow_schema(), file_name_suffix=".parquet", num_shards=1,
            shard_name_template="")
        return checked[ReadRecords.ERRORS]


class _ValidRow(beam.DoFn):
    def __init__(self, stage: Stage):
        self._stage = stage

    def process(self, record: Record):
        try:
            row = record.to_dict()
            type(record).from_dict(row)  # exactly the check a later stage makes when it reads the row
            # What Arrow will encode must be valid UTF-8 (a lone surrogate is not).
            json.dumps(row, ensure_ascii=False).encode("utf-8")
        except (RecordError, UnicodeEncodeError, TypeError, ValueError) as exc:
            ids = {f: getattr(record, f) for f in ("test_id", "sample_id", "problem_id")
                   if isinstance(getattr(record, f, None), str)}
            yield beam.pvalue.TaggedOutput(ReadRecords.ERRORS, ErrorRecord(
                stage=self._stage, kind=ErrorKind.INVALID_RECORD,
                reason=f"{type(record).__name__} not written: {exc}",
                input=next(iter(ids.values()), ""), problem_id=ids.get("problem_id"),
                sample_id=ids.get("sample_id")))
            return
        yield row


class WriteErrors(beam.PTransform):
    """Error records of one stage to a JSON-lines file (merged into errors.jsonl per round)."""

    def __init__(self, path_no_ext: str):
        super().__init__()
        self._path = path_no_ext

    def expand(self, pcolls):
        merged = pcolls | "Flatten" >> beam.Flatten() if isinstance(pcolls, (list, tuple)) else pcolls
        return merged | "ToJson" >> beam.Map(lambda e: e.to_json()) | "Write" >> WriteToText(
            self._path, file_name_suffix=".jsonl", num_shards=1, shard_name_template="")


class GroupByProblem(beam.PTransform):
    """{name: PCollection of records with a problem_id} -> (problem_id, {name: [records]})."""

    def expand(self, named):
        keyed = {name: pcoll | f"Key_{name}" >> beam.Map(lambda r: (r.problem_id, r))
                 for name, pcoll in named.items()}
        return keyed | "CoGroup" >> beam.CoGroupByKey()
