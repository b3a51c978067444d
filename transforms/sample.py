"""Sampling stage: batches of problems -> one engine call per batch -> Sample records.

The engine is opened once per process in ``setup`` (``get_shared_backend``), never per bundle,
and a whole batch of prompts goes to it in one ``generate`` call with ``n`` samples each.
With ``sampling.mode: critic_guided`` (``logic.guided``), ``setup`` also opens a sandbox pool (the
example tests) and the critic, and a batch costs one more engine call per refine/repair round.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable
from typing import NamedTuple

import apache_beam as beam
from apache_beam.metrics import Metrics
from plumline.data_schemas import ErrorRecord, Problem, Sample, Stage
from plumline.llm import BackendConfig, GenerationBackend, PromptConfig, get_shared_backend
from plumline.llm.prompting import prompt_messages
from plumline.sandbox import Sandbox, SandboxLimits
from plumline.transforms.checkpoint import MAIN, CheckpointStore, checkpointed, with_restored
from plumline.transforms.logic.guided import guided_sample_batch
from plumline.transforms.logic.sampling import (
    SamplingConfig,
    engine_failure_errors,
    generate_to_code_end,
    sample_batch,
)

log = logging.getLogger(__name__)
ERRORS = "errors"


def policy_prompt_renderer(backend: GenerationBackend, prompt: PromptConfig) -> Callable[[Problem], str]:
    """Problem -> the exact prompt text the policy sees (``plumline.llm.render_prompt`` with this
    backend's chat or plain rendering). It is stored in ``Sample.prompt``: the DPO/KTO prompt column."""

    def render(problem: Problem) -> str:
        return backend.build_prompt(problem.prompt, problem.entry_point, prompt)
    return render


class PolicySampler:
    """What a sampling DoFn holds, opened in its ``setup``: the policy's engine (shared per process) and,
    with ``sampling.mode: critic_guided``, a sandbox pool for the example tests and the critic. ``sample``
    draws a batch in the configured mode; ``close`` frees the sandbox and the critic (not the engine)."""

    def __init__(self, policy: BackendConfig, sampling: SamplingConfig, prompt: PromptConfig,
                 limits: SandboxLimits | None = None, workers: int | None = None):
        self.cfg, self.prompt = sampling, prompt
        self.backend = get_shared_backend(policy)
        self.chat = bool(self.backend.chat)  # the config's choice, or auto from the tokenizer
        self.render = policy_prompt_renderer(self.backend, prompt)
        self.sandbox: Sandbox | None = None
        self.critic = None
        if sampling.mode == "critic_guided":
            from plumline.trainers.critic import CriticScorer

            self.sandbox = Sandbox(limits=limits or SandboxLimits(), workers=workers or os.cpu_count() or 1)
            self.critic = CriticScorer(sampling.guided.critic or "")

    def sample(self, problems: list[Problem], *, round: int, base_seed: int
               ) -> tuple[list[Sample], list[ErrorRecord]]:
        b = self.backend
        common: dict = {"render": self.render, "generate": b.generate, "cfg": self.cfg, "round": round,
                        "base_seed": base_seed, "policy": b.model_name, "policy_revision": b.revision,
                        "backend": b.name, "chat": self.chat}
        if self.sandbox is None or self.critic is None:
            if self.cfg.stop_after_code and b.reports_stop_string:
                common["generate"] = functools.partial(generate_to_code_end, b.generate)
            return sample_batch(problems, **common)
        # Critic-guided sampling continues programs from prompts that end inside a code block, where a
        # fence line closes rather than opens: it generates without the code stop.
        out = guided_sample_batch(
            problems, messages=lambda p: prompt_messages(self.prompt, p.prompt, p.entry_point),
            render_chat=b.render_chat, run_many=self.sandbox.run_many, score=self.critic.scores, **common)
        log.info("critic-guided sampling: %s", out.stats)
        return out.samples, out.errors

    def close(self) -> None:
        if self.sandbox is not None:
            self.sandbox.close()
            self.sandbox = None
        self.critic = None


class _SampleBatch(beam.DoFn):
    def __init__(self, policy: BackendConfig, sampling: SamplingConfig, prompt: PromptConfig, round: int,
                 seed: int, limits: SandboxLimits | None = None, workers: int | None = None):
        self._policy, self._sampling, self._prompt = policy, sampling, prompt
        self._round, self._seed = round, seed
        self._limits, self._workers = limits, workers
        self._samples = Metrics.counter("plumline", "samples")
        self._failures = Metrics.counter("plumline", "sample_errors")

    def setup(self):
        self._sampler = PolicySampler(self._policy, self._sampling, self._prompt, self._limits, self._workers)
        self._render = self._sampler.render  # the policy prompt of a problem

    def teardown(self):
        sampler = getattr(self, "_sampler", None)
        if sampler is not None:
            sampler.close()

    def process(self, problems: list[Problem]):
        try:
            samples, errors = self._sampler.sample(problems, round=self._round, base_seed=self._seed)
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
                 seed: int, accelerator: str | None = None, checkpoint: CheckpointStore | None = None,
                 limits: SandboxLimits | None = None, workers: int | None = None):
        super().__init__()
        self._args = (policy, sampling, prompt, round, seed, limits, workers)  # sandbox: critic_guided only
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
