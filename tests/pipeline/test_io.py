"""Writing round files: a record that could not be read back is an error of its stage, not a crash."""

from __future__ import annotations

import apache_beam as beam
import pyarrow.parquet as pq
from apache_beam.testing.util import assert_that
from plumline.data_schemas import ErrorKind, Stage, TestCase
from plumline.transforms.io import WriteRecords


def _test(code: str, tid: str) -> TestCase:
    return TestCase(test_id=tid, problem_id="p", kind="assert", code=code, origin="synthesized")


def test_records_that_cannot_be_stored_become_errors_and_the_rest_is_written(tmp_path):
    good = _test("assert f(1) == 2", "t1")
    bad = [_test("assert f('\x00') == 1", "t2"), _test("assert f('\ud800') == 1", "t3")]

    def check(errors):
        assert sorted(e.input for e in errors) == ["t2", "t3"]
        assert {e.kind for e in errors} == {ErrorKind.INVALID_RECORD.value}
        assert all(e.stage == Stage.TESTS.value and e.problem_id == "p" for e in errors)

    with beam.Pipeline() as p:
        errors = p | beam.Create([good, *bad]) | WriteRecords(
            str(tmp_path / "tests"), TestCase, Stage.TESTS)
        assert_that(errors, check)
    rows = pq.read_table(tmp_path / "tests.parquet").to_pylist()
    assert [r["test_id"] for r in rows] == ["t1"]
