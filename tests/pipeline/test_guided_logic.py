"""Critic-guided sampling (transforms/logic/guided.py, CodeRL's critical sampling): the budget split,
prefix choice, the repair prompt, and the batched driver with deterministic test doubles for the
engine (a policy that answers by request kind), the sandbox (runs the program and its tests in this
process) and the critic (a fixed score per program text)."""

from __future__ import annotations

from collections import Counter
from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st
from plumline.data_schemas import Problem, Sample, TestSpec
from plumline.data_schemas.records import TestResult
from plumline.llm import BackendConfig, Completion, GenerationResult
from plumline.llm.prompting import PromptConfig, plain_join, prompt_messages
from plumline.transforms.logic.guided import (
    PASSED_CLASS,
    Prefix,
    allocate,
    best_prefix,
    failure_message,
    first_count,
    guided_problems,
    guided_sample_batch,
    guided_summary,
    pass_rate_by_origin,
    program_prefixes,
    repair_prompt,
    split_rounds,
)
from plumline.transforms.logic.sampling import (
    GuidedSamplingConfig,
    SamplingConfig,
    assemble_program,
    sample_batch,
)
from pydantic import ValidationError

FENCE = "```python\n"
GOOD_BODY = ["    total = a", "    total = total + b", "    return total"]
BAD_BODY = ["    total = a", "    total = total - b", "    return total"]
HIDDEN = "assert add(5, 5) == 10 and 'hidden'"


def _answer(body: list[str]) -> str:
    return "Sure:\n" + FENCE + "def add(a, b):\n" + "\n".join(body) + "\n```\n"


GOOD, BAD, PROSE = _answer(GOOD_BODY), _answer(BAD_BODY), "I would explain it in words."
BROKEN = FENCE + "def add(a, b)\n    return a\n```\n"


def _problem(pid: str = "p1", examples: bool = True) -> Problem:
    tests = (TestSpec(code="assert add(1, 2) == 3", test_id=f"{pid}-e1"),) if examples else ()
    return Problem(problem_id=pid, source="t", prompt="def add(a, b):\n    \"\"\"Add two numbers.\"\"\"\n",
                   entry_point="add", example_tests=tests, given_tests=(TestSpec(code=HIDDEN),))


def render(problem: Problem) -> str:
    return f"<policy prompt of {problem.problem_id}>\n"


def messages(problem: Problem) -> list[dict[str, str]]:
    return prompt_messages(PromptConfig(system_prompt="Be brief."), problem.prompt, problem.entry_point)


def render_chat(turns: list[dict[str, str]]) -> str:
    return "".join(f"<{t['role']}>{t['content']}</{t['role']}>" for t in turns) + "<assistant>"


class Policy:
    """An engine double. First-call samples cycle through ``answers[problem_id]``; a refine request
    (its prompt ends inside a code block) gets the good rest of the function; a repair request gets
    the good answer; a plain follow-up request the answers again. Records every call."""

    def __init__(self, answers: dict[str, list[str]]):
        self.answers = answers
        self.calls: list[list] = []

    def __call__(self, requests):
        self.calls.append(list(requests))
        out = []
        for r in requests:
            pid, kind = r.request_id.split("|")[:2]
            if kind == "refine":
                written = r.prompt.rpartition(FENCE)[2].split("\n")[1:]  # the body lines written so far
                rest = GOOD_BODY[len(written):]
                texts = ["\n" + "\n".join(rest) + "\n```\n"] * r.n
            elif kind == "repair":
                texts = [GOOD] * r.n
            elif r.temperature == 0:
                texts = [self.answers[pid][0]]
            else:
                texts = [self.answers[pid][i % len(self.answers[pid])] for i in range(r.n)]
            out.append(GenerationResult(r.request_id, tuple(Completion(t, "stop", 3, 5, i)
                                                           for i, t in enumerate(texts))))
        return out


