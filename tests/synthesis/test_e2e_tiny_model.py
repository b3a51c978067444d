"""End to end with a real engine: the tiny random-weight Llama writes "tests" (garbage), the stage
parses them, drops every bad one with a reason, and still gives each problem its example and given
tests; then the validation logic runs on them (with the real sandbox when it exists)."""

from __future__ import annotations

from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that
from plumline.data_schemas import TestCase, TestDropReason
from plumline.llm import BackendConfig
from plumline.transforms.logic.synthesis import TestSynthesisConfig
from plumline.transforms.synthesize_tests import SynthesizeTests

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from plumline.llm.assets import build_tiny_llama
    return build_tiny_llama(tmp_path_factory.mktemp("models") / "tiny-llama")


def _make(cfg):
    from plumline.llm import make_backend
    return make_backend(cfg)


def test_tiny_model_tests_flow_through_the_stage(tiny_model, humaneval):
    problems = humaneval[:3]
    writer = BackendConfig(kind="transformers", model=str(tiny_model), device="cpu", batch_size=4)
    cfg = TestSynthesisConfig(mode="asserts", num_replies=2, max_tokens=48, temperature=0.8,
                              batch_size=3)
    collected: list = []

    def check(rows: list[TestCase]) -> None:
        collected.extend(rows)
        by_problem = {}
        for t in rows:
            by_problem.setdefault(t.problem_id, []).append(t)
        assert set(by_problem) == {p.problem_id for p in problems}
        for pid, ts in by_problem.items():
            origins = {t.origin for t in ts}
            assert {"given", "example"} <= origins, pid
            for t in ts:
                if not t.kept:
                    assert TestDropReason(t.drop_reason) not in _VALIDATION_DROPS
        assert all(t.writer for t in rows if t.origin == "synthesized")

    with TestPipeline(runner="FnApiRunner") as p:
        out = p | beam.Create(problems) | SynthesizeTests(_make, cfg, writer)
        assert_that(out["tests"] | "AllTests" >> beam.combiners.ToList(), lambda lists: check(lists[0]),
                    label="rows")
        assert_that(out["stats"] | "AllStats" >> beam.combiners.ToList(),
                    lambda lists: _assert_stats(lists[0], len(problems)), label="stats")


_VALIDATION_DROPS = {TestDropReason.ORACLE_FAILED, TestDropReason.ORACLE_TIMEOUT, TestDropReason.ORACLE_ERROR,
                     TestDropReason.ORACLE_NOT_RUN, TestDropReason.AGREEMENT_FAILED}


def _assert_stats(stats: list, n: int) -> None:
    assert len(stats) == n
    for s in stats:
        assert s.replies == 2
        assert s.given_kept >= 1


def test_oracle_with_the_real_sandbox_keeps_right_example_tests_and_drops_a_wrong_one(humaneval):
    sandbox_mod = pytest.importorskip("plumline.sandbox")
    if not hasattr(sandbox_mod, "Sandbox"):
        pytest.skip("plumline.sandbox.Sandbox does not exist yet (built in parallel)")
    from plumline.transforms.logic.synthesis import TestSynthesisConfig, assemble_problem_tests
    from plumline.transforms.logic.validation import apply_oracle

    p = humaneval[0]
    reply = ("```python\nassert has_close_elements([1.0, 2.0], 1.5) == True\n"
             "assert has_close_elements([1.0, 5.0], 1.5) == True\n"       # wrong
             "assert has_close_elements([1.0] * 10, 0.0) == False\n"
             "while True: assert has_close_elements([], 1.0) is False\n"  # hangs
             "```")
    tests = assemble_problem_tests(p, [reply], TestSynthesisConfig()).tests
    training = [t for t in tests if t.for_training and t.kept]
    sb = sandbox_mod.Sandbox(limits=sandbox_mod.SandboxLimits(**_short_timeout(sandbox_mod)), workers=1)
    try:
        result = sb.run_many([(p.reference_solution, [t.spec for t in training])])[0]
    finally:
        sb.close()
    judged = {t.code: (t.kept, t.drop_reason) for t in apply_oracle(training, result)}
    assert judged["assert has_close_elements([1.0, 2.0], 1.5) == True"] == (True, None)
    assert judged["assert has_close_elements([1.0, 5.0], 1.5) == True"] == (False, "oracle_failed")
    assert judged["while True:\n    assert has_close_elements([], 1.0) is False"] == (False, "oracle_timeout")
    assert all(judged[t.code] == (True, None) for t in training if t.origin == "example")


def _short_timeout(mod) -> dict:
    fields = (getattr(mod.SandboxLimits, "model_fields", None)
              or getattr(mod.SandboxLimits, "__dataclass_fields__", {}))
    for name in ("test_timeout_s", "timeout_s"):
        if name in fields:
            return {name: 2.0}
    return {}
