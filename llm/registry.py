"""Building backends, and one shared engine per process per config (engines are expensive: a vLLM
engine takes ~30 s to start and holds the accelerator)."""

from __future__ import annotations

import atexit
import logging
import threading

from .base import GenerationBackend
from .config import BackendConfig

logger = logging.getLogger(__name__)

_SHARED: dict[str, GenerationBackend] = {}
_LOCK = threading.Lock()


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
    """The process-wide backend for ``cfg``, built on first use (e.g. from a Beam ``DoFn.setup``).

    Closing it (``close_shared_backend(cfg)``, ``close_shared_backends()`` or at interpreter exit)
    frees the engine. Calling ``close()`` on the object directly also drops it from the cache.
    """
    key = cfg.cache_key()
    with _LOCK:
        backend = _SHARED.get(key)
        if backend is None:
            backend = make_backend(cfg)
            _wrap_close(backend, key)
            _SHARED[key] = backend
        return backend


def _wrap_close(backend: GenerationBackend, key: str) -> None:
    inner = backend.close

    def close() -> None:
        with _LOCK:
            if _SHARED.get(key) is backend:
                del _SHARED[key]
        inner()

    backend.close = close  # type: ignore[method-assign]


def close_shared_backend(cfg: BackendConfig) -> bool:
    """Close and forget the shared backend of ``cfg``; False when there was none."""
    with _LOCK:
        backend = _SHARED.get(cfg.cache_key())
    if backend is None:
        return False
    backend.close()
    return True


def close_shared_backends() -> None:
    """Close every shared backend (registered at exit so engine processes never outlive us; a death that
    runs no exit handler, SIGKILL or SIGTERM, is covered by the engine's watchdog, ``reaper.py``)."""
    with _LOCK:
        backends = list(_SHARED.values())
    for b in backends:
        try:
            b.close()
        except Exception:
            logger.exception("closing %r failed", b)


atexit.register(close_shared_backends)
