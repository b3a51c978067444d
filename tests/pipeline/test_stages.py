"""The stage table and the loop that runs it: which stages a config change reruns.

The real table (inputs, outputs, sections, engine flags) runs through the real loop
(``RoundRunner``); only each stage's work is replaced by a test double that writes empty, typed
outputs, so the test checks the bookkeeping in a second, not the engines.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from plumline.data_schemas import Stage
from plumline.pipeline.artifacts import ARTIFACTS
from plumline.pipeline.config import load_config
from plumline.pipeline.layout import RoundLayout
from plumline.pipeline.round import RoundRunner
from plumline.pipeline.stages import (
    POLICY,
    STAGES,
    StageContext,
    StageSpec,
    check_table,
    section_value,
)

ALL = {s.name for s in STAGES}
READ, TESTS, SAMPLE, EXECUTE, EXPORT, TRAIN, EVAL = (Stage.READ, Stage.TESTS, Stage.SAMPLE, Stage.EXECUTE,
                                                     Stage.EXPORT, Stage.TRAIN, Stage.EVAL)
PRM = Stage.PRM

# For each config section: one change in it, and the stages that must rerun (written out by hand
# from what each stage computes, not derived from the table under test).
CHANGES = [
    ("sources", "sources.0.limit=3", ALL - {EVAL}),  # the eval stage reads its own sources
    ("policy", "policy.model=another-model", {TESTS, SAMPLE, EVAL, EXECUTE, EXPORT, PRM, TRAIN}),
    ("prompt", "prompt.instruction=Solve it.", {SAMPLE, EVAL, EXECUTE, EXPORT, PRM, TRAIN}),
    # eval takes sampling's temperature, top_p, max_tokens, batch size and stop unless it sets its own
    ("sampling", "sampling.n=3", {SAMPLE, EVAL, EXECUTE, EXPORT, PRM, TRAIN}),
    # critic-guided sampling's knobs matter only in that mode (sampling.mode: plain here)
    ("sampling.guided", "sampling.guided.rounds=2", set()),
    ("seed", "seed=7", {TESTS, SAMPLE, EVAL, EXECUTE, EXPORT, PRM, TRAIN}),
    ("tests", "tests.tests_per_problem=2", {TESTS, EXECUTE, EXPORT, PRM, TRAIN}),
    ("validation", "validation.min_kept_tests=2", {EXECUTE, EXPORT, PRM, TRAIN}),
    # tests: input-first tests (the default mode) run the reference solutions in the sandbox
    ("sandbox.limits", "sandbox.limits.timeout_s=9", {TESTS, EVAL, EXECUTE, EXPORT, PRM, TRAIN}),
    ("eval.n", "eval.n=6", {EVAL}),
    ("eval.k", "eval.k=[1, 2]", {EVAL}),
    ("eval.greedy", "eval.greedy=false", {EVAL}),
    ("eval.temperature", "eval.temperature=0.2", {EVAL}),
    ("eval.backend", "eval.backend.kind=transformers", {EVAL}),
    # the eval sources decide which training problems are removed (decontamination): all of it reruns
    ("eval.sources", "eval.sources.0.limit=2", ALL),
    ("training.reference", "training.reference=previous", {TRAIN}),
    ("dpo.accumulate", "dpo.accumulate.enabled=true", {TRAIN}),
    ("sandbox.workers", "sandbox.workers=3", set()),  # how fast, not what
    ("dpo.pairs", "dpo.pairs.max_pairs_per_problem=2", {EXPORT, TRAIN}),
    ("kto.rows", "kto.rows.desirable_min_pass_ratio=0.5", {EXPORT, TRAIN}),
    ("critic.rows", "critic.rows.enabled=false", {EXPORT, TRAIN}),
    ("critic.train", "critic.train.max_steps=3", set()),  # plumline train critic; the loop never trains it
    ("export", "export.jsonl=true", {EXPORT, TRAIN}),
    # step labels are a dataset of their own: no later stage reads them
    ("prm.k", "prm.k=3", {PRM}),
    ("prm.select", "prm.select=all", {PRM}),
    ("prm.max_tokens", "prm.max_tokens=32", {PRM}),
    ("prm.train", "prm.train.max_steps=3", set()),  # the PRM trainer is a separate command
    ("dpo.train", "dpo.train.max_steps=3", {TRAIN}),
    ("kto.train", "kto.train.max_steps=3", set()),  # training.method is dpo
    ("training", "training.method=dpo", set()),  # unchanged value: nothing reruns
    ("beam", "beam.cpu_workers=1", set()),
    # where a stage runs, not what it computes (tests/pipeline/test_dask_runner.py compares the files)
    ("beam.runner", "beam.runner=dask", set()),
    ("beam.dask", "beam.dask.partitions=4", set()),
    ("beam.dataflow", "beam.dataflow.machine_type=n2-standard-4", set()),
    ("beam.sampling_accelerator", "beam.sampling_accelerator=type:nvidia-l4;count:1", set()),
    ("name", "name=other", set()),
]


def _fake_work(spec: StageSpec):
    """A stand-in for a stage's work: empty, typed outputs (a folder for the model)."""

    def work(ctx: StageContext):
        for name in spec.outputs:
            path = ctx.layout.artifact_path(name)
            path.parent.mkdir(parents=True, exist_ok=True)
            if ARTIFACTS[name].is_folder:
                path.mkdir()
                (path / "config.json").write_text("{}")
            else:
                schema = ARTIFACTS[name].record_type(ctx.cfg).arrow_schema()
                pq.write_table(pa.Table.from_pylist([], schema=schema), path)
        return {}

    return work


