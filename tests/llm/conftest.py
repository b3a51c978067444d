"""Shared fixtures for the generation tests: the tiny random Llama (built once per session) and one
vLLM engine for the whole session (engine start costs ~30 s)."""

from __future__ import annotations

from pathlib import Path

import pytest
from plumline.llm import BackendConfig
from plumline.llm.assets import build_tiny_llama


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("models") / "tiny-llama")


@pytest.fixture(scope="session")
def hf_backend(tiny_llama: Path):
    from plumline.llm import make_backend

    backend = make_backend(BackendConfig(kind="transformers", model=str(tiny_llama), device="cpu",
                                         batch_size=4))
    yield backend
    backend.close()


@pytest.fixture(scope="session")
def vllm_backend(tiny_llama: Path):
    pytest.importorskip("vllm")
    from plumline.llm import get_shared_backend

    cfg = BackendConfig(kind="vllm", model=str(tiny_llama), kv_cache_gib=0.25, max_model_len=512,
                        enforce_eager=True)
    backend = get_shared_backend(cfg)
    yield backend
    backend.close()
