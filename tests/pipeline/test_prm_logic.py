"""PRM labelling logic (transforms/logic/prm.py): the binary search against a linear scan, prefix
mapping, selection, and the batched driver with a deterministic completer and executor as test doubles
for the engine and the sandbox."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from plumline.data_schemas import (
    ErrorKind,
    Execution,
    Outcome,
    Problem,
    RecordError,
    Sample,
    TestCase,
)
from plumline.data_schemas.records import PrmRow
from plumline.data_schemas.steps import is_code_line, join_steps
from plumline.llm import BackendConfig, Completion, GenerationResult
from plumline.transforms.logic.prm import (
    Continuation,
    NotLabelled,
    PrefixSearch,
    PrmConfig,
    label_programs,
    linear_first_bad_step,
    plan_batches,
    prm_problems,
    probes_needed,
    program_steps,
    select_candidates,
)
from plumline.transforms.logic.sampling import SamplingConfig, assemble_program

FENCE = "```python\n"


def _search(n: int, good, *, check_empty: bool = False, same_as_empty: int = 0) -> PrefixSearch:
    search = PrefixSearch(n, max_probes=64, check_empty=check_empty, same_as_empty=same_as_empty)
    while (k := search.next_probe()) is not None:
        search.record(k, good(k))
    return search


# --- the search -----------------------------------------------------------------------------------

@settings(max_examples=300, deadline=None)
@given(n=st.integers(1, 70), data=st.data(), check_empty=st.booleans())
def test_binary_search_finds_the_first_bad_step_of_a_linear_scan(n, data, check_empty):
    bad_from = data.draw(st.integers(1, n), label="first bad prefix")  # prefix n is bad (the program)
    good = bad_from.__gt__  # a monotone oracle: prefix k is good when k < bad_from
    search = _search(n, good, check_empty=check_empty)
    assert search.first_bad_step == linear_first_bad_step(n, good) == bad_from - 1
    assert search.labels() == [i < bad_from - 1 for i in range(n)]
    assert len(search.probed) <= probes_needed(n, check_empty) <= math.ceil(math.log2(max(n, 1))) + 1
    assert all(0 <= k < n for k in search.probed) and len(set(search.probed)) == len(search.probed)


@settings(max_examples=300, deadline=None)
@given(n=st.integers(1, 40), data=st.data(), check_empty=st.booleans())
def test_a_non_monotone_oracle_ends_on_a_consistent_boundary(n, data, check_empty):
    verdicts = data.draw(st.lists(st.booleans(), min_size=n, max_size=n), label="good(k) for k < n")
    search = _search(n, lambda k: verdicts[k], check_empty=check_empty)
    labels, first = search.labels(), search.first_bad_step
    assert len(labels) == n and 0 <= first < n
    assert labels == [True] * first + [False] * (n - first)  # one boundary, whatever the oracle said
    observed = dict(zip(search.probed, search.passes, strict=True))
    bad_prefix = first + 1
    if bad_prefix < n and bad_prefix in observed:
        assert observed[bad_prefix] == 0  # the boundary's bad side was seen bad
    if first in observed and first > 0:
        assert observed[first] == 1  # ... and its good side good
    assert len(search.probed) <= probes_needed(n, check_empty)


def test_the_empty_prefix_probed_first_ends_the_search_when_it_is_bad():
    search = _search(9, lambda k: False, check_empty=True)
    assert search.probed == [0] and search.first_bad_step == 0 and search.labels() == [False] * 9
    search = _search(9, lambda k: k < 5, check_empty=True)
    assert search.probed[0] == 0 and search.first_bad_step == 4


def test_prefixes_without_model_text_share_the_empty_prefix_verdict():
    search = _search(8, lambda k: k < 6, same_as_empty=5)
    assert all(k > 5 for k in search.probed) and search.first_bad_step == 5
    assert _search(6, lambda k: True, same_as_empty=5).probed == []  # one step of the model: bad


def test_a_probe_must_be_the_one_asked_for():
    search = PrefixSearch(8, max_probes=3)
    k = search.next_probe()
    with pytest.raises(ValueError, match="probe asked for"):
        search.record(k + 1, True)


# --- programs, completers, executors --------------------------------------------------------------

def _problem(entry: str = "f", prompt: str = "def f(x):\n    pass\n") -> Problem:
    return Problem(problem_id=f"p-{entry}", source="t", prompt=prompt, entry_point=entry)


def _sample(problem: Problem, completion: str, sid: str = "s1", chat: bool = True) -> Sample:
    code = assemble_program(problem, completion, chat=chat)
    return Sample(sample_id=sid, problem_id=problem.problem_id, round=0, policy="m", policy_revision="r",
                  prompt="<prompt>", completion=completion, code=code,
                  finish_reason="stop", prompt_tokens=1, completion_tokens=1, temperature=1.0, top_p=1.0,
                  max_tokens=64, seed=0, sample_index=0)


def _code_lines(text: str) -> list[str]:
    return [line.rstrip() for line in text.split("\n") if is_code_line(line)]


class Completer:
    """A deterministic, monotone policy double: a prefix that agrees with the reference program so far
    gets the reference's rest as its first continuation; every other continuation returns None."""

    def __init__(self, references: dict[str, list[str]]):
        self.references = references  # sample prompt -> reference code lines
        self.calls: list[list[str]] = []

    def __call__(self, requests):
        self.calls.append([r.request_id for r in requests])
        out = []
        for r in requests:
            written = r.prompt.rpartition(FENCE)[2]
            ref = next(lines for key, lines in self.references.items() if r.prompt.startswith(key))
            lines = _code_lines(written)
            rest = ref[len(lines):] if lines == ref[:len(lines)] else ["    return None"]
            # the prefix stops before its last newline: a continuation starts with the newline
            texts = ["\n" + "\n".join(rest) + "\n```\n"] + ["\n    return None\n```\n"] * (r.n - 1)
            out.append(GenerationResult(r.request_id, tuple(Completion(t, "stop", 1, 1, i)
                                                           for i, t in enumerate(texts))))
        return out


