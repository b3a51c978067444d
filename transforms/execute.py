"""Execution stage: per problem, validate its tests and run its samples in the sandbox.

Problems, candidate tests and samples are grouped by problem id; one DoFn call verifies one
problem (``logic.verification.verify_problem``). The sandbox pool is opened once per worker
process in ``setup`` and gives the CPU parallelism inside that worker.
"""

from __future__ import annotations

import logging
import os
from typing import NamedTuple

import apache_beam as beam
from apache_beam.metrics import Metrics
from plumline.data_schemas import ErrorKind, ErrorRecord, Stage
from plumline.llm import progress
from plumline.sandbox import Sandbox
from plumline.transforms.checkpoint import MAIN, CheckpointStore, checkpointed, with_restored
from plumline.transforms.io import GroupByProblem
from plumline.transforms.logic.verification import verify_problem

log = logging.getLogger(__name__)
TESTS, ERRORS, REFERENCES = "tests", "errors", "references"


class _VerifyProblem(beam.DoFn):
    def __init__(self, limits, workers: int | None, validation, round: int):
        self._limits, self._workers, self._validation, self._round = limits, workers, validation, round
        self._executions = Metrics.counter("plumline", "executions")
        self._skipped = Metrics.counter("plumline", "problems_skipped")

    def setup(self):
        self._sandbox = Sandbox(limits=self._limits, workers=self._workers)

    def teardown(self):
        sandbox = getattr(self, "_sandbox", None)
        if sandbox is not None:
            sandbox.close()

    def process(self, element):
        # A helper generator: Beam warns on bare `return` inside process (apache/beam#22969).
        yield from self._process(element)

    def _process(self, element):
        problem_id, grouped = element
        problems = list(grouped["problems"])
        tests = list(grouped["tests"])
        samples = list(grouped["samples"])
        if not problems:
            # Samples or tests of a problem that is not in this round's problems: keep them visible.
            yield beam.pvalue.TaggedOutput(ERRORS, ErrorRecord(
                stage=Stage.EXECUTE, kind=ErrorKind.UNKNOWN_PROBLEM,
                reason="samples/tests refer to an unknown problem", input=problem_id, problem_id=problem_id))
            return
        try:
            verified = verify_problem(problems[0], tests, samples, run_many=self._sandbox.run_many,
                                      cfg=self._validation, round=self._round)
        except Exception as exc:  # one broken problem must not stop the round
            log.exception("verifying %s failed", problem_id)
            yield beam.pvalue.TaggedOutput(ERRORS, ErrorRecord(
                stage=Stage.EXECUTE, kind=ErrorKind.INTERNAL,
                reason=f"verification failed: {type(exc).__name__}: {exc}", input=problem_id,
                problem_id=problem_id))
            for t in tests:
                yield beam.pvalue.TaggedOutput(TESTS, t)
            return
        if verified.skipped:
            self._skipped.inc()
        for t in verified.tests:
            yield beam.pvalue.TaggedOutput(TESTS, t)
        for e in verified.errors:
            yield beam.pvalue.TaggedOutput(ERRORS, e)
        if verified.reference is not None:
            yield beam.pvalue.TaggedOutput(REFERENCES, verified.reference)
        self._executions.inc(len(verified.executions))
        progress.add("executions", len(verified.executions))  # the live bar (plumline.llm.progress)
        yield from verified.executions


class VerifyAndExecute(beam.PTransform):
    """(problems, candidate tests, samples) -> {"executions", "tests", "errors", "references"}
    (``references``: the reference solution's verdict per problem that has one)."""

    def __init__(self, limits, workers: int | None, validation, round: int,
                 checkpoint: CheckpointStore | None = None):
        super().__init__()
        self._args = (limits, workers, validation, round)
        self._checkpoint = checkpoint  # problems verified by an interrupted run are not run again

    def expand(self, inputs):
        problems, tests, samples = inputs
        grouped = {"problems": problems, "tests": tests, "samples": samples} | GroupByProblem()
        done = self._checkpoint.done_ids() if self._checkpoint else set()
        if done:
            grouped = grouped | "SkipVerified" >> beam.Filter(lambda kv: kv[0] not in done)
        dofn = checkpointed(_VerifyProblem(*self._args), self._checkpoint, lambda kv: [kv[0]])
        out = grouped | "Verify" >> beam.ParDo(dofn).with_outputs(TESTS, ERRORS, REFERENCES,
                                                                   main="executions")
        if not done:
            return ExecuteOutputs(out.executions, out.tests, out.errors, out.references)
        return ExecuteOutputs(*(with_restored(getattr(out, tag), self._checkpoint, saved, tag.title())
                                for tag, saved in (("executions", MAIN), (TESTS, TESTS), (ERRORS, ERRORS),
                                                   (REFERENCES, REFERENCES))))


class ExecuteOutputs(NamedTuple):
    executions: beam.PCollection
    tests: beam.PCollection
    errors: beam.PCollection
    references: beam.PCollection


def default_sandbox_workers(cpu_workers: int) -> int:
    """Split the cores between Beam's worker processes so slots do not oversubscribe them."""
    return max(1, (os.cpu_count() or 1) // max(1, cpu_workers))
