"""The vLLM backend reports progress as requests finish, into its caller's channel (no engine: a
stand-in for the ``vllm.LLM`` calls the backend drives)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from plumline.llm import GenerationRequest, progress


class FakeEngine:
    """``vllm.LLM`` as the backend drives it: ``enqueue`` then ``llm_engine.step`` (one request
    finishing per step, 5 tokens per completion)."""

    def __init__(self):
        self.queue, self.counter = [], 0
        self.llm_engine = self

    def enqueue(self, prompts, params, use_tqdm=False):
        ids = []
        for p, sp in zip(prompts, params):
            self.counter += 1
            self.queue.append((str(self.counter), p, sp))
            ids.append(f"{self.counter}-abcdefgh")  # vLLM's internal id: "<id>-<8 random characters>"
        return ids

    def step(self):
        rid, p, sp = self.queue.pop(0)
        comps = [SimpleNamespace(text="x" * 5, finish_reason="length", token_ids=[7] * 5, index=i,
                                 stop_reason=None) for i in range(sp.n)]
        return [SimpleNamespace(request_id=rid, finished=True, outputs=comps,
                                prompt_token_ids=p["prompt_token_ids"])]

    def abort_request(self, ids, internal=False):
        pass


def test_generate_reports_completions_and_tokens(tmp_path):
    pytest.importorskip("vllm")
    from plumline.llm.batching import SharedBatch
    from plumline.llm.vllm_backend import VLLMBackend, _LLMBatchEngine

    backend = object.__new__(VLLMBackend)  # no engine
    backend._llm = FakeEngine()
    backend._batch = SharedBatch(_LLMBatchEngine(backend._llm))
    items = [(GenerationRequest("a", "p", n=2, max_tokens=5, seed=1), [1, 2, 3], 3),
             (GenerationRequest("b", "q", n=3, max_tokens=5, seed=2), [4, 5], 2)]
    with progress.channel(tmp_path / "sample") as folder:
        results = backend._generate_batch(items)
        got = progress.read_progress(folder)
    assert [len(r.completions) for r in results] == [2, 3]
    assert [r.request_id for r in results] == ["a", "b"]
    assert got == {"completions_total": 5, "completions": 5, "tokens": 25}
    with progress.thread_channel(tmp_path / "eval"):  # a stage running beside another: its own bar
        backend._generate_batch(items[:1])
    assert progress.read_progress(tmp_path / "eval") == {"completions_total": 2, "completions": 2,
                                                         "tokens": 10}
    with progress.thread_channel(tmp_path / "eval"):  # the same folder again counts from zero
        backend._generate_batch(items[1:])
    assert progress.read_progress(tmp_path / "eval") == {"completions_total": 3, "completions": 3,
                                                         "tokens": 15}


def test_cpu_engines_reuse_inductors_cache_unless_the_user_chose():
    pytest.importorskip("vllm")
    from plumline.llm.vllm_backend import cpu_compile_cache_env

    assert cpu_compile_cache_env({}) == {"VLLM_USE_AOT_COMPILE": "0"}
    assert cpu_compile_cache_env({"VLLM_USE_AOT_COMPILE": "1"}) == {}
