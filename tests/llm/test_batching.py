"""SharedBatch: several threads' generate calls served from one engine's running batch. The engine here
is a test double that finishes a request after as many steps as its prompt says, and records which
requests each step held (tests/llm/test_vllm_shared_batch.py runs the real vLLM engine)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import pytest
from plumline.llm.batching import GenerationCancelled, SharedBatch


@dataclass
class Out:
    request_id: str
    prompt: str


class StepEngine:
    """A prompt "name:k" finishes after k steps; a prompt "bad" is refused; ``fail_at`` makes step
    number n raise."""

    def __init__(self, step_s: float = 0.01, fail_at: int | None = None):
        self.running: dict[str, list] = {}
        self.counter = 0
        self.steps: list[set[str]] = []  # prompts in each step
        self.aborted: list[str] = []
        self.step_s, self.fail_at = step_s, fail_at
        self.threads: set[int] = set()

    def add(self, prompts, params):
        if any(p == "bad" for p in prompts):
            raise ValueError("prompt 'bad' refused")
        ids = []
        for p in prompts:
            self.counter += 1
            rid = str(self.counter)
            self.running[rid] = [p, int(p.split(":")[1])]
            ids.append(rid)
        return ids

    def step(self):
        self.threads.add(threading.get_ident())
        if self.fail_at is not None and len(self.steps) + 1 >= self.fail_at:
            raise RuntimeError("engine died")
        time.sleep(self.step_s)
        self.steps.append({p for p, _ in self.running.values()})
        done = []
        for rid, state in list(self.running.items()):
            state[1] -= 1
            if state[1] <= 0:
                done.append(Out(rid, state[0]))
                del self.running[rid]
        return done

    def abort(self, ids):
        self.aborted += ids
        for rid in ids:
            self.running.pop(rid, None)


def _in_threads(*jobs):
    results, errors = {}, {}

    def run(name, fn):
        try:
            results[name] = fn()
        except BaseException as exc:  # noqa: BLE001
            errors[name] = exc

    threads = [threading.Thread(target=run, args=job) for job in jobs]
    for t in threads:
        t.start()
        time.sleep(0.03)  # the second caller arrives while the first drives
    for t in threads:
        t.join(30)
    return results, errors


def test_one_caller_gets_its_outputs_in_prompt_order():
    batch = SharedBatch(StepEngine())
    seen = []
    outs = batch.run(["a:3", "b:1", "c:2"], [None] * 3, seen.append)
    assert [o.prompt for o in outs] == ["a:3", "b:1", "c:2"]
    assert [o.prompt for o in seen] == ["b:1", "c:2", "a:3"]  # as each finished
    assert batch.run([], []) == [] and not batch.busy


def test_a_second_callers_requests_join_the_running_batch_and_finish_after_the_first_leaves():
    engine = StepEngine()
    batch = SharedBatch(engine)
    results, errors = _in_threads(("long", lambda: batch.run(["x:5", "y:40"], [None] * 2)),
                                  ("short", lambda: batch.run(["p:3", "q:12"], [None] * 2)))
    assert not errors
    assert [o.prompt for o in results["long"]] == ["x:5", "y:40"]
    assert [o.prompt for o in results["short"]] == ["p:3", "q:12"]
    assert any({"y:40", "q:12"} <= s for s in engine.steps)  # both callers' requests in one step
    assert len(engine.steps) < 40 + 12  # not one after the other
    assert len(engine.threads) == 1  # the first caller drove throughout: it finished last
    assert not batch.busy


def test_when_the_driving_callers_requests_are_done_a_waiting_caller_drives_on():
    engine = StepEngine()
    batch = SharedBatch(engine)
    results, errors = _in_threads(("first", lambda: batch.run(["a:8"], [None])),
                                  ("second", lambda: batch.run(["b:30"], [None])))
    assert not errors and results["second"][0].prompt == "b:30"
    assert len(engine.threads) == 2 and not engine.running


def test_a_refused_call_fails_alone():
    engine = StepEngine()
    batch = SharedBatch(engine)
    results, errors = _in_threads(("good", lambda: batch.run(["a:20"], [None])),
                                  ("bad", lambda: batch.run(["bad", "b:1"], [None] * 2)))
    assert isinstance(errors["bad"], ValueError) and "refused" in str(errors["bad"])
    assert [o.prompt for o in results["good"]] == ["a:20"]


def test_a_failed_step_fails_every_call_in_flight():
    engine = StepEngine(fail_at=6)
    batch = SharedBatch(engine)
    results, errors = _in_threads(("a", lambda: batch.run(["a:20"], [None])),
                                  ("b", lambda: batch.run(["b:20"], [None])))
    assert not results
    assert all(isinstance(e, RuntimeError) and "engine died" in str(e) for e in errors.values())
    assert set(errors) == {"a", "b"} and not batch.busy


def test_cancel_ends_the_calls_in_flight_drops_their_requests_and_refuses_until_resumed():
    engine = StepEngine(step_s=0.02)
    batch = SharedBatch(engine)
    threading.Timer(0.2, lambda: batch.cancel("stopping")).start()
    _, errors = _in_threads(("a", lambda: batch.run(["a:1000"], [None])),
                                  ("b", lambda: batch.run(["b:1000"], [None])))
    assert set(errors) == {"a", "b"} and all(isinstance(e, GenerationCancelled) for e in errors.values())
    assert sorted(engine.aborted) == ["1", "2"] and not engine.running
    with pytest.raises(GenerationCancelled, match="stopping"):
        batch.run(["c:1"], [None])
    batch.resume()
    assert [o.prompt for o in batch.run(["c:1"], [None])] == ["c:1"]


def test_a_call_being_added_when_cancel_comes_is_cancelled_too():
    """cancel() between the driver taking a call from the queue and the engine accepting it: the call
    still fails, and its requests are dropped at the driver's next turn."""
    engine = StepEngine()
    batch = SharedBatch(engine)
    add = engine.add

    def add_then_cancel(prompts, params):
        ids = add(prompts, params)
        if "late:5" in prompts:
            batch.cancel("stopping")
        return ids

    engine.add = add_then_cancel
    with pytest.raises(GenerationCancelled, match="stopping"):
        batch.run(["late:5"], [None])
    assert engine.aborted == ["1"] and not engine.running and not batch.busy
