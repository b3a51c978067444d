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
    """Records to one Parquet file (``<stem>.parquet``) and optionally ``<stem>.jsonl``.

    One shard keeps the run folder of DESIGN.md; Beam writes to a temporary file and renames it
    when the stage finishes, so a crash never leaves half a file."""

    def __init__(self, path_no_ext: str, cls: type[Record], jsonl: bool = False):
        super().__init__()
        self._path, self._cls, self._jsonl = path_no_ext, cls, jsonl

    def expand(self, pcoll):
        rows = pcoll | "ToRows" >> beam.Map(lambda r: r.to_dict())
        rows | "WriteParquet" >> parquetio.WriteToParquet(
            self._path, self._cls.arrow_schema(), file_name_suffix=".parquet", num_shards=1,
            shard_name_template="")
        if self._jsonl:
            lines = rows | "ToJson" >> beam.Map(lambda d: json.dumps(d, ensure_ascii=False))
            lines | "WriteJsonl" >> WriteToText(self._path, file_name_suffix=".jsonl", num_shards=1,
                                                shard_name_template="")
        return pcoll


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
