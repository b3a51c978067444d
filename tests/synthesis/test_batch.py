"""One engine call for a batch of problems: per-problem seeds from the run seed, errors as typed records."""

from __future__ import annotations

from plumline.data_schemas import ErrorKind, Problem, Stage, derive_seed
from plumline.llm import Completion, GenerationResult
from plumline.transforms.logic.synthesis import TestSynthesisConfig, synthesize_batch

PROBLEMS = [Problem(problem_id=f"p{i}", source="s", prompt=f"def f{i}(x):\n    pass\n", entry_point=f"f{i}")
            for i in range(3)]


def _reply(request, text="assert f0(1) == 1"):
    return GenerationResult(request_id=request.request_id, completions=(
        Completion(text=text, finish_reason="stop", prompt_tokens=1, completion_tokens=1, index=0),))


def test_each_problem_is_seeded_from_the_run_seed_and_its_id():
    seen = []

    def generate(requests):
        seen.extend(requests)
        return [_reply(r) for r in requests]

    done, errors = synthesize_batch(PROBLEMS, TestSynthesisConfig(mode="asserts"), seed=5, generate=generate,
                                    render_chat=lambda m: m[-1]["content"])
    assert errors == [] and len(done) == 3
    assert [r.seed for r in seen] == [derive_seed(5, "tests", p.problem_id) for p in PROBLEMS]
    assert len({r.seed for r in seen}) == 3
    again = []
    synthesize_batch(PROBLEMS, TestSynthesisConfig(mode="asserts"), seed=6,
                     generate=lambda rs: again.extend(rs) or [_reply(r) for r in rs],
                     render_chat=lambda m: m[-1]["content"])
    assert all(a.seed != b.seed for a, b in zip(seen, again))  # another run seed, other streams


def test_failures_are_typed_errors_and_the_problem_keeps_its_other_tests():
    def render(messages):
        if "f1" in messages[-1]["content"]:
            raise ValueError("template cannot render this")
        return messages[-1]["content"]

    def generate(requests):
        return [GenerationResult(request_id=r.request_id, error="prompt too long") if "p2" in r.request_id
                else _reply(r) for r in requests]

    done, errors = synthesize_batch(PROBLEMS, TestSynthesisConfig(mode="asserts"), seed=0, generate=generate,
                                    render_chat=render)
    assert {(e.problem_id, e.stage, e.kind) for e in errors} == {
        ("p1", Stage.TESTS.value, ErrorKind.PROMPT_FAILED.value),
        ("p2", Stage.TESTS.value, ErrorKind.ENGINE_FAILED.value)}
    stats = {pt.stats.problem_id: pt.stats for pt in done}
    assert stats["p0"].synthesized_kept == 1
    assert stats["p1"].replies == 0 and stats["p1"].dropped_by_reason == {}
    assert stats["p2"].dropped_by_reason == {"generation_failed": 1}

    def explode(requests):
        raise RuntimeError("engine died")

    _, errors = synthesize_batch(PROBLEMS, TestSynthesisConfig(mode="asserts"), seed=0, generate=explode,
                                 render_chat=lambda m: m[-1]["content"])
    assert [e.kind for e in errors] == [ErrorKind.ENGINE_FAILED.value] * 3
    assert all("engine died" in e.reason for e in errors)
