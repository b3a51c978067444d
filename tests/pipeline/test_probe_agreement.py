"""Tests without a reference solution: probe inputs resolved by agreement among the policy's samples
(``verification.resolve_probes``), through the real sandbox."""

from __future__ import annotations

import pytest
from plumline.data_schemas import Problem, Sample, TestCase, TestDropReason
from plumline.transforms.logic.validation import TestValidationConfig
from plumline.transforms.logic.verification import resolve_probes, verify_problem

PID = "add"
PROBLEM = Problem(problem_id=PID, source="t", entry_point="add",
                  prompt='def add(a, b):\n    """Add two numbers.\n    >>> add(1, 2)\n    3\n    """\n')
RIGHT = ["def add(a, b):\n    return a + b\n", "def add(a, b):\n    return b + a\n",
         "def add(a, b):\n    return sum([a, b])\n"]
WRONG = "def add(a, b):\n    return a - b\n"


@pytest.fixture(scope="module")
def run_many():
    from plumline.sandbox import Sandbox
    calls: list[int] = []
    with Sandbox(workers=2) as sb:
        def counted(jobs):
            calls.append(len(jobs))
            return sb.run_many(jobs)
        counted.calls = calls
        yield counted


def _probe(call: str) -> TestCase:
    return TestCase(test_id=TestCase.make_id(PID, "synthesized", "probe", call), problem_id=PID, kind="probe",
                    code=call, origin="synthesized", writer="type_mutation")


def _sample(i: int, code: str | None) -> Sample:
    return Sample(sample_id=f"s{i}", problem_id=PID, round=0, policy="m", policy_revision="r", prompt="p",
                  completion=code or "no code", code=code, finish_reason="stop", prompt_tokens=1,
                  completion_tokens=1, temperature=1.0, top_p=1.0, max_tokens=64, seed=0, sample_index=i)


def _samples(codes: list[str]) -> list[Sample]:
    return [_sample(i, c) for i, c in enumerate(codes)]


def test_agreed_probes_become_asserts_that_judge_the_samples(run_many):
    tests = [_probe("add(2, 3)"), _probe("add(-1, 5)"), _probe("add(0, 0)")]
    # the wrong program, sampled four times, is still one program: the three right ones outvote it
    samples = _samples(RIGHT + [WRONG] * 4)
    before = len(run_many.calls)
    out = verify_problem(PROBLEM, tests, samples, run_many=run_many, cfg=TestValidationConfig(), round=0)
    kept = {t.code for t in out.tests if t.kept}
    assert kept == {"assert add(2, 3) == 5", "assert add(-1, 5) == 4", "assert add(0, 0) == 0"}
    assert all(t.kind == "assert" for t in out.tests)
    by_code = {s.code: e for s in samples for e in out.executions if e.sample_id == s.sample_id}
    assert all(by_code[c].outcome == "passed" for c in RIGHT)
    # add(0, 0) == 0 for a - b too: the wrong program passes that test only
    assert by_code[WRONG].outcome == "failed" and by_code[WRONG].passed == 1
    # one run_many for the probes (distinct programs only), one for the verdicts
    assert run_many.calls[before:] == [4, 7]


def test_probes_without_agreement_are_dropped_with_the_reason(run_many):
    tests = [_probe("add(2, 3)"), _probe("add('x', 1)")]  # the second raises in every program
    samples = _samples([RIGHT[0], WRONG])  # one right, one wrong: no cluster of two
    out = resolve_probes(PROBLEM, tests, samples, run_many=run_many, cfg=TestValidationConfig())
    assert all(not t.kept and t.drop_reason == TestDropReason.NO_AGREEMENT.value for t in out)
    assert all(t.kind == "probe" for t in out)
    assert all("largest holds 1 of 2 voting programs" in t.drop_detail for t in out)
    per_input = TestValidationConfig(probe_agreement="input")
    out = resolve_probes(PROBLEM, tests, samples, run_many=run_many, cfg=per_input)
    details = {t.code: t.drop_detail for t in out}
    assert "1 of 2 voting programs" in details["add(2, 3)"] and "0 of 2" in details["add('x', 1)"]
    looser = TestValidationConfig(probe_min_size=1, probe_min_share=0.5)
    out = resolve_probes(PROBLEM, tests, _samples([RIGHT[0]]), run_many=run_many, cfg=looser)
    assert {t.code for t in out if t.kept} == {"assert add(2, 3) == 5"}
    dropped = [t for t in out if not t.kept]
    assert [t.code for t in dropped] == ["add('x', 1)"] and "raised or timed out" in dropped[0].drop_detail


