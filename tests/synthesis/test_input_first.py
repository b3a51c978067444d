"""Input-first synthesis (issue 13): the inputs parser, type-aware mutation (unit + hypothesis),
expected outputs and asserts, agreement, suite reduction, and the whole batch with the real sandbox on
bundled easy problems."""

from __future__ import annotations

import math
import random
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from plumline.data_schemas import Problem, TestDropReason, TestStatus
from plumline.transforms.logic.readers import SourceConfig, read_problems
from plumline.transforms.logic.synthesis import TestSynthesisConfig, synthesize_batch
from plumline.transforms.logic.synthesis.checks import check_test
from plumline.transforms.logic.synthesis.expected import (
    PROBE_MARK,
    agreed_output,
    expected_assert,
    kill_matrix,
    probe_specs,
    read_probe_result,
    reduce_suite,
)
from plumline.transforms.logic.synthesis.inputs import (
    arity,
    build_inputs_prompt,
    example_inputs,
    parse_inputs_reply,
)
from plumline.transforms.logic.synthesis.mutation import edge_values, mutate_inputs, mutate_value


def _problem(sig: str = "def f(a, b):", ep: str = "f", ref: str | None = None) -> Problem:
    prompt = f'{sig}\n    """Do it.\n    >>> {ep}(1, 2)\n    3\n    """\n'
    return Problem(problem_id="p", source="t", prompt=prompt, entry_point=ep, reference_solution=ref)


# ---- parser ----------------------------------------------------------------------------------------

def test_arity_from_signature():
    assert arity(_problem("def f(a, b):")) == (2, 2)
    assert arity(_problem("def f(a, b=1):")) == (1, 2)
    assert arity(_problem("def f(*xs):")) == (0, None)
    assert arity(Problem(problem_id="p", source="t", prompt="no code", entry_point="f")) is None


def test_parse_calls_tuples_and_bullets():
    reply = ("Here are inputs:\n```python\nf(1, [2, 3])\n(4, 'x')\n- 5, {'a': 1}\n2. f(True, None)  # edge\n"
             "f(1, [2, 3])\nf(x, 2)\n7\n```\nThanks!")
    got = parse_inputs_reply(reply, "f", (2, 2))
    assert got.kept == [(1, [2, 3]), (4, "x"), (5, {"a": 1}), (True, None)]
    reasons = [d.reason for d in got.dropped]
    assert reasons == [TestDropReason.DUPLICATE, TestDropReason.SYNTAX_ERROR, TestDropReason.WRONG_ARITY]


def test_parse_single_argument_lines_keep_lists_whole():
    got = parse_inputs_reply("[1, 2, 3]\n[]\n'abc'\n1, 2\n([4],)", "g", (1, 1))
    assert got.kept == [([1, 2, 3],), ([],), ("abc",), ([4],)]
    assert [d.reason for d in got.dropped] == [TestDropReason.WRONG_ARITY]


def test_parse_json_list_and_json_names():
    reply = '```json\n[\n  [1, true],\n  [2, null],\n  {"input": [3, false]}\n]\n```'
    assert parse_inputs_reply(reply, "f", (2, 2)).kept == [(1, True), (2, None), (3, False)]


def test_parse_empty_prose_and_never_eval():
    assert parse_inputs_reply("", "f").dropped[0].reason == TestDropReason.EMPTY_REPLY
    assert parse_inputs_reply("I cannot help.", "f").dropped[0].reason == TestDropReason.NO_TESTS
    got = parse_inputs_reply("f(__import__('os').system('true'), 1)\n(1+1, 2)", "f", (2, 2))
    assert not got.kept and all(d.reason == TestDropReason.SYNTAX_ERROR for d in got.dropped)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_parse_never_raises(text):
    out = parse_inputs_reply(text, "f", (1, 2))
    assert all(isinstance(a, tuple) and 1 <= len(a) <= 2 for a in out.kept)


