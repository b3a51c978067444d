"""verify_problem: oracle, execution, CodeT agreement, recount over kept tests, minimum tests.

The sandbox is replaced by a table-driven test double (one unit under test: the verification
logic); the real sandbox runs in the end-to-end tests."""

from dataclasses import dataclass

from plumline.data_schemas import ErrorKind, Problem, Sample, TestCase, TestResult
from plumline.transforms.logic.validation import TestValidationConfig
from plumline.transforms.logic.verification import verify_problem


@dataclass
class FakeResult:
    outcome: str
    test_results: tuple
    isolation_tier: str = "test-double"
    duration_s: float = 0.01
    error_type: str | None = None
    error_line: int | None = None
    stderr_tail: str = ""


def table_sandbox(table, calls):
    """table[code][test_code] -> status; missing -> failed."""
    def run_many(jobs):
        out = []
        for code, specs, *_entry_point in jobs:
            calls.append((code, [s.code for s in specs]))
            res = tuple(TestResult(test_id=s.test_id, status=table.get(code, {}).get(s.code, "failed"))
                        for s in specs)
            ok = res and all(r.status == "passed" for r in res)
            out.append(FakeResult("passed" if ok else "failed", res))
        return out
    return run_many


def _test(pid, code, origin="synthesized", for_training=True):
    return TestCase(test_id=TestCase.make_id(pid, origin, "assert", code), problem_id=pid, kind="assert",
                    code=code, origin=origin, for_training=for_training)


def _sample(pid, i, code):
    return Sample(sample_id=f"s{i}", problem_id=pid, round=0, policy="m", policy_revision="r", prompt="p",
                  completion=code or "prose", code=code, finish_reason="stop", prompt_tokens=1,
                  completion_tokens=1, temperature=1.0, top_p=1.0, max_tokens=10, seed=i, sample_index=i)


GOOD_T, BAD_T, GIVEN_T = "assert f(1) == 2", "assert f(1) == 3", "assert f(2) == 3"


def test_oracle_drops_wrong_tests_then_samples_are_scored_on_kept_tests_only():
    pid = "p"
    problem = Problem(problem_id=pid, source="t", prompt="def f(x):", entry_point="f",
                      reference_solution="REF")
    tests = [_test(pid, GOOD_T), _test(pid, BAD_T), _test(pid, GIVEN_T, origin="given", for_training=False)]
    table = {"REF": {GOOD_T: "passed", BAD_T: "failed", GIVEN_T: "passed"},
             "RIGHT": {GOOD_T: "passed", BAD_T: "failed", GIVEN_T: "passed"},
             "WRONG": {GOOD_T: "failed", BAD_T: "passed", GIVEN_T: "failed"}}
    calls = []
    samples = [_sample(pid, 0, "RIGHT"), _sample(pid, 1, "WRONG"), _sample(pid, 2, None)]
    out = verify_problem(problem, tests, samples, run_many=table_sandbox(table, calls),
                         cfg=TestValidationConfig(), round=0)
    by_code = {t.code: t for t in out.tests}
    assert not by_code[BAD_T].kept and by_code[BAD_T].drop_reason.startswith("oracle")
    assert by_code[GOOD_T].kept and by_code[GIVEN_T].kept
    # The oracle ran on training tests only; samples ran kept training + evaluation tests.
    by_id = sorted([GOOD_T, BAD_T], key=lambda c: TestCase.make_id(pid, "synthesized", "assert", c))
    assert calls[0] == ("REF", by_id)
    assert set(calls[1][1]) == {GOOD_T, GIVEN_T}
    ex = {e.sample_id: e for e in out.executions}
    assert ex["s0"].outcome == "passed" and ex["s0"].pass_ratio == 1.0 and ex["s0"].eval_passed == 1
    assert ex["s1"].outcome == "failed" and ex["s1"].pass_ratio == 0.0 and ex["s1"].eval_total == 1
    assert ex["s2"].outcome == "compile_error" and ex["s2"].error_type == "NoCodeFound"
    assert not out.skipped and not out.errors


