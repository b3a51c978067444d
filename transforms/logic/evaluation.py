"""Held-out evaluation: the ``eval`` config section, the unbiased pass@k estimator, per-sample rows
and the summary (``eval.json``), and decontamination of training problems against the eval sources.

Pure functions; the Beam stage (``transforms/evaluate.py``) samples the policy and runs the sandbox,
``plumline eval`` and the round's eval stage both go through it.

pass@k is the unbiased estimator of Chen et al. 2021 (arXiv 2107.03374, eq. 1): with ``n`` samples
of a problem of which ``c`` pass, ``pass@k = 1 - C(n - c, k) / C(n, k)``, averaged over problems.
The greedy sample is scored apart (``greedy_pass@1``) and never counts among the ``n``.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from typing import Any, Literal

from plumline.data_schemas import EvalSample, Outcome, Problem, Sample
from plumline.llm import BackendConfig
from plumline.transforms.logic.readers import SourceConfig
from plumline.transforms.logic.sampling import SamplingConfig
from pydantic import BaseModel, ConfigDict, Field, field_validator

GREEDY_KEY = "greedy_pass@1"


class EvalConfig(BaseModel):
    """Held-out evaluation of each round's policy (the run config's ``eval`` section; also what
    ``plumline eval`` runs). Off when ``sources`` is empty."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    sources: list[SourceConfig] = Field(
        default_factory=list, description="Held-out problems, scored on their own (given) tests; training "
                                          "problems overlapping them are removed (decontamination). "
                                          "Empty: no evaluation.")
    n: int = Field(10, ge=1,
                   description="Sampled completions per problem for pass@k (besides the greedy one).")
    k: list[int] = Field(default_factory=lambda: [1, 5],
                         description="pass@k reported for each k (each at most n).")
    greedy: bool = Field(True, description="Also score one greedy completion per problem (greedy_pass@1).")
    temperature: float | None = Field(None, ge=0.0, description="Sampling temperature; None: sampling's.")
    top_p: float | None = Field(None, gt=0.0, le=1.0, description="Nucleus threshold; None: sampling's.")
    max_tokens: int | None = Field(None, ge=1, description="Maximum new tokens; None: sampling's.")
    batch_size: int | None = Field(None, ge=1, description="Problems per engine call; None: sampling's.")
    backend: BackendConfig | None = Field(
        None, description="Engine options for evaluation; None: the round's policy config. Its model is "
                          "always the policy being evaluated.")
    sampling_mode: Literal["plain", "critic_guided"] | None = Field(
        "plain", description="How the n samples are drawn: plain (the policy alone, what pass@k means), "
                             "critic_guided (CodeRL's critical sampling with sampling.guided's critic, "
                             "guided by the example tests only), None: the run's sampling.mode.")

    @field_validator("k")
    @classmethod
    def _ks(cls, v: list[int]) -> list[int]:
        if any(k < 1 for k in v):
            raise ValueError("every k must be at least 1")
        return sorted(set(v))

    @property
    def enabled(self) -> bool:
        return bool(self.sources)

    def sampling(self, base: SamplingConfig) -> SamplingConfig:
        """The sampling settings evaluation uses: its own where set, else the run's ``sampling``."""
        return base.model_copy(update={
            "n": self.n, "greedy": self.greedy,
            "mode": base.mode if self.sampling_mode is None else self.sampling_mode,
            "temperature": base.temperature if self.temperature is None else self.temperature,
            "top_p": base.top_p if self.top_p is None else self.top_p,
            "max_tokens": base.max_tokens if self.max_tokens is None else self.max_tokens,
            "batch_size": base.batch_size if self.batch_size is None else self.batch_size})

    def policy(self, policy: BackendConfig) -> BackendConfig:
        """The engine config that evaluates ``policy`` (the round's): its model, ``backend``'s options."""
        if self.backend is None:
            return policy
        return self.backend.model_copy(update={"model": policy.model})


def eval_problems(cfg: EvalConfig) -> list[tuple[str, str]]:
    """(field, why) for every setting of ``cfg`` that cannot work (empty: fine)."""
    out = []
    too_big = [k for k in cfg.k if k > cfg.n]
    if too_big:
        out.append(("k", f"{too_big} larger than n ({cfg.n}): pass@k needs at least k samples per problem"))
    return out


# --- pass@k ---------------------------------------------------------------------------------------

