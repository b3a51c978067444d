"""transformers backend on the tiny random Llama (CPU): batching, n, seeds, greedy, stops, length check."""

from __future__ import annotations

from backend_contract import assert_results_well_formed, assert_stop_strings_truncate
from plumline.llm import GenerationRequest, PromptConfig


def _req(rid, prompt, **kw):
    base = {"n": 2, "temperature": 1.0, "top_p": 1.0, "max_tokens": 12, "seed": 3}
    base.update(kw)
    return GenerationRequest(rid, prompt, **base)


def test_batch_shapes_order_and_counts(hf_backend):
    b = hf_backend
    p1, p2 = b.build_prompt("def add(a, b):"), b.build_prompt("x")
    reqs = [_req("a", p1, n=3), _req("b", p2, n=3), _req("c", p1, n=1, max_tokens=5),
            _req("d", p2, temperature=0, n=1)]
    res = b.generate(reqs)
    assert [r.request_id for r in res] == ["a", "b", "c", "d"]
    assert [len(r.completions) for r in res] == [3, 3, 1, 1]
    assert_results_well_formed(b, reqs, res)
    for r, req in zip(res, reqs):
        assert all(c.finish_reason == "stop" or c.completion_tokens == req.max_tokens for c in r.completions)


def test_left_padding_does_not_change_greedy_output(hf_backend):
    """A short prompt batched with a long one must decode as it does alone (left padding + mask)."""
    b = hf_backend
    short, long = b.build_prompt("x"), b.build_prompt("def fizzbuzz(n):\n" * 5)
    alone = b.generate([_req("s", short, temperature=0, n=1)])[0]
    together = b.generate([_req("l", long, temperature=0, n=1), _req("s", short, temperature=0, n=1)])[1]
    assert together.completions[0].text == alone.completions[0].text


def test_seeds_reproduce_and_differ(hf_backend):
    b = hf_backend
    p = b.build_prompt("def f():")
    one = b.generate([_req("a", p, n=4, seed=1)])[0]
    again = b.generate([_req("a", p, n=4, seed=1)])[0]
    other = b.generate([_req("a", p, n=4, seed=2)])[0]
    assert one == again
    assert [c.text for c in one.completions] != [c.text for c in other.completions]
    assert len({c.text for c in one.completions}) > 1  # n samples are not copies


def test_greedy_is_deterministic_without_seed(hf_backend):
    b = hf_backend
    req = _req("a", b.build_prompt("def g():"), n=4, seed=None)
    g1, g2 = b.generate([req.greedy()])[0], b.generate([req.greedy()])[0]
    assert g1.request_id == "a:greedy" and len(g1.completions) == 1
    assert g1.completions[0].text == g2.completions[0].text


def test_greedy_with_n_repeats_the_single_greedy_decode(hf_backend):
    b = hf_backend
    p = b.build_prompt("def k():")
    (res,) = b.generate([_req("g", p, n=3, temperature=0, seed=None)])
    assert res.error is None and len(res.completions) == 3
    assert len({c.text for c in res.completions}) == 1 and [c.index for c in res.completions] == [0, 1, 2]


def test_stop_strings_truncate(hf_backend):
    assert_stop_strings_truncate(hf_backend, seed=5)


def test_too_long_prompt_is_an_error_and_rest_proceeds(hf_backend):
    b = hf_backend
    ok = b.build_prompt("def f():")
    huge = "def f():\n" * 5000
    res = b.generate([_req("ok1", ok), _req("huge", huge), _req("edge", ok, max_tokens=b.max_context)])
    assert res[0].error is None and len(res[0].completions) == 2
    assert res[1].error.startswith("prompt too long") and str(b.max_context) in res[1].error
    assert res[2].error.startswith("prompt too long")  # prompt fits but prompt + max_tokens does not


def test_chat_rendering_uses_template(hf_backend):
    b = hf_backend
    assert b.chat and b.revision and b.model_name
    text = b.render_chat([{"role": "system", "content": "S"}, {"role": "user", "content": "U"}])
    assert text == "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\n"
    assert b.build_prompt("P", prompt=PromptConfig(instruction="")) == \
        "<|im_start|>user\nP<|im_end|>\n<|im_start|>assistant\n"


def test_plain_mode_for_base_models(tiny_llama):
    from plumline.llm import BackendConfig, make_backend

    cfg = BackendConfig(kind="transformers", model=str(tiny_llama), chat=False, device="cpu")
    with make_backend(cfg) as b:
        assert not b.chat
        assert b.build_prompt("def f():", prompt=PromptConfig(system_prompt="# solve", instruction="")) == \
            "# solve\n\ndef f():"
        (res,) = b.generate([_req("a", "def f():", n=1)])
        assert res.error is None


def test_cuda_device_when_available(tiny_llama):
    """Runs where a GPU is present (skipped on CPU-only machines): same contract on CUDA, any dtype."""
    import pytest
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    from plumline.llm import BackendConfig, make_backend

    for dtype in ("auto", "bfloat16"):
        cfg = BackendConfig(kind="transformers", model=str(tiny_llama), device="auto", dtype=dtype)
        with make_backend(cfg) as b:
            assert b.device.type == "cuda"
            p = b.build_prompt("def add(a, b):")
            reqs = [_req("a", p, n=4, seed=1), _req("g", p, n=2, temperature=0, seed=None)]
            r1, r2 = b.generate(reqs), b.generate(reqs)
            assert r1 == r2 and [len(r.completions) for r in r1] == [4, 2]
