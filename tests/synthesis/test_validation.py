"""Oracle verdicts, CodeT agreement on hand-built matrices, recomputed executions, minimum tests."""

from __future__ import annotations

from dataclasses import dataclass, replace
from types import SimpleNamespace

from plumline.data_schemas import Execution, Outcome, TestCase, TestResult, TestStatus, status_value
from plumline.transforms.logic.validation import (
    TestValidationConfig,
    apply_agreement_to_tests,
    apply_oracle,
    codet_agreement,
    enforce_min_tests,
    oracle_unusable,
    recompute_execution,
)


def tc(tid: str, origin: str = "synthesized", kept: bool = True, for_training: bool = True) -> TestCase:
    return TestCase(test_id=tid, problem_id="p", kind="assert", code=f"assert f({tid!r})", origin=origin,
                    kept=kept, for_training=for_training)


@dataclass
class FakeResult:  # the shape of a sandbox ProgramResult that apply_oracle reads
    outcome: str
    test_results: tuple


def res(**statuses: str) -> FakeResult:
    return FakeResult("failed", tuple(TestResult(test_id=k, status=v) for k, v in statuses.items()))


def test_oracle_drops_failed_timed_out_erroring_and_unrun_tests_only():
    tests = [tc("a"), tc("b"), tc("c"), tc("d"), tc("e"), tc("g", origin="given"), tc("x", kept=False)]
    out = apply_oracle(tests, res(a="passed", b="failed", c="timeout", d="error", g="failed"))
    got = {t.test_id: (t.kept, t.drop_reason) for t in out}
    assert all(t.drop_detail for t in out if t.drop_reason)  # the reason in words too
    assert got == {"a": (True, None), "b": (False, "oracle_failed"), "c": (False, "oracle_timeout"),
                   "d": (False, "oracle_error"), "e": (False, "oracle_not_run"),
                   "g": (True, None),  # given tests are the dataset's: never judged by the oracle
                   "x": (False, None)}
    assert [t.test_id for t in out] == [t.test_id for t in tests]


def test_statuses_read_the_same_as_enums_and_as_strings():
    assert str(TestStatus.PASSED) != "passed"  # why the helper exists
    assert status_value(TestStatus.PASSED) == status_value("passed") == "passed"
    assert status_value(Outcome.RUNTIME_ERROR) == "runtime_error"
    tests = [tc("a"), tc("b"), tc("c")]
    as_strings = res(a="passed", b="failed", c="timeout")
    as_enums = FakeResult("failed", tuple(SimpleNamespace(test_id=r.test_id, status=TestStatus(r.status))
                                          for r in as_strings.test_results))
    assert apply_oracle(tests, as_enums) == apply_oracle(tests, as_strings)


def test_oracle_unusable_when_the_reference_is_broken():
    assert oracle_unusable(FakeResult("compile_error", ())) == "reference solution compile_error"
    assert oracle_unusable(res(a="not_run", b="not_run")) is not None
    assert oracle_unusable(res(a="failed", b="passed")) is None


def test_codet_drops_a_wrong_test_that_few_samples_pass():
    # t3 is wrong: only the two buggy samples s4, s5 pass it (and they fail the right tests)
    m = {
        "s1": {"t1": True, "t2": True, "t3": False},
        "s2": {"t1": True, "t2": True, "t3": False},
        "s3": {"t1": True, "t2": True, "t3": False},
        "s4": {"t1": False, "t2": False, "t3": True},
        "s5": {"t1": False, "t2": False, "t3": True},
    }
    r = codet_agreement(["t1", "t2", "t3"], m)
    assert r.decided and r.kept_test_ids == ["t1", "t2"] and r.dropped_test_ids == ["t3"]
    assert r.best_group_sample_ids == ["s1", "s2", "s3"]


def test_codet_score_is_samples_times_tests_not_just_group_size():
    # 3 samples that pass only t1 (score 3) lose to 2 samples that pass t1..t3 (score 6)
    m = {"a": {"t1": True}, "b": {"t1": True}, "c": {"t1": True},
         "d": {"t1": True, "t2": True, "t3": True}, "e": {"t1": True, "t2": True, "t3": True}}
    r = codet_agreement(["t1", "t2", "t3"], m)
    assert r.kept_test_ids == ["t1", "t2", "t3"] and r.dropped_test_ids == []