def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k of one problem: ``1 - C(n-c, k) / C(n, k)`` (Chen et al. 2021), computed as a
    product so large ``n`` neither overflows nor loses precision."""
    if not 0 <= c <= n:
        raise ValueError(f"need 0 <= c <= n, got n={n}, c={c}")
    if not 1 <= k <= n:
        raise ValueError(f"need 1 <= k <= n, got n={n}, k={k}")
    if n - c < k:
        return 1.0
    prod = 1.0
    for i in range(n - c + 1, n + 1):
        prod *= 1.0 - k / i
    return 1.0 - prod


# --- rows -----------------------------------------------------------------------------------------

def eval_row(problem: Problem, sample: Sample, result: Any | None) -> EvalSample:
    """One EvalSample from a sample and its sandbox ProgramResult (None: no code, a compile error)."""
    if result is None:
        outcome, passed, total, error, seconds = Outcome.COMPILE_ERROR.value, 0, len(problem.given_tests), \
            "NoCodeFound", 0.0
    else:
        outcome, passed, total = result.outcome, int(result.passed), int(result.total)
        error, seconds = result.error_type, float(result.duration_s)
    return EvalSample(
        sample_id=sample.sample_id, problem_id=problem.problem_id, source=problem.source,
        round=sample.round, policy=sample.policy, policy_revision=sample.policy_revision,
        is_greedy=sample.is_greedy, sample_index=sample.sample_index, code=sample.code,
        passed=outcome == Outcome.PASSED.value and total > 0 and passed == total, outcome=outcome,
        tests_passed=passed, tests_total=total, completion=sample.completion,
        finish_reason=sample.finish_reason, completion_tokens=sample.completion_tokens,
        error_type=error, duration_s=seconds, prompt=sample.prompt)


# --- summary --------------------------------------------------------------------------------------

def _scores(rows: Sequence[EvalSample], ks: Sequence[int]) -> dict[str, Any]:
    by_problem: dict[str, list[EvalSample]] = {}
    for r in rows:
        by_problem.setdefault(r.problem_id, []).append(r)
    out: dict[str, Any] = {}
    for k in ks:
        values = []
        for samples in by_problem.values():
            sampled = [s for s in samples if not s.is_greedy]
            if len(sampled) >= k:
                values.append(pass_at_k(len(sampled), sum(s.passed for s in sampled), k))
        out[f"pass@{k}"] = round(sum(values) / len(values), 4) if values else None
    greedy = [s for samples in by_problem.values() for s in samples if s.is_greedy]
    out[GREEDY_KEY] = round(sum(s.passed for s in greedy) / len(greedy), 4) if greedy else None
    out["problems"] = len(by_problem)
    out["samples"] = sum(1 for r in rows if not r.is_greedy)
    out["greedy_samples"] = len(greedy)
    out["passed_samples"] = sum(1 for r in rows if r.passed and not r.is_greedy)
    out["without_code"] = sum(1 for r in rows if r.code is None)
    return out


def summarize(rows: Iterable[EvalSample], ks: Sequence[int], *, model: str = "",
              sources: Sequence[str] = (), n: int | None = None) -> dict[str, Any]:
    """The ``eval.json`` summary: pass@k for each k (keys ``pass@1``, ``pass@5``...), ``greedy_pass@1``,
    counts, overall and ``by_source``. pass@k averages over the problems with at least k samples."""
    rows = list(rows)
    by_source: dict[str, list[EvalSample]] = {}
    for r in rows:
        by_source.setdefault(r.source, []).append(r)
    revisions = sorted({r.policy_revision for r in rows})
    return {
        **_scores(rows, ks),
        "k": list(ks),
        "n": n,
        "model": model or (rows[0].policy if rows else ""),
        "revision": revisions[0] if len(revisions) == 1 else revisions,
        "sources": list(sources),
        "by_source": {name: _scores(rs, ks) for name, rs in sorted(by_source.items())},
    }


# --- decontamination ------------------------------------------------------------------------------

_SPACE = re.compile(r"\s+")


def normalize_prompt(text: str) -> str:
    """Prompt text compared across sources: Unicode NFKC, case-folded, whitespace collapsed."""
    return _SPACE.sub(" ", unicodedata.normalize("NFKC", text)).strip().casefold()


def contamination_keys(problem: Problem) -> tuple[str, str]:
    return ("id:" + problem.problem_id, "prompt:" + normalize_prompt(problem.prompt))


def overlap_reason(problem: Problem, eval_keys: dict[str, str]) -> str | None:
    """Why ``problem`` overlaps the eval problems (``eval_keys``: key -> eval problem id), or None."""
    by_id, by_prompt = contamination_keys(problem)
    if by_id in eval_keys:
        return f"same problem id as eval problem {eval_keys[by_id]!r}"
    if by_prompt in eval_keys:
        return f"same prompt text (normalized) as eval problem {eval_keys[by_prompt]!r}"
    return None


__all__ = ["GREEDY_KEY", "EvalConfig", "contamination_keys", "eval_problems", "eval_row", "normalize_prompt",
           "overlap_reason", "pass_at_k", "summarize"]