def test_prompt_asks_for_inputs_not_outputs():
    msg = build_inputs_prompt(_problem(), 7)[-1]["content"]
    assert "7 calls" in msg and "expected results" in msg


def test_example_inputs_from_docstring_calls():
    p = _problem()
    assert example_inputs(p, ["assert f(1, 2) == 3", "assert f([1], 'a') == 0", "assert g(9) == 1"]) == \
        [(1, 2), ([1], "a")]


# ---- mutation ----------------------------------------------------------------------------------------

_scalars = st.one_of(st.booleans(), st.integers(-1000, 1000), st.floats(-1e3, 1e3, allow_nan=False),
                     st.text(max_size=10))
_values = st.recursive(_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=5), st.tuples(inner, inner),
    st.dictionaries(st.text(max_size=3), inner, max_size=3)), max_leaves=10)


@settings(max_examples=300, deadline=None)
@given(_values, st.integers(0, 2**31 - 1))
def test_mutation_keeps_type(v, seed):
    assert type(mutate_value(v, random.Random(seed))) is type(v)
    assert all(type(e) is type(v) for e in edge_values(v))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(_values, _values), min_size=1, max_size=3), st.integers(0, 2**31 - 1))
def test_mutate_inputs_deterministic_capped_and_typed(seeds, seed):
    a = mutate_inputs(seeds, 15, seed)
    assert a == mutate_inputs(seeds, 15, seed)
    assert len(a) <= 15 and len({repr(x) for x in a}) == len(a)
    for args in a:
        assert len(args) == 2
        assert any(all(type(x) is type(y) for x, y in zip(args, s)) for s in seeds)


def test_mutation_reaches_edges():
    out = mutate_inputs([(5, "abc", [1, 2], 2.5)], 200, seed=3)
    flat = [x for args in out for x in args]
    assert 0 in flat and -5 in flat and "" in flat and [] in flat and 0.0 in flat
    assert any(isinstance(x, str) and len(x) >= 30 for x in flat)  # long
    assert any(isinstance(x, list) and len(x) >= 30 for x in flat)
    assert any(isinstance(x, int) and not isinstance(x, bool) and x < 0 for x in flat)  # negative
    assert mutate_inputs([(5,)], 30, seed=1) != mutate_inputs([(5,)], 30, seed=2)


def test_mutation_of_sets_and_nested():
    rng = random.Random(0)
    for _ in range(50):
        assert isinstance(mutate_value({1, 2, 3}, rng), set)
        m = mutate_value({"a": [(1, "x")]}, rng)
        assert isinstance(m, dict)


# ---- expected outputs, agreement, reduction -------------------------------------------------------------

def _tr(status, msg="", etype=None, tid="p0"):
    return SimpleNamespace(test_id=tid, status=status, error_message=msg, error_type=etype)


def test_read_probe_result():
    ok = read_probe_result(_tr(TestStatus.FAILED.value, PROBE_MARK + "[1, (2, 'a')]", "AssertionError"))
    assert ok.ok and ok.value == [1, (2, "a")]
    assert read_probe_result(_tr("error", "", "ZeroDivisionError")).reason == TestDropReason.ORACLE_ERROR
    assert read_probe_result(_tr("timeout")).reason == TestDropReason.ORACLE_TIMEOUT
    obj = read_probe_result(_tr("failed", PROBE_MARK + "<object at 0x1>", "AssertionError"))
    assert obj.reason == TestDropReason.UNREPRESENTABLE_OUTPUT
    # a probe whose message does not carry the mark (e.g. the test itself failed otherwise) is no value
    assert not read_probe_result(_tr("failed", "boom", "AssertionError")).ok
    assert read_probe_result(None).reason == TestDropReason.ORACLE_NOT_RUN


