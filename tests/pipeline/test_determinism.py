"""The same config and seeds give the same dataset, row for row, across runs and worker counts."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest
from plumline.data_schemas import comparable_rows
from plumline.pipeline.validate import validate_run


@pytest.mark.slow
def test_two_runs_with_one_and_two_workers_write_identical_files(canned_round):
    one = canned_round("one", workers=1)
    two = canned_round("two", workers=2)
    files = sorted(p.name for p in one.glob("*.parquet"))
    assert files == sorted(p.name for p in two.glob("*.parquet")) and "dpo.parquet" in files
    assert all(pq.read_table(one / f).num_rows > 0 for f in ("dpo.parquet", "samples.parquet"))
    for name in files:
        a, b = pq.read_table(one / name), pq.read_table(two / name)
        assert a.schema.equals(b.schema) and comparable_rows(a) == comparable_rows(b), name
    assert validate_run(one.parent) == [] and validate_run(two.parent) == []
    # Every file without time measurements in it is identical to the byte (the JSONL copies too).
    for name in ("problems", "samples", "tests", "dpo", "kto", "critic"):
        assert pq.read_table(one / f"{name}.parquet").equals(pq.read_table(two / f"{name}.parquet")), name
        assert (one / f"{name}.jsonl").read_bytes() == (two / f"{name}.jsonl").read_bytes(), name