class Sandbox:
    """A sandbox double: runs the program and then each test in one namespace, in this process."""

    def __init__(self):
        self.calls: list[list] = []

    def __call__(self, jobs):
        self.calls.append(list(jobs))
        out = []
        for code, tests, _ in jobs:
            ns: dict = {}
            try:
                exec(compile(code, "<candidate>", "exec"), ns)  # noqa: S102 - the test double's programs
            except SyntaxError:
                out.append(SimpleNamespace(outcome="compile_error", total=len(tests), passed=0, error_line=1,
                                           error_type="SyntaxError", stderr_tail="", test_results=tuple(
                                               TestResult(t.test_id, "not_run") for t in tests)))
                continue
            results = []
            for t in tests:
                try:
                    exec(t.code, ns)  # noqa: S102 - the test double's tests
                    results.append(TestResult(t.test_id, "passed"))
                except AssertionError as exc:
                    results.append(TestResult(t.test_id, "failed", error_type="AssertionError",
                                              error_message=str(exc) or "assertion failed"))
            passed = sum(r.status == "passed" for r in results)
            out.append(SimpleNamespace(outcome="passed" if passed == len(tests) else "failed",
                                       total=len(tests), passed=passed, test_results=tuple(results),
                                       error_type=None, error_line=None, stderr_tail=""))
        return out


class Critic:
    """A critic double: P(passed) 0.9 for a program with ``+ b``, 0.2 otherwise; a prefix scores by
    its step count, so the longest prefix wins unless ``prefer`` names a step count."""

    def __init__(self, prefer: int | None = None):
        self.prefer = prefer
        self.calls: list[tuple[list, list]] = []

    def __call__(self, prompts, codes):
        self.calls.append((list(prompts), list(codes)))
        out = []
        for code in codes:
            whole = code.rstrip().endswith("return total")
            if whole:
                p = 0.9 if "+ b" in code else 0.2
            else:
                steps = code.count("\n") + 1
                p = 0.8 if steps == self.prefer else 0.1 * steps
            out.append([0.0, 0.0, 1.0 - p, p][:PASSED_CLASS + 1])
        return out


def _run(problems, answers, *, n=4, greedy=True, chat=True, critic=None, **guided):
    policy, sandbox, critic = Policy(answers), Sandbox(), critic or Critic()
    cfg = SamplingConfig(n=n, greedy=greedy, mode="critic_guided",
                         guided=GuidedSamplingConfig(critic="/critic", **guided))
    out = guided_sample_batch(problems, render=render, messages=messages, render_chat=render_chat,
                              generate=policy, run_many=sandbox, score=critic, cfg=cfg, round=0, base_seed=7,
                              policy="m", policy_revision="rev", backend="fake", chat=chat)
    return out, policy, sandbox, critic


def _check_budget(out, problems, n, greedy=True):
    ids = [s.sample_id for s in out.samples]
    assert len(ids) == len(set(ids))
    for p in problems:
        mine = [s for s in out.samples if s.problem_id == p.problem_id]
        assert sum(not s.is_greedy for s in mine) == n, p.problem_id
        assert sum(s.is_greedy for s in mine) == int(greedy)
        assert sorted(s.sample_index for s in mine) == list(range(len(mine)))
        assert all(s.prompt == render(p) for s in mine)  # the DPO prompt column, every origin
        for s in mine:
            assert s.code == assemble_program(p, s.completion, chat=True)


# --- the budget -------------------------------------------------------------------------------------

@given(slots=st.integers(0, 40), refine=st.integers(0, 6), repair=st.integers(0, 6),
       share=st.floats(0.0, 1.0))
def test_allocate_spends_every_slot_once(slots, refine, repair, share):
    per_refine, per_repair, plain = allocate(slots, refine, repair, share)
    assert sum(per_refine) + sum(per_repair) + plain == slots
    assert len(per_refine) == refine and len(per_repair) == repair
    assert all(x >= 0 for x in [*per_refine, *per_repair, plain])
    for per in (per_refine, per_repair):  # round robin: the best seeds first, at most one apart
        assert per == sorted(per, reverse=True) and (not per or per[0] - per[-1] <= 1)
    if refine or repair:
        assert plain == 0
    if refine and not repair:
        assert sum(per_refine) == slots
    if repair and not refine:
        assert sum(per_repair) == slots


def test_allocate_splits_by_refine_share_when_both_kinds_exist():
    assert allocate(4, 2, 3, 0.5) == ([1, 1], [1, 1, 0], 0)
    assert allocate(5, 1, 1, 0.8) == ([4], [1], 0)
    assert allocate(4, 1, 1, 0.0) == ([0], [4], 0)
    assert allocate(3, 0, 0, 0.5) == ([], [], 3)


def test_first_share_and_rounds():
    assert [first_count(n, 0.5) for n in (1, 2, 3, 4, 8)] == [1, 1, 2, 2, 4]
    assert first_count(4, 0.01) == 1 and first_count(4, 1.0) == 4
    assert split_rounds(5, 2) == [3, 2] and split_rounds(1, 3) == [1, 0, 0] and split_rounds(0, 1) == [0]


