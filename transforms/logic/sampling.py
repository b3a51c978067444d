"""Sampling the policy: prompts, seeds, requests, and completions turned into ``Sample`` records.

Pure functions; the Beam stage (``transforms/sample.py``) only batches problems and calls the engine.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from plumline.data_schemas import ErrorRecord, Problem, Sample, content_id
from plumline.llm import GREEDY_SUFFIX, Completion, GenerationRequest, GenerationResult, extract_code

NO_CODE_REASON = "completion contains no code"


@dataclass(frozen=True)
class SamplingPlan:
    """What to ask the engine for one problem: its rendered prompt and requests."""

    problem: Problem
    prompt: str
    requests: tuple[GenerationRequest, ...]


def derive_seed(base_seed: int, *parts: object) -> int:
    """A 31-bit seed from the base seed and ids: reruns draw the same samples."""
    return int(content_id("seed", base_seed, *parts), 16) % (2**31 - 1)


def user_message(problem: Problem, instruction: str) -> str:
    body = problem.prompt.rstrip()
    if problem.entry_point and "```" not in body:
        body = f"```python\n{body}\n```"
    return f"{instruction.strip()}\n\n{body}" if instruction.strip() else body


def plan_requests(problem: Problem, prompt: str, *, n: int, temperature: float, top_p: float,
                  max_tokens: int, greedy: bool, round: int, base_seed: int,
                  stop: Sequence[str] = ()) -> SamplingPlan:
    """n sampled completions (one request with n) plus, when asked, one greedy completion."""
    sampled = GenerationRequest(
        request_id=f"{problem.problem_id}|sampled", prompt=prompt, n=n, temperature=temperature,
        top_p=top_p, max_tokens=max_tokens, seed=derive_seed(base_seed, problem.problem_id, round),
        stop=tuple(stop))
    reqs = [sampled, sampled.greedy()] if greedy else [sampled]
    return SamplingPlan(problem=problem, prompt=prompt, requests=tuple(reqs))


_IMPORT_RE = re.compile(r"^(?:from\s+\S+\s+import\s+.+|import\s+.+)$")


def _defines(code: str, name: str) -> bool:
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return re.search(rf"^\s*(?:async\s+)?def\s+{re.escape(name)}\s*\(", code, re.MULTILINE) is not None
    return any(isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Assign))
               and (getattr(node, "name", None) == name
                    or any(getattr(t, "id", None) == name for t in getattr(node, "targets", [])))
               for node in ast.walk(tree))


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
        if entry and not _defines(code, entry):
            code = problem.prompt + code
        return code if code.strip() else None
    code = extract_code(completion, entry)
    if code is None:
        return None
    if entry and not _defines(code, entry) and _defines(problem.prompt, entry):
        body = code if code.startswith((" ", "\t")) else "\n".join(
            "    " + line if line.strip() else line for line in code.splitlines())
        code = problem.prompt.rstrip("\n") + "\n" + body
    missing = [line for line in prompt_imports(problem.prompt) if line not in code]
    if missing:
        code = "\n".join(missing) + "\n" + code
    return code


def results_to_samples(plan: SamplingPlan, results: Sequence[GenerationResult], *, round: int,
                       policy: str, policy_revision: str, backend: str, chat: bool,
                       stage: str = "sample") -> tuple[list[Sample], list[ErrorRecord]]:
    """Turn the engine's results for one problem into Sample records and error lines.

    A completion with no code still becomes a Sample (code=None): it is a real failure of the
    policy; it is also reported in errors.jsonl so users see how often it happens."""
    samples: list[Sample] = []
    errors: list[ErrorRecord] = []
    by_id = {r.request_id: r for r in results}
    pid = plan.problem.problem_id
    index = 0
    for req in plan.requests:
        res = by_id.get(req.request_id)
        greedy = req.request_id.endswith(GREEDY_SUFFIX)
        if res is None or res.error:
            errors.append(ErrorRecord(stage=stage, reason=(res.error if res else "no result from engine"),
                                      input=pid, problem_id=pid))
            continue
        for comp in res.completions:
            samples.append(_sample(plan, req, comp, index=index, greedy=greedy, round=round, policy=policy,
                                   revision=policy_revision, backend=backend, chat=chat))
            index += 1
            if samples[-1].code is None:
                errors.append(ErrorRecord(stage="extract", reason=NO_CODE_REASON,
                                          input=samples[-1].sample_id, problem_id=pid,
                                          sample_id=samples[-1].sample_id, detail=comp.text[:500]))
    return samples, errors


def _sample(plan: SamplingPlan, req: GenerationRequest, comp: Completion, *, index: int, greedy: bool,
            round: int, policy: str, revision: str, backend: str, chat: bool) -> Sample:
    pid = plan.problem.problem_id
    code = assemble_program(plan.problem, comp.text, chat=chat)
    return Sample(
        sample_id=Sample.make_id(pid, round, revision, index, greedy, comp.text),
        problem_id=pid, round=round, policy=policy, policy_revision=revision, prompt=plan.prompt,
        completion=comp.text, code=code, finish_reason=comp.finish_reason,
        prompt_tokens=comp.prompt_tokens, completion_tokens=comp.completion_tokens,
        temperature=req.temperature, top_p=req.top_p, max_tokens=req.max_tokens, seed=req.seed,
        sample_index=index, is_greedy=greedy, backend=backend)


def sample_batch(problems: Sequence[Problem], *, render: Callable[[Problem], str],
                 generate: Callable[[Sequence[GenerationRequest]], list[GenerationResult]],
                 n: int, temperature: float, top_p: float, max_tokens: int, greedy: bool, round: int,
                 base_seed: int, stop: Sequence[str], policy: str, policy_revision: str, backend: str,
                 chat: bool) -> tuple[list[Sample], list[ErrorRecord]]:
    """Sample a whole batch of problems with ONE engine call."""
    plans = []
    errors: list[ErrorRecord] = []
    for p in problems:
        try:
            prompt = render(p)
        except Exception as exc:  # a template that fails on one problem must not stop the batch
            errors.append(ErrorRecord(stage="sample", reason=f"prompt rendering failed: {exc}",
                                      input=p.problem_id, problem_id=p.problem_id))
            continue
        plans.append(plan_requests(p, prompt, n=n, temperature=temperature, top_p=top_p,
                                   max_tokens=max_tokens, greedy=greedy, round=round,
                                   base_seed=base_seed, stop=stop))
    requests = [r for plan in plans for r in plan.requests]
    results = generate(requests) if requests else []
    by_req = {r.request_id: r for r in results}
    samples: list[Sample] = []
    for plan in plans:
        s, e = results_to_samples(plan, [by_req[r.request_id] for r in plan.requests if r.request_id in by_req],
                                  round=round, policy=policy, policy_revision=policy_revision,
                                  backend=backend, chat=chat)
        samples.extend(s)
        errors.extend(e)
    return samples, errors
