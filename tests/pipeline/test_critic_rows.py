"""CodeRL critic rows: every executed program with its outcome class, the greedy baseline of its
problem and the relative return; reference solutions as 'passed' rows; the file loads with
``datasets``; ``plumline validate`` checks the rows against the executions."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from plumline.data_schemas import (
    CODERL_CLASS,
    CODERL_RETURN,
    CriticRow,
    Execution,
    Outcome,
    Problem,
    RecordError,
    Sample,
    to_table,
)
from plumline.transforms.logic.pairing import (
    CriticRowsConfig,
    KtoRowsConfig,
    PairingConfig,
    greedy_baseline,
    make_critic_rows,
    pair_problem,
    reference_passes,
    reference_row_id,
)

PID = "P1"
REFERENCE = "def f(x):\n    return x + 1\n"


def sample(idx: int, code: str | None, *, greedy: bool = False, pid: str = PID) -> Sample:
    return Sample(sample_id=f"{pid}-s{idx:03d}", problem_id=pid, round=0, policy="tiny", policy_revision="r0",
                  prompt="PROMPT", completion=f"```python\n{code}\n```" if code else "no code", code=code,
                  finish_reason="stop", prompt_tokens=5, completion_tokens=9,
                  temperature=0.0 if greedy else 0.8, top_p=1.0, max_tokens=64, seed=idx, sample_index=idx,
                  is_greedy=greedy)


def entry(idx: int, outcome: Outcome, *, greedy: bool = False, code: str | None = "", passed: int = 0,
          total: int = 4, error_line: int | None = None, pid: str = PID) -> tuple[Sample, Execution]:
    code = f"def f(x):\n    return x - {idx}\n" if code == "" else code
    passed = total if outcome == Outcome.PASSED else passed
    s = sample(idx, code, greedy=greedy, pid=pid)
    return s, Execution(sample_id=s.sample_id, problem_id=pid, round=0, outcome=outcome.value,
                        coderl_class=CODERL_CLASS[outcome], passed=passed, total=total,
                        pass_ratio=passed / total if total else 0.0, test_results=(), isolation_tier="test",
                        duration_s=0.01, error_type=None if outcome in (Outcome.PASSED, Outcome.FAILED)
                        else "Boom", error_line=error_line)


def by_sample(rows: list[CriticRow]) -> dict[str, CriticRow]:
    return {r.sample_id: r for r in rows}


# ------------------------------------------------------------------------------------------ greedy baseline


def test_every_execution_has_its_class_and_the_greedy_baseline_per_coderl():
    scored = [entry(0, Outcome.FAILED, greedy=True, passed=1), entry(1, Outcome.PASSED),
              entry(2, Outcome.RUNTIME_ERROR, error_line=2), entry(3, Outcome.COMPILE_ERROR, error_line=1),
              entry(4, Outcome.TIMEOUT), entry(5, Outcome.FAILED, passed=3)]
    rows = by_sample(make_critic_rows(PID, None, scored, CriticRowsConfig(), 0))
    assert len(rows) == 6 and {r.source for r in rows.values()} == {"sample"}
    greedy_id = scored[0][0].sample_id
    assert {(r.greedy_class, r.greedy_sample_id) for r in rows.values()} == {(2, greedy_id)}
    # CodeRL: returns -1, -0.6, -0.3, +1; relative return = the program's minus the greedy sample's (-0.3)
    expected = {0: (2, -0.3, 0.0, 0.25), 1: (3, 1.0, 1.3, 1.0), 2: (1, -0.6, -0.3, 0.0),
                3: (0, -1.0, -0.7, 0.0), 4: (1, -0.6, -0.3, 0.0), 5: (2, -0.3, 0.0, 0.75)}
    for idx, (cls, ret, rel, ratio) in expected.items():
        r = rows[scored[idx][0].sample_id]
        assert (r.coderl_class, r.coderl_return, r.relative_return, r.pass_ratio) == (cls, ret, rel, ratio)
        assert r.code == scored[idx][0].code and r.prompt == "PROMPT" and r.outcome == scored[idx][1].outcome
    assert rows[scored[2][0].sample_id].error_line == 2 and rows[scored[3][0].sample_id].error_type == "Boom"


def test_no_greedy_sample_means_no_baseline():
    scored = [entry(1, Outcome.PASSED), entry(2, Outcome.FAILED, passed=2)]
    rows = make_critic_rows(PID, None, scored, CriticRowsConfig(), 0)
    assert len(rows) == 2
    assert all((r.greedy_class, r.greedy_sample_id, r.relative_return) == (None, None, None) for r in rows)
    assert greedy_baseline(PID, scored) is None


def test_a_greedy_run_without_a_verdict_is_no_baseline_but_a_greedy_without_code_is_a_compile_error():
    sandbox = [entry(0, Outcome.SANDBOX_ERROR, greedy=True), entry(1, Outcome.PASSED)]
    assert [r.relative_return for r in make_critic_rows(PID, None, sandbox, CriticRowsConfig(), 0)] == [None]
    no_tests = [entry(0, Outcome.FAILED, greedy=True, total=0), entry(1, Outcome.PASSED)]
    assert greedy_baseline(PID, no_tests) is None
    # The greedy completion held no code: its execution is a compile error (class 0, return -1). It has
    # no row (the critic classifies programs) but is the baseline of the others.
    s = sample(0, None, greedy=True)
    no_code = (s, Execution(sample_id=s.sample_id, problem_id=PID, round=0, outcome="compile_error",
                            coderl_class=0, passed=0, total=4, pass_ratio=0.0, test_results=(),
                            isolation_tier="none", duration_s=0.0, error_type="NoCodeFound"))
    rows = make_critic_rows(PID, None, [no_code, entry(1, Outcome.PASSED)], CriticRowsConfig(), 0)
    assert [(r.sample_id, r.greedy_class, r.relative_return) for r in rows] == [(f"{PID}-s001", 0, 2.0)]


def test_the_baseline_ignores_other_problems_and_mismatched_entries_and_takes_the_smallest_id():
    other = entry(0, Outcome.PASSED, greedy=True, pid="P2")
    s = sample(1, "x = 1", greedy=True)
    mismatched = (s, entry(9, Outcome.PASSED)[1])  # an execution of another sample
    assert greedy_baseline(PID, [other, mismatched, ("junk",)]) is None  # type: ignore[list-item]
    two = [entry(5, Outcome.PASSED, greedy=True), entry(3, Outcome.RUNTIME_ERROR, greedy=True)]
    base = greedy_baseline(PID, two)
    assert base is not None and base[0].sample_id == f"{PID}-s003"


def test_dedupe_keeps_the_baseline_and_one_row_per_program():
    same = "def f(x):\n    return x\n"
    scored = [entry(0, Outcome.FAILED, greedy=True, code=same, passed=2),
              entry(1, Outcome.FAILED, code=same, passed=2), entry(2, Outcome.PASSED)]
    assert len(make_critic_rows(PID, None, scored, CriticRowsConfig(), 0)) == 2
    rows = make_critic_rows(PID, None, scored, CriticRowsConfig(dedupe=False), 0)
    assert [r.relative_return for r in rows] == [0.0, 0.0, 1.3]


@settings(max_examples=60, deadline=None)
@given(greedy=st.sampled_from(list(Outcome)), others=st.lists(st.sampled_from(list(Outcome)), max_size=5))
def test_relative_return_is_the_return_minus_the_greedy_return(greedy, others):
    scored = [entry(0, greedy, greedy=True)] + [entry(i + 1, o) for i, o in enumerate(others)]
    rows = make_critic_rows(PID, None, scored, CriticRowsConfig(dedupe=False), 0)
    sandbox = greedy == Outcome.SANDBOX_ERROR
    assert len(rows) == (not sandbox) + sum(o != Outcome.SANDBOX_ERROR for o in others)
    for r in rows:
        assert r.coderl_return == CODERL_RETURN[r.coderl_class]
        if sandbox:
            assert r.greedy_class is None and r.relative_return is None
        else:
            assert r.greedy_class == CODERL_CLASS[greedy]
            assert r.relative_return == pytest.approx(r.coderl_return - CODERL_RETURN[CODERL_CLASS[greedy]])


# ------------------------------------------------------------------------------------------ references


def test_a_reference_known_to_pass_joins_as_a_passed_row_when_asked():
    scored = [entry(0, Outcome.RUNTIME_ERROR, greedy=True), entry(1, Outcome.FAILED, passed=1)]
    on = CriticRowsConfig(include_references=True)
    rows = make_critic_rows(PID, None, scored, on, 2, reference=REFERENCE)
    assert [r.source for r in rows] == ["sample", "sample", "reference"]
    ref = rows[-1]
    assert (ref.code, ref.outcome, ref.coderl_class, ref.coderl_return, ref.pass_ratio) == (
        REFERENCE, "passed", 3, 1.0, 1.0)
    assert (ref.error_type, ref.error_line, ref.round, ref.prompt) == (None, None, 2, "PROMPT")
    assert (ref.greedy_class, ref.relative_return) == (1, 1.6)
    assert ref.sample_id == reference_row_id(PID, REFERENCE) != reference_row_id("P2", REFERENCE)
    # Off by default; no reference (not known to pass) or a blank one: no row.
    assert len(make_critic_rows(PID, None, scored, CriticRowsConfig(), 2, reference=REFERENCE)) == 2
    assert len(make_critic_rows(PID, None, scored, on, 2, reference=None)) == 2
    assert len(make_critic_rows(PID, None, scored, on, 2, reference="  \n")) == 2
    # No greedy sample: the reference row has no baseline either.
    alone = make_critic_rows(PID, "TEXT", [entry(1, Outcome.FAILED)], on, 0, reference=REFERENCE)
    assert (alone[-1].prompt, alone[-1].greedy_class, alone[-1].relative_return) == ("TEXT", None, None)


def test_pair_problem_passes_the_reference_to_the_critic_rows():
    scored = [entry(0, Outcome.PASSED, greedy=True), entry(1, Outcome.FAILED, passed=1)]
    res = pair_problem(PID, None, scored, pairs=PairingConfig(), kto=KtoRowsConfig(),
                       critic=CriticRowsConfig(include_references=True), format="standard", seed=0, round=0,
                       reference=REFERENCE)
    assert [r.source for r in res.critic] == ["sample", "sample", "reference"]
    assert res.critic[-1].relative_return == 0.0  # the greedy sample passed too
    assert len(res.dpo) == 1  # the reference is critic data only, never a DPO chosen


@dataclass
class _Result:  # the shape of a sandbox ProgramResult that reference_passes reads
    test_id: str
    status: str


@dataclass
class _Program:
    test_results: tuple


def test_reference_passes_only_with_a_passed_verdict_on_every_kept_test():
    run = _Program((_Result("a", "passed"), _Result("b", "passed"), _Result("c", "failed")))
    assert reference_passes(run, ["a", "b"])  # c was dropped by the oracle: it does not count
    assert not reference_passes(run, ["a", "c"])  # a kept test it fails (e.g. a dataset's given test)
    assert not reference_passes(run, ["a", "d"])  # a kept test it never ran
    assert not reference_passes(run, [])  # nothing to pass: unknown
    assert not reference_passes(None, ["a"])  # never run (no oracle, or the oracle was not applied)


def test_asking_for_references_in_a_run_config_is_accepted(tmp_path: Path):
    from plumline.pipeline.config import load_config

    base = ["sources=[{path: bundled:easy}]", "policy.model=m"]
    assert load_config(None, base).critic.rows.include_references is False
    assert load_config(None, [*base, "critic.rows.include_references=true"]).critic.rows.include_references


# ------------------------------------------------------------------------------------------ the file


def _rows() -> tuple[list[tuple[Sample, Execution]], list[CriticRow]]:
    scored = [entry(0, Outcome.FAILED, greedy=True, passed=2), entry(1, Outcome.PASSED),
              entry(2, Outcome.COMPILE_ERROR, error_line=1)]
    rows = make_critic_rows(PID, None, scored, CriticRowsConfig(include_references=True), 0,
                            reference=REFERENCE)
    rows += make_critic_rows("P2", None, [entry(1, Outcome.RUNTIME_ERROR, pid="P2", error_line=3)],
                             CriticRowsConfig(), 0)
    return scored, rows


def test_rows_load_with_datasets_and_read_back_as_records(tmp_path: Path):
    import datasets

    _, rows = _rows()
    path = tmp_path / "critic.parquet"
    pq.write_table(to_table(rows, CriticRow), path)
    ds = datasets.load_dataset("parquet", data_files=str(path), split="train")
    assert len(ds) == 5
    assert {"prompt", "code", "outcome", "coderl_class", "error_line", "pass_ratio", "greedy_class",
            "relative_return", "source"} <= set(ds.column_names)
    assert ds["source"] == ["sample"] * 3 + ["reference", "sample"]
    assert ds["greedy_class"] == [2, 2, 2, 2, None] and ds["relative_return"][-1] is None
    assert ds["relative_return"][:4] == [0.0, 1.3, -0.7, 1.3]
    assert ds["error_line"][2] == 1 and ds["coderl_class"] == [2, 3, 0, 3, 1]
    back = [CriticRow.from_dict(r) for r in pq.read_table(path).to_pylist()]
    assert back == rows


def test_old_critic_files_read_back_and_bad_values_are_named():
    _, rows = _rows()
    old = {k: v for k, v in rows[0].to_dict().items()
           if k not in ("greedy_class", "greedy_sample_id", "relative_return", "source")}
    assert CriticRow.from_dict(old).source == "sample"  # a file written before these columns existed
    with pytest.raises(RecordError, match="source"):
        CriticRow.from_dict({**rows[0].to_dict(), "source": "oracle"})
    with pytest.raises(RecordError, match="coderl_class"):
        CriticRow.from_dict({**rows[0].to_dict(), "coderl_class": 4})
    with pytest.raises(RecordError, match="greedy_class"):
        CriticRow.from_dict({**rows[0].to_dict(), "greedy_class": -1})


def test_validate_checks_critic_rows_against_executions_problems_and_the_baseline():
    from plumline.pipeline.validate import _critic_findings

    scored, rows = _rows()
    p2 = entry(1, Outcome.RUNTIME_ERROR, pid="P2", error_line=3)
    samples = {s.sample_id: s for s, _ in [*scored, p2]}
    executions = {e.sample_id: e for _, e in [*scored, p2]}
    problems = {PID: Problem(problem_id=PID, source="t", prompt="p", reference_solution=REFERENCE),
                "P2": Problem(problem_id="P2", source="t", prompt="q")}
    assert _critic_findings(rows, samples, executions, problems) == []

    def findings(i: int, **change) -> list[str]:
        bad = list(rows)
        bad[i] = replace(bad[i], **change)
        return _critic_findings(bad, samples, executions, problems)

    assert "relative return 0.5, expected 1.3" in findings(1, relative_return=0.5)[0]
    assert "differ from its execution" in findings(1, coderl_class=2, relative_return=0.0)[0]
    assert "not problem P1's reference" in findings(3, code="def f(x):\n    return 0\n")[0]
    assert "greedy baseline" in findings(2, greedy_sample_id=rows[1].sample_id)[0]  # not the greedy sample
    assert "without a greedy baseline" in findings(4, relative_return=0.3)[0]
    assert "has no execution" in findings(4, sample_id="nope")[0]


def test_the_dataset_card_names_every_critic_column():
    from plumline.pipeline.dataset_card import _USAGE

    text = _USAGE["critic"][3]
    for column in ("prompt", "code", "outcome", "coderl_class", "coderl_return", "error_type", "error_line",
                   "pass_ratio", "greedy_class", "greedy_sample_id", "relative_return", "source"):
        assert f"`{column}`" in text, column
    assert "plumline train critic" in text
