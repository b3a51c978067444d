"""Building backends, and one shared engine per process per config (engines are expensive: a vLLM
engine takes ~40 s to start on 2 CPU cores and holds the accelerator). Between rounds an engine on CPU is
parked rather than closed, and the next round's trained weights are loaded into it (``llm/reload.py``)."""

from __future__ import annotations

import atexit
import logging
import threading

from .base import GenerationBackend
from .config import BackendConfig

logger = logging.getLogger(__name__)

_SHARED: dict[str, GenerationBackend] = {}
# Keys of shared backends parked over a stage that ran outside Beam (training): no stage holds them, so
# the next request for the same engine settings on other weights may load those into them.
_PARKED: set[str] = set()
_LOCK = threading.RLock()


def make_backend(cfg: BackendConfig) -> GenerationBackend:
    """A new backend for ``cfg`` (the caller owns it and must ``close()`` it)."""
    if cfg.kind == "vllm":
        from .vllm_backend import VLLMBackend

        return VLLMBackend(cfg)
    if cfg.kind == "openai":
        from .openai_backend import OpenAIBackend

        return OpenAIBackend(cfg)
    if cfg.kind == "transformers":
        from .hf_backend import TransformersBackend

        return TransformersBackend(cfg)
    raise ValueError(f"unknown backend kind {cfg.kind!r}")


def get_shared_backend(cfg: BackendConfig) -> GenerationBackend:
    """The process-wide backend for ``cfg``, built on first use (e.g. from a Beam ``DoFn.setup``), or a
    parked one with the same settings that loads ``cfg.model``'s weights (``park_shared_backends``).

    Closing it (``close_shared_backend(cfg)``, ``close_shared_backends()`` or at interpreter exit)
    frees the engine. Calling ``close()`` on the object directly also drops it from the cache.
    """
    key = cfg.cache_key()
    with _LOCK:
        backend = _SHARED.get(key)
        if backend is None:
            backend = _reuse_parked(cfg)
        if backend is None:
            backend = make_backend(cfg)
            _wrap_close(backend)
        _SHARED[key] = backend
        _PARKED.discard(key)
        return backend


def _reuse_parked(cfg: BackendConfig) -> GenerationBackend | None:
    """A parked backend of the same settings, now serving ``cfg.model`` (None if there is none). One
    that cannot load those weights is closed first: it served a model no later stage asks for."""
    for key in sorted(_PARKED):
        backend = _SHARED[key]
        if backend.cfg.model_copy(update={"model": cfg.model}) != cfg:
            continue
        _PARKED.discard(key)
        del _SHARED[key]
        try:
            why = backend.load_model(cfg.model)
        except Exception as exc:  # the engine's state is unknown now: never serve from it
            why = f"loading the weights failed: {type(exc).__name__}: {exc}"
            logger.exception("loading %s into the running engine failed", cfg.model)
        if why is None:
            return backend
        logger.info("a new engine for %s: the running one cannot take its weights (%s)", cfg.model, why)
        backend.close()
    return None


def _wrap_close(backend: GenerationBackend) -> None:
    inner = backend.close

    def close() -> None:
        with _LOCK:
            for key in [k for k, b in _SHARED.items() if b is backend]:  # its key changes when it reloads
                del _SHARED[key]
                _PARKED.discard(key)
        inner()

    backend.close = close  # type: ignore[method-assign]


def park_shared_backends() -> None:
    """Before a stage that needs the machine to itself (training): close every shared backend that holds
    what that stage needs (``keeps_while_training`` false: a GPU engine) or that was parked before and
    not used since; keep the others, parked, for the next round to load its weights into."""
    with _LOCK:
        items = list(_SHARED.items())
    for key, backend in items:
        if key in _PARKED or not backend.keeps_while_training:
            backend.close()
        else:
            with _LOCK:
                _PARKED.add(key)


def close_shared_backend(cfg: BackendConfig) -> bool:
    """Close and forget the shared backend of ``cfg``; False when there was none."""
    with _LOCK:
        backend = _SHARED.get(cfg.cache_key())
    if backend is None:
        return False
    backend.close()
    return True


# Backends whose generate calls from several threads share one running batch (``batching.SharedBatch``):
# stages using the same one may run at the same time. Others serve one call at a time, or (a remote
# server) would multiply their connection limit.
SHARED_BATCH_KINDS = ("vllm",)


def shares_running_batch(cfg: BackendConfig) -> bool:
    """Whether concurrent callers of ``cfg``'s shared backend decode in one batch."""
    return cfg.kind in SHARED_BATCH_KINDS


def _shared_backends() -> list[GenerationBackend]:
    """The shared backends now (a copy: closing one changes the cache)."""
    with _LOCK:
        return list(_SHARED.values())


def cancel_shared_generation(reason: str) -> None:
    """End the generate calls in flight on every shared backend (``GenerationBackend.cancel_generation``)."""
    for b in _shared_backends():
        b.cancel_generation(reason)


def resume_shared_generation() -> None:
    for b in _shared_backends():
        b.resume_generation()


def close_shared_backends() -> None:
    """Close every shared backend (registered at exit so engine processes never outlive us; a death that
    runs no exit handler, SIGKILL or SIGTERM, is covered by the engine's watchdog, ``reaper.py``)."""
    for b in _shared_backends():
        try:
            b.close()
        except Exception:
            logger.exception("closing %r failed", b)


atexit.register(close_shared_backends)