def test_codet_ties_are_deterministic_and_independent_of_order():
    # {t1,t2} x 2 samples = 4 ; {t3} x 4 samples = 4 -> the larger group wins
    m = {"a": {"t1": True, "t2": True}, "b": {"t1": True, "t2": True},
         "c": {"t3": True}, "d": {"t3": True}, "e": {"t3": True}, "f": {"t3": True}}
    r1 = codet_agreement(["t1", "t2", "t3"], m)
    r2 = codet_agreement(["t3", "t2", "t1"], dict(reversed(list(m.items()))))
    assert r1.kept_test_ids == ["t3"] and sorted(r2.kept_test_ids) == ["t3"]
    assert r1.best_group_sample_ids == r2.best_group_sample_ids == ["c", "d", "e", "f"]


def test_codet_edge_cases():
    none = codet_agreement(["t1"], {})
    assert not none.decided and none.kept_test_ids == ["t1"] and none.reason == "no samples"
    zero = codet_agreement(["t1", "t2"], {"a": {}, "b": {"t1": False}})
    assert not zero.decided and zero.kept_test_ids == ["t1", "t2"]
    dropped = codet_agreement(["t1", "t2"], {"a": {}}, drop_when_no_consensus=True)
    assert dropped.kept_test_ids == [] and set(dropped.dropped_test_ids) == {"t1", "t2"}
    weak = codet_agreement(["t1"], {"a": {"t1": True}, "b": {}}, min_agreeing_samples=2)
    assert not weak.decided and weak.kept_test_ids == ["t1"]
    # results for tests outside the judged set are ignored; a missing entry means "not passed"
    r = codet_agreement(["t1", "t2"], {"a": {"t1": True, "zz": True}, "b": {"t1": True}})
    assert r.kept_test_ids == ["t1"] and r.dropped_test_ids == ["t2"]


def ex(sid: str, outcome: str, **statuses: str) -> Execution:
    results = tuple(TestResult(test_id=k, status=v) for k, v in statuses.items())
    passed = sum(v == "passed" for v in statuses.values())
    return Execution(sample_id=sid, problem_id="p", round=0, outcome=outcome, coderl_class=2, passed=passed,
                     total=len(results), pass_ratio=passed / max(1, len(results)), test_results=results,
                     isolation_tier="t", duration_s=0.1, eval_passed=1, eval_total=2)


def test_recompute_counts_kept_tests_only_and_rederives_the_outcome():
    e = ex("s", "failed", t1="passed", t2="failed", t3="passed")
    r = recompute_execution(e, ["t1", "t3"])
    assert (r.outcome, r.passed, r.total, r.pass_ratio, r.coderl_class) == ("passed", 2, 2, 1.0, 3)
    assert [x.test_id for x in r.test_results] == ["t1", "t3"]
    assert (r.eval_passed, r.eval_total) == (1, 2)
    # an error or timeout in a dropped test no longer counts; one in a kept test does
    e = ex("s", "runtime_error", t1="passed", t2="error", t3="failed")
    assert recompute_execution(e, ["t1"]).outcome == "passed"
    assert recompute_execution(e, ["t1", "t3"]).outcome == "failed"
    timed_out = ex("s", "timeout", t1="timeout", t2="passed")
    assert recompute_execution(timed_out, ["t1", "t2"]).outcome == "timeout"
    # program-level failures stay
    ce = ex("s", "compile_error", t1="not_run")
    assert recompute_execution(ce, ["t1"]).outcome == "compile_error"
    crashed = replace(ex("s", "runtime_error", t1="passed", t2="not_run"), error_type="SystemExit")
    assert recompute_execution(crashed, ["t1"]).outcome == "runtime_error"
    # nothing left: never "passed" on zero tests
    r = recompute_execution(ex("s", "passed", t1="passed"), [])
    assert (r.outcome, r.total, r.pass_ratio) == ("failed", 0, 0.0)


def test_min_tests_counts_kept_training_tests_only():
    tests = [tc("a"), tc("b", kept=False), tc("g", origin="given", for_training=False)]
    assert enforce_min_tests(tests, 1) is None
    assert enforce_min_tests(tests, 2) == "1 kept training tests, fewer than min_kept_tests 2"
    assert enforce_min_tests([], 0) is None


def test_agreement_on_rows_leaves_given_and_dropped_tests_alone():
    tests = [tc("t1"), tc("t2"), tc("g", origin="given", for_training=False), tc("x", kept=False)]
    execs = [ex("s1", "failed", t1="passed", t2="failed", g="failed"),
             ex("s2", "failed", t1="passed", t2="failed", g="failed"),
             ex("s3", "failed", t1="failed", t2="passed", g="passed")]
    out, r = apply_agreement_to_tests(tests, execs, TestValidationConfig())
    assert {t.test_id: t.kept for t in out} == {"t1": True, "t2": False, "g": True, "x": False}
    assert {t.test_id: t.drop_reason for t in out if t.test_id == "t2"} == {"t2": "codet_disagreement"}
    assert r.best_group_sample_ids == ["s1", "s2"]
