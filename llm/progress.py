"""A live progress channel from wherever the work runs (this process, Beam's worker processes, vLLM's
caller) to the process that draws the progress bars.

Beam's metrics are final only when a pipeline ends on the FnApiRunner, so they cannot feed a live
bar. Instead the parent points ``$PLUMLINE_PROGRESS_DIR`` at an empty folder per stage before the
stage starts (``channel(folder)``); worker processes inherit it. ``add(key, n)`` adds to counters
held in the calling process and rewrites that process's file ``<pid>.json`` (atomically; callers
add per batch, per problem or per finished request, so writes are few); ``read_progress(folder)``
sums every process's counters. Nothing happens when no channel is set, so engines and transforms
call ``add`` unconditionally.

Keys in use: ``completions`` and ``tokens`` (generation engines, live while a batch decodes),
``completions_total`` (completions asked for), ``executions`` (the execution stage, and the prm
stage's executions of its continuations), and the prm stage's own (constants below): programs to
label (known once its batches are planned), programs labelled, batches begun and continuations
received (counted by the stage, per probe level: the engines' ``completions`` are not counted by
every backend).
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

ENV = "PLUMLINE_PROGRESS_DIR"
PRM_PROGRAMS_TOTAL = "prm_programs_total"  # programs the prm stage will label (after max_programs)
PRM_PROGRAMS = "prm_programs"  # programs whose labelling finished (a row or a reason why not)
PRM_BATCHES = "prm_batches"  # batches whose labelling began
PRM_COMPLETIONS = "prm_completions"  # continuations of probed prefixes received from the engine
_lock = threading.Lock()
_state: dict[str, object] = {"dir": None, "counts": {}}


def add(key: str, n: float = 1) -> None:
    """Add ``n`` to counter ``key`` of this process (no-op without a channel)."""
    folder = os.environ.get(ENV)
    if not folder or not n:
        return
    with _lock:
        if _state["dir"] != folder:  # a new stage: start from zero
            _state.update(dir=folder, counts={})
        counts: dict[str, float] = _state["counts"]  # type: ignore[assignment]
        counts[key] = counts.get(key, 0) + n
        _write(Path(folder), counts)


def flush() -> None:
    """Write this process's counters again (e.g. after the folder was emptied)."""
    folder = os.environ.get(ENV)
    with _lock:
        if folder and _state["dir"] == folder:
            _write(Path(folder), _state["counts"])  # type: ignore[arg-type]


def _write(folder: Path, counts: dict[str, float]) -> None:
    with contextlib.suppress(OSError):  # progress is best effort: never fail the work over it
        tmp = folder / f".{os.getpid()}.tmp"
        tmp.write_text(json.dumps(counts), encoding="utf-8")
        os.replace(tmp, folder / f"{os.getpid()}.json")


def read_progress(folder: Path | str) -> dict[str, float]:
    """The counters of every process that reported into ``folder``, added up."""
    total: dict[str, float] = {}
    with contextlib.suppress(OSError):
        for f in Path(folder).glob("*.json"):
            try:
                counts = json.loads(f.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue  # replaced while reading: the next poll sees it
            for k, v in counts.items():
                if isinstance(v, (int, float)):
                    total[k] = total.get(k, 0) + v
    return total


def open_channel(folder: Path | str) -> Path:
    """Route ``add`` of this process, and of processes it starts from now on, into ``folder``
    (emptied first). Returns the folder."""
    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    for f in path.glob("*.json"):
        f.unlink(missing_ok=True)
    with _lock:
        _state.update(dir=None, counts={})
    os.environ[ENV] = str(path)
    return path


def close_channel() -> None:
    """Stop reporting (``add`` is a no-op again)."""
    os.environ.pop(ENV, None)
    with _lock:
        _state.update(dir=None, counts={})


@contextlib.contextmanager
def channel(folder: Path | str) -> Iterator[Path]:
    """``open_channel`` for the duration of a block."""
    path = open_channel(folder)
    try:
        yield path
    finally:
        close_channel()


class TokenProgress:
    """A stand-in for the tqdm bar ``vllm.LLM.generate(use_tqdm=...)`` drives: forwards finished
    completions and their generated tokens to the channel as requests finish, and prints nothing.

    vLLM calls ``update(n)`` per finished request (n = its completions) right after setting
    ``postfix`` to its running speeds; the output speed times the elapsed time vLLM read from
    ``format_dict`` (which this object controls) gives the tokens generated so far."""

    def __init__(self, total: int = 0, **_: object):
        self.n = 0
        self.total = total
        self._start = time.monotonic()
        self._elapsed = 0.0
        self._tokens = 0
        self.postfix = ""

    @property
    def format_dict(self) -> dict[str, float]:
        self._elapsed = max(time.monotonic() - self._start, 1e-9)
        return {"elapsed": self._elapsed}

    def update(self, n: int = 1) -> None:
        self.n += n
        add("completions", n)
        tokens = _output_tokens(str(self.postfix), self._elapsed)
        if tokens is not None and tokens > self._tokens:
            add("tokens", tokens - self._tokens)
            self._tokens = tokens

    def refresh(self) -> None:
        pass

    def close(self) -> None:
        flush()

    @property
    def tokens(self) -> int:
        return self._tokens


def _output_tokens(postfix: str, elapsed: float) -> int | None:
    """Tokens so far from vLLM's 'est. speed input: X toks/s, output: Y toks/s' and the elapsed time."""
    _, sep, rest = postfix.partition("output:")
    if not sep:
        return None
    try:
        speed = float(rest.split()[0])
    except (IndexError, ValueError):
        return None
    return round(speed * elapsed)
