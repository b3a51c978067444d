"""Decontamination (part of the read stage): training problems that overlap the held-out eval
problems, by problem id or by normalized prompt text (``logic.evaluation.overlap_reason``), are
removed and each becomes an error line of kind ``contaminated`` (counted in the manifest)."""

from __future__ import annotations

import logging

import apache_beam as beam
from apache_beam.metrics import Metrics
from plumline.data_schemas import ErrorKind, ErrorRecord, Problem, Stage
from plumline.transforms.logic.evaluation import contamination_keys, overlap_reason

log = logging.getLogger(__name__)
ERRORS = "errors"


class _Filter(beam.DoFn):
    def __init__(self):
        self._removed = Metrics.counter("plumline", "contaminated")

    def process(self, problem: Problem, eval_keys: dict[str, str]):
        why = overlap_reason(problem, eval_keys)
        if why is None:
            yield problem
            return
        self._removed.inc()
        log.warning("training problem %s removed: it overlaps the eval sources (%s)", problem.problem_id, why)
        yield beam.pvalue.TaggedOutput(ERRORS, ErrorRecord(
            stage=Stage.READ, kind=ErrorKind.CONTAMINATED,
            reason=f"removed from training: {why}", input=problem.problem_id,
            problem_id=problem.problem_id, detail=problem.prompt[:200]))


class Decontaminate(beam.PTransform):
    """(training problems, eval problems) -> {"problems": the clean ones, "errors": one per removed}."""

    def expand(self, inputs):
        problems, eval_problems = inputs
        keys = (eval_problems
                | "EvalKeys" >> beam.FlatMap(lambda p: [(k, p.problem_id) for k in contamination_keys(p)])
                | "AllKeys" >> beam.combiners.ToList()
                | "AsDict" >> beam.Map(dict))
        out = problems | "DropOverlap" >> beam.ParDo(_Filter(), beam.pvalue.AsSingleton(keys)).with_outputs(
            ERRORS, main="problems")
        return {"problems": out.problems, ERRORS: out[ERRORS]}


__all__ = ["Decontaminate"]
