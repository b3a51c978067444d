"""The vLLM backend reports live progress through vLLM's tqdm hook (no engine: a stand-in LLM that
calls the hook the way ``vllm.LLM.generate`` 0.32 does, both to wrap added requests and as the bar)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from plumline.llm import GenerationRequest, progress


class FakeLLM:
    def generate(self, prompts, params, use_tqdm):
        added = list(use_tqdm(prompts, desc="Adding requests"))  # must pass the requests through
        assert len(added) == len(prompts)
        bar = use_tqdm(total=len(prompts), desc="Processed prompts", dynamic_ncols=True,
                       postfix="est. speed input: 0.00 toks/s, output: 0.00 toks/s")
        outs, total_out = [], 0
        for p, sp in zip(prompts, params):
            comps = [SimpleNamespace(text="x" * 5, finish_reason="length", token_ids=[7] * 5, index=i)
                     for i in range(sp.n)]
            total_out += 5 * sp.n
            elapsed = bar.format_dict["elapsed"]
            bar.postfix = f"est. speed input: 1.00 toks/s, output: {total_out / elapsed:.2f} toks/s"
            bar.update(sp.n)
            outs.append(SimpleNamespace(outputs=comps, prompt_token_ids=p["prompt_token_ids"]))
        bar.close()
        return outs


def test_generate_reports_completions_and_tokens(tmp_path):
    pytest.importorskip("vllm")
    from plumline.llm.vllm_backend import VLLMBackend

    backend = object.__new__(VLLMBackend)  # no engine
    backend._llm = FakeLLM()
    items = [(GenerationRequest("a", "p", n=2, max_tokens=5, seed=1), [1, 2, 3], 3),
             (GenerationRequest("b", "q", n=3, max_tokens=5, seed=2), [4, 5], 2)]
    with progress.channel(tmp_path / "sample") as folder:
        results = backend._generate_batch(items)
        got = progress.read_progress(folder)
    assert [len(r.completions) for r in results] == [2, 3]
    assert got == {"completions_total": 5, "completions": 5, "tokens": 25}


def test_cpu_engines_reuse_inductors_cache_unless_the_user_chose():
    pytest.importorskip("vllm")
    from plumline.llm.vllm_backend import cpu_compile_cache_env

    assert cpu_compile_cache_env({}) == {"VLLM_USE_AOT_COMPILE": "0"}
    assert cpu_compile_cache_env({"VLLM_USE_AOT_COMPILE": "1"}) == {}
