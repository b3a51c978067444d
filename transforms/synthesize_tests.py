"""Test synthesis stage (PLUM stage 1) and the per-problem test statistics for the manifest.

Thin Beam wrappers around ``logic.synthesis``: problems are batched so ONE generate call of the
test-writer engine serves many problems; the engine is opened once per process in ``setup``.
Validation (oracle, CodeT agreement, recomputed pass ratios, minimum tests) runs in the execution
stage (``transforms/execute.py`` -> ``logic.verification`` -> ``logic.validation``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import apache_beam as beam
from apache_beam.metrics import Metrics
from plumline.data_schemas import Problem
from plumline.transforms.logic.synthesis import (
    TestSynthesisConfig,
    synthesize_batch,
)

log = logging.getLogger(__name__)
TESTS, ERRORS, STATS = "tests", "errors", "stats"


def _default_factory(cfg: Any) -> Any:
    from plumline.llm import get_shared_backend
    return get_shared_backend(cfg)


class _SynthesizeBatch(beam.DoFn):
    def __init__(self, backend_factory: Callable[[Any], Any] | None, writer_cfg: Any,
                 cfg: TestSynthesisConfig, seed: int, sandbox_limits: Any = None,
                 sandbox_workers: int | None = None):
        self._factory, self._writer_cfg, self._cfg, self._seed = backend_factory, writer_cfg, cfg, seed
        self._limits, self._workers = sandbox_limits, sandbox_workers
        self._written = Metrics.counter("plumline", "tests_written")
        self._kept = Metrics.counter("plumline", "tests_parsed_kept")
        self._failures = Metrics.counter("plumline", "test_synthesis_errors")

    def setup(self) -> None:
        self._backend = None
        self._sandbox = None
        if self._cfg.enabled:
            self._backend = (self._factory or _default_factory)(self._writer_cfg)
        if self._cfg.mode == "inputs":  # also without the writer: the examples' inputs are mutated
            # expected outputs come from the reference solutions, run in the sandbox
            from plumline.sandbox import Sandbox
            self._sandbox = Sandbox(limits=self._limits, workers=self._workers)

    def teardown(self) -> None:
        sandbox = getattr(self, "_sandbox", None)
        if sandbox is not None:
            sandbox.close()

    def process(self, problems: list[Problem]):
        b = self._backend
        chat = self._cfg.chat if self._cfg.chat is not None else bool(getattr(b, "chat", True))
        writer = getattr(b, "model_name", "") or ""
        rev = getattr(b, "revision", "") or ""
        done, errors = synthesize_batch(
            problems, self._cfg, seed=self._seed, generate=(b.generate if b is not None else _no_generate),
            render_chat=getattr(b, "render_chat", None), chat=chat,
            writer=f"{writer}@{rev}" if rev else writer,
            run_many=self._sandbox.run_many if self._sandbox is not None else None)
        for pt in done:
            self._written.inc(pt.stats.written)
            self._kept.inc(sum(t.kept for t in pt.tests if t.origin == "synthesized"))
            yield from pt.tests
            yield beam.pvalue.TaggedOutput(STATS, pt.stats)
        for e in errors:
            self._failures.inc()
            yield beam.pvalue.TaggedOutput(ERRORS, e)


def _no_generate(requests: Any) -> list:
    raise RuntimeError("test synthesis is disabled")  # never called: no requests when disabled


class SynthesizeTests(beam.PTransform):
    """PCollection[Problem] -> {"tests": TestCase (synthesized + example + given, kept and dropped,
    each with origin and drop_reason), "errors": ErrorRecord, "stats": TestSynthesisStats per problem}.

    ``backend_factory(BackendConfig) -> GenerationBackend`` (default: ``get_shared_backend``) opens the
    test writer: ``cfg.writer`` when set, else ``policy_cfg`` (the policy writes its own tests).
    ``seed`` is the run's seed (each problem's replies use ``derive_seed(seed, "tests", problem_id)``).
    With ``cfg.mode`` "inputs" a sandbox (``sandbox_limits``, ``sandbox_workers`` slots) is opened per
    worker to run the reference solutions."""

    def __init__(self, backend_factory: Callable[[Any], Any] | None, cfg: TestSynthesisConfig,
                 policy_cfg: Any = None, *, seed: int = 0, sandbox_limits: Any = None,
                 sandbox_workers: int | None = None):
        super().__init__()
        self._limits, self._workers = sandbox_limits, sandbox_workers
        self._factory = backend_factory
        self._cfg = cfg
        self._seed = seed
        self._writer_cfg = cfg.writer if cfg.writer is not None else policy_cfg
        if cfg.enabled and self._writer_cfg is None:
            raise ValueError("tests.writer is not set and no policy backend config was given")

    def expand(self, problems):
        size = self._cfg.batch_size
        batches = problems | "BatchForWriter" >> beam.BatchElements(min_batch_size=size, max_batch_size=size)
        return batches | "WriteTests" >> beam.ParDo(
            _SynthesizeBatch(self._factory, self._writer_cfg, self._cfg, self._seed, self._limits,
                             self._workers)).with_outputs(
                ERRORS, STATS, main=TESTS)

