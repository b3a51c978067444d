"""Tests of a batch of problems with one call of the test-writer engine."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from plumline.data_schemas import ErrorKind, ErrorRecord, Problem, Stage, derive_seed
from plumline.transforms.logic.synthesis.config import TestSynthesisConfig
from plumline.transforms.logic.synthesis.input_first import input_first_batch, wants_inputs
from plumline.transforms.logic.synthesis.inputs import (
    build_inputs_prompt,
    build_inputs_prompt_text,
    inputs_reply_prefix,
)
from plumline.transforms.logic.synthesis.prompts import (
    build_test_prompt,
    build_test_prompt_text,
    reply_prefix,
)
from plumline.transforms.logic.synthesis.rows import ProblemTests, assemble_problem_tests

logger = logging.getLogger(__name__)
_REASON_MAX = 300


def _error(p: Problem, kind: ErrorKind, reason: str) -> ErrorRecord:
    return ErrorRecord(stage=Stage.TESTS, kind=kind, reason=reason[:_REASON_MAX], input=p.problem_id,
                       problem_id=p.problem_id)


def synthesize_batch(problems: Sequence[Problem], cfg: TestSynthesisConfig, *, seed: int, generate: Any,
                     render_chat: Any = None, chat: bool = True, writer: str = "",
                     run_many: Any = None) -> tuple[list[ProblemTests], list[ErrorRecord]]:
    """Tests of a batch of problems with ONE ``generate`` call (the engine batches the prompts).

    ``generate`` is a backend's ``generate``; ``render_chat`` its chat renderer (used when ``chat``).
    A failed request (prompt too long, engine error) costs that problem its synthesized tests only:
    it still gets its example and given tests, and an ErrorRecord says why. ``seed`` is the run's
    seed: each problem's replies are sampled with ``derive_seed(seed, "tests", problem_id)``.

    ``cfg.mode`` "inputs": the replies are inputs; ``run_many`` (the sandbox's) runs the reference
    solutions for expected outputs and the suite reduction (``input_first.input_first_batch``);
    without it only example and given tests come out."""
    from plumline.llm.types import GenerationRequest  # plain dataclasses, no engine import

    errors: list[ErrorRecord] = []
    requests: list[Any] = []
    wanted: dict[str, int] = {}
    inputs = cfg.mode == "inputs"
    for i, p in enumerate(problems):
        if not (cfg.enabled and p.entry_point):
            continue
        if inputs and not wants_inputs(p, cfg, run_many is not None):
            continue  # no way to compute expected outputs: do not spend generation on it
        try:
            if chat:
                prompt = render_chat((build_inputs_prompt if inputs else build_test_prompt)(
                    p, cfg.tests_per_problem))
            else:
                prompt = (build_inputs_prompt_text if inputs else build_test_prompt_text)(
                    p, cfg.tests_per_problem)
        except Exception as exc:  # noqa: BLE001  a template that cannot render this problem
            errors.append(_error(p, ErrorKind.PROMPT_FAILED,
                                 f"test prompt failed: {type(exc).__name__}: {exc}"))
            continue
        rid = f"{i}:{p.problem_id}"
        wanted[rid] = i
        requests.append(GenerationRequest(
            request_id=rid, prompt=prompt, n=cfg.num_replies, temperature=cfg.temperature,
            top_p=cfg.top_p if cfg.temperature > 0 else 1.0, max_tokens=cfg.max_tokens,
            seed=derive_seed(seed, "tests", p.problem_id)))
    replies: dict[int, list[str]] = {}
    failures: dict[int, str] = {}
    if requests:
        try:
            results = list(generate(requests))
        except Exception as exc:  # the engine failed the whole batch: every problem says so
            logger.exception("test writer failed for a batch of %d problems", len(requests))
            results = []
            for i in wanted.values():
                failures[i] = f"engine failed: {type(exc).__name__}: {exc}"
        for res in results:
            i = wanted.get(getattr(res, "request_id", None))
            if i is None:
                continue
            if res.error is not None:
                failures[i] = str(res.error)
            else:
                # what a plain prompt already wrote
                prefix = (inputs_reply_prefix if inputs else reply_prefix)(chat, problems[i].entry_point)
                replies[i] = [prefix + c.text for c in res.completions]
        for i in wanted.values():
            if i not in replies and i not in failures:
                failures[i] = "no result for this request"
    if inputs:
        for i, p in enumerate(problems):
            if failures.get(i) is not None:
                errors.append(_error(p, ErrorKind.ENGINE_FAILED, f"test generation failed: {failures[i]}"))
        try:
            return input_first_batch(problems, replies, cfg, seed=seed, run_many=run_many, writer=writer,
                                     failures=failures), errors
        except Exception as exc:  # the sandbox failed the batch: fall back to examples
            logger.exception("input-first tests failed for a batch of %d problems", len(problems))
            for p in problems:
                errors.append(_error(p, ErrorKind.INTERNAL,
                                     f"input-first tests failed: {type(exc).__name__}: {exc}"))
            return input_first_batch(problems, {}, cfg, seed=seed, run_many=None, writer=writer,
                                     failures=failures), errors
    out: list[ProblemTests] = []
    for i, p in enumerate(problems):
        err = failures.get(i)
        if err is not None:
            errors.append(_error(p, ErrorKind.ENGINE_FAILED, f"test generation failed: {err}"))
        try:
            out.append(assemble_problem_tests(p, replies.get(i), cfg, writer=writer, generation_error=err))
        except Exception as exc:  # never lose the batch to one odd problem
            logger.exception("tests of %s could not be assembled", p.problem_id)
            errors.append(_error(p, ErrorKind.INTERNAL, f"tests not assembled: {type(exc).__name__}: {exc}"))
    return out, errors
