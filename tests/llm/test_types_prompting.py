"""Requests, config, prompt building: the pure parts of plumline.llm."""

from __future__ import annotations

import json

import pytest
from plumline.llm import (
    DEFAULT_INSTRUCTION,
    BackendConfig,
    GenerationRequest,
    PromptConfig,
    make_messages,
    prompt_messages,
    render_prompt,
)
from plumline.llm.base import truncate_at_stop
from plumline.llm.openai_backend import backoff_delay, messages_from_prompt
from plumline.llm.vllm_backend import cpu_kv_cache_gib
from pydantic import ValidationError


def test_greedy_twin():
    req = GenerationRequest("p1", "prompt", n=8, temperature=0.8, top_p=0.95, max_tokens=64, seed=7)
    g = req.greedy()
    assert (g.request_id, g.n, g.temperature, g.top_p, g.max_tokens, g.prompt) == \
        ("p1:greedy", 1, 0.0, 1.0, 64, "prompt")
    assert g.is_greedy and not req.is_greedy
    assert req.greedy("x").request_id == "x"


@pytest.mark.parametrize("kwargs, needle", [
    ({"request_id": ""}, "request_id"),
    ({"prompt": ""}, "prompt is empty"),
    ({"prompt": b"bytes"}, "prompt must be a string"),
    ({"n": 0}, "n must be"),
    ({"n": True}, "n must be"),
    ({"temperature": -1}, "temperature"),
    ({"top_p": 0}, "top_p"),
    ({"max_tokens": 0}, "max_tokens"),
    ({"seed": -3}, "seed"),
    ({"seed": 2**64}, "seed"),
    ({"stop": ["x"]}, "stop"),
    ({"stop": ("",)}, "stop"),
])
def test_request_problems(kwargs, needle):
    base = {"request_id": "r", "prompt": "p", "n": 1, "temperature": 1.0, "top_p": 1.0, "max_tokens": 8,
            "seed": 1}
    base.update(kwargs)
    problems = GenerationRequest(**base).problems()
    assert any(needle in p for p in problems), problems


def test_valid_request_has_no_problems():
    req = GenerationRequest("r", "p", n=2, temperature=0, top_p=0.5, max_tokens=1, seed=0, stop=("\n\n",))
    assert req.problems() == []


def test_config_defaults_and_descriptions():
    cfg = BackendConfig()
    assert cfg.kind == "vllm" and cfg.trust_remote_code is False
    for name, field in BackendConfig.model_fields.items():
        assert field.description, f"{name} lacks a description"
    with pytest.raises(ValidationError, match="kind"):
        BackendConfig(kind="llamacpp")
    with pytest.raises(ValidationError, match="bogus"):
        BackendConfig(bogus=1)
    assert BackendConfig(model="a").cache_key() != BackendConfig(model="b").cache_key()
    assert BackendConfig.model_validate(json.loads(cfg.model_dump_json())) == cfg


def test_render_prompt_chat_and_plain():
    seen = []

    def render(messages):
        seen.append(messages)
        return "|".join(f"{m['role']}:{m['content']}" for m in messages)

    cfg = PromptConfig(system_prompt="SYS", instruction="Solve it.")
    out = render_prompt(cfg, "def f():", chat=True, render_chat=render)
    assert out == "system:SYS|user:Solve it.\n\ndef f():"
    assert seen[-1] == make_messages("Solve it.\n\ndef f():", "SYS") == prompt_messages(cfg, "def f():")
    # a function to complete is fenced as code for chat models
    assert render_prompt(cfg, "def f():\n", "f", chat=True, render_chat=render) == \
        "system:SYS|user:Solve it.\n\n```python\ndef f():\n```"
    bare = PromptConfig(instruction="")
    assert render_prompt(bare, "def f():", chat=True, render_chat=render) == "user:def f():"
    # base models: system prompt and instruction are used (plain text), the problem comes last, unchanged
    plain = render_prompt(PromptConfig(system_prompt="SYS", instruction="Do."), "def f():\n", "f", chat=False,
                          render_chat=render)
    assert plain == "SYS\n\nDo.\n\ndef f():\n" and plain.endswith("def f():\n")
    assert render_prompt(bare, "def f():", chat=False, render_chat=render) == "def f():"
    for chat in (True, False):
        with pytest.raises(ValueError, match="empty"):
            render_prompt(cfg, "  ", chat=chat, render_chat=render)


def test_prompt_config_is_the_one_default():
    assert PromptConfig().instruction == DEFAULT_INSTRUCTION and PromptConfig().system_prompt is None
    for name, field in PromptConfig.model_fields.items():
        assert field.description, name
    assert "system_prompt" not in BackendConfig.model_fields  # it lives in the prompt section
    with pytest.raises(ValidationError):
        PromptConfig(bogus=1)


