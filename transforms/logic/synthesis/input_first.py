"""Input-first tests of a batch of problems (``tests.mode: inputs``): the model's inputs and the
examples' inputs are the seeds, type-aware mutation multiplies them up to a cap, the reference solution
(run in the sandbox, ONE ``run_many`` call for the whole batch) gives the expected outputs, and the
suite is reduced to the tests that kill the reference's mutants (a second ``run_many`` call).

Problems without a reference solution (``tests.agreement_inputs``) get their inputs as *probe* rows
(kind ``probe``: the call only): the execute stage runs the policy's samples on them and turns a probe
into an assert when enough samples agree on its output (``verification.resolve_probes``), as in
CodeT/rStar-Coder. Without agreement they keep their example and given tests only.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from plumline.data_schemas import Problem, TestCase, TestDropReason, TestKind, TestOrigin, derive_seed
from plumline.transforms.logic.mutants import generate_mutants
from plumline.transforms.logic.synthesis.checks import check_test, normalize_test
from plumline.transforms.logic.synthesis.config import TestSynthesisConfig
from plumline.transforms.logic.synthesis.expected import (
    PROBES_PER_JOB,
    expected_assert,
    kill_matrix,
    probe_specs,
    read_probe_results,
    reduce_suite,
)
from plumline.transforms.logic.synthesis.inputs import (
    Args,
    ParsedInputs,
    arity,
    call_source,
    example_inputs,
    input_key,
    parse_inputs_reply,
)
from plumline.transforms.logic.synthesis.mutation import mutate_inputs
from plumline.transforms.logic.synthesis.parser import REPLY_DROPS, DroppedTest
from plumline.transforms.logic.synthesis.rows import (
    ProblemTests,
    example_test_cases,
    given_test_cases,
    problem_test_stats,
)

logger = logging.getLogger(__name__)
RunMany = Callable[[Sequence[tuple[str, Sequence[Any], str | None]]], list[Any]]
MUTATION_WRITER = "type_mutation"
_DETAIL_MAX = 300


@dataclass
class _Plan:
    """One problem's inputs on their way to tests."""

    problem: Problem
    given: list[TestCase]
    examples: list[TestCase]
    parsed: ParsedInputs
    replies: int
    inputs: list[Args] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)  # "model" or "mutation", per input
    job_span: tuple[int, int] = (0, 0)  # its probe jobs in the batch's run_many call
    candidates: list[tuple[TestCase, str]] = field(default_factory=list)  # (row, source)
    dropped_rows: list[TestCase] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)  # drops without a row, by reason value


def _row(pid: str, code: str, writer: str, reason: TestDropReason | None = None,
         detail: str = "", kind: str = TestKind.ASSERT.value) -> TestCase:
    origin = TestOrigin.SYNTHESIZED.value
    return TestCase(test_id=TestCase.make_id(pid, origin, kind, code), problem_id=pid, kind=kind, code=code,
                    origin=origin, kept=reason is None, drop_reason=reason, drop_detail=detail[:_DETAIL_MAX],
                    for_training=True, writer=writer)


