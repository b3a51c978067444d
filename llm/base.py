"""The one generation interface every backend implements.

``GenerationBackend.generate`` does the checks common to all engines (request validation, the
prompt-length check) and hands the surviving requests to the engine in ONE call (``_generate_batch``);
rejected requests come back as ``GenerationResult(error=...)`` in their place, so one bad prompt never
sinks its batch.
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Sequence
from typing import Any, Self

from .config import BackendConfig
from .prompting import PromptConfig, plain_join, render_prompt
from .types import GenerationRequest, GenerationResult

logger = logging.getLogger(__name__)


class GenerationBackend(abc.ABC):
    """Abstract generation engine. Subclasses set the attributes and implement ``_generate_batch``."""

    name: str = "abstract"
    model_name: str = ""
    revision: str = ""  # short content hash of the model (or of name + server for openai)
    max_context: int | None = None  # tokens; None = unknown (no length check)
    chat: bool = False  # prompts are rendered with a chat template
    reports_stop_string = True  # Completion.stop_string says which stop string ended a completion

    def __init__(self, cfg: BackendConfig):
        self.cfg = cfg

    # --- prompt rendering -------------------------------------------------------------------------
    def render_chat(self, messages: list[dict[str, str]]) -> str:
        """Apply the chat template (chat models) or join the contents (base models)."""
        return plain_join(messages)

    def build_prompt(self, problem_text: str, entry_point: str | None = None,
                     prompt: PromptConfig | None = None) -> str:
        """The policy prompt of one problem as this backend renders it (chat or plain):
        ``render_prompt`` with this backend's ``chat`` and ``render_chat``; ``prompt`` defaults to
        ``PromptConfig()`` (the run config's default ``prompt`` section)."""
        return render_prompt(prompt or PromptConfig(), problem_text, entry_point, chat=self.chat,
                             render_chat=self.render_chat)

    # --- tokens -----------------------------------------------------------------------------------
    @abc.abstractmethod
    def count_tokens(self, text: str) -> int:
        """Tokens the model sees for ``text`` (as the engine will tokenize it)."""

    def _encode(self, text: str) -> Any:
        """Engine input for one prompt plus its token count, or ``(None, None)`` when this backend
        cannot count tokens (the length check is then left to the server)."""
        return None, self.count_tokens(text)

    # --- generation -------------------------------------------------------------------------------
    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        """Generate for the whole batch in one engine call; results in input order, one per request."""
        requests = list(requests)
        results: list[GenerationResult | None] = [None] * len(requests)
        todo: list[tuple[int, GenerationRequest, Any, int | None]] = []
        for i, req in enumerate(requests):
            error, payload, n_tokens = self._check(i, req)
            if error is not None:
                rid = getattr(req, "request_id", None)
                rid = rid if isinstance(rid, str) and rid else f"#{i}"
                logger.warning("request %s rejected: %s", rid, error)
                results[i] = GenerationResult(request_id=rid, completions=(), error=error)
            else:
                todo.append((i, req, payload, n_tokens))
        if todo:
            outs = self._generate_batch([(req, payload, n) for _, req, payload, n in todo])
            if len(outs) != len(todo):
                raise RuntimeError(f"{self.name}: engine returned {len(outs)} results for {len(todo)} "
                                   f"requests")
            for (i, _, _, _), out in zip(todo, outs):
                results[i] = out
        return [r for r in results if r is not None]

    def _check(self, i: int, req: Any) -> tuple[str | None, Any, int | None]:
        if not isinstance(req, GenerationRequest):
            return f"request #{i} is a {type(req).__name__}, not a GenerationRequest", None, None
        problems = req.problems()
        if problems:
            return "invalid request: " + "; ".join(problems), None, None
        try:
            payload, n_tokens = self._encode(req.prompt)
        except Exception as exc:  # noqa: BLE001 - a tokenizer failure is this request's problem, not the batch's
            return f"tokenization failed: {type(exc).__name__}: {exc}", None, None
        too_long = (n_tokens is not None and self.max_context is not None
                    and n_tokens + req.max_tokens > self.max_context)
        if too_long:
            return (f"prompt too long: {n_tokens} prompt tokens + max_tokens {req.max_tokens} > "
                    f"context {self.max_context}"), None, None
        return None, payload, n_tokens

    @abc.abstractmethod
    def _generate_batch(self, items: list[tuple[GenerationRequest, Any, int | None]]
                        ) -> list[GenerationResult]:
        """Serve valid requests ``(request, payload from _encode, prompt token count)`` in one go."""

    # --- engine reuse between rounds ---------------------------------------------------------------
    @property
    def keeps_while_training(self) -> bool:
        """May stay running while a round trains (it holds no accelerator the trainer needs), to load
        the trained weights afterwards (``load_model``) instead of starting a new engine."""
        return False

    def load_model(self, model: str) -> str | None:
        """Serve ``model`` from now on, in this engine: None when done, else why it cannot (the
        caller then starts a new engine). Only a model that differs in weight values can be loaded."""
        return f"the {self.name} backend cannot load other weights into a running engine"

    # --- callers in several threads (stages sharing one engine, pipeline/round.py) ---------------
    def cancel_generation(self, reason: str) -> None:
        """Fail the generate calls in flight (``batching.GenerationCancelled``) and refuse new ones
        until ``resume_generation``: a run stopping (Ctrl-C) ends the other stages' calls quickly.
        Backends whose calls cannot be ended early do nothing."""

    def resume_generation(self) -> None:
        """Serve generate calls again after ``cancel_generation``."""

    def close(self) -> None:
        """Free the engine (memory, processes, connections). Safe to call twice."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={self.model_name!r}, revision={self.revision!r})"


class HFTokenizerMixin:
    """Chat rendering and token counting with a Hugging Face tokenizer (vLLM and transformers)."""

    tokenizer: Any
    chat: bool

    def _setup_tokenizer(self, tokenizer: Any, chat: bool | None) -> None:
        self.tokenizer = tokenizer
        has_template = bool(getattr(tokenizer, "chat_template", None))
        if chat and not has_template:
            raise ValueError("chat=True but the tokenizer has no chat template")
        self.chat = has_template if chat is None else bool(chat)

    def render_chat(self, messages: list[dict[str, str]]) -> str:
        if not self.chat:
            return plain_join(messages)
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def encode_ids(self, text: str) -> list[int]:
        """Token ids of a rendered prompt. Special tokens (BOS) are added only when the text does not
        already start with the BOS token: a chat template that writes BOS itself must not get two."""
        bos = getattr(self.tokenizer, "bos_token", None)
        add_special = not (bos and text.startswith(bos))
        return list(self.tokenizer(text, add_special_tokens=add_special)["input_ids"])

    def count_tokens(self, text: str) -> int:
        return len(self.encode_ids(text))

    def _encode(self, text: str) -> tuple[list[int], int]:
        ids = self.encode_ids(text)
        return ids, len(ids)


def load_tokenizer(path: str, trust_remote_code: bool = False) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)


def truncate_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """Cut ``text`` at the earliest stop string (excluded), as vLLM and OpenAI do."""
    cut = min((i for i in (text.find(s) for s in stop if s) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)
