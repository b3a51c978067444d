"""Verifying one problem: validate its tests, execute its samples, decide what counts.

Order (DESIGN.md, PLUM + CodeT + AceCoder):
  0. probes (inputs-mode inputs of a problem without a reference): every distinct sampled program runs
     on them; a probe whose output enough programs agree on becomes an assert, the others are dropped
     as ``no_agreement`` (``resolve_probes``);
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

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from plumline.data_schemas import (
    CODERL_CLASS,
    ErrorKind,
    ErrorRecord,
    Execution,
    Outcome,
    Problem,
    ReferenceVerdict,
    Sample,
    Stage,
    TestCase,
    TestDropReason,
    TestKind,
    TestOrigin,
    TestSpec,
    TestStatus,
    status_value,
)
from plumline.transforms.logic.pairing import reference_passes
from plumline.transforms.logic.synthesis.expected import (
    PROBES_PER_JOB,
    agreed_behaviour,
    agreed_output,
    canonical_key,
    expected_assert_for_call,
    probe_specs_for_calls,
    read_probe_results,
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
    reference: ReferenceVerdict | None = None  # the oracle's verdict, for problems with a reference


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




def _is_probe(t: TestCase) -> bool:
    return t.kind == TestKind.PROBE.value and t.kept


def resolve_probes(problem: Problem, tests: Sequence[TestCase], samples: Sequence[Sample], *,
                   run_many: RunMany, cfg: TestValidationConfig) -> list[TestCase]:
    """Probe rows -> asserts where the policy's samples agree on the output (``validation.probe_agreement``:
    clusters of programs with the same outputs on every probe, ``agreed_behaviour``, or each probe on its
    own, ``agreed_output``), dropped probes (``no_agreement``) elsewhere; other tests unchanged.

    Each distinct program (samples with the same code count once: copies of one program are no
    independent evidence) runs every probe, and the problem's known training tests (its examples,
    a dataset's tests given for training), in ONE ``run_many`` call. Only programs that pass every
    known test vote (CodeT's dual agreement: a program the examples already refute is no witness);
    outputs are compared by value (``canonical_key``); a voter that raises or times out on an input
    counts against agreement there.
    """
    probes = [t for t in tests if _is_probe(t)]
    if not probes:
        return list(tests)
    known = [t.spec for t in tests if t.kept and t.for_training and not _is_probe(t)]
    programs = list(dict.fromkeys(s.code.strip() for s in samples if s.code and s.code.strip()))
    specs = probe_specs_for_calls([t.code for t in probes])
    jobs: list[tuple[str, Sequence[TestSpec], str | None]] = []
    spans = []
    for code in programs:
        start = len(jobs)
        jobs.extend((code, ([*known] if k == 0 else []) + specs[k:k + PROBES_PER_JOB],
                     problem.entry_point or None) for k in range(0, len(specs), PROBES_PER_JOB))
        spans.append((start, len(jobs)))
    results = list(run_many(jobs)) if jobs else []
    known_ids = {t.test_id for t in known}
    voters = [i for i, (a, _) in enumerate(spans)  # the known tests ran in each program's first job
              if sum(r.test_id in known_ids and _passed(r) for r in results[a].test_results) == len(known)]
    outputs: list[dict[str, str | None]] = [{} for _ in probes]  # per probe: voter -> output key
    values: list[dict[str, Any]] = [{} for _ in probes]  # per probe: output key -> the value
    for p_index in voters:
        a, b = spans[p_index]
        for i, got in enumerate(read_probe_results(results[a:b], len(probes))):
            key = canonical_key(got.value) if got.ok else None
            outputs[i][str(p_index)] = key
            if key is not None:
                values[i].setdefault(key, got.value)
    agreed, why = _agree(outputs, voters, len(programs), cfg)
    resolved: dict[str, TestCase] = {}
    for probe, key, vals, reason in zip(probes, agreed, values, why):
        if key is None:
            resolved[probe.test_id] = replace(
                probe, kept=False, drop_reason=TestDropReason.NO_AGREEMENT.value, drop_detail=reason)
            continue
        code = expected_assert_for_call(probe.code, vals[key])
        kind, origin = TestKind.ASSERT.value, TestOrigin.SYNTHESIZED.value
        tid = TestCase.make_id(problem.problem_id, origin, kind, code)
        resolved[probe.test_id] = replace(probe, test_id=tid, kind=kind, code=code, origin=origin)
    out = [resolved.get(t.test_id, t) for t in tests]
    return list({t.test_id: t for t in out}.values())  # two probes may agree into the same assert


def _passed(result: Any) -> bool:
    return status_value(result.status) == TestStatus.PASSED.value


def _agree(outputs: list[dict[str, str | None]], voters: Sequence[int], n_programs: int,
           cfg: TestValidationConfig) -> tuple[list[str | None], list[str]]:
    """The agreed output key of each probe (None: no agreement) and, for the others, why."""
    need = (f"needs {cfg.probe_min_size} and a share of {cfg.probe_min_share:g}; {len(voters)} of "
            f"{n_programs} distinct programs pass the known tests and vote")
    if cfg.probe_agreement == "input":
        keys, why = [], []
        for outs in outputs:
            keys.append(agreed_output(outs, min_share=cfg.probe_min_share, min_size=cfg.probe_min_size))
            sizes = Counter(v for v in outs.values() if v is not None).most_common(1)
            why.append(f"largest group of equal outputs: {sizes[0][1] if sizes else 0} of {len(outs)} "
                       f"voting programs ({need})")
        return keys, why
    behaviours = {str(p): [outs.get(str(p)) for outs in outputs] for p in voters}
    won = agreed_behaviour(behaviours, min_share=cfg.probe_min_share, min_size=cfg.probe_min_size)
    if won is None:
        sizes = Counter(tuple(v) for v in behaviours.values()).most_common(1)
        reason = (f"no cluster of programs with the same outputs on every probe is large enough: the "
                  f"largest holds {sizes[0][1] if sizes else 0} of {len(voters)} voting programs ({need})")
        return [None] * len(outputs), [reason] * len(outputs)
    keys, size = won
    why = f"the {size} agreeing programs (of {len(voters)} voting) raised or timed out on it"
    return keys, [why] * len(outputs)


def verify_problem(problem: Problem, tests: Sequence[TestCase], samples: Sequence[Sample], *,
                   run_many: RunMany, cfg: TestValidationConfig, round: int) -> VerifiedProblem:
    pid = problem.problem_id
    errors: list[ErrorRecord] = []
    samples = sorted(samples, key=lambda s: s.sample_id)
    tests = sorted(resolve_probes(problem, tests, samples, run_many=run_many, cfg=cfg),
                   key=lambda t: t.test_id)

    # 1. oracle
    training = [t for t in tests if t.for_training and t.kept]
    oracle_result, unusable = None, None
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

    reference = _reference_verdict(problem, oracle_result, unusable, kept_training, round)

    # 5. minimum number of kept tests
    skip_reason = enforce_min_tests(tests, cfg.min_kept_tests)
    if skip_reason:
        errors.append(ErrorRecord(stage=Stage.EXECUTE, kind=ErrorKind.PROBLEM_SKIPPED,
                                  reason=f"too few tests: {skip_reason}", input=pid, problem_id=pid))
        return VerifiedProblem(tests=list(tests), executions=[], errors=errors, skipped=True,
                               reference=reference)
    return VerifiedProblem(tests=list(tests), executions=sorted(final, key=lambda e: e.sample_id),
                           errors=errors, reference=reference)


def _reference_verdict(problem: Problem, oracle_result: Any, unusable: str | None, kept: Sequence[str],
                       round: int) -> ReferenceVerdict | None:
    """Whether the reference passed every test kept after validation (None without a reference)."""
    if not problem.reference_solution:
        return None
    if oracle_result is None:
        detail = "the oracle did not run (validation.oracle off, or no training test)"
    elif unusable:
        detail = f"the oracle was not applied: {unusable}"
    elif not reference_passes(oracle_result, kept):
        detail = "the reference fails or never reached a kept test"
    else:
        detail = ""
    return ReferenceVerdict(problem_id=problem.problem_id, round=round, passed=not detail,
                            kept_tests=len(kept), detail=detail)