def _plan(problem: Problem, replies: Sequence[str] | None, cfg: TestSynthesisConfig, seed: int,
          can_run: bool) -> _Plan:
    given = given_test_cases(problem, cfg.given_tests_role)
    examples = example_test_cases(problem, cfg.use_examples and bool(problem.entry_point))
    ep = problem.entry_point
    ar = arity(problem) if ep else None
    parsed = ParsedInputs()
    seen: set[str] = set()
    seeds = example_inputs(problem, [t.code for t in examples]) if ep else []
    for s in seeds:
        seen.add(input_key(s))
    for reply in replies or []:
        one = parse_inputs_reply(reply, ep, ar, max_chars=cfg.max_input_chars, seen=seen)
        parsed.kept += one.kept
        parsed.dropped += one.dropped
    plan = _Plan(problem, given, examples, parsed, len(replies or []))
    if not (ep and wants_inputs(problem, cfg, can_run)):
        return plan
    model = parsed.kept[:cfg.max_inputs_per_problem]
    for args in parsed.kept[cfg.max_inputs_per_problem:]:
        parsed.dropped.append(DroppedTest(call_source(ep, args), TestDropReason.OVER_LIMIT,
                                          f"more than {cfg.max_inputs_per_problem} inputs"))
    cap = cfg.max_inputs_per_problem + len(seeds)
    pool = mutate_inputs([*seeds, *model], cap, derive_seed(seed, "tests", "mutation", problem.problem_id),
                         max_chars=cfg.max_input_chars) if cfg.mutate else [*seeds, *model]
    model_keys = {input_key(a) for a in model}
    seed_keys = {input_key(a) for a in seeds}
    for args in pool:
        key = input_key(args)
        if key in seed_keys:
            continue  # the example tests already check these inputs
        plan.inputs.append(args)
        plan.sources.append("model" if key in model_keys else "mutation")
    return plan


def wants_inputs(problem: Problem, cfg: TestSynthesisConfig, can_run: bool) -> bool:
    """Whether input-first tests can be made for the problem: its reference gives expected outputs
    (when the sandbox is there to run it), or the policy's samples will, by agreement."""
    if not problem.entry_point:
        return False
    return bool(problem.reference_solution and can_run) or (not problem.reference_solution
                                                            and cfg.agreement_inputs)


def input_first_batch(problems: Sequence[Problem], replies: dict[int, list[str]], cfg: TestSynthesisConfig, *,
                      seed: int, run_many: RunMany | None, writer: str = "",
                      failures: dict[int, str] | None = None) -> list[ProblemTests]:
    """Tests of a batch of problems from the writer's replies (``replies[i]``: the texts for
    ``problems[i]``, a plain prompt's prefix already prepended). ``run_many`` is the sandbox's
    (None: no expected outputs can be computed, so only example and given tests)."""
    failures = failures or {}
    plans = [_plan(p, replies.get(i), cfg, seed, run_many is not None) for i, p in enumerate(problems)]
    # 1. expected outputs: every problem's probes in one run_many call
    jobs: list[tuple[str, list, str | None]] = []
    for plan in plans:
        start = len(jobs)
        if not plan.problem.reference_solution:
            _write_probes(plan, writer)
            plan.job_span = (start, start)
            continue
        specs = probe_specs(plan.problem.entry_point, plan.inputs)
        for k in range(0, len(specs), PROBES_PER_JOB):
            jobs.append((plan.problem.reference_solution or "", specs[k:k + PROBES_PER_JOB],
                         plan.problem.entry_point))
        plan.job_span = (start, len(jobs))
    results = list(run_many(jobs)) if jobs and run_many is not None else []
    for plan in plans:
        if plan.problem.reference_solution:
            _write_asserts(plan, results[plan.job_span[0]:plan.job_span[1]], cfg, writer)
    # 2. suite reduction against the reference's mutants: one more run_many call
    if cfg.reduce and run_many is not None:
        _reduce(plans, cfg, run_many)
    out = []
    for i, plan in enumerate(plans):
        out.append(_finish(plan, writer, failures.get(i)))
    return out


def _write_probes(plan: _Plan, writer: str) -> None:
    """No reference: each input becomes a probe row (the call only), resolved in execute."""
    pid, ep = plan.problem.problem_id, plan.problem.entry_point
    for args, source in zip(plan.inputs, plan.sources):
        who = writer if source == "model" else MUTATION_WRITER
        plan.candidates.append((_row(pid, call_source(ep, args), who, kind=TestKind.PROBE.value), source))


