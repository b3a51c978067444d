"""The engine watchdog (llm/reaper.py) on dummy process trees: a "plumline" parent process registers an
"engine" child that has a child of its own, and dies; nothing here starts a real engine
(test_vllm_reaper.py does)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from plumline.llm.reaper import Watchdog, child_pids, watch_new_children

SLEEP = "import time; time.sleep(600)"
# The engine stand-in: starts a worker of its own (as vLLM's engine core starts VLLM::Worker), then waits.
ENGINE = ("import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; "
          "time.sleep(600)']); time.sleep(600)")

PARENT = f"""
import json, subprocess, sys, threading, time
from plumline.llm.reaper import watch_new_children

mode, bystander, sockets = sys.argv[1], int(sys.argv[2]), sys.argv[3]
earlier = subprocess.Popen([sys.executable, "-c", {SLEEP!r}])  # a child that is not the engine's
box = []


def open_engine():
    with watch_new_children(scan_s=0.1, grace_s=1.0, poll=mode == "poll") as dog:
        box.append(dog)
        dog.remove_after(sockets)  # the engine's IPC socket folder
        box.append(subprocess.Popen([sys.executable, "-c", {ENGINE!r}]))
        dog._send(f"watch {{bystander}} 1.0")  # a recycled pid: its start time is not the registered one


# As vLLM opened from Beam's DoFn.setup: watchdog and engine come from a thread that then ends (the
# reason the watchdog does not use PR_SET_PDEATHSIG, which would fire now).
starter = threading.Thread(target=open_engine)
starter.start()
starter.join()
dog, engine = box
print(json.dumps({{"engine": engine.pid, "earlier": earlier.pid, "dog": dog.pid,
                  "watched": sorted(dog.watched)}}), flush=True)
time.sleep(600)
"""


MP_PARENT = """
import json, multiprocessing, time
from multiprocessing import resource_tracker
from plumline.llm.reaper import watch_new_children

if __name__ == "__main__":
    with watch_new_children(scan_s=0.05) as dog:
        proc = multiprocessing.get_context("spawn").Process(target=time.sleep, args=(30,))
        proc.start()  # starts multiprocessing's resource tracker too
    print(json.dumps({"child": proc.pid, "tracker": resource_tracker._resource_tracker._pid,
                      "watched": sorted(dog.watched)}), flush=True)
    proc.kill()
    proc.join()
    dog.stop()
"""


def _running(procs: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Those of ``procs`` still running (zombies count as gone), waiting up to ``timeout`` for none."""
    deadline = time.monotonic() + timeout
    while True:
        alive = []
        for p in procs:
            try:
                if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                    alive.append(p)
            except psutil.NoSuchProcess:
                pass
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.05)


def _kill(procs: list[psutil.Process]) -> None:
    for p in procs:
        try:
            p.kill()
        except psutil.Error:
            pass


@pytest.mark.parametrize("mode", ["pidfd", "poll"])
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_when_the_parent_dies_the_engine_tree_is_stopped_and_nothing_else(tmp_path: Path, sig: int,
                                                                           mode: str):
    script = tmp_path / "parent.py"
    script.write_text(PARENT)
    sockets = tmp_path / "ipc \"sockets\" folder"  # a name that needs quoting on the command line
    (sockets / "inner").mkdir(parents=True)
    (sockets / "inner" / "socket").write_text("")
    bystander = subprocess.Popen([sys.executable, "-c", SLEEP])  # unrelated, and forged into the list
    parent = subprocess.Popen([sys.executable, str(script), mode, str(bystander.pid), str(sockets)],
                              stdout=subprocess.PIPE, text=True)
    cleanup = [psutil.Process(bystander.pid)]
    try:
        info = json.loads(parent.stdout.readline())
        engine, earlier, dog = (psutil.Process(info[k]) for k in ("engine", "earlier", "dog"))
        cleanup += [engine, earlier, dog]
        assert info["watched"] == [engine.pid]  # neither the earlier child nor the watchdog itself
        deadline = time.monotonic() + 10
        while not engine.children() and time.monotonic() < deadline:
            time.sleep(0.05)
        (worker,) = engine.children()
        cleanup.append(worker)
        time.sleep(0.3)  # the thread that started the engine has ended: the engine must live on
        assert _running([engine, worker], 0) == [engine, worker], "stopped while its parent lives"
        assert sockets.exists(), "the engine's folder was removed while the engine runs"

        parent.send_signal(sig)
        parent.wait(timeout=10)
        assert _running([engine, worker, dog], timeout=8) == []
        assert not sockets.exists(), "the engine's IPC folder outlived it"
        assert _running([earlier], 0) == [earlier], "a child the engine did not start was killed"
        assert bystander.poll() is None, "an unrelated process whose pid was registered was killed"
    finally:
        parent.kill()
        _kill(cleanup)
        bystander.wait()


