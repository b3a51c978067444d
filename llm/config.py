"""``BackendConfig``: the generation part of the YAML config (pydantic v2, every field documented)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class BackendConfig(BaseModel):
    """Which engine generates, on which model, with which engine options."""

    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())

    kind: Literal["vllm", "openai", "transformers"] = Field(
        "vllm", description="engine: vLLM in-process, an OpenAI-compatible server, or transformers generate")
    model: str = Field("", description="model folder or hub-style name (for openai: the served model name)")
    tokenizer: str | None = Field(
        None, description="tokenizer folder if not the model's (openai: enables local token counting)")
    chat: bool | None = Field(
        None, description="render prompts with the chat template; None = auto (yes if the tokenizer has one)")
    dtype: str = Field("auto", description="weights dtype: auto, float32, bfloat16, float16")
    max_model_len: int | None = Field(
        None, description="context length in tokens; None = the model's own (prompts longer are rejected "
                          "per request)")
    kv_cache_gib: float | None = Field(
        None, description="vLLM KV cache size in GiB; None = $VLLM_CPU_KVCACHE_SPACE or 2 on CPU, "
                          "gpu_memory_utilization on GPU")
    gpu_memory_utilization: float = Field(0.9, description="vLLM: fraction of GPU memory the engine may use")
    tensor_parallel_size: int = Field(1, description="vLLM: number of GPUs to shard the model over")
    enforce_eager: bool | None = Field(
        None, description="vLLM: skip graph capture/compilation (faster start, slower decode). None: on "
                          "CPU yes (SmolLM2, 200 samples: start 42 vs 51 s warm and ~100 s less cold, decode "
                          "6% slower; bench/bench_sampling.py --eager on,off), on GPU no (CUDA graphs)")
    keep_between_rounds: bool | None = Field(
        None, description="vLLM: keep the engine running while a round trains, then load the trained "
                          "weights into it (~1 s) instead of starting a new engine (~40 s on 2 CPU cores); "
                          "a trained model whose config, tokenizer or tensor shapes differ gets a new "
                          "engine. None: on CPU yes, on GPU no (training needs the GPU memory)")
    engine_kwargs: dict[str, Any] = Field(
        default_factory=dict, description="vLLM: extra keyword arguments passed to vllm.LLM unchanged")
    base_url: str = Field("http://127.0.0.1:8000/v1", description="openai: server URL including /v1")
    api_key_env: str | None = Field(
        "OPENAI_API_KEY", description="openai: name of the environment variable holding the API key")
    endpoint: Literal["auto", "completions", "chat"] = Field(
        "auto", description="openai: /v1/completions or /v1/chat/completions; auto = chat unless a local "
                            "tokenizer renders the chat template")
    request_timeout_s: float = Field(120.0, description="openai: timeout of one HTTP request, seconds")
    max_retries: int = Field(
        5, description="openai: retries on 429/5xx/connection errors (exponential backoff)")
    backoff_s: float = Field(
        1.0, description="openai: first backoff delay, doubled on each retry (with jitter)")
    max_concurrency: int = Field(8, description="openai: requests in flight at once")
    batch_size: int = Field(
        8, description="transformers: prompts per generate call (each with its n samples)")
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="transformers: device; auto = cuda if available")
    trust_remote_code: bool = Field(
        False, description="allow model code from the model folder (transformers/vLLM)")

    def cache_key(self) -> str:
        """Identity of the engine this config builds (for the one-engine-per-process cache)."""
        return self.model_dump_json()
