"""Held-out evaluation, the pure parts: the unbiased pass@k estimator (against hand-computed values
and its properties), the summary of eval rows, decontamination keys, the JSON-list reader."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from plumline.data_schemas import EvalSample, Problem
from plumline.transforms.logic.evaluation import (
    EvalConfig,
    eval_problems,
    normalize_prompt,
    overlap_reason,
    pass_at_k,
    summarize,
)
from plumline.transforms.logic.readers import SourceConfig, read_problems
from plumline.transforms.logic.sampling import SamplingConfig

# (n, c, k, value worked out by hand from 1 - C(n-c, k) / C(n, k))
HAND = [
    (1, 0, 1, 0.0),
    (1, 1, 1, 1.0),
    (10, 3, 1, 0.3),  # pass@1 is the fraction passing
    (5, 2, 2, 1 - 3 / 10),  # C(3,2)=3, C(5,2)=10
    (10, 1, 5, 0.5),  # C(9,5)=126, C(10,5)=252
    (4, 1, 2, 0.5),  # C(3,2)=3, C(4,2)=6
    (6, 2, 3, 1 - 4 / 20),  # C(4,3)=4, C(6,3)=20
    (10, 8, 3, 1.0),  # fewer than k failures: some draw of k always passes
    (10, 0, 10, 0.0),
]


@pytest.mark.parametrize(("n", "c", "k", "want"), HAND)
def test_pass_at_k_matches_hand_computed_values(n, c, k, want):
    assert pass_at_k(n, c, k) == pytest.approx(want, abs=1e-12)


@given(st.integers(1, 60).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n), st.integers(1, n))))
def test_pass_at_k_is_the_combinatorial_formula_and_a_probability(nck):
    n, c, k = nck
    got = pass_at_k(n, c, k)
    assert 0.0 <= got <= 1.0
    assert got == pytest.approx(1 - math.comb(n - c, k) / math.comb(n, k), abs=1e-9)
    if k < n:
        assert pass_at_k(n, c, k + 1) >= got - 1e-12  # more tries never hurt
    if c < n:
        assert pass_at_k(n, c + 1, k) >= got - 1e-12  # more passing samples never hurt


@pytest.mark.parametrize(("n", "c", "k"), [(3, 4, 1), (3, -1, 1), (3, 1, 0), (3, 1, 4)])
def test_pass_at_k_rejects_impossible_counts(n, c, k):
    with pytest.raises(ValueError):
        pass_at_k(n, c, k)


def _row(pid: str, i: int, passed: bool, greedy: bool = False, source: str = "he") -> EvalSample:
    return EvalSample(sample_id=f"{pid}-{i}-{greedy}", problem_id=pid, source=source, round=0, policy="m",
                      policy_revision="r", is_greedy=greedy, sample_index=i, code="x" if passed else None,
                      passed=passed, outcome="passed" if passed else "compile_error",
                      tests_passed=int(passed), tests_total=1)


def test_summary_averages_pass_at_k_over_problems_and_scores_greedy_apart():
    rows = ([_row("a", i, i < 2) for i in range(4)] + [_row("a", 9, True, greedy=True)]
            + [_row("b", i, False, source="mbpp") for i in range(4)] + [_row("b", 9, False, True, "mbpp")])
    s = summarize(rows, [1, 2], model="m", sources=["x"], n=4)
    # a: pass@1 = 2/4, pass@2 = 1 - C(2,2)/C(4,2) = 5/6; b: 0
    assert s["pass@1"] == pytest.approx(0.25) and s["pass@2"] == pytest.approx(round(5 / 12, 4))
    assert s["greedy_pass@1"] == 0.5 and s["problems"] == 2 and s["samples"] == 8
    assert s["greedy_samples"] == 2 and s["without_code"] == 7
    assert s["by_source"]["he"]["pass@1"] == 0.5 and s["by_source"]["mbpp"]["greedy_pass@1"] == 0.0
    json.dumps(s)  # eval.json


def test_summary_skips_problems_with_fewer_samples_than_k():
    rows = [_row("a", 0, True), _row("b", 0, False), _row("b", 1, True)]
    s = summarize(rows, [1, 2])
    assert s["pass@1"] == pytest.approx(0.75) and s["pass@2"] == 1.0  # only b has 2 samples
    assert s["greedy_pass@1"] is None
    assert summarize([], [1])["pass@1"] is None


def test_eval_config_checks_k_against_n_and_falls_back_to_sampling():
    ((field, why),) = eval_problems(EvalConfig(n=3, k=[1, 5]))
    assert field == "k" and why.startswith("[5] larger than n (3)")
    cfg = EvalConfig(n=4, temperature=0.2)
    s = cfg.sampling(SamplingConfig(n=8, temperature=0.8, max_tokens=99, greedy=False))
    assert (s.n, s.temperature, s.max_tokens, s.greedy) == (4, 0.2, 99, True)
    with pytest.raises(ValueError):
        EvalConfig(k=[0])


def _problem(pid: str, prompt: str) -> Problem:
    return Problem(problem_id=pid, source="s", prompt=prompt)


def test_decontamination_matches_ids_and_normalized_prompts():
    held_out = [_problem("he/1", "def add(a, b):\n    \"\"\"Add two numbers.\"\"\"\n")]
    keys = {}
    from plumline.transforms.logic.evaluation import contamination_keys
    for p in held_out:
        for k in contamination_keys(p):
            keys[k] = p.problem_id
    assert "problem id" in overlap_reason(_problem("he/1", "anything else"), keys)
    same_text = _problem("mine/7", "DEF add(a,  b):\r\n  \"\"\"Add two   numbers.\"\"\"")
    assert "prompt text" in overlap_reason(same_text, keys)
    assert overlap_reason(_problem("mine/8", "def sub(a, b): ..."), keys) is None
    assert normalize_prompt("  A\u00a0b\tC ") == "a b c"


MBPP_ROWS = [
    {"source_file": "x", "task_id": 2, "prompt": "Write a function to add two numbers.",
     "code": "def add(a, b):\n    return a + b", "test_imports": [],
     "test_list": ["assert add(1, 2) == 3", "assert add(0, 0) == 0"]},
    {"source_file": "x", "task_id": 3, "prompt": "Write a function to negate a number.",
     "code": "def neg(a):\n    return -a", "test_imports": ["import math"],
     "test_list": ["assert neg(1) == -1"]},
]


def test_a_json_list_file_reads_like_jsonl(tmp_path):
    """MBPP's sanitized-mbpp.json is one JSON list, not JSON lines."""
    listed = tmp_path / "sanitized-mbpp.json"
    listed.write_text(json.dumps(MBPP_ROWS, indent=4))
    lines = tmp_path / "mbpp.jsonl"
    lines.write_text("".join(json.dumps(r) + "\n" for r in MBPP_ROWS))
    a = list(read_problems(SourceConfig(path=str(listed), format="mbpp", source="mbpp")))
    b = list(read_problems(SourceConfig(path=str(lines), format="mbpp", source="mbpp")))
    assert [p.problem_id for p in a] == [p.problem_id for p in b] and len(a) == 2
    assert all(isinstance(p, Problem) for p in a) and a[1].entry_point == "neg"
    assert a == b


def test_a_bad_json_list_names_the_file_and_the_item(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("[{\"prompt\": 1,")
    (err,) = read_problems(SourceConfig(path=str(bad), format="mbpp"))
    assert err.kind == "bad_input" and "malformed JSON" in err.reason and "bad.json" in err.input
    mixed = tmp_path / "mixed.json"
    mixed.write_text(json.dumps([MBPP_ROWS[0], 7]))
    items = list(read_problems(SourceConfig(path=str(mixed), format="mbpp")))
    assert isinstance(items[0], Problem) and items[1].input.endswith("mixed.json#1")
    empty = tmp_path / "empty.json"
    empty.write_text("[]")
    (err,) = read_problems(SourceConfig(path=str(empty)))
    assert err.kind == "missing_input"
