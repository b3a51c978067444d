"""Sampling the policy: the ``sampling`` config section, requests, seeds, and completions turned into
``Sample`` records.

Pure functions; the Beam stage (``transforms/sample.py``) only batches problems and calls the engine.
The prompt itself is rendered by ``plumline.llm.render_prompt`` (the ``prompt`` section).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Literal

from plumline.data_schemas import ErrorKind, ErrorRecord, Problem, Sample, Stage, derive_seed
from plumline.llm import (
    GREEDY_SUFFIX,
    Completion,
    GenerationRequest,
    GenerationResult,
    extract_code,
    progress,
)
from plumline.llm.extract import defines
from pydantic import BaseModel, ConfigDict, Field, field_validator

NO_CODE_REASON = "completion contains no code"
SampleOrigin = Literal["sampled", "refined", "repaired"]

DEFAULT_REPAIR_INSTRUCTION = (
    "Your program fails a test:\n\n{error}\n\nFix the program. Reply with the whole corrected function in "
    "one ```python code block.")


class GuidedSamplingConfig(BaseModel):
    """CodeRL's critic-guided ("critical") sampling (``sampling.mode: critic_guided``; arXiv 2207.01780):
    part of the budget is sampled plainly, every program runs on the problem's example tests (never its
    hidden or synthesized tests), a trained critic scores programs and their line prefixes, and the rest
    of the budget refines the best prefixes of programs that pass the examples and repairs programs
    that fail them, given the error. The total per problem stays ``sampling.n`` (+ the greedy one)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    critic: str | None = Field(
        None, description="A `plumline train critic` output folder: scores programs and prefixes by their "
                          "probability of passing. Required with sampling.mode: critic_guided.")
    first_share: float = Field(
        0.5, gt=0.0, le=1.0, description="Share of sampling.n drawn plainly first (at least one sample); the "
                                         "rest is spent refining and repairing.")
    refine_share: float = Field(
        0.5, ge=0.0, le=1.0, description="Share of the rest spent refining programs that pass the examples "
                                         "(from their best-scoring prefix) when both kinds exist; the rest "
                                         "repairs failing programs.")
    rounds: int = Field(1, ge=1, description="Refine/repair rounds; round r works on round r-1's new samples "
                                             "and the rest of the budget is split across rounds.")
    max_seeds: int = Field(4, ge=1, description="Most programs refined (and most repaired) per problem and "
                                                "round, the critic's best first; the slots go round robin "
                                                "over them.")
    repair_instruction: str = Field(
        DEFAULT_REPAIR_INSTRUCTION,
        description="The message asking the policy to fix its failing program, after the policy's prompt and "
                    "its answer; {error} is replaced by the first failing example test and its error.")

    @field_validator("repair_instruction")
    @classmethod
    def _has_error(cls, v: str) -> str:
        if "{error}" not in v:
            raise ValueError("must contain {error} (where the failing test's error message goes)")
        try:
            v.format(error="")
        except (IndexError, KeyError, ValueError) as exc:
            raise ValueError(f"is not a format string with only {{error}}: {exc}") from None
        return v