def test_expected_assert_shapes():
    assert expected_assert("f", (1, "a"), [1, 2]) == "assert f(1, 'a') == [1, 2]"
    assert expected_assert("f", (), None) == "assert f() is None"
    fl = expected_assert("f", (1,), 0.1 + 0.2)
    assert "math.isclose(f(1), 0.30000000000000004" in fl
    ns: dict = {"f": lambda x: 0.3}
    exec(fl, ns)  # noqa: S102  our own generated test, on a trusted lambda
    lst = expected_assert("f", (2,), [1.5, 2])
    exec(lst, {"f": lambda x: [1.5000000001, 2]})  # noqa: S102
    with pytest.raises(AssertionError):
        exec(lst, {"f": lambda x: (1.5, 2)})  # noqa: S102  a tuple is not a list
    for code in (fl, lst):
        assert check_test(code, "f", 1000)[0] is None


def test_agreed_output():
    assert agreed_output({"a": "1", "b": "1", "c": "2"}) == "1"
    assert agreed_output({"a": "1", "b": "2"}) is None  # tie
    assert agreed_output({"a": "1", "b": None, "c": None, "d": None}, min_size=1) is None  # share 1/4
    assert agreed_output({"a": "1"}, min_size=2) is None
    assert agreed_output({}) is None


def test_reduce_suite_greedy_cover():
    kills = {"t1": {0, 1}, "t2": {1, 2, 3}, "t3": {3}, "t4": set(), "t5": {4}}
    assert reduce_suite(["t1", "t2", "t3", "t4", "t5"], kills) == ["t1", "t2", "t5"]
    assert reduce_suite(["t1", "t2", "t3", "t4", "t5"], kills, already_killed={0, 4}) == ["t2"]
    assert reduce_suite(["t4", "t3"], kills, min_tests=2) == ["t4", "t3"]
    res = [SimpleNamespace(test_results=[_tr("passed", tid="a"), _tr("failed", tid="b")]),
           SimpleNamespace(test_results=[_tr("error", tid="a")])]
    assert kill_matrix(["a", "b"], res) == {"a": {1}, "b": {0, 1}}


# ---- with the real sandbox ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sandbox():
    from plumline.sandbox import Sandbox
    with Sandbox(workers=2) as sb:
        yield sb


def test_probes_in_real_sandbox(sandbox):
    ref = "def f(a, b):\n    return {'q': a / b, 's': {a, b}, 't': (a,)}\n"
    inputs = [(1, 2), (1, 0), (2.5, 0.5)]
    res = sandbox.run_many([(ref, probe_specs("f", inputs), "f")])
    from plumline.transforms.logic.synthesis.expected import read_probe_results
    got = read_probe_results(res, 3)
    assert got[0].ok and got[0].value == {"q": 0.5, "s": {1, 2}, "t": (1,)}
    assert got[1].reason == TestDropReason.ORACLE_ERROR
    assert got[2].ok and got[2].value["q"] == 5.0


def _easy(n: int) -> list[Problem]:
    items = read_problems(SourceConfig(path="pipeline/assets/easy_train.jsonl", limit=n))
    return [p for p in items if isinstance(p, Problem)]


class _Gen:
    """A fake test writer: a fixed reply per problem (string arguments for one-argument problems)."""

    def __init__(self, reply: str):
        self.reply, self.calls = reply, 0

    def __call__(self, requests):
        self.calls += 1
        return [SimpleNamespace(request_id=r.request_id, error=None,
                                completions=[SimpleNamespace(text=self.reply)]) for r in requests]


