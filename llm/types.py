"""The generation contract: what a caller asks for and what comes back. Plain frozen dataclasses
(no torch/vllm import) so the Beam pipeline can pickle them between workers."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

GREEDY_SUFFIX = ":greedy"


@dataclass(frozen=True)
class GenerationRequest:
    """One prompt (already rendered to text) and how to sample it.

    ``n`` samples come back for one prompt; ``seed`` makes them reproducible (the pipeline derives it
    from the problem id and the round). ``temperature == 0`` means greedy decoding.
    """

    request_id: str
    prompt: str
    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int = 512
    seed: int | None = None
    stop: tuple[str, ...] = ()

    @property
    def is_greedy(self) -> bool:
        return self.temperature == 0

    def greedy(self, request_id: str | None = None) -> GenerationRequest:
        """The greedy twin of this request (temperature 0, n=1, top_p 1, same prompt and budget).

        CodeRL uses one greedy sample per problem as the baseline for relative returns: the caller puts
        ``[req, req.greedy()]`` into the same ``generate`` batch and marks completions of the second
        one ``is_greedy=True``. Its id is ``request_id + ":greedy"`` unless given.
        """
        return dataclasses.replace(
            self, request_id=request_id or self.request_id + GREEDY_SUFFIX,
            n=1, temperature=0.0, top_p=1.0,
        )

    def problems(self) -> list[str]:
        """Reasons this request cannot be sent (empty when it is fine); checked by every backend."""
        out: list[str] = []
        if not isinstance(self.request_id, str) or not self.request_id:
            out.append("request_id must be a non-empty string")
        if not isinstance(self.prompt, str):
            out.append(f"prompt must be a string, got {type(self.prompt).__name__}")
        elif not self.prompt:
            out.append("prompt is empty")
        if not isinstance(self.n, int) or isinstance(self.n, bool) or self.n < 1:
            out.append(f"n must be an int >= 1, got {self.n!r}")
        if not isinstance(self.temperature, (int, float)) or not (0 <= self.temperature <= 100):
            out.append(f"temperature must be in [0, 100], got {self.temperature!r}")
        if not isinstance(self.top_p, (int, float)) or not (0 < self.top_p <= 1):
            out.append(f"top_p must be in (0, 1], got {self.top_p!r}")
        if not isinstance(self.max_tokens, int) or isinstance(self.max_tokens, bool) or self.max_tokens < 1:
            out.append(f"max_tokens must be an int >= 1, got {self.max_tokens!r}")
        if self.seed is not None and (not isinstance(self.seed, int) or isinstance(self.seed, bool)
                                      or not (0 <= self.seed < 2**63)):
            out.append(f"seed must be None or an int in [0, 2**63), got {self.seed!r}")
        if not isinstance(self.stop, tuple) or not all(isinstance(s, str) and s for s in self.stop):
            out.append("stop must be a tuple of non-empty strings")
        return out


@dataclass(frozen=True)
class Completion:
    """One sampled continuation. ``finish_reason`` is ``"stop"`` (EOS or a stop string) or
    ``"length"`` (hit max_tokens); ``index`` is its position among the request's n samples;
    ``stop_string`` is the stop string that ended it (None: EOS, length, or a backend that cannot say)."""

    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    index: int
    stop_string: str | None = None


@dataclass(frozen=True)
class GenerationResult:
    """Everything produced for one request. ``error`` is set (and ``completions`` empty) when the
    request could not be served, e.g. its prompt is longer than the model's context; the pipeline writes
    it to errors.jsonl and carries on with the rest of the batch."""

    request_id: str
    completions: tuple[Completion, ...] = ()
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None