FAKE_STAGES = tuple(dataclasses.replace(s, build=None, run=_fake_work(s), finish=None) for s in STAGES)


def _config(tmp_path: Path, overrides: list[str] = ()):
    path = tmp_path / "run.yaml"
    path.write_text("sources: [{path: bundled:easy, limit: 5}]\ntraining: {method: dpo}\n"
                    "eval: {sources: [{path: bundled:humaneval, limit: 4}]}\nprm: {enabled: true}\n")
    return load_config(path, ["policy.model=some-model", *overrides])


def _run(cfg, run_dir: Path) -> list[Stage]:
    runner = RoundRunner(cfg, run_dir, 0, stages=FAKE_STAGES)
    runner.run()
    return runner.ran


@pytest.mark.parametrize(("section", "override", "expected"), CHANGES, ids=[c[0] for c in CHANGES])
def test_a_change_reruns_exactly_the_stages_that_depend_on_it(tmp_path, section, override, expected):
    run_dir = tmp_path / "run"
    assert set(_run(_config(tmp_path), run_dir)) == ALL
    assert _run(_config(tmp_path), run_dir) == []  # nothing changed: everything resumes
    markers = {s: (run_dir / "round-000" / ".stages" / f"{s.value}.done").read_text() for s in ALL}

    ran = _run(_config(tmp_path, [override]), run_dir)
    assert set(ran) == expected, section
    assert ran == [s.name for s in STAGES if s.name in expected]  # in table order
    for stage in ALL:
        now = (run_dir / "round-000" / ".stages" / f"{stage.value}.done").read_text()
        assert (now != markers[stage]) == (stage in expected), stage


