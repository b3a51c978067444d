"""Which trained models a running engine can load in place (``reload_obstacle``), and how the registry
parks engines over training and hands them the next round's weights (test doubles for the engine)."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path
from typing import ClassVar

import pytest
from plumline.llm import BackendConfig, GenerationBackend, registry
from plumline.llm.reload import reload_obstacle, tensor_shapes

CONFIG = {"architectures": ["LlamaForCausalLM"], "hidden_size": 64, "num_hidden_layers": 2,
          "vocab_size": 100, "eos_token_id": 2, "torch_dtype": "float32", "transformers_version": "5.0"}
TENSORS = {"model.embed_tokens.weight": [100, 64], "model.layers.0.mlp.up_proj.weight": [128, 64]}


def _write_safetensors(path: Path, tensors: dict[str, list[int]], dtype: str = "F32") -> None:
    header, offset = {}, 0
    for name, shape in tensors.items():
        size = 4
        for d in shape:
            size *= d
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    blob = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(blob)) + blob + b"\0" * offset)


def _model(folder: Path, config: dict | None = None, tensors: dict | None = None, *,
           tokenizer: dict | None = None, chat_template: str = "{{ messages }}") -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(config or CONFIG, indent=2))
    generation = {"eos_token_id": 2, "transformers_version": "5"}
    (folder / "generation_config.json").write_text(json.dumps(generation))
    (folder / "tokenizer.json").write_text(json.dumps(tokenizer or {"model": {"vocab": {"a": 0, "b": 1}}}))
    (folder / "tokenizer_config.json").write_text(json.dumps({"name_or_path": str(folder), "eos_token": "b"}))
    (folder / "chat_template.jinja").write_text(chat_template)
    _write_safetensors(folder / "model.safetensors", tensors or TENSORS)
    return folder


def test_same_model_other_weights_can_be_loaded(tmp_path):
    a = _model(tmp_path / "a")
    b = _model(tmp_path / "b", {**CONFIG, "torch_dtype": "bfloat16", "transformers_version": "5.1",
                                "_name_or_path": "/somewhere"})
    (b / "tokenizer.json").write_text(json.dumps(json.loads((a / "tokenizer.json").read_text()), indent=4))
    _write_safetensors(b / "model.safetensors", TENSORS, dtype="BF16")  # saved in another dtype: fine
    assert reload_obstacle(a, b) is None
    assert tensor_shapes(a) == {k: tuple(v) for k, v in TENSORS.items()}


@pytest.mark.parametrize("change, expected", [
    (lambda f: (f / "config.json").write_text(json.dumps({**CONFIG, "num_hidden_layers": 3})),
     "config.json differs (key 'num_hidden_layers': 2 vs 3)"),
    (lambda f: (f / "generation_config.json").write_text(json.dumps({"eos_token_id": [2, 7]})),
     "generation_config.json differs"),
    (lambda f: (f / "tokenizer.json").write_text(json.dumps({"model": {"vocab": {"a": 0, "c": 1}}})),
     "tokenizer file tokenizer.json differs"),
    (lambda f: (f / "chat_template.jinja").write_text("{{ other }}"),
     "tokenizer file chat_template.jinja differs"),
    (lambda f: (f / "chat_template.jinja").unlink(), "tokenizer file chat_template.jinja differs"),
    (lambda f: (f / "special_tokens_map.json").write_text("{}"),
     "tokenizer file special_tokens_map.json differs"),
    (lambda f: _write_safetensors(f / "model.safetensors", {**TENSORS, "lm_head.weight": [100, 64]}),
     "weight tensors differ in names or shapes (first: lm_head.weight)"),
    (lambda f: _write_safetensors(f / "model.safetensors",
                                  {**TENSORS, "model.embed_tokens.weight": [101, 64]}),
     "weight tensors differ in names or shapes (first: model.embed_tokens.weight)"),
    (lambda f: (f / "model.safetensors").unlink(), "has no .safetensors weights"),
    (lambda f: (f / "model.safetensors").write_bytes(b"\xff" * 12), "cannot read the safetensors header"),
    (lambda f: (f / "config.json").unlink(), "is not a local model folder"),
    (lambda f: (f / "config.json").write_text("{half a config"), "config.json differs (one of them is not"),
])
def test_any_difference_but_the_weights_needs_a_new_engine(tmp_path, change, expected):
    a = _model(tmp_path / "a")
    b = tmp_path / "b"
    shutil.copytree(a, b)
    change(b)
    why = reload_obstacle(a, b)
    assert why is not None and expected in why, why
    assert reload_obstacle(b, a) is not None  # the relation is symmetric


def test_a_hub_name_is_never_reloaded(tmp_path):
    assert "not a local model folder" in reload_obstacle(_model(tmp_path / "a"), "org/some-model")


# --- the registry: parking over training, loading the next weights ---------------------------------------


class FakeEngine(GenerationBackend):
    """Test double: records loads and closes; ``obstacle`` says whether a load succeeds."""

    name = "fake"
    started: ClassVar[list[FakeEngine]] = []

    def __init__(self, cfg: BackendConfig, *, keeps: bool = True, obstacle: str | None = None):
        super().__init__(cfg)
        self.model_name = cfg.model
        self.keeps, self.obstacle, self.loads, self.closed = keeps, obstacle, [], 0
        FakeEngine.started.append(self)

    @property
    def keeps_while_training(self) -> bool:
        return self.keeps

    def load_model(self, model: str) -> str | None:
        if self.obstacle == "raise":
            raise RuntimeError("worker died")
        if self.obstacle is None:
            self.loads.append(model)
            self.model_name = model
            self.cfg = self.cfg.model_copy(update={"model": model})
        return self.obstacle

    def count_tokens(self, text: str) -> int:
        return len(text)

    def _generate_batch(self, items):
        raise AssertionError("not used")

    def close(self) -> None:
        self.closed += 1


@pytest.fixture
def engines(monkeypatch):
    """The registry with its own empty cache: real engines other tests share in this process are never
    seen (parked, reloaded or closed) by these tests."""
    options: dict = {}
    FakeEngine.started = []
    monkeypatch.setattr(registry, "_SHARED", {})
    monkeypatch.setattr(registry, "_PARKED", set())
    monkeypatch.setattr(registry, "make_backend", lambda cfg: FakeEngine(cfg, **options))
    yield options
    registry.close_shared_backends()
    assert not registry._SHARED and not registry._PARKED


def _cfg(model: str, **kw) -> BackendConfig:
    return BackendConfig(kind="vllm", model=model, kv_cache_gib=1, **kw)


def test_parked_engine_loads_the_next_rounds_weights(engines):
    first = registry.get_shared_backend(_cfg("round0"))
    assert registry.get_shared_backend(_cfg("round0")) is first
    registry.park_shared_backends()  # training
    assert first.closed == 0
    second = registry.get_shared_backend(_cfg("round1"))
    assert second is first and first.loads == ["round1"] and len(FakeEngine.started) == 1
    assert registry.get_shared_backend(_cfg("round1")) is first  # keyed by what it serves now
    first.close()
    assert registry.get_shared_backend(_cfg("round1")) is not first  # closed: a new engine


def test_no_reload_without_parking_nor_across_settings(engines):
    first = registry.get_shared_backend(_cfg("a"))
    other = registry.get_shared_backend(_cfg("b"))  # in use by a stage: never swapped under it
    assert other is not first and first.loads == []
    registry.park_shared_backends()
    third = registry.get_shared_backend(_cfg("c", max_model_len=1024))  # other engine settings
    assert third not in (first, other) and first.loads == other.loads == []


def test_engine_that_needs_the_accelerator_is_closed_for_training(engines):
    engines["keeps"] = False
    first = registry.get_shared_backend(_cfg("a"))
    registry.park_shared_backends()
    assert first.closed == 1 and not registry._SHARED


def test_engine_parked_twice_unused_is_closed(engines):
    first = registry.get_shared_backend(_cfg("a"))
    registry.park_shared_backends()
    registry.park_shared_backends()  # a round that used no engine: it serves nobody now
    assert first.closed == 1 and not registry._SHARED


@pytest.mark.parametrize("obstacle", ["tokenizer file tokenizer.json differs", "raise"])
def test_engine_that_cannot_load_is_closed_before_a_new_one(engines, obstacle):
    engines["obstacle"] = obstacle
    first = registry.get_shared_backend(_cfg("a"))
    registry.park_shared_backends()
    second = registry.get_shared_backend(_cfg("b"))
    assert second is not first and first.closed == 1 and first.loads == []
    assert list(registry._SHARED.values()) == [second]