def test_batch_input_first_with_real_sandbox(sandbox):
    problems = _easy(4)
    calls = []

    def run_many(jobs):
        calls.append(len(jobs))
        return sandbox.run_many(jobs)

    cfg = TestSynthesisConfig(mode="inputs", max_inputs_per_problem=12, reduce=True, reduce_min_tests=2)
    gen = _Gen("```python\n'Hello big World'\n''\n1, 2, 3\n```")
    out, errors = synthesize_batch(problems, cfg, seed=5, generate=gen,
                                   render_chat=lambda m: m[-1]["content"], run_many=run_many, writer="fake")
    assert not errors and gen.calls == 1
    assert len(calls) == 2  # one call for expected outputs, one for the reduction, for the whole batch
    by_pid = {pt.stats.problem_id: pt for pt in out}
    for p in problems:
        synth = [t for t in by_pid[p.problem_id].tests if t.origin == "synthesized" and t.kept]
        assert len(synth) >= 2, p.problem_id
        # every kept test passes on the reference, in the sandbox
        r = sandbox.run(p.reference_solution, [t.spec for t in synth], p.entry_point)
        assert r.passed == r.total == len(synth), (p.problem_id, r)
        assert {t.writer for t in synth} <= {"fake", "type_mutation"}
    # the same run seed gives the same tests
    again, _ = synthesize_batch(problems, cfg, seed=5, generate=_Gen(gen.reply),
                                render_chat=lambda m: m[-1]["content"], run_many=sandbox.run_many,
                                writer="fake")
    assert [[t.test_id for t in pt.tests] for pt in again] == [[t.test_id for t in pt.tests] for pt in out]


def test_batch_input_first_catches_wrong_programs(sandbox):
    """The point of it all: a wrong program that passes the docstring examples fails the new tests."""
    p = next(p for p in _easy(20) if p.entry_point == "repeat_string")
    cfg = TestSynthesisConfig(mode="inputs", max_inputs_per_problem=20)
    out, _ = synthesize_batch([p], cfg, seed=1, generate=_Gen("('ab', 2)\n('x', -1)"),
                              render_chat=lambda m: m[-1]["content"], run_many=sandbox.run_many)
    wrong = "def repeat_string(s, n):\n    return s * 3 if n == 3 else ('' if n == 0 else s)\n"
    examples = [t.spec for t in out[0].tests if t.origin == "example"]
    synth = [t.spec for t in out[0].tests if t.origin == "synthesized" and t.kept]
    assert sandbox.run(wrong, examples, p.entry_point).outcome == "passed"
    assert sandbox.run(wrong, synth, p.entry_point).outcome != "passed"


def test_batch_without_reference_and_agreement_off_keeps_examples():
    problems = [_problem(ref=None)]
    gen = _Gen("(1, 2)")
    cfg = TestSynthesisConfig(mode="inputs", agreement_inputs=False)
    out, errors = synthesize_batch(problems, cfg, seed=0, generate=gen,
                                   render_chat=lambda m: m[-1]["content"], run_many=None)
    assert gen.calls == 0 and not errors  # nothing can give expected outputs: no generation spent
    assert {t.origin for t in out[0].tests} == {"example"}
    assert math.isfinite(out[0].stats.kept)


def test_batch_without_reference_writes_probes_for_agreement():
    """No reference: the model's inputs and the mutations of the examples' inputs become probe rows
    (the call only, no expected value); nothing runs in the sandbox at this stage."""
    problems = [_problem(ref=None)]
    gen = _Gen("f(5, 6)\n(7, 8)")
    cfg = TestSynthesisConfig(mode="inputs", max_inputs_per_problem=6)
    out, errors = synthesize_batch(problems, cfg, seed=0, generate=gen,
                                   render_chat=lambda m: m[-1]["content"], run_many=None)
    assert gen.calls == 1 and not errors
    probes = [t for t in out[0].tests if t.kind == "probe"]
    assert probes and all(t.kept and t.origin == "synthesized" and t.for_training for t in probes)
    calls = [t.code for t in probes]
    assert "f(5, 6)" in calls and "f(7, 8)" in calls  # the model's inputs, as calls
    assert "f(1, 2)" not in calls  # the example's own input is already an example test
    assert all(c.startswith("f(") and "assert" not in c for c in calls)
    assert {t.writer for t in probes} >= {"type_mutation"}
    again, _ = synthesize_batch(problems, cfg, seed=0, generate=_Gen("f(5, 6)\n(7, 8)"),
                                render_chat=lambda m: m[-1]["content"], run_many=None)
    assert [t.test_id for t in again[0].tests] == [t.test_id for t in out[0].tests]  # deterministic