def test_critic_guided_sampling_reruns_on_its_knobs_and_the_sandbox_limits(tmp_path):
    """In critic_guided mode sampling runs the example tests in the sandbox: its limits and the
    guided knobs rerun sampling. Evaluation stays plain (eval.sampling_mode) unless asked to guide."""
    run_dir = tmp_path / "run"
    guided = ["sampling.mode=critic_guided", f"sampling.guided.critic={tmp_path}"]
    _run(_config(tmp_path), run_dir)
    after_sampling = {SAMPLE, EXECUTE, EXPORT, PRM, TRAIN}
    assert set(_run(_config(tmp_path, guided), run_dir)) == after_sampling
    assert set(_run(_config(tmp_path, [*guided, "sampling.guided.rounds=2"]), run_dir)) == after_sampling
    limits = [*guided, "sampling.guided.rounds=2", "sandbox.limits.timeout_s=9"]
    assert set(_run(_config(tmp_path, limits), run_dir)) == {TESTS, EVAL, *after_sampling}
    assert _run(_config(tmp_path, [*limits, "sandbox.workers=3"]), run_dir) == []
    manifest = json.loads((run_dir / "round-000" / "manifest.json").read_text())
    assert manifest["guided"] == {"problems_without_examples": 0, "samples_by_origin": {},
                                  "pass_rate_by_origin": {}}
    assert manifest["samples"]["by_origin"] == {}
    assert set(_run(_config(tmp_path, [*limits, "eval.sampling_mode=critic_guided"]), run_dir)) == {EVAL}


def test_a_separate_test_writer_does_not_follow_the_policy(tmp_path):
    run_dir = tmp_path / "run"
    writer = ["tests.writer.model=writer-model"]
    _run(_config(tmp_path, writer), run_dir)
    ran = _run(_config(tmp_path, [*writer, "policy.model=another"]), run_dir)
    assert TESTS not in ran and SAMPLE in ran


def test_tests_written_without_a_model_do_not_follow_the_policy(tmp_path):
    run_dir = tmp_path / "run"
    no_writer = ["tests.enabled=false"]
    _run(_config(tmp_path, no_writer), run_dir)
    ran = _run(_config(tmp_path, [*no_writer, "policy.model=another"]), run_dir)
    assert TESTS not in ran and SAMPLE in ran


def test_a_retrained_policy_reruns_the_stages_that_read_it(tmp_path):
    cfg = _config(tmp_path)
    run_dir = tmp_path / "run"
    RoundRunner(cfg, run_dir, 1, stages=FAKE_STAGES, policy_run_token="model-of-round-0").run()
    again = RoundRunner(cfg, run_dir, 1, stages=FAKE_STAGES, policy_run_token="model-of-round-0")
    again.run()
    assert again.ran == []
    retrained = RoundRunner(cfg, run_dir, 1, stages=FAKE_STAGES, policy_run_token="retrained")
    retrained.run()
    assert set(retrained.ran) == {TESTS, SAMPLE, EVAL, EXECUTE, EXPORT, PRM, TRAIN}


def test_a_missing_output_reruns_its_stage_and_the_readers(tmp_path):
    run_dir = tmp_path / "run"
    _run(_config(tmp_path), run_dir)
    (run_dir / "round-000" / "samples.parquet").unlink()
    assert _run(_config(tmp_path), run_dir) == [SAMPLE, EXECUTE, EXPORT, PRM, TRAIN]


def test_an_unreadable_marker_means_not_done(tmp_path):
    run_dir = tmp_path / "run"
    _run(_config(tmp_path), run_dir)
    (run_dir / "round-000" / ".stages" / "execute.done").write_text("{half a marker")
    assert _run(_config(tmp_path), run_dir) == [EXECUTE, EXPORT, PRM, TRAIN]


def test_training_off_skips_the_train_stage(tmp_path):
    run_dir = tmp_path / "run"
    ran = _run(_config(tmp_path, ["training.method=none"]), run_dir)
    assert TRAIN not in ran and EXPORT in ran
    manifest = json.loads((run_dir / "round-000" / "manifest.json").read_text())
    assert set(manifest["stages"]) == {s.value for s in ALL - {TRAIN}}


