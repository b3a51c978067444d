"""Reranking evaluation samples with a learned scorer (CodeRL's critic, a process reward model):
among the n sampled programs of each problem, pick the one the scorer likes best, and compare the
pick's pass@1 with a random pick's and the greedy sample's on the same samples.

Pure: the scores are computed elsewhere (``plumline.trainers``: ``critic_scores``, ``prm_step_scores``
and ``prm.aggregate``) and passed in by sample id.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from plumline.data_schemas import EvalSample


def rerank_summary(rows: Sequence[EvalSample], scores: Mapping[str, float]) -> dict[str, Any]:
    """pass@1 of the scorer's pick beside a random pick's and the greedy sample's, over the problems
    with at least one sampled (non-greedy) completion.

    ``scores[sample_id]``: higher is better; a sample without a finite score (no code, NaN) is never
    picked over one with a score; ties go to the lower ``sample_index`` (deterministic). The random
    pick's pass@1 is its expectation (passing samples / samples per problem), not one draw.
    ``pass@n`` (any sample passes) is the ceiling any reranker can reach."""
    by_problem: dict[str, list[EvalSample]] = {}
    greedy: dict[str, EvalSample] = {}
    for r in rows:
        if r.is_greedy:
            greedy[r.problem_id] = r
        else:
            by_problem.setdefault(r.problem_id, []).append(r)
    scores = {k: v for k, v in scores.items() if math.isfinite(v)}
    picked = random = ceiling = 0.0
    for samples in by_problem.values():
        best = max(samples, key=lambda s: (s.sample_id in scores, scores.get(s.sample_id, -math.inf),
                                           -s.sample_index))
        picked += best.passed
        random += sum(s.passed for s in samples) / len(samples)
        ceiling += any(s.passed for s in samples)
    n = len(by_problem)
    with_greedy = [greedy[p] for p in by_problem if p in greedy]

    def ratio(x: float, d: int) -> float | None:
        return round(x / d, 4) if d else None

    return {"problems": n, "samples": sum(len(s) for s in by_problem.values()),
            "scored": sum(1 for s in by_problem.values() for r in s if r.sample_id in scores),
            "pass@1_reranked": ratio(picked, n), "pass@1_random": ratio(random, n),
            "greedy_pass@1": ratio(sum(g.passed for g in with_greedy), len(with_greedy)),
            "pass@n": ratio(ceiling, n)}


__all__ = ["rerank_summary"]
