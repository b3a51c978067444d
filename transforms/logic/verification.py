"""Verifying one problem: validate its tests, execute its samples, decide what counts.

Order (DESIGN.md, PLUM + CodeT + AceCoder):
  1. oracle: with a reference solution, drop training tests the reference fails or times out on;
  2. execute every sample that has code against the surviving training tests and the
     evaluation-only tests (a dataset's own tests when reserved), in one sandbox job per sample;
  3. agreement (CodeT) over the samples x tests matrix, where configured;
  4. each sample's pass ratio is recomputed over the kept training tests only;
  5. a problem left with fewer kept tests than the minimum is skipped with a reason: its
     executions are not emitted, so it produces no training rows.

Pure apart from the injected ``run_many`` (the sandbox), so it is tested without Beam.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from plumline.data_schemas import (
    CODERL_CLASS,
    ErrorKind,
    ErrorRecord,
    Execution,
    Outcome,
    Problem,
    Sample,
    Stage,
    TestCase,
    TestSpec,
)
from plumline.transforms.logic.validation import (
    TestValidationConfig,
    apply_agreement_to_tests,
    apply_oracle,
    enforce_min_tests,
    oracle_unusable,
    recompute_execution,
)

# jobs are (code, tests, entry_point)
RunMany = Callable[[Sequence[tuple[str, Sequence[TestSpec], str | None]]], list[Any]]


@dataclass
class VerifiedProblem:
    tests: list[TestCase]
    executions: list[Execution]
    errors: list[ErrorRecord] = field(default_factory=list)
    skipped: bool = False


def no_code_execution(sample: Sample, n_tests: int) -> Execution:
    """A completion without code is a compile error of the policy (CodeRL class 0)."""
    return Execution(
        sample_id=sample.sample_id, problem_id=sample.problem_id, round=sample.round,
        outcome=Outcome.COMPILE_ERROR.value, coderl_class=CODERL_CLASS[Outcome.COMPILE_ERROR],
        passed=0, total=n_tests, pass_ratio=0.0, test_results=(), isolation_tier="none",
        duration_s=0.0, error_type="NoCodeFound")


def result_to_execution(sample: Sample, result: Any, train_ids: Sequence[str]) -> Execution:
    """A sandbox ProgramResult as an Execution record, counting only the training tests.

    ``eval_*`` fields count the evaluation-only tests run in the same job."""
    train = set(train_ids)
    train_results = tuple(r for r in result.test_results if r.test_id in train)
    eval_results = tuple(r for r in result.test_results if r.test_id not in train)
    passed = sum(r.status == "passed" for r in train_results)
    total = len(train_results)
    outcome = result.outcome
    if outcome in (Outcome.PASSED.value, Outcome.FAILED.value):
        # The sandbox decided over every test it ran; training counts only the training tests.
        outcome = Outcome.PASSED.value if total and passed == total else Outcome.FAILED.value
    return Execution(
        sample_id=sample.sample_id, problem_id=sample.problem_id, round=sample.round, outcome=outcome,
        coderl_class=CODERL_CLASS[Outcome(outcome)], passed=passed, total=total,
        pass_ratio=(passed / total) if total else 0.0, test_results=train_results,
        isolation_tier=result.isolation_tier, duration_s=float(result.duration_s),
        error_type=result.error_type, error_line=result.error_line,
        stderr_tail=(result.stderr_tail or "")[-2000:],
        eval_passed=sum(r.status == "passed" for r in eval_results), eval_total=len(eval_results))


def verify_problem(problem: Problem, tests: Sequence[TestCase], samples: Sequence[Sample], *,
                   run_many: RunMany, cfg: TestValidationConfig, round: int) -> VerifiedProblem:
    pid = problem.problem_id
    errors: list[ErrorRecord] = []
    tests = sorted(tests, key=lambda t: t.test_id)
    samples = sorted(samples, key=lambda s: s.sample_id)

    # 1. oracle
    training = [t for t in tests if t.for_training and t.kept]
    if cfg.oracle and problem.reference_solution and training:
        oracle_result = run_many([(problem.reference_solution, [t.spec for t in training],
                                   problem.entry_point or None)])[0]
        unusable = oracle_unusable(oracle_result)
        if unusable:
            errors.append(ErrorRecord(
                stage=Stage.EXECUTE, kind=ErrorKind.ORACLE_NOT_APPLIED,
                reason=f"{unusable}; oracle not applied", input=pid, problem_id=pid,
                detail=f"{oracle_result.error_type or ''} {(oracle_result.stderr_tail or '')[-500:]}"))
        else:
            validated = {t.test_id: t for t in apply_oracle(training, oracle_result,
                                                            drop_not_run=cfg.drop_oracle_not_run)}
            tests = [validated.get(t.test_id, t) for t in tests]
    training = [t for t in tests if t.for_training and t.kept]
    evaluation = [t for t in tests if not t.for_training and t.kept]

    # 2. execute samples
    with_code = [s for s in samples if s.code]
    specs = [t.spec for t in training + evaluation]
    results = (run_many([(s.code, specs, problem.entry_point or None) for s in with_code])
               if with_code and specs else [])
    train_ids = [t.test_id for t in training]
    executions = {s.sample_id: result_to_execution(s, r, train_ids) for s, r in zip(with_code, results)}
    for s in samples:
        if not s.code:
            executions[s.sample_id] = no_code_execution(s, len(training))

    # 3. agreement (CodeT) where configured: without a reference, or always when asked.
    use_agreement = cfg.agreement and (not problem.reference_solution or not cfg.oracle
                                       or cfg.agreement_even_with_oracle)
    if use_agreement and executions:
        with_results = [e for e in executions.values() if e.test_results]
        tests, _ = apply_agreement_to_tests(tests, with_results, cfg)
    kept_training = [t.test_id for t in tests if t.for_training and t.kept]

    # 4. pass ratios over kept training tests only
    final = [recompute_execution(e, kept_training) for e in executions.values()]

    # 5. minimum number of kept tests
    skip_reason = enforce_min_tests(tests, cfg.min_kept_tests)
    if skip_reason:
        errors.append(ErrorRecord(stage=Stage.EXECUTE, kind=ErrorKind.PROBLEM_SKIPPED,
                                  reason=f"too few tests: {skip_reason}", input=pid, problem_id=pid))
        return VerifiedProblem(tests=list(tests), executions=[], errors=errors, skipped=True)
    return VerifiedProblem(tests=list(tests), executions=sorted(final, key=lambda e: e.sample_id),
                           errors=errors)
