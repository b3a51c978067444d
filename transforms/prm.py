"""PRM labelling stage: (problems, kept tests, samples, executions) -> step labels (``prm.parquet``).

Thin: per problem, ``logic.prm.select_candidates`` picks the programs; all candidates meet in one
place (``plan_batches``: the ``prm.max_programs`` cap, batches of ``prm.batch_size``) so that each
batch is searched together by ``logic.prm.label_programs``, with ONE engine call and one sandbox batch
per probe level across its programs. The engine is the shared one of the round (opened once per
process in ``setup``, as the sample stage does); the sandbox pool gives the CPU parallelism.
"""

from __future__ import annotations

import logging
import os
from typing import NamedTuple

import apache_beam as beam
from apache_beam.metrics import Metrics
from plumline.data_schemas import ErrorKind, ErrorRecord, Stage
from plumline.llm import BackendConfig, get_shared_backend, progress
from plumline.sandbox import Sandbox, SandboxLimits
from plumline.transforms.checkpoint import MAIN, CheckpointStore, checkpointed, with_restored
from plumline.transforms.io import GroupByProblem
from plumline.transforms.logic.prm import PrmConfig, label_programs, plan_batches, select_candidates
from plumline.transforms.logic.sampling import SamplingConfig

log = logging.getLogger(__name__)
ERRORS, STATS = "errors", "stats"


def _select(element, select: str):
    _, grouped = element
    problems = list(grouped["problems"])
    if not problems:
        return  # samples of an unknown problem: the execute stage reports them
    candidates, stats = select_candidates(problems[0], list(grouped["tests"]), list(grouped["samples"]),
                                          list(grouped["executions"]), select)  # type: ignore[arg-type]
    if stats.failing or stats.passing:
        yield beam.pvalue.TaggedOutput(STATS, stats)
    yield from candidates


def _plan(candidates, cfg: PrmConfig, done: frozenset[str] = frozenset()):
    batches, stats = plan_batches(candidates, cfg.max_programs, cfg.batch_size)
    # the live bar: programs to label, those an interrupted run labelled already counted as done
    progress.add(progress.PRM_PROGRAMS_TOTAL, sum(len(b) for b in batches))
    progress.add(progress.PRM_PROGRAMS, sum(len(b) for b in batches if set(_batch_ids(b)) <= done))
    yield beam.pvalue.TaggedOutput(STATS, stats)
    yield from batches


def _batch_ids(batch) -> list[str]:
    return [c.sample.sample_id for c in batch]


