"""A live progress channel from wherever the work runs (this process, Beam's worker processes, vLLM's
caller) to the process that draws the progress bars.

Beam's metrics are final only when a pipeline ends on the FnApiRunner, so they cannot feed a live
bar. Instead the parent points ``$PLUMLINE_PROGRESS_DIR`` at an empty folder per stage before the
stage starts (``channel(folder)``); worker processes inherit it. ``add(key, n)`` adds to counters
held in the calling process and rewrites that process's file ``<pid>.json`` (atomically; callers
add per batch, per problem or per finished request, so writes are few); ``read_progress(folder)``
sums every process's counters. Nothing happens when no channel is set, so engines and transforms
call ``add`` unconditionally.

Stages that run at the same time in one process (engine stages sharing an engine, ``pipeline/round.py``)
each report into their own folder: ``thread_channel(folder)`` routes ``add`` of the calling thread
there, whatever the process-wide channel says; an engine driving several callers' requests passes
each caller's folder (``current_folder()`` when it was called) to ``add`` explicitly.

Keys in use: ``completions`` and ``tokens`` (generation engines, as each request finishes),
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
from collections.abc import Iterator
from pathlib import Path

ENV = "PLUMLINE_PROGRESS_DIR"
PRM_PROGRAMS_TOTAL = "prm_programs_total"  # programs the prm stage will label (after max_programs)
PRM_PROGRAMS = "prm_programs"  # programs whose labelling finished (a row or a reason why not)
PRM_BATCHES = "prm_batches"  # batches whose labelling began
PRM_COMPLETIONS = "prm_completions"  # continuations of probed prefixes received from the engine
_lock = threading.Lock()
_counts: dict[str, dict[str, float]] = {}  # this process's counters, per channel folder
_thread = threading.local()  # .folder: the calling thread's own channel (``thread_channel``)


def current_folder() -> str | None:
    """The channel ``add`` reports into from this thread: its own, else the process's, else None."""
    return getattr(_thread, "folder", None) or os.environ.get(ENV) or None


def add(key: str, n: float = 1, *, folder: str | os.PathLike[str] | None = None) -> None:
    """Add ``n`` to counter ``key`` of this process in ``folder`` (default: ``current_folder()``;
    no-op without a channel)."""
    target = str(folder) if folder is not None else current_folder()
    if not target or not n:
        return
    with _lock:
        counts = _counts.setdefault(target, {})
        counts[key] = counts.get(key, 0) + n
        _write(Path(target), counts)


def flush() -> None:
    """Write this thread's channel's counters again (e.g. after the folder was emptied)."""
    folder = current_folder()
    with _lock:
        if folder and folder in _counts:
            _write(Path(folder), _counts[folder])


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
        _counts.pop(str(path), None)  # a new stage: from zero
    os.environ[ENV] = str(path)
    return path


def close_channel() -> None:
    """Stop reporting into the process-wide channel (``add`` is a no-op again, except in threads
    with a channel of their own)."""
    folder = os.environ.pop(ENV, None)
    with _lock:
        if folder:
            _counts.pop(folder, None)


@contextlib.contextmanager
def channel(folder: Path | str) -> Iterator[Path]:
    """``open_channel`` for the duration of a block."""
    path = open_channel(folder)
    try:
        yield path
    finally:
        close_channel()


@contextlib.contextmanager
def thread_channel(folder: Path | str) -> Iterator[None]:
    """``add`` of the calling thread reports into ``folder`` for the duration of a block (the
    process-wide channel, and other threads, are left as they are). Its files stay for readers; this
    process's counters of it are dropped at the end (a later block there counts from zero)."""
    previous = getattr(_thread, "folder", None)
    with contextlib.suppress(OSError):  # progress is best effort
        Path(folder).mkdir(parents=True, exist_ok=True)
    _thread.folder = str(folder)
    try:
        yield
    finally:
        _thread.folder = previous
        if str(folder) != os.environ.get(ENV):  # the process-wide channel's are close_channel's
            with _lock:
                _counts.pop(str(folder), None)


