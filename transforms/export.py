"""Export stage: per problem, its samples and executions -> DPO pairs, KTO rows, critic rows."""

from __future__ import annotations

import logging

import apache_beam as beam
from apache_beam.metrics import Metrics
from plumline.data_schemas import ErrorRecord, Message
from plumline.transforms.io import GroupByProblem
from plumline.transforms.logic.pairing import PairingConfig, pair_problem
from plumline.transforms.logic.sampling import user_message

log = logging.getLogger(__name__)
KTO, CRITIC, STATS, ERRORS = "kto", "critic", "stats", "errors"


def conversational_prompt(problem, instruction: str, system_prompt: str | None) -> list[Message]:
    msgs = [Message(role="system", content=system_prompt)] if system_prompt else []
    msgs.append(Message(role="user", content=user_message(problem, instruction)))
    return msgs


class _BuildRows(beam.DoFn):
    def __init__(self, pairing: PairingConfig, instruction: str, system_prompt: str | None, round: int,
                 kto: bool, critic: bool):
        self._pairing, self._instruction, self._system = pairing, instruction, system_prompt
        self._round, self._kto, self._critic = round, kto, critic
        self._pairs = Metrics.counter("plumline", "dpo_pairs")

    def process(self, element):
        # A helper generator: Beam warns on bare `return` inside process (apache/beam#22969).
        yield from self._process(element)

    def _process(self, element):
        problem_id, grouped = element
        problems = list(grouped["problems"])
        executions = {e.sample_id: e for e in grouped["executions"]}
        samples = sorted(grouped["samples"], key=lambda s: s.sample_id)
        if not problems:
            return
        problem = problems[0]
        scored = [(s, executions[s.sample_id]) for s in samples if s.sample_id in executions]
        if not scored:
            return  # skipped problem (reason already in errors.jsonl) or no samples
        try:
            if self._pairing.format == "conversational":
                prompt = conversational_prompt(problem, self._instruction, self._system)
            else:
                prompt = scored[0][0].prompt  # the exact text the policy saw: on-policy
            result = pair_problem(problem_id, prompt, scored, self._pairing, self._round)
        except Exception as exc:  # one broken problem must not stop the export
            log.exception("building rows for %s failed", problem_id)
            yield beam.pvalue.TaggedOutput(ERRORS, ErrorRecord(
                stage="export", reason=f"{type(exc).__name__}: {exc}", input=problem_id, problem_id=problem_id))
            return
        self._pairs.inc(len(result.dpo))
        yield from result.dpo
        if self._kto:
            for row in result.kto:
                yield beam.pvalue.TaggedOutput(KTO, row)
        if self._critic:
            for row in result.critic:
                yield beam.pvalue.TaggedOutput(CRITIC, row)
        for err in result.errors:
            yield beam.pvalue.TaggedOutput(ERRORS, err)
        yield beam.pvalue.TaggedOutput(STATS, {"problem_id": problem_id, **result.stats})


class BuildTrainingRows(beam.PTransform):
    """(problems, samples, executions) -> {"dpo", "kto", "critic", "stats", "errors"}."""

    def __init__(self, pairing: PairingConfig, instruction: str, system_prompt: str | None, round: int,
                 kto: bool = True, critic: bool = True):
        super().__init__()
        self._args = (pairing, instruction, system_prompt, round, kto, critic)

    def expand(self, inputs):
        problems, samples, executions = inputs
        grouped = {"problems": problems, "samples": samples, "executions": executions} | GroupByProblem()
        return (grouped
                | "Rows" >> beam.ParDo(_BuildRows(*self._args)).with_outputs(
                    KTO, CRITIC, STATS, ERRORS, main="dpo"))
