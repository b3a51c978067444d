"""Sampling logic: requests, seeds, program assembly, completions -> Sample records."""

from hypothesis import given, settings
from hypothesis import strategies as st
from plumline.data_schemas import Problem
from plumline.llm import Completion, GenerationResult
from plumline.transforms.logic.sampling import (
    assemble_program,
    derive_seed,
    plan_requests,
    sample_batch,
)

PROMPT = 'from typing import List\n\n\ndef total(xs: List[int]) -> int:\n    """Sum of xs."""\n'
PROBLEM = Problem(problem_id="p1", source="t", prompt=PROMPT, entry_point="total")


def test_plan_has_sampled_and_greedy_requests_with_stable_seeds():
    plan = plan_requests(PROBLEM, "PROMPT", n=4, temperature=0.8, top_p=0.9, max_tokens=64, greedy=True,
                         round=0, base_seed=7)
    sampled, greedy = plan.requests
    assert sampled.n == 4 and sampled.temperature == 0.8
    assert greedy.n == 1 and greedy.temperature == 0.0
    again = plan_requests(PROBLEM, "PROMPT", n=4, temperature=0.8, top_p=0.9, max_tokens=64, greedy=True,
                          round=0, base_seed=7)
    assert again.requests[0].seed == sampled.seed
    other_round = plan_requests(PROBLEM, "PROMPT", n=4, temperature=0.8, top_p=0.9, max_tokens=64,
                                greedy=False, round=1, base_seed=7)
    assert len(other_round.requests) == 1 and other_round.requests[0].seed != sampled.seed
    assert derive_seed(0, "a") != derive_seed(1, "a")


def test_assemble_chat_whole_function_gets_prompt_imports():
    code = assemble_program(PROBLEM, "Here:\n```python\ndef total(xs: List[int]) -> int:\n    return sum(xs)\n```",
                            chat=True)
    assert code.startswith("from typing import List\n")
    ns = {}
    exec(compile(code, "<t>", "exec"), ns)  # trusted: our own literal
    assert ns["total"]([1, 2]) == 3


def test_assemble_chat_body_only_is_appended_to_prompt():
    code = assemble_program(PROBLEM, "```python\nreturn sum(xs)\n```", chat=True)
    assert "def total" in code and code.rstrip().endswith("return sum(xs)")
    ns = {}
    exec(compile(code, "<t>", "exec"), ns)
    assert ns["total"]([4, 5]) == 9


def test_assemble_base_model_continuation_and_no_code():
    code = assemble_program(PROBLEM, "    return sum(xs)\n", chat=False)
    assert code.startswith(PROMPT)
    assert assemble_program(PROBLEM, "I cannot help with that.", chat=True) is None


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_assemble_never_crashes(text):
    for chat in (True, False):
        out = assemble_program(PROBLEM, text, chat=chat)
        assert out is None or isinstance(out, str)


def test_sample_batch_one_engine_call_and_errors_per_problem():
    calls = []
    long_problem = Problem(problem_id="p2", source="t", prompt="def f():\n    pass\n", entry_point="f")

    def generate(requests):
        calls.append(list(requests))
        out = []
        for r in requests:
            if r.request_id.startswith("p2"):
                out.append(GenerationResult(request_id=r.request_id, completions=(),
                                            error="prompt too long: 5000 tokens > 2048"))
                continue
            comps = tuple(Completion(text="```python\ndef total(xs):\n    return sum(xs)\n```" if i % 2 == 0
                                     else "no idea", finish_reason="stop", prompt_tokens=10,
                                     completion_tokens=5, index=i) for i in range(r.n))
            out.append(GenerationResult(request_id=r.request_id, completions=comps, error=None))
        return out

    samples, errors = sample_batch(
        [PROBLEM, long_problem], render=lambda p: p.prompt, generate=generate, n=4, temperature=0.8, top_p=1.0,
        max_tokens=32, greedy=True, round=0, base_seed=0, stop=(), policy="m", policy_revision="r",
        backend="test", chat=True)
    assert len(calls) == 1 and len(calls[0]) == 4  # both problems, sampled + greedy, in ONE call
    assert len(samples) == 5 and sum(s.is_greedy for s in samples) == 1
    assert len({s.sample_id for s in samples}) == 5
    assert sum(s.code is None for s in samples) == 2
    reasons = sorted(e.reason for e in errors)
    assert sum(r == "completion contains no code" for r in reasons) == 2
    assert sum("too long" in r for r in reasons) == 2 and all(e.problem_id for e in errors)