class Executor:
    """A sandbox double: a program passes when its code lines are the reference's."""

    def __init__(self, references: dict[str, list[str]]):
        self.references = references
        self.calls = 0

    def __call__(self, jobs):
        self.calls += 1
        out = []
        for code, tests, _ in jobs:
            ok = _code_lines(code) == self.references[tests[0].code]  # the test names its reference
            out.append(SimpleNamespace(outcome=Outcome.PASSED.value if ok else Outcome.FAILED.value,
                                       total=1, passed=int(ok)))
        return out


PARAMS = Continuation(k=3, max_probes=8, temperature=0.8, top_p=0.95, max_tokens=64)


def _candidate(problem, sample, tests, **kw):
    from plumline.transforms.logic.prm import Candidate

    return Candidate(problem=problem, sample=sample, outcome=Outcome.FAILED.value, tests=tests, **kw)


@st.composite
def programs(draw):
    """(reference lines, failing program text, index of the first wrong code line)."""
    m = draw(st.integers(2, 14))
    ref = ["def f(x):"] + [f"    v{i} = x + {i}" for i in range(1, m - 1)] + ["    return x"]
    wrong_at = draw(st.integers(1, m - 1))
    lines = ref[:wrong_at] + ["    return None"] + ref[wrong_at + 1:]
    out = []
    for line in lines:  # blank and comment lines join the next code line
        out += draw(st.lists(st.sampled_from(["", "    # a note"]), max_size=2))
        out.append(line)
    out += draw(st.lists(st.sampled_from(["", "# the end"]), max_size=1))
    return ref, "\n".join(out), wrong_at


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(progs=st.lists(programs(), min_size=1, max_size=5))
def test_the_driver_labels_like_a_linear_scan_with_one_engine_call_per_probe_level(progs):
    cands, refs, expected = [], {}, {}
    for i, (ref, text, wrong_at) in enumerate(progs):
        problem = _problem()
        sample = _sample(problem, f"Here it is:\n{FENCE}{text}\n```\nDone.\n", sid=f"s{i}")
        sample = Sample.from_dict({**sample.to_dict(), "prompt": f"<prompt {i}>"})
        refs[f"<prompt {i}>"] = ref
        test = TestCase(test_id=f"t{i}", problem_id=problem.problem_id, kind="assert",
                        code=f"<prompt {i}>", origin="synthesized")
        cands.append(_candidate(problem, sample, (test.spec,)))
        expected[sample.sample_id] = wrong_at
    completer, executor = Completer(refs), Executor(refs)
    out = label_programs(cands, generate=completer, run_many=executor, params=PARAMS, base_seed=0, chat=True)
    assert not out.errors and len(out.rows) == len(cands)
    for cand, row in zip(cands, sorted(out.rows, key=lambda r: int(r.sample_id[1:])), strict=True):
        steps = list(row.completions)
        assert join_steps(steps) == cand.sample.code.rstrip() and len(row.labels) == len(steps)
        assert row.first_bad_step == expected[row.sample_id]

        def good(k, cand=cand, steps=steps):  # the linear scan: probe prefix k with the same doubles
            prog = program_steps(cand.problem, cand.sample, chat=True)
            prompt = cand.sample.prompt + cand.sample.completion[:prog.offsets[k]]
            from plumline.llm import GenerationRequest
            res = Completer(refs)([GenerationRequest("r", prompt, n=PARAMS.k)])[0]
            cut = cand.sample.completion[:prog.offsets[k]]
            codes = [assemble_program(cand.problem, cut + c.text, chat=True) for c in res.completions]
            return any(r.outcome == "passed" for r in executor([(c, cand.tests, "f") for c in codes if c]))

        assert row.first_bad_step == linear_first_bad_step(len(steps), good)
        assert list(row.labels) == [i < row.first_bad_step for i in range(len(steps))]
        assert all(p in (0, 1) for p in row.probe_passes)
    levels = max(len(r.probed) for r in out.rows)
    assert len(completer.calls) == levels == out.stats.probe_levels  # ONE engine call per probe level
    assert len(completer.calls[0]) == sum(1 for r in out.rows if r.probed)  # every program in the first
    assert out.stats.probes == sum(len(r.probed) for r in out.rows)
    assert out.stats.completions == PARAMS.k * out.stats.probes