def test_the_watchdog_exits_by_itself_once_the_engine_is_closed(tmp_path: Path):
    with watch_new_children(scan_s=0.05) as dog:
        assert dog is not None
        dog.remove_after(str(tmp_path))  # removed after a reap only: a closing engine removes its own
        engine = subprocess.Popen([sys.executable, "-c", SLEEP])
    try:
        assert dog.watched == {engine.pid}
        assert dog.running()
        engine.terminate()  # the engine's own clean shutdown
        engine.wait()
        assert dog._proc.wait(timeout=5) == 0
        assert dog.release(timeout=1)
        assert tmp_path.exists()
    finally:
        engine.kill()
        dog.stop()


def test_release_leaves_a_watchdog_on_guard_while_an_engine_process_lingers():
    with watch_new_children(scan_s=0.05) as dog:
        assert dog is not None
        engine = subprocess.Popen([sys.executable, "-c", SLEEP])
    try:
        assert not dog.release(timeout=0.5)  # the engine's shutdown left it running: keep watching
        assert dog.running() and engine.poll() is None
        engine.kill()
        engine.wait()
        assert dog.release(timeout=5)
        assert dog._proc.returncode == 0
    finally:
        engine.kill()
        dog.stop()


def test_stop_ends_the_watch_at_once_and_touches_nothing():
    with watch_new_children(scan_s=0.05) as dog:
        assert dog is not None
        engine = subprocess.Popen([sys.executable, "-c", SLEEP])
    try:
        start = time.monotonic()
        dog.stop()
        assert not dog.running() and dog._proc.returncode == 0
        assert time.monotonic() - start < 2
        assert engine.poll() is None
        dog.stop()  # twice is harmless
    finally:
        engine.kill()
        engine.wait()


def test_multiprocessing_helpers_are_not_the_engine(tmp_path: Path):
    """The resource tracker started with a spawned engine outlives it and must clean up shared memory
    after us: it is never registered; the spawned process is."""
    script = tmp_path / "mp_parent.py"
    script.write_text(MP_PARENT)
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60,
                         check=True)
    info = json.loads(out.stdout)
    assert info["watched"] == [info["child"]]
    assert info["tracker"] not in info["watched"]


def test_child_pids_lists_children_of_every_thread():
    import threading

    box = []
    starter = threading.Thread(target=lambda: box.append(subprocess.Popen([sys.executable, "-c", SLEEP])))
    starter.start()
    starter.join()
    try:
        assert box[0].pid in child_pids()
        assert child_pids() == {c.pid for c in psutil.Process().children()}
    finally:
        box[0].kill()
        box[0].wait()


def test_a_watchdog_handle_does_nothing_in_a_forked_child():
    dog = Watchdog.start()
    assert dog is not None
    try:
        dog._owner = -1  # as a fork of this process sees it
        dog.stop()
        assert dog.running()
    finally:
        dog._owner = os.getpid()
        dog.stop()
    assert not dog.running()
