"""Test validation: tests you can trust before they decide what is "chosen" and "rejected".

- oracle (AceCoder): with a reference solution, a test the reference fails, errors on or times out
  on is wrong (or hostile) and is dropped;
- agreement (CodeT dual agreement, arXiv 2207.10397) without a reference: samples that pass the same
  tests form a group; a group's score is (samples in it) x (tests it passes); the tests the best
  group fails are suspect and dropped;
- each sample's pass ratio is then recomputed over the kept tests only;
- a problem with fewer kept tests than a minimum is skipped with a reason.

Pure functions: the sandbox result is passed in (anything with ``test_results`` whose items have
``test_id`` and ``status``), so all of this is tested without the sandbox or Beam.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from plumline.data_schemas import (
    CODERL_CLASS,
    Execution,
    Outcome,
    TestCase,
    TestDropReason,
    TestOrigin,
    TestStatus,
    status_value,
)
from pydantic import BaseModel, ConfigDict, Field

# The reference solution's verdict on a test -> why the test is dropped (None: kept), with words.
_ORACLE_DROPS: dict[str, tuple[TestDropReason, str]] = {
    TestStatus.FAILED.value: (TestDropReason.ORACLE_FAILED, "the reference solution fails it"),
    TestStatus.TIMEOUT.value: (TestDropReason.ORACLE_TIMEOUT, "the reference solution times out on it"),
    TestStatus.ERROR.value: (TestDropReason.ORACLE_ERROR, "it raises an error on the reference solution"),
}
_NOT_RUN = (TestDropReason.ORACLE_NOT_RUN, "the reference solution never reached it")


class TestValidationConfig(BaseModel):
    """Which validations run and how strict they are."""

    __test__ = False  # not a pytest class
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    oracle: bool = Field(True, description="Drop tests the reference solution fails or times out on "
                                           "(only where a problem has a reference).")
    agreement: bool = Field(True, description="CodeT dual agreement over the samples x tests matrix where "
                                              "there is no reference (or always, see below).")
    agreement_even_with_oracle: bool = Field(False, description="Also apply agreement to problems that "
                                                                "have a reference solution.")
    min_agreeing_samples: int = Field(1, ge=1, description="The best agreement group needs at least this "
                                                           "many samples, else agreement is undecided "
                                                           "and drops nothing.")
    drop_when_no_consensus: bool = Field(False, description="When no sample passes any test, drop every "
                                                            "synthesized test (default: keep them; "
                                                            "agreement has no evidence either way).")
    min_kept_tests: int = Field(1, ge=0, description="Problems with fewer kept training tests are skipped "
                                                     "(listed with a reason).")
    drop_oracle_not_run: bool = Field(True, description="Drop a test the reference never reached (the "
                                                        "reference died before it).")
    probe_agreement: Literal["program", "input"] = Field(
        "program", description="How probes (inputs without a reference, tests.agreement_inputs) get expected "
                               "outputs from the policy's distinct sampled programs. program: programs with "
                               "the same outputs on every probe form a cluster; the largest cluster's "
                               "outputs become the tests (CodeT/MBR-exec). input: each probe on its own "
                               "takes the most common output (looser: unrelated wrong programs can outvote "
                               "the right ones on one input).")
    probe_min_share: float = Field(0.5, gt=0.0, le=1.0, description="The winning cluster (or output group) "
                                   "must hold at least this share of the distinct programs that ran.")
    probe_min_size: int = Field(2, ge=1, description="... and at least this many distinct programs (a "
                                                     "single program agrees with itself).")


def apply_oracle(tests: Sequence[TestCase], oracle: Any, *, drop_not_run: bool = True) -> list[TestCase]:
    """Tests with the reference solution's verdicts applied.

    ``oracle`` is the reference's ProgramResult (or anything with ``test_results`` of
    ``test_id``/``status``). Given tests and already dropped tests pass through unchanged (a dataset's
    own tests are trusted; a failing one means a broken reference, reported by the caller). A test with
    no result at all is dropped as ``oracle_not_run`` when ``drop_not_run``."""
    statuses = {r.test_id: status_value(r.status) for r in getattr(oracle, "test_results", ()) or ()}
    out = []
    for t in tests:
        if not t.kept or t.origin == TestOrigin.GIVEN.value:
            out.append(t)
            continue
        st = statuses.get(t.test_id, TestStatus.NOT_RUN.value)
        if st == TestStatus.PASSED.value:
            drop = None
        else:
            drop = _ORACLE_DROPS.get(st, _NOT_RUN if drop_not_run else None)
        out.append(t if drop is None else replace(t, kept=False, drop_reason=drop[0], drop_detail=drop[1]))
    return out


def oracle_unusable(oracle: Any) -> str | None:
    """Why a reference's result cannot judge tests (it did not compile, the sandbox failed, it ran no
    test), or None when it can. A reference that merely fails some tests is usable: that is the point."""
    outcome = status_value(getattr(oracle, "outcome", ""))
    results = getattr(oracle, "test_results", ()) or ()
    if outcome in (Outcome.COMPILE_ERROR.value, Outcome.SANDBOX_ERROR.value):
        return f"reference solution {outcome}"
    if results and all(status_value(r.status) == TestStatus.NOT_RUN.value for r in results):
        return f"reference solution ran no test ({outcome})"
    return None


@dataclass
class AgreementResult:
    """CodeT's verdict. ``decided`` is False when there was no evidence (no samples, no consensus, a
    best group smaller than the minimum): then nothing is dropped unless configured."""

    kept_test_ids: list[str]
    dropped_test_ids: list[str]
    best_group_sample_ids: list[str]
    decided: bool = True
    reason: str = ""


def codet_agreement(test_ids: Sequence[str], matrix: Mapping[str, Mapping[str, bool]], *,
                    min_agreeing_samples: int = 1, drop_when_no_consensus: bool = False) -> AgreementResult:
    """CodeT dual agreement.

    ``matrix[sample_id][test_id]`` is True when the sample passed the test; a missing entry counts as
    not passed. Samples are grouped by the exact set of tests (among ``test_ids``) they pass; a group's
    score is |samples| x |tests passed|; the tests the best group fails are dropped.

    Ties between groups of equal score: more samples first (stronger consensus among solutions), then
    more tests, then the lexicographically smallest test set, so the result never depends on order.

    Edge cases (documented choices):
    - no samples: undecided, every test kept;
    - every score is 0 (no sample passes any test): undecided; tests kept, or all dropped with
      ``drop_when_no_consensus`` (no sample can be "chosen" either way, so keeping them costs no
      wrong pair; dropping them skips the problem);
    - best group has fewer than ``min_agreeing_samples`` samples: undecided, every test kept."""
    ids = list(dict.fromkeys(test_ids))
    idset = set(ids)
    groups: dict[tuple[str, ...], list[str]] = {}
    for sid in sorted(matrix):
        row = matrix[sid] or {}
        passed = tuple(sorted(t for t in idset if row.get(t) is True))
        groups.setdefault(passed, []).append(sid)
    scores = {g: len(s) * len(g) for g, s in groups.items()}
    if not groups:
        return AgreementResult(ids, [], [], decided=False, reason="no samples")
    best = min(groups, key=lambda g: (-scores[g], -len(groups[g]), -len(g), g))
    if scores[best] == 0:
        if drop_when_no_consensus:
            return AgreementResult([], ids, groups[best], decided=False, reason="no sample passes any test")
        return AgreementResult(ids, [], groups[best], decided=False, reason="no sample passes any test")
    if len(groups[best]) < min_agreeing_samples:
        return AgreementResult(ids, [], groups[best], decided=False,
                               reason=f"best group has {len(groups[best])} < {min_agreeing_samples} samples")
    passed = set(best)
    return AgreementResult([t for t in ids if t in passed], [t for t in ids if t not in passed], groups[best])


def execution_matrix(executions: Iterable[Execution]) -> dict[str, dict[str, bool]]:
    """Samples x tests pass matrix from executions (a sample that ran no test has an empty row and so
    joins the group that passes nothing)."""
    passed = TestStatus.PASSED.value
    return {e.sample_id: {r.test_id: status_value(r.status) == passed for r in e.test_results}
            for e in executions}


_RECOMPUTABLE = {Outcome.PASSED.value, Outcome.FAILED.value, Outcome.RUNTIME_ERROR.value,
                 Outcome.TIMEOUT.value}


def recompute_execution(execution: Execution, kept_test_ids: Iterable[str]) -> Execution:
    """The execution counted over the kept tests only.

    Results of dropped tests are removed; passed/total/pass_ratio are recounted. The outcome is
    re-derived from the kept tests' statuses when it came from tests (passed, failed, or a test that
    raised or timed out): all kept pass -> passed; any timeout -> timeout; any error -> runtime_error;
    else failed. Program-level failures (compile error, memory/output limit, sandbox error, a
    program-level error_type, or a kept test that never ran) stay as they are. ``eval_*`` counts are
    untouched (evaluation-only tests are not validated here)."""
    kept = set(kept_test_ids)
    results = tuple(r for r in execution.test_results if r.test_id in kept)
    statuses = [status_value(r.status) for r in results]
    passed = sum(s == TestStatus.PASSED.value for s in statuses)
    total = len(results)
    outcome = execution.outcome
    program_level = (execution.outcome not in _RECOMPUTABLE or execution.error_type is not None
                     or TestStatus.NOT_RUN.value in statuses)
    if not program_level and total:
        if passed == total:
            outcome = Outcome.PASSED.value
        elif TestStatus.TIMEOUT.value in statuses:
            outcome = Outcome.TIMEOUT.value
        elif TestStatus.ERROR.value in statuses:
            outcome = Outcome.RUNTIME_ERROR.value
        else:
            outcome = Outcome.FAILED.value
    elif not program_level and not total and outcome == Outcome.PASSED.value:
        outcome = Outcome.FAILED.value  # nothing left to pass: never "passed" on zero tests
    return replace(execution, test_results=results, passed=passed, total=total,
                   pass_ratio=(passed / total) if total else 0.0, outcome=outcome,
                   coderl_class=CODERL_CLASS[Outcome(outcome)])


def enforce_min_tests(tests: Sequence[TestCase], min_kept_tests: int) -> str | None:
    """Skip reason when a problem has fewer kept training tests than the minimum, else None.
    Evaluation-only tests do not count: they never give training signal."""
    n = sum(t.kept and t.for_training for t in tests)
    if n < min_kept_tests:
        return f"{n} kept training tests, fewer than min_kept_tests {min_kept_tests}"
    return None


def apply_agreement_to_tests(tests: Sequence[TestCase], executions: Sequence[Execution],
                             cfg: TestValidationConfig) -> tuple[list[TestCase], AgreementResult]:
    """Agreement over the kept training tests that are not given tests; the others pass through."""
    judged = [t.test_id for t in tests if t.kept and t.for_training and t.origin != TestOrigin.GIVEN.value]
    result = codet_agreement(judged, execution_matrix(executions),
                             min_agreeing_samples=cfg.min_agreeing_samples,
                             drop_when_no_consensus=cfg.drop_when_no_consensus)
    dropped = set(result.dropped_test_ids)
    detail = (f"the best agreeing group of samples ({len(result.best_group_sample_ids)}) fails this test"
              if result.decided else f"agreement undecided: {result.reason}")
    out = [replace(t, kept=False, drop_reason=TestDropReason.AGREEMENT_FAILED, drop_detail=detail)
           if t.test_id in dropped else t for t in tests]
    return out, result
