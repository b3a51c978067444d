"""The Beam stage on FnApiRunner with a recorded reply (a test double of the backend for this unit)."""

from __future__ import annotations

from typing import ClassVar

import apache_beam as beam
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to
from plumline.data_schemas import Problem, TestSpec
from plumline.llm import BackendConfig, Completion, GenerationResult
from plumline.transforms.logic.synthesis import TestSynthesisConfig
from plumline.transforms.synthesize_tests import SynthesizeTests

# A reply SmolLM2-style: prose, a fenced block, one wrong-function test, one duplicate.
RECORDED = ("Here are some tests for the function:\n```python\nassert add(1, 2) == 3\nassert add(0, 0) == 0\n"
            "assert add(1,2) == 3\nassert plus(1, 1) == 2\n```\n")


class RecordedBackend:
    """Test double: replays a recorded reply; records how it was called (one call per batch)."""

    chat = True
    model_name = "recorded"
    revision = "r0"
    calls: ClassVar[list[int]] = []

    def __init__(self, replies: dict[str, str]):
        self.replies = replies

    def render_chat(self, messages):
        return "\n".join(m["content"] for m in messages)

    def generate(self, requests):
        RecordedBackend.calls.append(len(requests))
        out = []
        for r in requests:
            pid = r.request_id.split(":", 1)[1]
            if pid == "boom":
                out.append(GenerationResult(request_id=r.request_id, error="prompt too long"))
                continue
            text = self.replies.get(pid, "")
            out.append(GenerationResult(request_id=r.request_id, completions=tuple(
                Completion(text=text, finish_reason="stop", prompt_tokens=1, completion_tokens=1, index=i)
                for i in range(r.n))))
        return out


def _factory(cfg):
    return RecordedBackend({"p1": RECORDED, "p2": "I don't know."})


def test_synthesize_tests_on_fnapi_runner():
    problems = [
        Problem(problem_id="p1", source="s",
                prompt="def add(a, b):\n    '''Sum.\n    >>> add(2, 2)\n    4\n    '''\n",
                entry_point="add", given_tests=(TestSpec(code="assert add(10, 5) == 15"),)),
        Problem(problem_id="p2", source="s", prompt="def sub(a, b):\n    pass\n", entry_point="sub"),
        Problem(problem_id="boom", source="s", prompt="def mul(a, b):\n    pass\n", entry_point="mul"),
    ]
    cfg = TestSynthesisConfig(mode="asserts", num_replies=2, batch_size=8)
    RecordedBackend.calls = []
    with TestPipeline(runner="FnApiRunner") as p:
        out = (p | beam.Create(problems) | SynthesizeTests(_factory, cfg, BackendConfig()))
        rows = out["tests"] | "Rows" >> beam.Map(lambda t: (t.problem_id, t.origin, t.code, t.kept,
                                                            t.drop_reason or "", t.for_training))
        assert_that(rows, equal_to([
            ("p1", "given", "assert add(10, 5) == 15", True, "", False),
            ("p1", "example", "assert add(2, 2) == 4", True, "", True),
            ("p1", "synthesized", "assert add(1, 2) == 3", True, "", True),
            ("p1", "synthesized", "assert add(0, 0) == 0", True, "", True),
            ("p1", "synthesized", "assert plus(1, 1) == 2", False, "no_entry_point_call", True),
            ("p2", "synthesized", "I don't know.", False, "no_tests_in_reply", True),
        ]), label="tests")
        errs = out["errors"] | "Errs" >> beam.Map(lambda e: (e.problem_id, e.stage, e.kind, e.reason))
        assert_that(errs, equal_to([("boom", "tests", "engine_failed",
                                     "test generation failed: prompt too long")]), label="errors")
        stats = out["stats"] | "Stats" >> beam.Map(
            lambda s: (s.problem_id, s.written, s.kept, s.dropped_by_reason))
        assert_that(stats, equal_to([
            ("p1", 8, 4, {"duplicate": 5, "no_entry_point_call": 1}),
            ("p2", 0, 0, {"no_tests_in_reply": 2}),
            ("boom", 0, 0, {"generation_failed": 1}),
        ]), label="stats")
    assert RecordedBackend.calls == [3]  # one engine call for the whole batch