def _write_asserts(plan: _Plan, results: Sequence[Any], cfg: TestSynthesisConfig, writer: str) -> None:
    pid, ep = plan.problem.problem_id, plan.problem.entry_point
    outcomes = read_probe_results(results, len(plan.inputs))
    seen = {normalize_test(t.code) for t in plan.given + plan.examples if t.kind == TestKind.ASSERT.value}
    for args, source, got in zip(plan.inputs, plan.sources, outcomes):
        who = writer if source == "model" else MUTATION_WRITER
        if not got.ok:
            reason = got.reason or TestDropReason.ORACLE_ERROR
            if source == "model":  # the model's own inputs keep a row, so they can be looked at
                plan.dropped_rows.append(_row(pid, call_source(ep, args), who, reason, got.detail))
            else:
                plan.counts[reason.value] += 1
            continue
        reason, code, _ = check_test(expected_assert(ep, args, got.value), ep, cfg.max_test_chars)
        if reason is None and normalize_test(code) in seen:
            reason = TestDropReason.DUPLICATE  # same as an example or given test
        if reason is not None:
            plan.counts[reason.value] += 1
            continue
        seen.add(normalize_test(code))
        plan.candidates.append((_row(pid, code, who), source))


def _reduce(plans: Sequence[_Plan], cfg: TestSynthesisConfig, run_many: RunMany) -> None:
    jobs: list[tuple[str, list, str | None]] = []
    spans: list[tuple[int, int]] = []
    for plan in plans:
        start = len(jobs)
        tests = [t for t, _ in plan.candidates]
        if plan.problem.reference_solution and len(tests) > cfg.reduce_min_tests:
            specs = [t.spec for t in plan.examples + tests if t.kind == TestKind.ASSERT.value]
            for m in generate_mutants(plan.problem.reference_solution or "", cfg.reduce_mutants,
                                      only_function=plan.problem.entry_point):
                jobs.append((m.code, specs, plan.problem.entry_point))
        spans.append((start, len(jobs)))
    if not jobs:
        return
    results = list(run_many(jobs))
    for plan, (a, b) in zip(plans, spans):
        if a == b:
            continue
        ids = [t.test_id for t, _ in plan.candidates]
        example_ids = [t.test_id for t in plan.examples]
        kills = kill_matrix(ids + example_ids, results[a:b])
        by_examples = set().union(*(kills[t] for t in example_ids)) if example_ids else set()
        # model inputs first: on ties they are preferred over mutations
        order = [t.test_id for t, s in plan.candidates if s == "model"] + \
                [t.test_id for t, s in plan.candidates if s != "model"]
        keep = set(reduce_suite(order, kills, min_tests=cfg.reduce_min_tests, already_killed=by_examples))
        plan.counts[TestDropReason.REDUNDANT.value] += sum(t.test_id not in keep for t, _ in plan.candidates)
        plan.candidates = [(t, s) for t, s in plan.candidates if t.test_id in keep]


def _finish(plan: _Plan, writer: str, failure: str | None) -> ProblemTests:
    pid = plan.problem.problem_id
    counts = Counter(plan.counts)
    if failure is not None:
        counts[TestDropReason.GENERATION_FAILED.value] += 1
    rows: dict[str, TestCase] = {}
    for t, _ in plan.candidates:
        rows.setdefault(t.test_id, t)
    for d in plan.parsed.dropped:
        if d.reason in REPLY_DROPS or d.reason == TestDropReason.DUPLICATE:
            counts[d.reason.value] += 1
            continue
        t = _row(pid, d.code or f"# {d.reason.value}", writer, d.reason, d.detail)
        rows.setdefault(t.test_id, t)
    for t in plan.dropped_rows:
        rows.setdefault(t.test_id, t)
    synthesized = list(rows.values())
    tests = plan.given + plan.examples + synthesized
    duplicates = counts.pop(TestDropReason.DUPLICATE.value, 0)
    stats = problem_test_stats(pid, tests, duplicates=duplicates, replies=plan.replies, reply_drops=counts)
    return ProblemTests(tests=tests, stats=stats)
