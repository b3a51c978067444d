"""Element checkpoints: what a long stage finished survives a crash, whole or not at all."""

from __future__ import annotations

import apache_beam as beam
from apache_beam.testing.util import assert_that, equal_to
from plumline.data_schemas import ErrorKind, ErrorRecord, Stage
from plumline.transforms.checkpoint import MAIN, CheckpointedDoFn, CheckpointStore, with_restored

TYPES = {MAIN: ErrorRecord, "errors": ErrorRecord}


def _err(pid: str, kind: ErrorKind = ErrorKind.NO_CODE) -> ErrorRecord:
    return ErrorRecord(stage=Stage.SAMPLE, kind=kind, reason="r", input=pid, problem_id=pid)


class _Echo(beam.DoFn):
    """Emits one main record per problem id of the batch, and a tagged error for ids ending in 'x'."""

    def process(self, batch):
        for pid in batch:
            yield _err(pid)
            if pid.endswith("x"):
                yield beam.pvalue.TaggedOutput("errors", _err(pid, ErrorKind.ENGINE_FAILED))


def test_saved_elements_come_back_and_count_as_done(tmp_path):
    store = CheckpointStore(tmp_path / "parts", TYPES)
    store.save(["a", "b"], [(MAIN, _err("a")), ("errors", _err("b"))])
    again = CheckpointStore(tmp_path / "parts", TYPES)
    done, records = again.load()
    assert done == {"a", "b"}
    assert records == [(MAIN, _err("a")), ("errors", _err("b"))]


def test_a_damaged_shard_counts_as_absent(tmp_path):
    store = CheckpointStore(tmp_path / "parts", TYPES)
    store.save(["a"], [(MAIN, _err("a"))])
    store.save(["b"], [(MAIN, _err("b"))])
    shard = min((tmp_path / "parts").glob("*.jsonl"))
    text = shard.read_text()
    shard.write_text(text[: len(text) // 2])  # as if the disk lost the end of it
    (tmp_path / "parts" / ".half.tmp").write_text('{"ids": ["c"]}\n')  # a write cut before its rename
    done, records = CheckpointStore(tmp_path / "parts", TYPES).load()
    assert len(done) == 1 and len(records) == 1 and done <= {"a", "b"}


def test_the_wrapped_dofn_saves_each_element_and_skips_retryable_failures(tmp_path):
    store = CheckpointStore(tmp_path / "parts", TYPES)
    dofn = CheckpointedDoFn(_Echo(), store, lambda batch: list(batch))
    with beam.Pipeline() as p:
        out = (p | beam.Create([["p1", "p2"], ["p3x"]], reshuffle=False)
               | beam.ParDo(dofn).with_outputs("errors", main="main"))
        assert_that(out.main, equal_to([_err("p1"), _err("p2"), _err("p3x")]), label="main")
    # p3x's batch met an engine failure: not saved, so a rerun retries it
    assert CheckpointStore(tmp_path / "parts", TYPES).done_ids() == {"p1", "p2"}


def test_restored_records_join_the_new_ones(tmp_path):
    store = CheckpointStore(tmp_path / "parts", TYPES)
    store.save(["old"], [(MAIN, _err("old"))])
    with beam.Pipeline() as p:
        new = p | beam.Create([_err("new")])
        assert_that(with_restored(new, store, MAIN, "Main"), equal_to([_err("old"), _err("new")]))
