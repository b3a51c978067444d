"""Sampling stage: batches of problems -> one engine call per batch -> Sample records.

The engine is opened once per process in ``setup`` (``get_shared_backend``), never per bundle,
and a whole batch of prompts goes to it in one ``generate`` call with ``n`` samples each.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import NamedTuple

import apache_beam as beam
from apache_beam.metrics import Metrics
from plumline.data_schemas import Problem, Stage
from plumline.llm import BackendConfig, GenerationBackend, PromptConfig, get_shared_backend
from plumline.transforms.checkpoint import MAIN, CheckpointStore, checkpointed, with_restored
from plumline.transforms.logic.sampling import SamplingConfig, engine_failure_errors, sample_batch

log = logging.getLogger(__name__)
ERRORS = "errors"


def policy_prompt_renderer(backend: GenerationBackend, prompt: PromptConfig) -> Callable[[Problem], str]:
    """Problem -> the exact prompt text the policy sees (``plumline.llm.render_prompt`` with this
    backend's chat or plain rendering). It is stored in ``Sample.prompt``: the DPO/KTO prompt column."""

    def render(problem: Problem) -> str:
        return backend.build_prompt(problem.prompt, problem.entry_point, prompt)
    return render


class _SampleBatch(beam.DoFn):
    def __init__(self, policy: BackendConfig, sampling: SamplingConfig, prompt: PromptConfig, round: int,
                 seed: int):
        self._policy, self._sampling, self._prompt = policy, sampling, prompt
        self._round, self._seed = round, seed
        self._samples = Metrics.counter("plumline", "samples")
        self._failures = Metrics.counter("plumline", "sample_errors")

    def setup(self):
        self._backend = get_shared_backend(self._policy)
        self._chat = bool(self._backend.chat)  # the config's choice, or auto from the tokenizer
        self._render = policy_prompt_renderer(self._backend, self._prompt)

    def process(self, problems: list[Problem]):
        try:
            samples, errors = sample_batch(
                problems, render=self._render, generate=self._backend.generate, cfg=self._sampling,
                round=self._round, base_seed=self._seed, policy=self._backend.model_name,
                policy_revision=self._backend.revision, backend=self._backend.name, chat=self._chat)
        except Exception as exc:  # an engine failure loses this batch only, and says so per problem
            log.exception("generation failed for a batch of %d problems", len(problems))
            for err in engine_failure_errors(problems, Stage.SAMPLE, exc):
                self._failures.inc()
                yield beam.pvalue.TaggedOutput(ERRORS, err)
            return
        self._samples.inc(len(samples))
        yield from samples
        for err in errors:
            self._failures.inc()
            yield beam.pvalue.TaggedOutput(ERRORS, err)


class SampleSolutions(beam.PTransform):
    """PCollection[Problem] -> {"samples": PCollection[Sample], "errors": PCollection[ErrorRecord]}."""

    def __init__(self, policy: BackendConfig, sampling: SamplingConfig, prompt: PromptConfig, round: int,
                 seed: int, accelerator: str | None = None, checkpoint: CheckpointStore | None = None):
        super().__init__()
        self._args = (policy, sampling, prompt, round, seed)
        self._accelerator = accelerator
        self._checkpoint = checkpoint  # problems sampled by an interrupted run are not sampled again

    def expand(self, problems):
        size = self._args[1].batch_size
        done = self._checkpoint.done_ids() if self._checkpoint else set()
        if done:
            problems = problems | "SkipSampled" >> beam.Filter(lambda p: p.problem_id not in done)
        # min == max: full batches (BatchElements otherwise starts small and grows adaptively).
        batches = problems | "Batch" >> beam.BatchElements(min_batch_size=size, max_batch_size=size)
        dofn = checkpointed(_SampleBatch(*self._args), self._checkpoint,
                            lambda batch: [p.problem_id for p in batch])
        step = beam.ParDo(dofn).with_outputs(ERRORS, main="samples")
        if self._accelerator:
            step = step.with_resource_hints(accelerator=self._accelerator)
        out = batches | "Generate" >> step
        if not done:
            return SampleOutputs(out.samples, out.errors)
        return SampleOutputs(with_restored(out.samples, self._checkpoint, MAIN, "Samples"),
                             with_restored(out.errors, self._checkpoint, ERRORS, "Errors"))


class SampleOutputs(NamedTuple):
    samples: beam.PCollection
    errors: beam.PCollection