# --- the driver -----------------------------------------------------------------------------------

def test_mixed_problem_refines_the_passing_and_repairs_the_failing_at_the_same_budget():
    p = _problem()
    out, policy, sandbox, critic = _run([p], {"p1": [GOOD, BAD]}, n=8)
    _check_budget(out, [p], 8)
    assert len(policy.calls) == 2 and len(sandbox.calls) == 1 and len(critic.calls) == 1  # one call each
    origins = Counter(s.origin for s in out.samples if not s.is_greedy)
    assert origins == {"sampled": 4, "refined": 2, "repaired": 2}
    by_id = {s.sample_id: s for s in out.samples}
    for s in out.samples:
        assert (s.parent_sample_id is None) == (s.origin == "sampled")
        if s.origin == "refined":  # prefix of the passing program + its continuation: a whole answer
            parent = by_id[s.parent_sample_id]
            assert parent.code and "+ b" in parent.code and s.completion.startswith(parent.completion[:20])
            assert "total = total + b" in s.code and s.code.rstrip().endswith("return total")
        if s.origin == "repaired":
            assert "- b" in by_id[s.parent_sample_id].code and s.completion == GOOD
    # the examples ran once per distinct program, never the hidden tests
    jobs = sandbox.calls[0]
    assert len(jobs) == 2
    assert all([t.code for t in tests] == ["assert add(1, 2) == 3"] for _, tests, _ in jobs)
    assert not any(HIDDEN in t.code for call in sandbox.calls for _, tests, _ in call for t in tests)
    # the critic saw both programs and the prefixes of the passing one (1..L-1 steps)
    prompts, codes = critic.calls[0]
    assert set(prompts) == {render(p)} and len(codes) == 2 + 3  # def + 3 body lines: prefixes 1, 2, 3
    assert out.stats.refine_requests == 1 and out.stats.repair_requests == 1


def test_the_refine_request_continues_the_best_prefix_of_the_policy_prompt():
    p = _problem()
    out, policy, _, _ = _run([p], {"p1": [GOOD]}, n=4, critic=Critic(prefer=2))
    refine = [r for r in policy.calls[1] if "|refine|" in r.request_id]
    assert len(refine) == 1 and refine[0].n == 2  # all the rest: nothing fails
    parent = next(s for s in out.samples if s.sample_id == refine[0].request_id.split("|")[-1])
    cut = parent.completion.index("    total = a") + len("    total = a")  # prefix of 2 steps: def + 1
    assert refine[0].prompt == render(p) + parent.completion[:cut]
    assert refine[0].seed is not None and refine[0].temperature == 0.8
    refined = [s for s in out.samples if s.origin == "refined"]
    assert all(s.completion.startswith(parent.completion[:cut]) for s in refined)
    assert Counter(s.origin for s in out.samples if not s.is_greedy) == {"sampled": 2, "refined": 2}


def test_prefix_choice_prefers_the_highest_score_then_the_longer_prefix():
    p = _problem()
    sample = _one_sample(p, GOOD)
    prefixes = program_prefixes(p, sample, chat=True)
    assert [x.steps for x in prefixes] == [1, 2, 3]
    assert prefixes[0].code == "def add(a, b):" and sample.completion[:prefixes[0].offset].endswith("(a, b):")
    assert best_prefix(prefixes, [0.1, 0.7, 0.3]).steps == 2
    assert best_prefix(prefixes, [0.5, 0.5, 0.2]).steps == 2  # a tie: the longer one
    assert best_prefix([], []) is None
    one_line = _one_sample(p, FENCE + "def add(a, b): return a + b\n```")
    assert program_prefixes(p, one_line, chat=True) == []  # a single step has no proper prefix


def _one_sample(p: Problem, completion: str, sid: str = "s") -> Sample:
    return Sample(sample_id=sid, problem_id=p.problem_id, round=0, policy="m", policy_revision="r",
                  prompt=render(p), completion=completion, code=assemble_program(p, completion, chat=True),
                  finish_reason="stop", prompt_tokens=1, completion_tokens=1, temperature=1.0, top_p=1.0,
                  max_tokens=64, seed=0, sample_index=0)