def test_backend_build_prompt_is_render_prompt():
    from plumline.llm.base import GenerationBackend

    class Plain(GenerationBackend):
        def count_tokens(self, text):
            return len(text)

        def _generate_batch(self, items):
            return []

    b = Plain(BackendConfig(kind="openai", model="m"))
    cfg = PromptConfig(system_prompt="S", instruction="I")
    assert b.build_prompt("def g():", "g", cfg) == render_prompt(cfg, "def g():", "g", chat=False,
                                                                 render_chat=b.render_chat)
    assert b.build_prompt("def g():") == render_prompt(PromptConfig(), "def g():", chat=False,
                                                       render_chat=b.render_chat)


def test_truncate_at_stop():
    assert truncate_at_stop("abc\n\ndef", ("\n\n",)) == ("abc", True)
    assert truncate_at_stop("abcXdefY", ("Y", "X")) == ("abc", True)
    assert truncate_at_stop("abc", ("Z",)) == ("abc", False)


def test_messages_from_prompt():
    msgs = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]
    assert messages_from_prompt(json.dumps(msgs)) == msgs
    for raw in ["plain text", "[1, 2]", "[]", '{"role": "user"}', "[" * 10000]:
        assert messages_from_prompt(raw) == [{"role": "user", "content": raw}]


def test_backoff_delay_grows_and_caps():
    import random

    rng = random.Random(0)
    delays = [backoff_delay(a, 1.0, rng=rng) for a in range(10)]
    assert 0.5 <= delays[0] <= 1.5 and 4 <= delays[3] <= 12
    assert max(delays) <= 60
    assert backoff_delay(0, 0.01, retry_after="3") >= 3
    assert backoff_delay(0, 0.01, retry_after="Wed, 21 Oct 2015") < 1
    assert backoff_delay(0, 0.01, retry_after="99999") == 60


def test_cpu_kv_cache_size():
    assert cpu_kv_cache_gib(None, {}) == 2.0
    assert cpu_kv_cache_gib(None, {"VLLM_CPU_KVCACHE_SPACE": "6"}) == 6.0
    assert cpu_kv_cache_gib(0.5, {"VLLM_CPU_KVCACHE_SPACE": "6"}) == 0.5
    assert cpu_kv_cache_gib(None, {"VLLM_CPU_KVCACHE_SPACE": ""}) == 2.0
    with pytest.raises(ValueError, match="VLLM_CPU_KVCACHE_SPACE"):
        cpu_kv_cache_gib(None, {"VLLM_CPU_KVCACHE_SPACE": "lots"})
    with pytest.raises(ValueError):
        cpu_kv_cache_gib(-1, {})


def test_vllm_cpu_binds_every_core_on_small_machines_only():
    from plumline.llm.vllm_backend import cpu_thread_binding

    assert cpu_thread_binding({}, [0, 1]) == {"VLLM_CPU_OMP_THREADS_BIND": "0,1",
                                              "VLLM_CPU_NUM_OF_RESERVED_CPU": "0"}
    assert cpu_thread_binding({}, list(range(16))) == {}  # big machines keep vLLM's own binding
    assert cpu_thread_binding({}, [3]) == {}
    assert cpu_thread_binding({"VLLM_CPU_OMP_THREADS_BIND": "0"}, [0, 1]) == {}  # the user's choice wins


def test_a_cpu_engine_runs_in_process_on_small_machines_only():
    from plumline.llm.vllm_backend import ENGINE_PROCESS_ENV, engine_in_process

    assert engine_in_process({}, [0, 1]) and engine_in_process({}, [0])
    assert not engine_in_process({}, list(range(16)))  # vLLM's processes and per-NUMA binding
    # the user's choices win: the switch itself, or a core binding (which only vLLM's workers apply)
    assert not engine_in_process({ENGINE_PROCESS_ENV: "1"}, [0, 1])
    assert engine_in_process({ENGINE_PROCESS_ENV: "0"}, list(range(16)))
    assert not engine_in_process({"VLLM_CPU_OMP_THREADS_BIND": "0"}, [0, 1])
    assert not engine_in_process({"VLLM_CPU_NUM_OF_RESERVED_CPU": "1"}, [0, 1])


def test_tcmalloc_is_preloaded_into_the_engine_start_only(tmp_path):
    from plumline.llm.vllm_backend import engine_preload

    lib = tmp_path / "libtcmalloc_minimal.so.4"
    lib.write_bytes(b"")

    env: dict[str, str] = {}
    with engine_preload(env, tcmalloc=str(lib)) as used:
        assert used == str(lib) and env["LD_PRELOAD"] == str(lib)
    assert "LD_PRELOAD" not in env  # restored: later children (sandbox, trainer) never see it

    env = {"LD_PRELOAD": "/x/libgomp.so"}
    with engine_preload(env, tcmalloc=str(lib)):
        assert env["LD_PRELOAD"] == f"{lib}:/x/libgomp.so"
        env["LD_PRELOAD"] += ":/y/changed-by-vllm.so"
    assert env["LD_PRELOAD"] == "/x/libgomp.so"

    env = {"LD_PRELOAD": "/opt/libtcmalloc.so.4"}  # the user's own tcmalloc wins
    with engine_preload(env, tcmalloc=str(lib)) as used:
        assert used is None and env["LD_PRELOAD"] == "/opt/libtcmalloc.so.4"
