"""One running batch for several callers of one engine (continuous batching across callers).

``vllm.LLM.generate`` adds its requests and steps the engine until *its* requests are done; two threads
calling it at once would step the same engine from both sides. A round's sample and eval stages use the
same policy engine and can run at the same time (``pipeline/round.py``): their requests should share the
engine's batch, so that one stage's few long completions (the tail, where a step costs as much for 3 rows
as for 100) decode beside the other stage's bulk. ``SharedBatch.run`` does that: every caller queues its
requests; one caller at a time (the *driver*) adds whatever is queued, steps the engine and hands each
finished request to the caller that asked for it. When the driver's own requests are done it returns and
a waiting caller whose requests are still running drives on. One caller alone gets exactly what
``LLM.generate`` would do, in its own thread.

The engine is reached through three calls (``BatchEngine``), so this module knows nothing of vLLM.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol


class BatchEngine(Protocol):
    def add(self, prompts: Sequence[Any], params: Sequence[Any]) -> list[str]:
        """Queue requests; their ids, in order (all or none are added)."""

    def step(self) -> list[Any]:
        """One engine step: the requests that finished in it (objects with ``request_id``)."""

    def abort(self, request_ids: list[str]) -> None:
        """Drop requests from the engine."""


class GenerationCancelled(RuntimeError):
    """The requests of a call were dropped: the run is stopping (``SharedBatch.cancel``)."""


@dataclass(eq=False)
class _Call:
    prompts: Sequence[Any]
    params: Sequence[Any]
    on_finished: Callable[[Any], None] | None
    index: dict[str, int] = field(default_factory=dict)  # request id -> position in the call
    outputs: list[Any] = field(default_factory=list)
    remaining: int = 0
    error: BaseException | None = None
    added: bool = False

    @property
    def finished(self) -> bool:
        return self.error is not None or (self.added and self.remaining == 0)


class SharedBatch:
    """Calls from any number of threads, served from one engine's running batch."""

    def __init__(self, engine: BatchEngine):
        self.engine = engine
        self._cond = threading.Condition()
        self._queued: list[_Call] = []
        self._running: dict[str, _Call] = {}  # request id -> its call
        self._to_abort: list[str] = []
        self._driving = False
        self._refusing: BaseException | None = None

    def run(self, prompts: Sequence[Any], params: Sequence[Any],
            on_finished: Callable[[Any], None] | None = None) -> list[Any]:
        """The engine's outputs for ``prompts`` (in their order), generated in the batch every caller
        shares. ``on_finished(output)`` is called as each request finishes (from whichever thread is
        driving). Raises what the engine raised for this call (a request it refused, a failed step) or
        ``GenerationCancelled``."""
        call = _Call(prompts, params, on_finished)
        with self._cond:
            if self._refusing is not None:
                raise GenerationCancelled(str(self._refusing))
            self._queued.append(call)
            while not call.finished and self._driving:
                self._cond.wait()
            drive = not call.finished
            if drive:
                self._driving = True
        if drive:
            try:
                self._drive(call)
            finally:
                with self._cond:
                    self._driving = False
                    self._cond.notify_all()
        if call.error is not None:
            raise call.error
        return call.outputs

    def cancel(self, reason: str) -> None:
        """Fail every queued and running call with ``GenerationCancelled`` and refuse new ones until
        ``resume()``; the engine drops their requests at the driver's next turn."""
        with self._cond:
            self._refusing = GenerationCancelled(reason)
            for call in [*self._queued, *set(self._running.values())]:
                call.error = call.error or GenerationCancelled(reason)
            self._to_abort.extend(self._running)
            self._running.clear()
            self._queued.clear()
            self._cond.notify_all()

    def resume(self) -> None:
        with self._cond:
            self._refusing = None

    @property
    def busy(self) -> bool:
        with self._cond:
            return bool(self._queued or self._running or self._driving)

    # -- the driver (one thread at a time) ---------------------------------------------------------
    def _drive(self, mine: _Call) -> None:
        while True:
            with self._cond:
                queued, self._queued = self._queued, []
            self._abort_dropped()
            for call in queued:
                self._add(call)
            if mine.finished:
                self._abort_dropped()  # what a cancel during the adds dropped leaves the engine now
                return
            with self._cond:
                lost = not self._running  # mine is added and unfinished, yet nothing runs
            if lost:
                mine.error = RuntimeError("the engine holds none of this call's requests")
                return
            try:
                outputs = self.engine.step()
            except Exception as exc:
                self._fail_running(exc)
                raise
            except BaseException:  # Ctrl-C in the driving thread: the other callers are cancelled
                self._fail_running(GenerationCancelled("the caller driving the engine was interrupted"))
                raise
            self._deliver(outputs)

    def _add(self, call: _Call) -> None:
        try:
            ids = self.engine.add(call.prompts, call.params) if call.prompts else []
        except Exception as exc:  # noqa: BLE001 - this call's requests were refused: its caller hears why
            with self._cond:
                call.error = exc
                self._cond.notify_all()
            return
        with self._cond:
            if call.error is not None or self._refusing is not None:  # cancelled while being added
                call.error = call.error or GenerationCancelled(str(self._refusing))
                self._to_abort.extend(ids)
                self._cond.notify_all()
                return
            call.index = {rid: i for i, rid in enumerate(ids)}
            call.outputs = [None] * len(ids)
            call.remaining = len(ids)
            call.added = True
            for rid in ids:
                self._running[rid] = call
            if not ids:
                self._cond.notify_all()

    def _deliver(self, outputs: list[Any]) -> None:
        finished: list[tuple[_Call, Any]] = []
        with self._cond:
            for out in outputs:
                call = self._running.pop(out.request_id, None)
                if call is None:  # dropped by cancel()
                    continue
                call.outputs[call.index[out.request_id]] = out
                call.remaining -= 1
                finished.append((call, out))
        for call, out in finished:
            if call.on_finished is not None:
                call.on_finished(out)
        if finished:
            with self._cond:
                self._cond.notify_all()

    def _fail_running(self, exc: BaseException) -> None:
        with self._cond:
            calls = set(self._running.values())
            ids = list(self._running)
            self._running.clear()
            for call in calls:
                call.error = call.error or exc
            self._cond.notify_all()
        if ids:
            try:
                self._abort(ids)
            except Exception:  # noqa: BLE001, S110 - the engine failed already: its error is the one to report
                pass

    def _abort_dropped(self) -> None:
        with self._cond:
            aborts, self._to_abort = self._to_abort, []
        if aborts:
            self._abort(aborts)

    def _abort(self, ids: list[str]) -> None:
        self.engine.abort(ids)