@pytest.mark.parametrize(("answers", "origins"), [
    ([GOOD], {"sampled": 2, "refined": 2}),  # all pass: everything refines
    ([BAD, BROKEN], {"sampled": 2, "repaired": 2}),  # all fail: everything repairs
    ([PROSE], {"sampled": 4}),  # no code at all: nothing to guide, the rest is sampled plainly
], ids=["all_pass", "all_fail", "no_code"])
def test_edge_cases_keep_the_budget(answers, origins):
    p = _problem()
    out, policy, _, _ = _run([p], {"p1": answers}, n=4)
    _check_budget(out, [p], 4)
    assert Counter(s.origin for s in out.samples if not s.is_greedy) == origins
    assert len(policy.calls) == 2
    if answers == [PROSE]:
        assert out.stats.without_seeds == 1
        assert [r.request_id for r in policy.calls[1]] == ["p1|sampled|0|plain"]


def test_a_problem_without_examples_is_sampled_exactly_as_plain_sampling():
    p, q = _problem("p1", examples=False), _problem("p2")
    out, _, sandbox, _ = _run([p, q], {"p1": [GOOD, BAD], "p2": [GOOD, BAD]}, n=4)
    _check_budget(out, [p, q], 4)
    assert out.stats.without_examples == 1
    plain, _ = sample_batch([p], render=render, generate=Policy({"p1": [GOOD, BAD]}),
                            cfg=SamplingConfig(n=4), round=0, base_seed=7, policy="m", policy_revision="rev",
                            backend="fake", chat=True)
    assert [s for s in out.samples if s.problem_id == "p1"] == plain
    assert all(code != "" and tests for call in sandbox.calls for code, tests, _ in call)
    assert {job[0] for job in sandbox.calls[0]} <= {s.code for s in out.samples if s.problem_id == "p2"}


def test_n_1_is_one_plain_sample_and_nothing_else():
    p = _problem()
    out, policy, sandbox, critic = _run([p], {"p1": [BAD]}, n=1)
    _check_budget(out, [p], 1)
    assert len(policy.calls) == 1 and not sandbox.calls and not critic.calls


def test_two_rounds_split_the_rest_and_work_on_the_new_samples():
    p = _problem()
    out, policy, sandbox, critic = _run([p], {"p1": [BAD]}, n=6, rounds=2, greedy=False)
    _check_budget(out, [p], 6, greedy=False)
    assert len(policy.calls) == 3 and len(sandbox.calls) == 2 and len(critic.calls) == 2
    # round 0: 3 plain (all BAD, one distinct program) -> 2 repaired (GOOD); round 1 refines them
    assert Counter(s.origin for s in out.samples) == {"sampled": 3, "repaired": 2, "refined": 1}
    assert [job[0] for job in sandbox.calls[1]] == [s.code for s in out.samples if s.origin == "repaired"][:1]
    refined = next(s for s in out.samples if s.origin == "refined")
    assert next(s for s in out.samples if s.sample_id == refined.parent_sample_id).origin == "repaired"


def test_max_seeds_caps_the_programs_refined_or_repaired():
    p = _problem()
    bads = [_answer(["    total = a", f"    total = total - b - {i}", "    return total"]) for i in range(4)]
    out, policy, _, _ = _run([p], {"p1": bads}, n=8, max_seeds=2, greedy=False)
    repairs = [r for r in policy.calls[1] if "|repair|" in r.request_id]
    assert [r.n for r in repairs] == [2, 2]
    _check_budget(out, [p], 8, greedy=False)


def test_an_engine_failure_while_refining_keeps_the_first_samples_and_says_so():
    p = _problem()
    policy = Policy({"p1": [GOOD, BAD]})

    def generate(requests):
        if policy.calls:
            raise RuntimeError("engine died")
        return policy(requests)

    cfg = SamplingConfig(n=4, mode="critic_guided", guided=GuidedSamplingConfig(critic="/c"))
    out = guided_sample_batch([p], render=render, messages=messages, render_chat=render_chat,
                              generate=generate, run_many=Sandbox(), score=Critic(), cfg=cfg, round=0,
                              base_seed=0, policy="m", policy_revision="r", backend="fake", chat=True)
    assert len(out.samples) == 3 and all(s.origin == "sampled" for s in out.samples)
    assert [e.kind for e in out.errors] == ["engine_failed"] and "engine died" in out.errors[0].reason


# --- the repair prompt ------------------------------------------------------------------------------