def test_prm_off_skips_the_prm_stage_and_its_knobs_rerun_nothing(tmp_path):
    run_dir = tmp_path / "run"
    ran = _run(_config(tmp_path, ["prm.enabled=false"]), run_dir)
    assert PRM not in ran and EXPORT in ran
    manifest = json.loads((run_dir / "round-000" / "manifest.json").read_text())
    assert "prm" not in manifest["stages"] and "prm" not in manifest
    assert _run(_config(tmp_path, ["prm.enabled=false", "prm.k=2"]), run_dir) == []
    assert _run(_config(tmp_path), run_dir) == [PRM]  # turned on: only the labels are made
    manifest = json.loads((run_dir / "round-000" / "manifest.json").read_text())
    assert manifest["prm"]["rows"] == 0 and "probes" in manifest["prm"]


def test_the_table_is_well_formed(tmp_path):
    cfg = _config(tmp_path)
    check_table(cfg)
    names = [s.name for s in STAGES]
    assert len(set(names)) == len(names) and set(names) == set(Stage)
    produced = [n for s in STAGES for n in s.outputs]
    assert sorted(produced) == sorted(ARTIFACTS)  # every artifact has exactly one producer
    for spec in STAGES:
        for section in spec.sections(cfg):
            section_value(cfg, section)  # every named section exists


def test_a_table_that_reads_before_writing_is_rejected(tmp_path):
    cfg = _config(tmp_path)
    execute = next(s for s in STAGES if s.name == EXECUTE)
    broken = (STAGES[0], dataclasses.replace(execute, inputs=lambda c: ("problems", "nowhere")))
    with pytest.raises(ValueError, match="execute reads 'nowhere'"):
        check_table(cfg, broken)
    assert POLICY in STAGES[2].inputs(cfg)


def _round(cfg, run_dir: Path, round_: int, **kw) -> RoundRunner:
    runner = RoundRunner(cfg, run_dir, round_, stages=FAKE_STAGES, **kw)
    runner.run()
    return runner


def test_a_later_round_reuses_the_round_free_stages_an_earlier_round_finished(tmp_path):
    """read and tests (with a pinned writer) compute the same rows in every round: round 1 links round
    0's files and takes its tokens, so everything downstream keys the same as it would have."""
    run_dir = tmp_path / "run"
    cfg = _config(tmp_path, ["tests.writer.model=writer-model"])
    first = _round(cfg, run_dir, 0)
    assert set(first.ran) == ALL
    # round 1 samples from the same policy token on purpose: sample's key matches round 0's, yet the
    # stages whose rows carry the round number must run again.
    second = _round(cfg, run_dir, 1, policy_run_token=first.tokens[POLICY])
    assert set(second.ran) == ALL - {READ, TESTS}
    for stage, artifact in ((READ, "problems"), (TESTS, "tests_candidates")):
        old, new = run_dir / "round-000", run_dir / "round-001"
        old_file = RoundLayout(run_dir, 0).artifact_path(artifact)
        assert RoundLayout(run_dir, 1).artifact_path(artifact).read_bytes() == old_file.read_bytes()
        before = json.loads((old / ".stages" / f"{stage.value}.done").read_text())
        after = json.loads((new / ".stages" / f"{stage.value}.done").read_text())
        assert (after["key"], after["token"]) == (before["key"], before["token"])
        assert after["info"]["reused_from_round"] == 0
    assert second.tokens["problems"] == first.tokens["problems"]
    # resuming round 1 keeps it; the files it links are its own now (round 0's removal does not matter)
    (run_dir / "round-000" / "problems.parquet").unlink()
    assert _round(cfg, run_dir, 1, policy_run_token=first.tokens[POLICY]).ran == []


def test_no_reuse_across_a_different_key_a_missing_file_or_force(tmp_path):
    run_dir = tmp_path / "run"
    cfg = _config(tmp_path)  # the test writer is the policy: tests follow each round's policy
    _round(cfg, run_dir, 0)
    assert TESTS in _round(cfg, run_dir, 1, policy_run_token="trained-in-round-0").ran
    for earlier in ("round-000", "round-001"):  # round 1 holds a link of its own: both must go
        (run_dir / earlier / "problems.parquet").unlink()
    assert READ in _round(cfg, run_dir, 2, policy_run_token="trained-in-round-1").ran
    assert READ in _round(_config(tmp_path, ["sources.0.limit=3"]), run_dir, 3).ran
    assert set(_round(cfg, run_dir, 4, force=True).ran) == ALL