class SamplingConfig(BaseModel):
    """How the policy is sampled (the run config's ``sampling`` section). The prompt is the ``prompt``
    section; each request's seed derives from the run's ``seed``, the problem id and the round."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    n: int = Field(8, ge=1, description="Samples drawn from the policy per problem and round.")
    temperature: float = Field(0.8, ge=0.0, description="Sampling temperature.")
    top_p: float = Field(0.95, gt=0.0, le=1.0, description="Nucleus sampling threshold.")
    max_tokens: int = Field(512, ge=1, description="Maximum new tokens per completion.")
    greedy: bool = Field(True, description="Also draw one greedy (temperature 0) sample per problem, "
                                           "marked is_greedy (CodeRL's baseline).")
    batch_size: int = Field(256, ge=1, description="Problems sent to the engine in one generate call.")
    stop: list[str] = Field(default_factory=list, description="Extra stop strings.")
    stop_after_code: bool = Field(
        True, description="End a completion at the line that closes its first code block (the fence is "
                          "kept) instead of letting the model explain its code: 35-50% fewer tokens for "
                          "SmolLM2. Used in plain mode with backends that report which stop string fired "
                          "(vllm, transformers); a bare fence that opens a block is generated through.")
    mode: Literal["plain", "critic_guided"] = Field(
        "plain", description="plain: n independent samples. critic_guided: CodeRL's critical sampling at the "
                             "same budget (see sampling.guided; needs a trained critic).")
    guided: GuidedSamplingConfig = Field(default_factory=GuidedSamplingConfig,
                                         description="Critic-guided sampling (sampling.mode: critic_guided).")


@dataclass(frozen=True)
class SamplingPlan:
    """What to ask the engine for one problem: its rendered prompt and requests."""

    problem: Problem
    prompt: str
    requests: tuple[GenerationRequest, ...]


def plan_requests(problem: Problem, prompt: str, cfg: SamplingConfig, *, round: int,
                  base_seed: int) -> SamplingPlan:
    """n sampled completions (one request with n) plus, when asked, one greedy completion."""
    sampled = GenerationRequest(
        request_id=f"{problem.problem_id}|sampled", prompt=prompt, n=cfg.n, temperature=cfg.temperature,
        top_p=cfg.top_p, max_tokens=cfg.max_tokens, seed=derive_seed(base_seed, problem.problem_id, round),
        stop=tuple(cfg.stop))
    reqs = [sampled, sampled.greedy()] if cfg.greedy else [sampled]
    return SamplingPlan(problem=problem, prompt=prompt, requests=tuple(reqs))


CODE_FENCE_STOP = "\n```\n"  # a line holding only a fence: a block opens or closes there
FENCE_LINE_RE = re.compile(r"^\s*```", re.MULTILINE)
MAX_FENCE_CONTINUATIONS = 2


def _opens_block(text_before_stop: str) -> bool:
    """Whether the fence line a completion stopped at opens a block (no block is open before it)."""
    return len(FENCE_LINE_RE.findall(text_before_stop)) % 2 == 0


def generate_to_code_end(generate: Callable[[Sequence[GenerationRequest]], list[GenerationResult]],
                         requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
    """``generate(requests)`` where each completion ends with the fence that closes its first code block.

    Every request gets the stop string ``CODE_FENCE_STOP``. A completion that stopped there with a block
    open gets its closing fence back (the text reads as the model wrote it, minus what it would have
    said after its code). One that stopped at a fence that *opens* a block (a bare ``````` line before
    any code) is continued from that point: one more request whose prompt is the prompt, the text so far
    and the fence (the rest of the token budget, a seed derived from the request's), merged into the
    same completion, as if no stop had fired. Needs a backend that sets ``Completion.stop_string``."""
    staged = [r if CODE_FENCE_STOP in r.stop else replace(r, stop=(*r.stop, CODE_FENCE_STOP))
              for r in requests]
    results = list(generate(staged))
    if len(results) != len(staged):
        raise RuntimeError(f"the backend returned {len(results)} results for {len(staged)} requests")
    comps = [list(r.completions) for r in results]
    for round_ in range(MAX_FENCE_CONTINUATIONS):
        todo: list[tuple[int, int, GenerationRequest]] = []
        for i, req in enumerate(staged):
            for j, comp in enumerate(comps[i]):
                left = req.max_tokens - comp.completion_tokens
                if comp.stop_string == CODE_FENCE_STOP and _opens_block(comp.text) and left > 0:
                    seed = None if req.seed is None else derive_seed(req.seed, "fence", j, round_)
                    todo.append((i, j, replace(req, request_id=f"{req.request_id}|fence{j}.{round_}",
                                               prompt=req.prompt + comp.text + CODE_FENCE_STOP, n=1,
                                               max_tokens=left, seed=seed)))
        if not todo:
            break
        more = list(generate([r for _, _, r in todo]))
        # A continuation finishes a sample the engine counted already: the progress line counts samples.
        progress.add("completions", -len(todo))
        progress.add("completions_total", -len(todo))
        for (i, j, _), res in zip(todo, more):
            if not res.ok or not res.completions:
                continue  # keep what was generated: it stays a completion without code
            head, tail = comps[i][j], res.completions[0]
            comps[i][j] = replace(head, text=head.text + CODE_FENCE_STOP + tail.text,
                                  finish_reason=tail.finish_reason, stop_string=tail.stop_string,
                                  completion_tokens=head.completion_tokens + tail.completion_tokens)
    out = []
    for res, cs in zip(results, comps):
        cs = [replace(c, text=c.text + CODE_FENCE_STOP.rstrip("\n"))
              if c.stop_string == CODE_FENCE_STOP and not _opens_block(c.text) else c for c in cs]
        out.append(replace(res, completions=tuple(cs)))
    return out


_IMPORT_RE = re.compile(r"^(?:from\s+\S+\s+import\s+.+|import\s+.+)$")


def prompt_imports(prompt: str) -> list[str]:
    """Import lines at the top level of a HumanEval-style prompt (e.g. ``from typing import List``)."""
    return [line for line in prompt.splitlines() if _IMPORT_RE.match(line)]


def assemble_program(problem: Problem, completion: str, *, chat: bool) -> str | None:
    """The program to execute for one completion, or None when there is no code in it.

    Chat models usually answer with the whole function in a fence: take it, adding the prompt's
    imports it relies on (``List``...). When the code does not define the entry point but the prompt
    does (the model wrote only the body), or for base models (plain continuation), the program is
    the prompt followed by the completion.
    """
    entry = problem.entry_point or None
    if not chat:
        code = completion
        if "```" in completion:
            extracted = extract_code(completion, entry)
            code = extracted if extracted is not None else completion.split("```")[0]
        if entry and not defines(code, entry):
            code = problem.prompt + code
        return code if code.strip() else None
    code = extract_code(completion, entry)
    if code is None:
        return None
    if entry and not defines(code, entry) and defines(problem.prompt, entry):
        body = code if code.startswith((" ", "\t")) else "\n".join(
            "    " + line if line.strip() else line for line in code.splitlines())
        code = problem.prompt.rstrip("\n") + "\n" + body
    missing = [line for line in prompt_imports(problem.prompt) if line not in code]
    if missing:
        code = "\n".join(missing) + "\n" + code
    return code


@dataclass(frozen=True)
class Derived:
    """Where the completions of one request come from when they are not plain samples (critic-guided
    sampling): ``origin``, the sample they derive from, and the text they continue (a prefix of the
    parent's completion: the sample's completion is ``prefix + continuation``)."""

    origin: SampleOrigin
    parent_sample_id: str
    prefix: str = ""


def results_to_samples(plan: SamplingPlan, results: Sequence[GenerationResult], *, round: int,
                       policy: str, policy_revision: str, backend: str,
                       chat: bool, start: int = 0,
                       derived: dict[str, Derived] | None = None) -> tuple[list[Sample], list[ErrorRecord]]:
    """Turn the engine's results for one problem into Sample records and error lines.

    A completion with no code still becomes a Sample (code=None): it is a real failure of the
    policy; it is also reported in errors.jsonl so users see how often it happens. ``start``: the
    first sample_index; ``derived``: request id -> where its completions come from (default: sampled)."""
    samples: list[Sample] = []
    errors: list[ErrorRecord] = []
    by_id = {r.request_id: r for r in results}
    pid = plan.problem.problem_id
    index = start
    for req in plan.requests:
        res = by_id.get(req.request_id)
        greedy = req.request_id.endswith(GREEDY_SUFFIX)
        if res is None or res.error:
            errors.append(ErrorRecord(stage=Stage.SAMPLE, kind=ErrorKind.ENGINE_FAILED,
                                      reason=(res.error if res else "no result from engine"),
                                      input=pid, problem_id=pid))
            continue
        origin = (derived or {}).get(req.request_id)
        for comp in res.completions:
            if origin is not None and origin.prefix:
                comp = replace(comp, text=origin.prefix + comp.text)
            samples.append(_sample(plan, req, comp, index=index, greedy=greedy, round=round, policy=policy,
                                   revision=policy_revision, backend=backend, chat=chat, origin=origin))
            index += 1
            if samples[-1].code is None:
                errors.append(ErrorRecord(stage=Stage.SAMPLE, kind=ErrorKind.NO_CODE, reason=NO_CODE_REASON,
                                          input=samples[-1].sample_id, problem_id=pid,
                                          sample_id=samples[-1].sample_id, detail=comp.text[:500]))
    return samples, errors


def _sample(plan: SamplingPlan, req: GenerationRequest, comp: Completion, *, index: int, greedy: bool,
            round: int, policy: str, revision: str, backend: str, chat: bool,
            origin: Derived | None = None) -> Sample:
    pid = plan.problem.problem_id
    code = assemble_program(plan.problem, comp.text, chat=chat)
    return Sample(
        sample_id=Sample.make_id(pid, round, revision, index, greedy, comp.text),
        problem_id=pid, round=round, policy=policy, policy_revision=revision, prompt=plan.prompt,
        completion=comp.text, code=code, finish_reason=comp.finish_reason,
        prompt_tokens=comp.prompt_tokens, completion_tokens=comp.completion_tokens,
        temperature=req.temperature, top_p=req.top_p, max_tokens=req.max_tokens, seed=req.seed,
        sample_index=index, is_greedy=greedy, backend=backend,
        origin=origin.origin if origin else "sampled",
        parent_sample_id=origin.parent_sample_id if origin else None)


def sample_batch(problems: Sequence[Problem], *, render: Callable[[Problem], str],
                 generate: Callable[[Sequence[GenerationRequest]], list[GenerationResult]],
                 cfg: SamplingConfig, round: int, base_seed: int, policy: str, policy_revision: str,
                 backend: str, chat: bool) -> tuple[list[Sample], list[ErrorRecord]]:
    """Sample a whole batch of problems with ONE engine call."""
    plans = []
    errors: list[ErrorRecord] = []
    for p in problems:
        try:
            prompt = render(p)
        except Exception as exc:  # noqa: BLE001 - a template that fails on one problem must not stop the batch
            errors.append(prompt_error(p, exc))
            continue
        plans.append(plan_requests(p, prompt, cfg, round=round, base_seed=base_seed))
    requests = [r for plan in plans for r in plan.requests]
    results = generate(requests) if requests else []
    by_req = {r.request_id: r for r in results}
    samples: list[Sample] = []
    for plan in plans:
        results_of = [by_req[r.request_id] for r in plan.requests if r.request_id in by_req]
        s, e = results_to_samples(plan, results_of,
                                  round=round, policy=policy, policy_revision=policy_revision,
                                  backend=backend, chat=chat)
        samples.extend(s)
        errors.extend(e)
    return samples, errors


def prompt_error(problem: Problem, exc: BaseException) -> ErrorRecord:
    """The error line of a problem whose policy prompt could not be rendered."""
    return ErrorRecord(stage=Stage.SAMPLE, kind=ErrorKind.PROMPT_FAILED,
                       reason=f"prompt rendering failed: {exc}", input=problem.problem_id,
                       problem_id=problem.problem_id)


def engine_failure_errors(problems: Sequence[Problem], stage: Stage, exc: BaseException) -> list[ErrorRecord]:
    """One error per problem of a batch whose engine call failed: the batch is lost, nothing else."""
    reason = f"engine failed: {type(exc).__name__}: {exc}"
    return [ErrorRecord(stage=stage, kind=ErrorKind.ENGINE_FAILED, reason=reason, input=p.problem_id,
                        problem_id=p.problem_id) for p in problems]