def test_failure_message_names_the_first_failing_test_and_its_error():
    tests = [TestSpec(code="assert add(1, 2) == 3", test_id="a"), TestSpec(code="assert add(0, 0) == 0",
                                                                          test_id="b")]
    result = Sandbox()([(assemble_program(_problem(), BAD, chat=True), tests, "add")])[0]
    assert failure_message(result, tests) == "The test `assert add(1, 2) == 3` failed: AssertionError: " \
                                             "assertion failed"
    broken = Sandbox()([("def add(a, b)\n", tests, "add")])[0]
    assert failure_message(broken, tests) == "The program does not compile: SyntaxError at line 1."
    timeout = SimpleNamespace(outcome="timeout", test_results=(), error_line=None, error_type=None,
                              stderr_tail="killed after 5 s\n")
    assert failure_message(timeout, tests) == "The program ended with timeout (killed after 5 s)."


def test_repair_prompt_chat_is_the_policy_conversation_plus_the_answer_and_the_error():
    p = _problem()
    s = _one_sample(p, BAD)
    text = repair_prompt(p, s, "The test `x` failed: boom", "Fix it. {error}", chat=True, messages=messages,
                         render_chat=render_chat)
    expected = [*messages(p), {"role": "assistant", "content": BAD},
                {"role": "user", "content": "Fix it. The test `x` failed: boom"}]
    assert text == render_chat(expected)
    assert text.startswith("<system>Be brief.</system><user>")


def test_repair_prompt_plain_joins_the_policy_prompt_the_program_and_the_error():
    p = _problem()
    s = _one_sample(p, BAD)
    text = repair_prompt(p, s, "E", "Fix: {error}", chat=False, messages=messages, render_chat=render_chat)
    assert text == plain_join([{"content": render(p)}, {"content": f"{FENCE}{s.code.rstrip()}\n```"},
                               {"content": "Fix: E"}])
    assert "<user>" not in text  # no chat template for a base model


def test_plain_models_get_the_plain_repair_prompt_in_the_driver():
    p = _problem()
    _, policy, _, _ = _run([p], {"p1": [BAD]}, n=4, chat=False)
    repair = [r for r in policy.calls[1] if "|repair|" in r.request_id]
    assert repair and repair[0].prompt.startswith(render(p))
    assert "`assert add(1, 2) == 3` failed" in repair[0].prompt
    assert "<user>" not in repair[0].prompt


# --- config and summaries -----------------------------------------------------------------------------

def test_the_config_needs_a_critic_and_an_error_slot():
    cfg = SamplingConfig(mode="critic_guided")
    assert guided_problems(cfg, BackendConfig(model="m"))[0][0] == "sampling.guided.critic"
    assert guided_problems(SamplingConfig(), BackendConfig(model="m")) == []
    chat = BackendConfig(kind="openai", model="m", endpoint="chat")
    guided = SamplingConfig(mode="critic_guided", guided=GuidedSamplingConfig(critic="/c"))
    assert [f for f, _ in guided_problems(guided, chat)] == ["sampling.mode"]
    with pytest.raises(ValidationError, match=r"\{error\}"):
        GuidedSamplingConfig(repair_instruction="Fix it.")
    with pytest.raises(ValidationError, match="format string"):
        GuidedSamplingConfig(repair_instruction="Fix {error} in {code}")
    for name, f in GuidedSamplingConfig.model_fields.items():
        assert f.description, name


def test_pass_rate_by_origin_and_the_manifest_section():
    rates = pass_rate_by_origin([("repaired", True), ("sampled", False), ("sampled", True),
                                 ("refined", False)])
    assert list(rates) == ["sampled", "refined", "repaired"]
    assert rates["sampled"] == {"samples": 2, "passed": 1, "pass_rate": 0.5}
    p, q = _problem("p1"), _problem("p2", examples=False)
    out, _, _, _ = _run([p, q], {"p1": [GOOD, BAD], "p2": [GOOD]}, n=4)
    passed = {s.sample_id: bool(s.code and "+ b" in s.code) for s in out.samples}
    summary = guided_summary([p, q], out.samples, passed)
    assert summary["problems_without_examples"] == 1
    assert summary["samples_by_origin"] == {"sampled": 6, "refined": 1, "repaired": 1}
    assert summary["pass_rate_by_origin"]["repaired"]["pass_rate"] == 1.0


def test_old_sample_rows_load_with_the_default_origin():
    row = _one_sample(_problem(), GOOD).to_dict()
    del row["origin"], row["parent_sample_id"]
    loaded = Sample.from_dict(row)
    assert loaded.origin == "sampled" and loaded.parent_sample_id is None
    assert isinstance(Prefix(1, "x", 0), Prefix)