# --- prefixes in the completion -------------------------------------------------------------------

def test_prefixes_end_after_each_step_in_the_raw_completion():
    problem = _problem(prompt="from typing import List\n\ndef f(x: List[int]):\n    pass\n")
    completion = f"Sure:\n{FENCE}def f(x):\n    # sum it\n    s = sum(x)\n\n    return s\n```\nBye"
    sample = _sample(problem, completion)
    assert sample.code.startswith("from typing import List\n")  # added by the sampler
    prog = program_steps(problem, sample, chat=True)
    assert prog.steps == ("from typing import List", "def f(x):", "    # sum it\n    s = sum(x)",
                          "\n    return s")
    cut = [completion[:o] for o in prog.offsets]
    assert cut[0] == cut[1] == "Sure:\n```python"  # the import is not the model's: the empty prefix
    assert cut[2].endswith("```python\ndef f(x):") and cut[3].endswith("s = sum(x)")  # the model writes \n
    assert cut[4].endswith("return s")


def test_a_bare_body_maps_after_the_problem_prompt():
    problem = _problem(prompt='def f(x):\n    """Double x."""\n')
    completion = f"{FENCE}    y = 2 * x\n    return y\n```"
    sample = _sample(problem, completion)
    prog = program_steps(problem, sample, chat=True)
    assert prog.steps[:2] == ("def f(x):", '    """Double x."""')
    assert prog.offsets[:3] == (len(FENCE) - 1,) * 3
    assert completion[:prog.offsets[3]].endswith("```python\n    y = 2 * x")


def test_a_main_guard_the_sampler_removed_is_skipped_over():
    problem = _problem()
    completion = f"{FENCE}def f(x):\n    return x\n\nif __name__ == '__main__':\n    print(f(1))\n```"
    sample = _sample(problem, completion)
    assert "__main__" not in sample.code
    prog = program_steps(problem, sample, chat=True)
    assert completion[:prog.offsets[-1]].endswith("return x")


def test_code_that_is_not_in_the_completion_is_not_labelled():
    problem = _problem()
    sample = Sample.from_dict({**_sample(problem, f"{FENCE}def f(x):\n    return x\n```").to_dict(),
                               "code": "def f(x):\n    pass\n    return x"})
    with pytest.raises(NotLabelled, match="does not come back"):
        program_steps(problem, sample, chat=True)
    sample = Sample.from_dict({**sample.to_dict(), "code": "def g():\n    pass"})
    with pytest.raises(NotLabelled, match="no line"):
        program_steps(problem, sample, chat=True)