def test_only_programs_that_pass_the_known_tests_vote(run_many):
    """Three distinct wrong programs agree with each other, but the docstring example refutes them:
    the one right program is the only voter (and, alone, too few)."""
    example = TestCase(test_id="ex", problem_id=PID, kind="assert", code="assert add(1, 2) == 3",
                       origin="example")
    wrong = ["def add(a, b):\n    return a * b\n", "def add(a, b):\n    return b * a\n",
             "def add(a, b):\n    r = a\n    return r * b\n"]
    tests = [example, _probe("add(2, 3)")]
    out = resolve_probes(PROBLEM, tests, _samples([*wrong, RIGHT[0]]), run_many=run_many,
                         cfg=TestValidationConfig())
    probe = next(t for t in out if t.test_id != "ex")
    assert not probe.kept and "1 of 4 distinct programs pass the known tests" in probe.drop_detail
    out = resolve_probes(PROBLEM, tests, _samples([*wrong, *RIGHT]), run_many=run_many,
                         cfg=TestValidationConfig())
    assert {t.code for t in out if t.kept} == {"assert add(1, 2) == 3", "assert add(2, 3) == 5"}


def test_program_clusters_not_single_inputs_decide():
    """Two wrong programs agreeing on one input cannot outvote the right cluster there; a cluster that
    never returns a value never wins."""
    from plumline.transforms.logic.synthesis.expected import agreed_behaviour, canonical_key
    right = ["5", "4", "0"]
    behaviours = {"r1": right, "r2": right, "w1": ["6", "4", "9"], "w2": ["6", "7", "1"]}
    assert agreed_behaviour(behaviours) == (right, 2)
    assert agreed_behaviour({"a": ["1"], "b": ["2"]}) is None  # a tie
    none = canonical_key(None)
    assert agreed_behaviour({"a": [none, None], "b": [none, None], "c": ["1", "2"]}) is None
    assert agreed_behaviour(behaviours, min_size=3) is None


def test_outputs_are_compared_by_value_not_by_repr(run_many):
    """Two programs building the same set in different orders agree; a float output gets a tolerant
    assert."""
    problem = Problem(problem_id=PID, source="t", entry_point="f", prompt="def f(n):\n    pass\n")
    codes = ["def f(n):\n    return {str(i) for i in range(n)}\n",
             "def f(n):\n    return set(reversed([str(i) for i in range(n)]))\n",
             ("def f(n):\n    s = set()\n    for i in range(n - 1, -1, -1):\n"
             "        s.add(str(i))\n    return s\n")]
    out = resolve_probes(problem, [_probe("f(30)")], _samples(codes), run_many=run_many,
                         cfg=TestValidationConfig(probe_min_share=1.0))
    assert [t.kept for t in out] == [True]
    floats = ["def f(n):\n    return n / 3\n", "def f(n):\n    return n * (1 / 3)\n"]
    out = resolve_probes(problem, [_probe("f(1)")], _samples(floats), run_many=run_many,
                         cfg=TestValidationConfig(probe_min_share=1.0))
    assert out[0].kept and "math.isclose" in out[0].code


def test_no_sample_with_code_drops_every_probe_without_running_anything(run_many):
    before = len(run_many.calls)
    samples = [_sample(0, None)]
    out = resolve_probes(PROBLEM, [_probe("add(2, 3)")], samples, run_many=run_many,
                         cfg=TestValidationConfig())
    assert not out[0].kept and "0 of 0 voting programs" in out[0].drop_detail
    assert len(run_many.calls) == before
