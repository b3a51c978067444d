"""Reranking eval samples by a scorer: the pick, the random baseline, the greedy sample."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st
from plumline.data_schemas import EvalSample
from plumline.transforms.logic.rerank import rerank_summary


def _row(pid: str, i: int, passed: bool, greedy: bool = False, code: str | None = "x = 1") -> EvalSample:
    return EvalSample(sample_id=f"{pid}-{'g' if greedy else i}", problem_id=pid, source="s", round=0,
                      policy="m", policy_revision="r", is_greedy=greedy, sample_index=i, code=code,
                      passed=passed, outcome="passed" if passed else "failed", tests_passed=int(passed),
                      tests_total=1)


def test_the_pick_follows_the_scores_and_the_baselines_do_not():
    rows = [_row("a", 0, False), _row("a", 1, True), _row("a", 2, False), _row("a", 0, False, greedy=True),
            _row("b", 0, True), _row("b", 1, False), _row("b", 0, True, greedy=True)]
    good = {"a-0": 0.1, "a-1": 0.9, "a-2": 0.2, "b-0": 0.7, "b-1": 0.3}
    out = rerank_summary(rows, good)
    assert out["pass@1_reranked"] == 1.0 and out["pass@n"] == 1.0
    assert out["pass@1_random"] == round((1 / 3 + 1 / 2) / 2, 4)
    assert out["greedy_pass@1"] == 0.5 and out["problems"] == 2 and out["samples"] == 5
    bad = {k: -v for k, v in good.items()}
    assert rerank_summary(rows, bad)["pass@1_reranked"] == 0.0
    assert rerank_summary(rows, bad)["pass@1_random"] == out["pass@1_random"]


def test_unscored_samples_lose_and_ties_go_to_the_first_sample():
    rows = [_row("a", 0, False, code=None), _row("a", 1, True), _row("a", 2, False)]
    assert rerank_summary(rows, {"a-1": 0.5, "a-2": 0.5})["pass@1_reranked"] == 1.0
    assert rerank_summary(rows, {"a-2": 0.0})["pass@1_reranked"] == 0.0
    assert rerank_summary(rows, {"a-1": math.nan, "a-2": 0.0})["pass@1_reranked"] == 0.0
    assert rerank_summary([], {})["pass@1_reranked"] is None


@given(st.lists(st.tuples(st.booleans(), st.floats(0, 1)), min_size=1, max_size=8))
def test_the_pick_never_beats_the_ceiling_and_an_oracle_scorer_reaches_it(samples):
    rows = [_row("p", i, passed) for i, (passed, _) in enumerate(samples)]
    scores = {r.sample_id: s for r, (_, s) in zip(rows, samples)}
    out = rerank_summary(rows, scores)
    assert out["pass@1_reranked"] <= out["pass@n"]
    oracle = rerank_summary(rows, {r.sample_id: float(r.passed) for r in rows})
    assert oracle["pass@1_reranked"] == out["pass@n"]