class _LabelBatch(beam.DoFn):
    """A batch of candidates -> PrmRow records (main), error lines and the batch's PrmStats."""

    def __init__(self, cfg: PrmConfig, sampling: SamplingConfig, policy: BackendConfig, seed: int,
                 limits: SandboxLimits, workers: int | None):
        self._params = cfg.continuation(sampling)
        self._policy, self._seed, self._limits, self._workers = policy, seed, limits, workers
        self._rows = Metrics.counter("plumline", "prm_rows")

    def setup(self):
        self._backend = get_shared_backend(self._policy)
        self._sandbox = Sandbox(limits=self._limits, workers=self._workers or os.cpu_count() or 1)

    def teardown(self):
        sandbox = getattr(self, "_sandbox", None)
        if sandbox is not None:
            sandbox.close()

    def process(self, batch):
        progress.add(progress.PRM_BATCHES, 1)
        try:
            yield from self._label(batch)
        finally:
            progress.add(progress.PRM_PROGRAMS, len(batch))  # labelled, or each with its reason why not

    def _generate(self, requests):
        results = self._backend.generate(requests)
        progress.add(progress.PRM_COMPLETIONS, sum(len(r.completions) for r in results))
        return results

    def _label(self, batch):
        if getattr(self._backend, "endpoint", None) == "chat":  # the config check names the field
            for c in batch:
                yield beam.pvalue.TaggedOutput(ERRORS, ErrorRecord(
                    stage=Stage.PRM, kind=ErrorKind.NOT_LABELLED, input=c.sample.sample_id,
                    reason="the policy is served on a chat endpoint, which cannot continue a partial answer",
                    problem_id=c.problem.problem_id, sample_id=c.sample.sample_id))
            return

        def run_many(jobs):
            results = self._sandbox.run_many(jobs)
            progress.add("executions", len(jobs))
            return results

        try:
            out = label_programs(batch, generate=self._generate, run_many=run_many,
                                 params=self._params, base_seed=self._seed, chat=bool(self._backend.chat))
        except Exception as exc:  # a bug must not lose the round: this batch's programs say so
            log.exception("labelling a batch of %d programs failed", len(batch))
            for c in batch:
                yield beam.pvalue.TaggedOutput(ERRORS, ErrorRecord(
                    stage=Stage.PRM, kind=ErrorKind.INTERNAL, reason=f"{type(exc).__name__}: {exc}",
                    input=c.sample.sample_id, problem_id=c.problem.problem_id, sample_id=c.sample.sample_id))
            return
        log.info("prm: %d programs, %d rows, %d probe levels, %d completions, %d executions in %.1f s",
                 out.stats.programs, out.stats.rows, out.stats.probe_levels, out.stats.completions,
                 out.stats.executions, out.stats.duration_s)
        self._rows.inc(len(out.rows))
        yield from out.rows
        for err in out.errors:
            yield beam.pvalue.TaggedOutput(ERRORS, err)
        yield beam.pvalue.TaggedOutput(STATS, out.stats)


class LabelSteps(beam.PTransform):
    """(problems, tests, samples, executions) -> PrmOutputs(rows, stats, errors)."""

    def __init__(self, cfg: PrmConfig, sampling: SamplingConfig, policy: BackendConfig, seed: int,
                 limits: SandboxLimits, workers: int | None = None, accelerator: str | None = None,
                 checkpoint: CheckpointStore | None = None):
        super().__init__()
        self._cfg = cfg
        self._label = (cfg, sampling, policy, seed, limits, workers)
        self._accelerator = accelerator
        self._checkpoint = checkpoint  # batches labelled by an interrupted run are not labelled again

    def expand(self, inputs):
        problems, tests, samples, executions = inputs
        grouped = ({"problems": problems, "tests": tests, "samples": samples, "executions": executions}
                   | GroupByProblem())
        selected = grouped | "Select" >> beam.FlatMap(_select, self._cfg.select).with_outputs(
            STATS, main="candidates")
        done = self._checkpoint.done_ids() if self._checkpoint else set()
        planned = (selected.candidates | "AllCandidates" >> beam.combiners.ToList()
                   | "Plan" >> beam.FlatMap(_plan, self._cfg, frozenset(done)).with_outputs(
                       STATS, main="batches"))
        batches = planned.batches
        if done:
            batches = batches | "SkipLabelled" >> beam.Filter(lambda b: not set(_batch_ids(b)) <= done)
        dofn = checkpointed(_LabelBatch(*self._label), self._checkpoint, _batch_ids)
        step = beam.ParDo(dofn).with_outputs(ERRORS, STATS, main="rows")
        if self._accelerator:
            step = step.with_resource_hints(accelerator=self._accelerator)
        out = batches | "Label" >> step
        rows, errors, label_stats = out.rows, out[ERRORS], out[STATS]
        if done:
            rows = with_restored(rows, self._checkpoint, MAIN, "Rows")
            errors = with_restored(errors, self._checkpoint, ERRORS, "Errors")
            label_stats = with_restored(label_stats, self._checkpoint, STATS, "LabelStats")  # not AllStats
        stats = (selected[STATS], planned[STATS], label_stats) | "AllStats" >> beam.Flatten()
        return PrmOutputs(rows, stats, errors)


class PrmOutputs(NamedTuple):
    rows: beam.PCollection
    stats: beam.PCollection
    errors: beam.PCollection


__all__ = ["LabelSteps", "PrmOutputs"]