# --- selection and batches ------------------------------------------------------------------------

def _execution(sample: Sample, outcome: str, total: int = 2) -> Execution:
    return Execution(sample_id=sample.sample_id, problem_id=sample.problem_id, round=0, outcome=outcome,
                     coderl_class=3 if outcome == "passed" else 2, passed=total if outcome == "passed" else 0,
                     total=total, pass_ratio=1.0 if outcome == "passed" else 0.0, test_results=(),
                     isolation_tier="t", duration_s=0.0)


def _problem_with(outcomes: list[str], *, codes: list[str] | None = None):
    problem = _problem()
    samples = [_sample(problem, f"{FENCE}def f(x):\n    return {codes[i] if codes else i}\n```", sid=f"s{i}")
               for i in range(len(outcomes))]
    execs = [_execution(s, o) for s, o in zip(samples, outcomes, strict=True)]
    tests = [TestCase(test_id="t1", problem_id=problem.problem_id, kind="assert", code="assert f(1) == 1",
                      origin="synthesized"),
             TestCase(test_id="t2", problem_id=problem.problem_id, kind="assert", code="assert f(2) == 2",
                      origin="synthesized", kept=False, drop_reason="oracle_failed"),
             TestCase(test_id="t3", problem_id=problem.problem_id, kind="assert", code="assert f(3) == 3",
                      origin="given", for_training=False)]
    return problem, tests, samples, execs


def test_selection_follows_the_select_setting():
    problem, tests, samples, execs = _problem_with(["passed", "failed", "runtime_error", "sandbox_error"])
    picked, stats = select_candidates(problem, tests, samples, execs, "failing_with_passing")
    assert [c.sample.sample_id for c in picked] == ["s1", "s2"]  # sandbox errors are ours, not the policy's
    assert all(not c.check_empty and not c.passing for c in picked)
    assert [t.test_id for t in picked[0].tests] == ["t1"]  # kept training tests only
    assert (stats.failing, stats.passing, stats.candidates) == (2, 1, 2)
    picked, _ = select_candidates(problem, tests, samples, execs, "all")
    assert {c.sample.sample_id: c.passing for c in picked} == {"s0": True, "s1": False, "s2": False}

    problem, tests, samples, execs = _problem_with(["failed", "failed"])
    assert select_candidates(problem, tests, samples, execs, "failing_with_passing")[0] == []
    picked, _ = select_candidates(problem, tests, samples, execs, "failing")
    assert len(picked) == 2 and all(c.check_empty for c in picked)


def test_identical_programs_are_labelled_once():
    problem, tests, samples, execs = _problem_with(["passed", "failed", "failed"], codes=["x", "0", "0"])
    picked, stats = select_candidates(problem, tests, samples, execs, "failing_with_passing")
    assert [c.sample.sample_id for c in picked] == ["s1"] and stats.duplicates == 1


def test_the_program_budget_is_shared_round_robin_over_problems():
    cands = []
    for p in ("a", "b", "c"):
        problem = Problem(problem_id=p, source="t", prompt="x")
        for i in range(3):
            base = _sample(_problem(), f"{FENCE}def f(x):\n    return 1\n```").to_dict()
            sample = Sample.from_dict({**base, "sample_id": f"{p}{i}", "problem_id": p})
            cands.append(_candidate(problem, sample, ()))
    batches, stats = plan_batches(list(reversed(cands)), max_programs=5, batch_size=2)
    assert [[c.sample.sample_id for c in b] for b in batches] == [["a0", "b0"], ["c0", "a1"], ["b1"]]
    assert stats.over_budget == 4
    assert sum(len(b) for b in plan_batches(cands, None, 4)[0]) == 9


# --- failures and budgets -------------------------------------------------------------------------

def _one(problem=None, completion=None, **kw):
    problem = problem or _problem()
    lines = "\n".join(f"    v{i} = {i}" for i in range(6))
    sample = _sample(problem, completion or f"{FENCE}def f(x):\n{lines}\n    return None\n```")
    test = TestCase(test_id="t", problem_id=problem.problem_id, kind="assert", code="x", origin="synthesized")
    return _candidate(problem, sample, (test.spec,), **kw)


