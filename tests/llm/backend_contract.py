"""Checks every local generation backend passes, shared by the transformers and vLLM tests (a plain
module so both test files can import it)."""

from __future__ import annotations

from collections.abc import Sequence

from plumline.llm import Completion, GenerationBackend, GenerationRequest, GenerationResult


def assert_results_well_formed(backend: GenerationBackend, reqs: Sequence[GenerationRequest],
                               res: Sequence[GenerationResult]) -> None:
    """Every request served without error: n completions indexed 0..n-1, exact prompt token counts,
    1..max_tokens generated tokens, and a known finish reason."""
    for r, req in zip(res, reqs, strict=True):
        assert r.error is None
        assert [c.index for c in r.completions] == list(range(req.n))
        for c in r.completions:
            assert c.prompt_tokens == backend.count_tokens(req.prompt)
            assert 1 <= c.completion_tokens <= req.max_tokens
            assert c.finish_reason in ("stop", "length")


def assert_stop_strings_truncate(backend: GenerationBackend, seed: int) -> None:
    """A stop string ends the completion before it (excluded), with finish_reason ``stop``. The same seed
    and batch give the same random stream, so the stopped text is a prefix of the free one."""
    prompt = backend.build_prompt("def h():")

    def one(stop: tuple[str, ...] = ()) -> Completion:
        req = GenerationRequest("a", prompt, n=1, temperature=1.0, top_p=1.0, max_tokens=30, seed=seed,
                                stop=stop)
        return backend.generate([req])[0].completions[0]

    free = one().text
    stop = next((ch for ch in free[3:] if ch.isalnum()), None)
    assert stop is not None, free
    cut = one((stop,))
    assert stop not in cut.text and free.startswith(cut.text) and cut.finish_reason == "stop"
