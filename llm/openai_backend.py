"""Any OpenAI-compatible server over HTTP (vLLM's server, OpenAI, TGI, llama.cpp, SGLang...).

One POST per request (``n`` samples each, seed passed through), at most ``max_concurrency`` in flight;
429, 5xx, timeouts and connection errors are retried with exponential backoff and jitter (honouring
``Retry-After``); other 4xx and malformed replies fail that request only.

Endpoints:
- ``completions``: the prompt is text. With a local ``tokenizer`` that has a chat template the prompt is
  rendered here (so the exact text is recorded and token counts are exact).
- ``chat``: the server applies its own template. ``render_chat`` then returns the messages as a JSON
  array (that text is the recorded prompt); a prompt that is not such an array is sent as one user
  message.
- ``auto``: ``completions`` when a local tokenizer renders chat (or chat is off), else ``chat``.

Without a local tokenizer the prompt-length check is left to the server (its 400 becomes the request's
error), and per-completion token counts for n > 1 are the server's total divided by n.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from .base import GenerationBackend, HFTokenizerMixin, load_tokenizer
from .config import BackendConfig
from .prompting import plain_join
from .types import Completion, GenerationRequest, GenerationResult

logger = logging.getLogger(__name__)

MAX_BACKOFF_S = 60.0


class RequestFailed(Exception):
    """A request that will not succeed (non-retryable status, malformed reply, retries exhausted)."""


def messages_from_prompt(prompt: str) -> list[dict[str, str]]:
    """The chat messages a ``chat``-endpoint prompt stands for (see the module doc)."""
    try:
        data = json.loads(prompt)
    except (ValueError, RecursionError):
        data = None
    if (isinstance(data, list) and data and all(
            isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
            for m in data)):
        return [{"role": m["role"], "content": m["content"]} for m in data]
    return [{"role": "user", "content": prompt}]


def backoff_delay(attempt: int, base_s: float, retry_after: str | None = None,
                  rng: random.Random | None = None) -> float:
    """Seconds to wait before retry ``attempt`` (0-based): base * 2**attempt with +-50% jitter,
    at least ``Retry-After`` when the server sent a number, never above 60 s."""
    rng = rng or random
    delay = min(base_s * (2 ** attempt), MAX_BACKOFF_S) * (0.5 + rng.random())
    if retry_after:
        try:
            delay = max(delay, float(retry_after))
        except ValueError:
            pass
    return min(delay, MAX_BACKOFF_S)


class OpenAIBackend(HFTokenizerMixin, GenerationBackend):
    name = "openai"
    reports_stop_string = False  # only a vLLM server sends stop_reason; another one would leave it unknown

    def __init__(self, cfg: BackendConfig):
        GenerationBackend.__init__(self, cfg)
        if not cfg.model:
            raise ValueError("BackendConfig.model is empty (the served model name)")
        if cfg.max_concurrency < 1 or cfg.max_retries < 0 or cfg.request_timeout_s <= 0:
            raise ValueError("openai backend needs max_concurrency >= 1, max_retries >= 0, "
                             "request_timeout_s > 0")
        self.model_name = cfg.model
        base_url = cfg.base_url.rstrip("/")
        if os.path.exists(cfg.model):
            # A local model folder served under its path (e.g. a policy an earlier round trained):
            # its weights identify it, wherever the run folder lies.
            from .assets import model_revision

            self.revision = model_revision(cfg.model)
        else:
            self.revision = hashlib.sha256(f"openai\0{cfg.model}\0{base_url}".encode()).hexdigest()[:12]
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(cfg.api_key_env) if cfg.api_key_env else None
        if key:
            headers["Authorization"] = f"Bearer {key}"
        limits = httpx.Limits(max_connections=cfg.max_concurrency,
                              max_keepalive_connections=cfg.max_concurrency)
        self._client = httpx.Client(base_url=base_url, headers=headers,
                                    timeout=httpx.Timeout(cfg.request_timeout_s), limits=limits)
        self._closed = threading.Event()
        self.tokenizer: Any = None
        self.chat = cfg.chat is not False
        if cfg.tokenizer:
            self._setup_tokenizer(load_tokenizer(cfg.tokenizer, cfg.trust_remote_code), cfg.chat)
        if cfg.endpoint == "auto":
            local_render = self.tokenizer is not None and self.chat
            self.endpoint = "completions" if local_render or not self.chat else "chat"
        else:
            self.endpoint = cfg.endpoint
        if self.endpoint == "chat":
            self.chat = True
        self.max_context = cfg.max_model_len or self._server_max_len()

    def _server_max_len(self) -> int | None:
        """vLLM's server reports ``max_model_len`` in /models; others do not (then: no local check)."""
        try:
            data = self._client.get("/models", timeout=min(5.0, self.cfg.request_timeout_s)).json()
        except (httpx.HTTPError, ValueError) as exc:  # an unreachable server is found out by generate
            logger.debug("no max_model_len from %s/models: %s", self.cfg.base_url, exc)
            return None
        models = data.get("data") if isinstance(data, dict) else None
        for m in models if isinstance(models, list) else []:
            served = isinstance(m, dict) and m.get("id") == self.model_name
            if served and isinstance(m.get("max_model_len"), int):
                return int(m["max_model_len"])
        return None

    # --- rendering and tokens ---------------------------------------------------------------------
    def render_chat(self, messages: list[dict[str, str]]) -> str:
        if self.endpoint == "chat":
            return json.dumps([{"role": m["role"], "content": m["content"]} for m in messages],
                              ensure_ascii=False)
        if self.tokenizer is not None:
            return HFTokenizerMixin.render_chat(self, messages)
        return plain_join(messages)

    def count_tokens(self, text: str) -> int:
        if self.tokenizer is None:
            raise RuntimeError("the openai backend counts tokens only with a local `tokenizer` configured")
        if self.endpoint == "chat":
            ids = self.tokenizer.apply_chat_template(messages_from_prompt(text), tokenize=True,
                                                     add_generation_prompt=True)
            if isinstance(ids, dict) or hasattr(ids, "keys"):
                ids = ids["input_ids"]
            return len(ids)
        return len(self.encode_ids(text))

    def _encode(self, text: str) -> tuple[None, int | None]:
        return None, (self.count_tokens(text) if self.tokenizer is not None else None)

    # --- HTTP -------------------------------------------------------------------------------------
    def _body(self, req: GenerationRequest) -> tuple[str, dict[str, Any]]:
        body: dict[str, Any] = {
            "model": self.model_name, "n": req.n, "temperature": req.temperature,
            "top_p": req.top_p, "max_tokens": req.max_tokens,
        }
        if req.seed is not None:
            body["seed"] = req.seed
        if req.stop:
            body["stop"] = list(req.stop)
        if self.endpoint == "chat":
            body["messages"] = messages_from_prompt(req.prompt)
            return "/chat/completions", body
        body["prompt"] = req.prompt
        return "/completions", body

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        attempt = 0
        while True:
            retry_after = None
            try:
                r = self._client.post(path, json=body)
            except httpx.TransportError as exc:  # connect errors, timeouts, broken connections
                reason = f"{type(exc).__name__}: {exc}"
            else:
                if r.status_code == 200:
                    try:
                        data = r.json()
                    except ValueError:
                        raise RequestFailed(
                            f"HTTP 200 with a body that is not JSON: {r.text[:200]!r}") from None
                    if not isinstance(data, dict):
                        raise RequestFailed(f"HTTP 200 with a JSON {type(data).__name__}, not an object")
                    return data
                reason = f"HTTP {r.status_code}: {r.text[:500]}"
                if r.status_code != 429 and r.status_code < 500:
                    raise RequestFailed(reason)
                retry_after = r.headers.get("retry-after")
            if attempt >= self.cfg.max_retries or self._closed.is_set():
                raise RequestFailed(f"gave up after {attempt + 1} attempts: {reason}")
            delay = backoff_delay(attempt, self.cfg.backoff_s, retry_after)
            logger.info("POST %s failed (%s); retry %d in %.2fs", path, reason[:120], attempt + 1, delay)
            if self._closed.wait(delay):
                raise RequestFailed(f"backend closed while retrying: {reason}")
            attempt += 1

    def _one(self, item: tuple[GenerationRequest, Any, int | None]) -> GenerationResult:
        req, _, n_tok = item
        try:
            path, body = self._body(req)
            data = self._post(path, body)
            return GenerationResult(req.request_id, self._completions(req, data, n_tok), None)
        except RequestFailed as exc:
            return GenerationResult(req.request_id, (), f"openai request failed: {exc}")
        except Exception as exc:  # malformed reply shapes and the like: this request only
            logger.exception("request %s failed", req.request_id)
            return GenerationResult(req.request_id, (),
                                    f"openai request failed: {type(exc).__name__}: {exc}")

    def _completions(self, req: GenerationRequest, data: dict[str, Any],
                     n_tok: int | None) -> tuple[Completion, ...]:
        choices = data.get("choices")
        if not isinstance(choices, list) or not choices:
            raise RequestFailed(f"reply has no choices: {json.dumps(data)[:200]}")
        usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
        prompt_tokens = n_tok if n_tok is not None else int(usage.get("prompt_tokens") or 0)
        total_completion = int(usage.get("completion_tokens") or 0)
        out = []
        for pos, ch in enumerate(choices):
            if not isinstance(ch, dict):
                raise RequestFailed(f"choice {pos} is not an object")
            if self.endpoint == "chat":
                msg = ch.get("message") if isinstance(ch.get("message"), dict) else {}
                text = msg.get("content")
            else:
                text = ch.get("text")
            if text is None:
                text = ""
            if not isinstance(text, str):
                raise RequestFailed(f"choice {pos} text is a {type(text).__name__}")
            if self.tokenizer is not None:
                n_gen = len(self.tokenizer(text, add_special_tokens=False)["input_ids"])
            else:
                n_gen = round(total_completion / len(choices))
            index = ch.get("index", pos)
            stop_reason = ch.get("stop_reason")  # vLLM's server says which stop string; OpenAI's does not
            out.append(Completion(text=text, finish_reason=str(ch.get("finish_reason") or "unknown"),
                                  prompt_tokens=prompt_tokens, completion_tokens=n_gen,
                                  index=int(index) if isinstance(index, int) else pos,
                                  stop_string=stop_reason if isinstance(stop_reason, str) else None))
        out.sort(key=lambda c: c.index)
        return tuple(out)

    def _generate_batch(self, items: list[tuple[GenerationRequest, Any, int | None]]
                        ) -> list[GenerationResult]:
        if self._closed.is_set():
            raise RuntimeError("this openai backend is closed")
        workers = min(self.cfg.max_concurrency, len(items))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="plumline-openai") as pool:
            return list(pool.map(self._one, items))

    def close(self) -> None:
        self._closed.set()
        self._client.close()
