"""Sampling logic: requests, seeds, program assembly, completions -> Sample records; one prompt from
sampling to export to the bench."""

import importlib.util
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from plumline.data_schemas import Execution, Problem, Sample, derive_seed
from plumline.llm import (
    BackendConfig,
    Completion,
    GenerationBackend,
    GenerationRequest,
    GenerationResult,
    PromptConfig,
    render_prompt,
)
from plumline.transforms.logic.pairing import (
    CriticRowsConfig,
    KtoRowsConfig,
    PairingConfig,
    export_prompt,
    pair_problem,
)
from plumline.transforms.logic.sampling import (
    SamplingConfig,
    assemble_program,
    plan_requests,
    sample_batch,
)

PROMPT = 'from typing import List\n\n\ndef total(xs: List[int]) -> int:\n    """Sum of xs."""\n'
PROBLEM = Problem(problem_id="p1", source="t", prompt=PROMPT, entry_point="total")


def test_plan_has_sampled_and_greedy_requests_with_stable_seeds():
    cfg = SamplingConfig(n=4, temperature=0.8, top_p=0.9, max_tokens=64, greedy=True)
    plan = plan_requests(PROBLEM, "PROMPT", cfg, round=0, base_seed=7)
    sampled, greedy = plan.requests
    assert sampled.n == 4 and sampled.temperature == 0.8
    assert greedy.n == 1 and greedy.temperature == 0.0
    again = plan_requests(PROBLEM, "PROMPT", cfg, round=0, base_seed=7)
    assert again.requests[0].seed == sampled.seed
    other_round = plan_requests(PROBLEM, "PROMPT", cfg.model_copy(update={"greedy": False}), round=1,
                                base_seed=7)
    assert len(other_round.requests) == 1 and other_round.requests[0].seed != sampled.seed
    assert derive_seed(0, "a") != derive_seed(1, "a")


def test_assemble_chat_whole_function_gets_prompt_imports():
    code = assemble_program(PROBLEM,
                            "Here:\n```python\ndef total(xs: List[int]) -> int:\n    return sum(xs)\n```",
                            chat=True)
    assert code.startswith("from typing import List\n")
    ns = {}
    exec(compile(code, "<t>", "exec"), ns)  # noqa: S102 - trusted: our own literal
    assert ns["total"]([1, 2]) == 3


def test_assemble_chat_body_only_is_appended_to_prompt():
    code = assemble_program(PROBLEM, "```python\nreturn sum(xs)\n```", chat=True)
    assert "def total" in code and code.rstrip().endswith("return sum(xs)")
    ns = {}
    exec(compile(code, "<t>", "exec"), ns)  # noqa: S102 - trusted: our own literal
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
        [PROBLEM, long_problem], render=lambda p: p.prompt, generate=generate,
        cfg=SamplingConfig(n=4, temperature=0.8, top_p=1.0, max_tokens=32, greedy=True), round=0, base_seed=0,
        policy="m", policy_revision="r", backend="test", chat=True)
    assert len(calls) == 1 and len(calls[0]) == 4  # both problems, sampled + greedy, in ONE call
    assert len(samples) == 5 and sum(s.is_greedy for s in samples) == 1
    assert len({s.sample_id for s in samples}) == 5
    assert sum(s.code is None for s in samples) == 2
    kinds = sorted(e.kind for e in errors)
    assert kinds == ["engine_failed", "engine_failed", "no_code", "no_code"]
    assert all(e.stage == "sample" and e.problem_id for e in errors)


# ---------------------------------------------------------------------------------------------- one prompt

class _FakeBackend(GenerationBackend):
    """A backend with a visible chat template (chat) or none (plain); every completion is a program."""

    name = "fake"
    model_name = "fake-model"
    revision = "r0"

    def __init__(self, chat: bool):
        super().__init__(BackendConfig(kind="openai", model="fake-model"))
        self.chat = chat

    def render_chat(self, messages):
        if not self.chat:
            return super().render_chat(messages)
        return "".join(f"<{m['role']}>{m['content']}</{m['role']}>" for m in messages) + "<assistant>"

    def count_tokens(self, text):
        return len(text.split())

    def _generate_batch(self, items):
        return [GenerationResult(request_id=req.request_id, completions=tuple(
            Completion(text=f"```python\ndef total(xs):\n    return sum(xs) + {i}\n```", finish_reason="stop",
                       prompt_tokens=n or 0, completion_tokens=9, index=i) for i in range(req.n)))
            for req, _, n in items]