def _never_runs(jobs):
    raise AssertionError("nothing should run")


def test_an_engine_failure_costs_its_programs_a_row_and_says_why():
    def dead(requests):
        raise ConnectionError("server went away")

    out = label_programs([_one()], generate=dead, run_many=_never_runs, params=PARAMS, base_seed=0, chat=True)
    assert out.rows == [] and [e.kind for e in out.errors] == [ErrorKind.ENGINE_FAILED.value]
    assert "server went away" in out.errors[0].reason and out.errors[0].sample_id == "s1"
    assert out.stats.not_labelled == 1 and out.stats.programs == 1

    def too_long(requests):
        return [GenerationResult(r.request_id, (), error="prompt too long: 9 > 8") for r in requests]

    out = label_programs([_one()], generate=too_long, run_many=_never_runs, params=PARAMS, base_seed=0,
                         chat=True)
    assert [e.kind for e in out.errors] == [ErrorKind.PROMPT_FAILED.value] and not out.rows


def test_a_sandbox_failure_is_an_internal_error_of_its_programs():
    def crash(jobs):
        raise RuntimeError("pool broken")

    completer = Completer({"<prompt>": ["def f(x):", "    return x"]})
    out = label_programs([_one()], generate=completer, run_many=crash, params=PARAMS, base_seed=0, chat=True)
    assert [e.kind for e in out.errors] == [ErrorKind.INTERNAL.value]
    assert "pool broken" in out.errors[0].reason


def test_passing_programs_are_all_good_without_probes_and_long_programs_are_skipped():
    passing = _one(passing=True)
    long = _one(completion=FENCE + "def f(x):\n" + "\n".join(f"    v{i} = {i}" for i in range(40)) + "\n```")
    params = Continuation(k=2, max_probes=4, temperature=1.0, top_p=1.0, max_tokens=8)
    out = label_programs([passing, long], generate=_never_runs, run_many=_never_runs, params=params,
                         base_seed=0, chat=True)
    (row,) = out.rows
    assert all(row.labels) and row.first_bad_step is None and row.probed == ()
    (err,) = out.errors
    assert err.kind == ErrorKind.NOT_LABELLED.value and "max_probes" in err.reason


def test_continuations_are_seeded_per_program_and_prefix():
    seen = []

    def record(requests):
        seen.extend(requests)
        return [GenerationResult(r.request_id, ()) for r in requests]

    label_programs([_one()], generate=record, run_many=lambda jobs: [], params=PARAMS, base_seed=3, chat=True)
    assert len({r.seed for r in seen}) == len(seen) > 1
    assert all(r.n == PARAMS.k and r.prompt.startswith("<prompt>" + FENCE) for r in seen)


# --- records and config ---------------------------------------------------------------------------

def test_a_prm_row_keeps_its_labels_consistent():
    row = {"prompt": "p", "completions": ("a", "b", "c"), "labels": (True, False, False),
           "problem_id": "p", "sample_id": "s", "round": 0, "first_bad_step": 1, "k": 2, "probed": (1, 2),
           "probe_passes": (1, 0)}
    assert PrmRow.from_dict(row).first_bad_step == 1
    for bad in ({"labels": (True, False)}, {"first_bad_step": 2}, {"labels": (True, False, True)},
                {"probe_passes": (1,)}, {"completions": (), "labels": ()}):
        with pytest.raises(RecordError):
            PrmRow.from_dict({**row, **bad})


def test_config_defaults_and_what_cannot_work():
    cfg = PrmConfig()
    assert not cfg.enabled and cfg.k == 20 and cfg.select == "failing_with_passing"
    cont = cfg.model_copy(update={"max_tokens": 32}).continuation(SamplingConfig(temperature=0.4, stop=["#"]))
    assert (cont.temperature, cont.max_tokens, cont.stop, cont.k) == (0.4, 32, ("#",), 20)
    on = PrmConfig(enabled=True)
    assert prm_problems(on, BackendConfig(kind="openai", model="m"))[0][0] == "prm.enabled"
    assert prm_problems(on, BackendConfig(kind="openai", model="m", endpoint="completions")) == []
    assert prm_problems(on, BackendConfig(kind="vllm", model="m")) == []
    assert prm_problems(cfg, BackendConfig(kind="openai", model="m")) == []  # off: nothing to check
