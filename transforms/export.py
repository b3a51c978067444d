"""Export stage: per problem, its samples and executions -> DPO pairs, KTO rows, critic rows, stats."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import apache_beam as beam
from apache_beam.metrics import Metrics
from plumline.data_schemas import ErrorKind, ErrorRecord, Stage
from plumline.llm import PromptConfig
from plumline.transforms.io import GroupByProblem
from plumline.transforms.logic.pairing import (
    CriticRowsConfig,
    ExportFormat,
    KtoRowsConfig,
    PairingConfig,
    export_prompt,
    pair_problem,
)

if TYPE_CHECKING:
    from plumline.pipeline.config import RunConfig

log = logging.getLogger(__name__)
KTO, CRITIC, STATS, ERRORS = "kto", "critic", "pair_stats", "errors"


@dataclass(frozen=True)
class RowSettings:
    """The config sections the export stage reads (``dpo.pairs``, ``kto.rows``, ``critic.rows``,
    ``export.format``, ``prompt``, ``seed``)."""

    pairs: PairingConfig
    kto: KtoRowsConfig
    critic: CriticRowsConfig
    format: ExportFormat
    prompt: PromptConfig
    seed: int

    @classmethod
    def from_config(cls, cfg: RunConfig) -> RowSettings:
        return cls(pairs=cfg.dpo.pairs, kto=cfg.kto.rows, critic=cfg.critic.rows, format=cfg.export.format,
                   prompt=cfg.prompt, seed=cfg.seed)


class _BuildRows(beam.DoFn):
    def __init__(self, settings: RowSettings, round: int):
        self._s, self._round = settings, round
        self._pairs = Metrics.counter("plumline", "dpo_pairs")

    def process(self, element):
        # A helper generator: Beam warns on bare `return` inside process (apache/beam#22969).
        yield from self._process(element)

    def _process(self, element):
        problem_id, grouped = element
        problems = list(grouped["problems"])
        executions = {e.sample_id: e for e in grouped["executions"]}
        # the reference joins the critic rows only when the oracle saw it pass every kept test
        passed = any(v.passed for v in grouped.get("references", ()))
        samples = sorted(grouped["samples"], key=lambda s: s.sample_id)
        if not problems:
            return
        scored = [(s, executions[s.sample_id]) for s in samples if s.sample_id in executions]
        if not scored:
            return  # skipped problem (reason already in errors.jsonl) or no samples
        s = self._s
        try:
            result = pair_problem(problem_id, export_prompt(problems[0], s.format, s.prompt), scored,
                                  pairs=s.pairs, kto=s.kto, critic=s.critic, format=s.format, seed=s.seed,
                                  round=self._round,
                                  reference=problems[0].reference_solution if passed else None)
        except Exception as exc:  # one broken problem must not stop the export
            log.exception("building rows for %s failed", problem_id)
            yield beam.pvalue.TaggedOutput(ERRORS, ErrorRecord(
                stage=Stage.EXPORT, kind=ErrorKind.INTERNAL, reason=f"{type(exc).__name__}: {exc}",
                input=problem_id, problem_id=problem_id))
            return
        self._pairs.inc(len(result.dpo))
        yield from result.dpo
        for row in result.kto:
            yield beam.pvalue.TaggedOutput(KTO, row)
        for row in result.critic:
            yield beam.pvalue.TaggedOutput(CRITIC, row)
        for err in result.errors:
            yield beam.pvalue.TaggedOutput(ERRORS, err)
        yield beam.pvalue.TaggedOutput(STATS, result.stats)


class BuildTrainingRows(beam.PTransform):
    """(problems, samples, executions[, reference verdicts]) -> {"dpo", "kto", "critic", "pair_stats",
    "errors"}.

    ``settings``: a ``RowSettings`` or the run config (its export sections are taken)."""

    def __init__(self, settings: RowSettings | RunConfig, round: int):
        super().__init__()
        self._settings = settings if isinstance(settings, RowSettings) else RowSettings.from_config(settings)
        self._round = round

    def expand(self, inputs):
        problems, samples, executions, *references = inputs
        named = {"problems": problems, "samples": samples, "executions": executions}
        if references:
            named["references"] = references[0]
        grouped = named | GroupByProblem()
        return (grouped
                | "Rows" >> beam.ParDo(_BuildRows(self._settings, self._round)).with_outputs(
                    KTO, CRITIC, STATS, ERRORS, main="dpo"))