def _bench_module():
    path = Path(__file__).resolve().parents[2] / "bench" / "bench_sampling.py"
    spec = importlib.util.spec_from_file_location("bench_sampling", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("chat", [True, False])
def test_sample_stage_export_and_bench_send_one_prompt(monkeypatch, chat):
    """The sample stage's prompt == the exported prompt column == what the bench sends, chat and plain;
    for base models the instruction and system prompt are in it, not dropped."""
    import plumline.transforms.sample as sample_stage

    backend = _FakeBackend(chat)
    prompt_cfg = PromptConfig(system_prompt="You are terse.", instruction="Solve it.")
    monkeypatch.setattr(sample_stage, "get_shared_backend", lambda cfg: backend)
    dofn = sample_stage._SampleBatch(backend.cfg, SamplingConfig(n=3), prompt_cfg, round=0, seed=5)
    dofn.setup()
    samples = [s for s in dofn.process([PROBLEM]) if isinstance(s, Sample)]
    assert len(samples) == 4 and len({s.prompt for s in samples}) == 1
    sent = samples[0].prompt
    assert "You are terse." in sent and "Solve it." in sent and PROBLEM.prompt.strip() in sent
    assert sent == render_prompt(prompt_cfg, PROBLEM.prompt, PROBLEM.entry_point, chat=chat,
                                 render_chat=backend.render_chat)
    if not chat:
        assert sent.endswith(PROBLEM.prompt)  # a base model continues the function

    # the bench renders the same text for the same problem
    bench = _bench_module()
    problems = bench.bench_problems(20)
    assert bench.bench_prompts(backend, problems, prompt_cfg) == [dofn._render(p) for p in problems]
    assert bench.bench_prompts(backend, [PROBLEM], prompt_cfg) == [sent]

    # the export's prompt column is exactly what the policy saw
    executions = [Execution(sample_id=s.sample_id, problem_id=s.problem_id, round=0,
                            outcome="passed" if i % 2 == 0 else "failed", coderl_class=3 if i % 2 == 0 else 2,
                            passed=4 if i % 2 == 0 else 1, total=4, pass_ratio=1.0 if i % 2 == 0 else 0.25,
                            test_results=(), isolation_tier="test", duration_s=0.0)
                  for i, s in enumerate(samples)]
    scored = list(zip(samples, executions))
    for fmt in ("standard", "conversational") if chat else ("standard",):
        res = pair_problem(PROBLEM.problem_id, export_prompt(PROBLEM, fmt, prompt_cfg), scored,
                           pairs=PairingConfig(), kto=KtoRowsConfig(), critic=CriticRowsConfig(), format=fmt,
                           seed=0, round=0)
        assert res.dpo and res.kto
        for row in [*res.dpo, *res.kto]:
            if fmt == "standard":
                assert row.prompt == sent
            else:
                messages = [{"role": m.role, "content": m.content} for m in row.prompt]
                assert backend.render_chat(messages) == sent


class ScriptedEngine:
    """A test double for ``backend.generate``: answers each prompt with the scripted text, ended by the
    first of the request's stop strings it contains (reported as ``stop_string``, as vLLM does)."""

    def __init__(self, answers):
        self.answers, self.calls = answers, []

    def __call__(self, requests):


        self.calls.append(list(requests))
        out = []
        for req in requests:
            comps = []
            for j in range(req.n):
                full = self.answers[req.prompt]
                hits = [(full.find(s), s) for s in req.stop if s in full]
                cut, stop = min(hits) if hits else (len(full), None)
                text = full[:cut]
                comps.append(Completion(text=text, finish_reason="stop", prompt_tokens=3,
                                        completion_tokens=len(text.split()) + (1 if stop else 0), index=j,
                                        stop_string=stop))
            out.append(GenerationResult(req.request_id, tuple(comps)))
        return out


def test_completions_end_with_the_fence_that_closes_their_code():
    from plumline.transforms.logic.sampling import CODE_FENCE_STOP, generate_to_code_end

    answers = {"P": "Sure:\n```python\ndef f():\n    return 1\n```\n\nThis function returns one.",
               "E": "def g(): pass"}  # no fence at all: ends at EOS, untouched
    engine = ScriptedEngine(answers)
    reqs = [GenerationRequest("a", "P", n=2, stop=("STOP",), seed=5), GenerationRequest("b", "E", n=1)]
    res = generate_to_code_end(engine, reqs)
    assert len(engine.calls) == 1 and [r.stop for r in engine.calls[0]] == [("STOP", CODE_FENCE_STOP),
                                                                           (CODE_FENCE_STOP,)]
    assert [c.text for c in res[0].completions] == ["Sure:\n```python\ndef f():\n    return 1\n```"] * 2
    assert res[1].completions[0].text == "def g(): pass"
    assert [r.request_id for r in res] == ["a", "b"]


def test_a_bare_fence_that_opens_the_block_is_generated_through(tmp_path):
    from plumline.llm import progress
    from plumline.transforms.logic.sampling import CODE_FENCE_STOP, generate_to_code_end

    opening = "Here it is:\n```\ndef f():\n    return 2\n```\nDone, it returns two."
    engine = ScriptedEngine({"P": opening})
    prefix = "Here it is:"
    engine.answers["P" + prefix + CODE_FENCE_STOP] = opening[len(prefix + CODE_FENCE_STOP):]

    def counting(requests):  # counts completions on the progress channel as the engines do
        progress.add("completions_total", sum(r.n for r in requests))
        results = engine(requests)
        progress.add("completions", sum(len(r.completions) for r in results))
        return results

    with progress.channel(tmp_path / "progress") as folder:
        res = generate_to_code_end(counting, [GenerationRequest("a", "P", n=1, max_tokens=50, seed=7)])
        counts = progress.read_progress(folder)
    assert (counts["completions"], counts["completions_total"]) == (1, 1)  # one sample, in two requests
    (comp,) = res[0].completions
    assert comp.text == "Here it is:\n```\ndef f():\n    return 2\n```"
    cont = engine.calls[1][0]
    assert cont.prompt == "P" + prefix + CODE_FENCE_STOP and cont.n == 1 and cont.seed not in (None, 7)
    assert cont.max_tokens == 50 - 4  # the budget left after the first part ("Here it is:" + the stop)
    assert comp.completion_tokens == 4 + len(["def", "f():", "return", "2"]) + 1


def test_a_failed_continuation_keeps_what_was_generated():

    from plumline.transforms.logic.sampling import generate_to_code_end

    engine = ScriptedEngine({"P": "Text\n```\ncode"})

    def failing(requests):
        if engine.calls:
            return [GenerationResult(r.request_id, (), error="engine died") for r in requests]
        return engine(requests)

    res = generate_to_code_end(failing, [GenerationRequest("a", "P", n=1)])
    assert res[0].completions[0].text == "Text"