def test_agreement_without_reference_drops_the_test_the_majority_fails():
    pid = "q"
    problem = Problem(problem_id=pid, source="t", prompt="def f(x):", entry_point="f")
    tests = [_test(pid, GOOD_T), _test(pid, BAD_T)]
    table = {f"A{i}": {GOOD_T: "passed"} for i in range(3)} | {"B": {BAD_T: "passed"}}
    samples = [_sample(pid, i, f"A{i}") for i in range(3)] + [_sample(pid, 3, "B")]
    out = verify_problem(problem, tests, samples, run_many=table_sandbox(table, []),
                         cfg=TestValidationConfig(), round=0)
    by_code = {t.code: t for t in out.tests}
    assert by_code[GOOD_T].kept and not by_code[BAD_T].kept
    ex = {e.sample_id: e for e in out.executions}
    assert all(ex[f"s{i}"].outcome == "passed" and ex[f"s{i}"].total == 1 for i in range(3))
    assert ex["s3"].outcome == "failed"


def test_problem_with_too_few_tests_is_skipped_with_reason():
    pid = "r"
    problem = Problem(problem_id=pid, source="t", prompt="def f(x):", entry_point="f",
                      reference_solution="REF")
    tests = [_test(pid, BAD_T)]
    out = verify_problem(problem, tests, [_sample(pid, 0, "X")], run_many=table_sandbox({}, []),
                         cfg=TestValidationConfig(min_kept_tests=1), round=0)
    assert out.skipped and out.executions == []
    assert out.errors[0].kind == ErrorKind.PROBLEM_SKIPPED.value and out.errors[0].problem_id == pid
    assert "min_kept_tests" in out.errors[0].reason


def test_broken_reference_is_reported_and_not_used_as_oracle():
    pid = "s"
    problem = Problem(problem_id=pid, source="t", prompt="def f(x):", entry_point="f",
                      reference_solution="REF")
    tests = [_test(pid, GOOD_T)]

    def run_many(jobs):
        code, specs, entry_point = jobs[0]
        assert entry_point == "f"  # the problem's function, exempt from builtin shadowing in tests
        if code == "REF":
            not_run = tuple(TestResult(test_id=s.test_id, status="not_run") for s in specs)
            return [FakeResult("compile_error", not_run, error_type="SyntaxError")]
        return [FakeResult("passed", tuple(TestResult(test_id=s.test_id, status="passed") for s in specs))
                for _ in jobs]

    out = verify_problem(problem, tests, [_sample(pid, 0, "OK")], run_many=run_many,
                         cfg=TestValidationConfig(), round=0)
    assert out.tests[0].kept and out.executions[0].outcome == "passed"
    assert "oracle not applied" in out.errors[0].reason


def test_the_reference_verdict_says_whether_the_oracle_saw_it_pass_every_kept_test():
    pid = "p"
    problem = Problem(problem_id=pid, source="t", prompt="def f(x):", entry_point="f",
                      reference_solution="REF")
    good, bad = _test(pid, "assert f(1) == 1"), _test(pid, "assert f(2) == 3")
    cfg = TestValidationConfig(agreement=False)
    calls: list = []
    table = {"REF": {good.code: "passed", bad.code: "failed"}}
    v = verify_problem(problem, [good, bad], [], run_many=table_sandbox(table, calls), cfg=cfg, round=0)
    assert v.reference.passed and v.reference.kept_tests == 1  # the failing test was dropped
    off = verify_problem(problem, [good], [], run_many=table_sandbox(table, calls),
                         cfg=TestValidationConfig(oracle=False), round=0)
    assert not off.reference.passed and "did not run" in off.reference.detail
    given = _test(pid, "assert f(2) == 3", origin="given")  # the oracle never drops a dataset's own test
    v = verify_problem(problem, [good, given], [], run_many=table_sandbox(table, calls), cfg=cfg, round=0)
    assert not v.reference.passed and "fails" in v.reference.detail
    no_ref = Problem(problem_id=pid, source="t", prompt="def f(x):", entry_point="f")
    assert verify_problem(no_ref, [good], [], run_many=table_sandbox(table, calls), cfg=cfg,
                          round=0).reference is None
