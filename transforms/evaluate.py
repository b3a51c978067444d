"""Evaluation stage: held-out problems -> the policy's completions (one engine call per batch) -> each
run against the problem's own given tests in the sandbox -> ``EvalSample`` rows.

Thin: sampling is the sample stage's ``PolicySampler`` (the same requests, seeds and code extraction;
with ``sampling.mode: critic_guided`` the guided mode, which sees only the problems' example tests,
never the given tests that score them), scoring is ``logic.evaluation``; the summary (``eval.json``)
is computed from the rows after the stage (``logic.evaluation.summarize``).
"""

from __future__ import annotations

import logging
import os

import apache_beam as beam
from apache_beam.metrics import Metrics
from plumline.data_schemas import ErrorKind, ErrorRecord, Problem, Stage, derive_seed, replace
from plumline.llm import BackendConfig, PromptConfig
from plumline.sandbox import Sandbox, SandboxLimits
from plumline.transforms.logic.evaluation import eval_row
from plumline.transforms.logic.sampling import SamplingConfig, engine_failure_errors
from plumline.transforms.sample import PolicySampler

log = logging.getLogger(__name__)
ERRORS = "errors"


def _as_eval_error(err: ErrorRecord) -> ErrorRecord:
    return replace(err, stage=Stage.EVAL.value)


class _Generate(beam.DoFn):
    """A batch of problems -> (problem, [Sample]) per problem, with ONE engine call."""

    def __init__(self, policy: BackendConfig, sampling: SamplingConfig, prompt: PromptConfig, round: int,
                 seed: int, limits: SandboxLimits | None = None, workers: int | None = None):
        self._policy, self._sampling, self._prompt, self._round = policy, sampling, prompt, round
        self._limits, self._workers = limits, workers  # the example tests of critic-guided sampling
        self._seed = derive_seed(seed, Stage.EVAL.value)
        self._failures = Metrics.counter("plumline", "eval_sample_errors")

    def setup(self):
        self._sampler = PolicySampler(self._policy, self._sampling, self._prompt, self._limits, self._workers)

    def teardown(self):
        sampler = getattr(self, "_sampler", None)
        if sampler is not None:
            sampler.close()

    def process(self, problems: list[Problem]):
        try:
            samples, errors = self._sampler.sample(problems, round=self._round, base_seed=self._seed)
        except Exception as exc:  # an engine failure loses this batch only, and says so per problem
            log.exception("generation failed for a batch of %d eval problems", len(problems))
            for err in engine_failure_errors(problems, Stage.EVAL, exc):
                self._failures.inc()
                yield beam.pvalue.TaggedOutput(ERRORS, err)
            return
        for err in errors:
            yield beam.pvalue.TaggedOutput(ERRORS, _as_eval_error(err))
        by_problem: dict[str, list] = {}
        for s in samples:
            by_problem.setdefault(s.problem_id, []).append(s)
        for p in problems:
            if by_problem.get(p.problem_id):
                yield p, by_problem[p.problem_id]


class _Score(beam.DoFn):
    """(problem, samples) -> one EvalSample per sample, every program run against the given tests."""

    def __init__(self, limits: SandboxLimits, workers: int | None):
        self._limits, self._workers = limits, workers
        self._rows = Metrics.counter("plumline", "eval_samples")

    def setup(self):
        self._sandbox = Sandbox(limits=self._limits, workers=self._workers or os.cpu_count() or 1)

    def teardown(self):
        sandbox = getattr(self, "_sandbox", None)
        if sandbox is not None:
            sandbox.close()

    def process(self, element):
        problem, samples = element
        samples = sorted(samples, key=lambda s: (s.is_greedy, s.sample_index))
        with_code = [s for s in samples if s.code]
        tests = list(problem.given_tests)
        try:
            results = self._sandbox.run_many(
                [(s.code, tests, problem.entry_point or None) for s in with_code]) if with_code else []
        except Exception as exc:  # one broken problem must not stop the evaluation
            log.exception("scoring eval problem %s failed", problem.problem_id)
            yield beam.pvalue.TaggedOutput(ERRORS, ErrorRecord(
                stage=Stage.EVAL, kind=ErrorKind.INTERNAL,
                reason=f"scoring failed: {type(exc).__name__}: {exc}", input=problem.problem_id,
                problem_id=problem.problem_id))
            return
        by_id = {s.sample_id: r for s, r in zip(with_code, results)}
        for s in samples:
            self._rows.inc()
            yield replace(eval_row(problem, s, by_id.get(s.sample_id)), origin=s.origin)


def _route_untested(problem: Problem):
    if problem.given_tests:
        yield problem
    else:
        yield beam.pvalue.TaggedOutput(ERRORS, ErrorRecord(
            stage=Stage.EVAL, kind=ErrorKind.NO_EVAL_TESTS,
            reason="eval problem has no tests of its own (given_tests): not scored",
            input=problem.problem_id, problem_id=problem.problem_id))


class EvaluatePolicy(beam.PTransform):
    """PCollection[Problem] -> {"eval_samples": PCollection[EvalSample], "errors": ...}."""

    def __init__(self, policy: BackendConfig, sampling: SamplingConfig, prompt: PromptConfig, round: int,
                 seed: int, limits: SandboxLimits, workers: int | None = None,
                 accelerator: str | None = None):
        super().__init__()
        self._gen = (policy, sampling, prompt, round, seed)
        self._score = (limits, workers)
        self._accelerator = accelerator

    def expand(self, problems):
        routed = problems | "NeedTests" >> beam.FlatMap(_route_untested).with_outputs(ERRORS, main="tested")
        size = self._gen[1].batch_size
        batches = routed.tested | "Batch" >> beam.BatchElements(min_batch_size=size, max_batch_size=size)
        step = beam.ParDo(_Generate(*self._gen, *self._score)).with_outputs(ERRORS, main="generated")
        if self._accelerator:
            step = step.with_resource_hints(accelerator=self._accelerator)
        generated = batches | "Generate" >> step
        scored = generated.generated | "Score" >> beam.ParDo(_Score(*self._score)).with_outputs(
            ERRORS, main="eval_samples")
        errors = ((routed[ERRORS], generated[ERRORS], scored[ERRORS])
                  | "EvalErrors" >> beam.Flatten())
        return {"eval_samples": scored.eval_samples, ERRORS: errors}


__all__ = ["EvaluatePolicy"]