def test_small_cpu_stages_run_in_process_and_large_ones_in_worker_processes(tmp_path, monkeypatch):
    """Beam's worker processes cost seconds per stage: by default a CPU stage with fewer input rows than
    IN_PROCESS_BELOW_ROWS runs in-process, a larger one (or one whose size is unknown) on every core;
    ``beam.cpu_workers`` set is obeyed whatever the size."""
    from plumline.pipeline.stages import IN_PROCESS_BELOW_ROWS, stage_input_rows, stage_processes, stage_spec
    from plumline.transforms.logic.readers import bundled_path

    monkeypatch.setattr("os.cpu_count", lambda: 8)
    cfg = _config(tmp_path)
    assert stage_processes(cfg, 10) == 1 and stage_processes(cfg, IN_PROCESS_BELOW_ROWS - 1) == 1
    assert stage_processes(cfg, IN_PROCESS_BELOW_ROWS) == 8 and stage_processes(cfg, None) == 8
    pinned = _config(tmp_path, ["beam.cpu_workers=3"])
    assert stage_processes(pinned, 10) == 3 and stage_processes(pinned, None) == 3

    layout = RoundLayout(tmp_path / "run", 0)
    layout.dir.mkdir(parents=True)
    execute = stage_spec(EXECUTE)
    assert stage_input_rows(cfg, execute, layout) is None  # nothing written yet
    for name, rows in (("problems", 5), ("samples", 2500)):
        fields = ARTIFACTS[name].record_type(cfg).arrow_schema()
        table = pa.Table.from_pylist([{}] * rows, schema=pa.schema([f.with_nullable(True) for f in fields]))
        pq.write_table(table, layout.artifact_path(name))
    assert stage_input_rows(cfg, execute, layout) == 2500  # the largest input
    assert stage_input_rows(cfg, stage_spec(TESTS), layout) == 5
    layout.artifact_path("problems").write_bytes(b"not parquet")
    assert stage_input_rows(cfg, stage_spec(TESTS), layout) is None
    # read: the sources' limits, plus the held-out sources it reads to decontaminate (humaneval is a
    # .jsonl.gz: not counted without a limit, so not known)
    assert stage_input_rows(cfg, stage_spec(READ), layout) == 5 + 4
    whole_humaneval = _config(tmp_path, ["eval.sources.0.limit=null"])
    assert stage_input_rows(whole_humaneval, stage_spec(READ), layout) is None
    easy = sum(1 for line in Path(bundled_path("easy")).read_text().splitlines() if line.strip())
    counted = _config(tmp_path, ["sources.0.limit=null", "eval.sources=[{path: bundled:easy}]"])
    assert stage_input_rows(counted, stage_spec(READ), layout) == 2 * easy  # lines of the bundled file
    rows = tmp_path / "problems.parquet"
    pq.write_table(pa.table({"id": list(range(7))}), rows)
    lines = tmp_path / "problems.jsonl"
    lines.write_text('{"a": 1}\n{"a": 2}')  # no newline after the last row
    listed = tmp_path / "problems.json"
    listed.write_text("[1, 2, 3]")
    files = _config(tmp_path, [f"sources=[{{path: {rows}}}, {{path: {lines}}}]", "eval.sources=[]"])
    assert stage_input_rows(files, stage_spec(READ), layout) == 9
    for unknown in (listed, tmp_path / "*.jsonl", tmp_path / "missing.jsonl"):
        other = _config(tmp_path, [f"sources=[{{path: '{unknown}'}}]", "eval.sources=[]"])
        assert stage_input_rows(other, stage_spec(READ), layout) is None, unknown
