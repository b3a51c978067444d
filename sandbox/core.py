"""The public executor: :class:`Sandbox` (a pool of warm sandboxed slots) and :func:`run_program`.

Outcome rules (decided here, in the trusted parent):

- ``compile_error``: the candidate does not parse/compile (also: larger than ``max_code_bytes``).
- ``runtime_error``: the candidate's top-level code raises (``SystemExit`` included) or its process
  dies (segfault, ``os._exit``) before the tests; for I/O tests, the program raises or crashes on an input.
- ``output_limit`` / ``memory_limit`` / ``timeout``: a limit stopped it (output cap; ``MemoryError``,
  the cgroup OOM killer; per-test or total wall clock, CPU rlimit). Precedence in that order.
- ``failed``: it ran, but at least one test failed or errored (a test raising e.g. ``NameError``
  counts as failing); also when there are no tests.
- ``passed``: every test passed and there is at least one.
- ``sandbox_error``: only our own infrastructure failed (supervisor could not start, etc.).

The candidate's exit status is never consulted. By default (``separate_tests``) the tests file runs in its
own sandboxed process and reaches the candidate's process only by message passing (``_rpc.py``): a test
passes when that process ran it to its end; a candidate that breaks the protocol gets ``runtime_error``
(``ProtocolViolation``). In the earlier design (``separate_tests=False``) a test passes only by the checks
the parent re-evaluates (see ``verdict.py``).
"""

from __future__ import annotations

import ast
import atexit
import functools
import importlib.util
import logging
import marshal
import os
import queue
import select
import signal
import subprocess
import sys
import threading
import time
import uuid
import weakref
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

from plumline.data_schemas import CODERL_CLASS, Execution, Outcome, TestKind, TestResult, TestSpec, TestStatus

from . import _protocol as proto
from .isolation import CgroupSet, IsolationReport, _fs_args, probe_isolation
from .seccomp import build_filter, signal_syscalls
from .verdict import PreparedTest, judge_test, prepare_test

# The default design: tests in their own process, calls into the candidate by message passing.
SEPARATE_TESTS = True
# Runs again after an infrastructure failure (sandbox_error) before reporting it.
SANDBOX_ERROR_RETRIES = 1
log = logging.getLogger(__name__)

_SERVER_SOURCE: str | None = None


def _server_source() -> str:
    global _SERVER_SOURCE
    if _SERVER_SOURCE is None:
        here = Path(__file__).parent
        # A private builtins dict for the supervisor's own functions (captured at definition time), so a
        # candidate that patches the builtins module cannot break or steer the harness code.
        _SERVER_SOURCE = ("import builtins as _b\n__builtins__ = dict(_b.__dict__)\ndel _b\n"
                          + (here / "_protocol.py").read_text() + "\n" + (here / "_rpc.py").read_text() + "\n"
                          + (here / "_server.py").read_text())
    return _SERVER_SOURCE


# The supervisor's source travels as an argument and is compiled by this one-liner, not given to ``-c``
# itself: ``-c`` keeps the whole parse tree of its program alive until the program returns, which for a
# process that serves forever is ~2 MB of dead heap in the template, copied into the page tables of every
# candidate at fork and torn down again at its exit.
# The source travels in pieces: one argument may not exceed MAX_ARG_STRLEN (128 KiB on Linux).
_BOOT = ("import sys; exec(compile(''.join([sys.argv.pop(1) for _ in sys.argv[1:]]), '<plumline-sandbox>', "
         "'exec'))")
_ARG_PIECE = 96 * 1024


def _source_args() -> list[str]:
    src = _server_source()
    return [src[k:k + _ARG_PIECE] for k in range(0, len(src), _ARG_PIECE)]


@dataclass(frozen=True)
class SandboxLimits:
    """Limits of one program execution. Every field has a default."""

    timeout_s: float = field(default=10.0, metadata={
        "description": "Wall-clock budget of one program, all its tests together (seconds)."})
    test_timeout_s: float = field(default=3.0, metadata={
        "description": "Wall-clock limit of one test and of the candidate's top-level code (seconds)."})
    cpu_s: int = field(default=10, metadata={
        "description": "CPU seconds of each execution process (RLIMIT_CPU; exceeding it is a timeout)."})
    memory_mb: int = field(default=1024, metadata={
        "description": "Address space of each process in MiB (RLIMIT_AS); the slot's cgroup gets 256 more."})
    max_pids: int = field(default=64, metadata={
        "description": "Processes plus threads per slot (cgroup pids.max, RLIMIT_NPROC); at least 4."})
    output_bytes: int = field(default=1 << 20, metadata={
        "description": "stdout + stderr of one execution in bytes; more is an output_limit outcome."})
    file_size_mb: int = field(default=16, metadata={
        "description": "Largest file a candidate may write, MiB (RLIMIT_FSIZE)."})
    open_files: int = field(default=256, metadata={
        "description": "Open file descriptors per process (RLIMIT_NOFILE); at least 32."})
    tmpfs_mb: int = field(default=64, metadata={
        "description": "Size in MiB of the private /tmp and of /dev/shm (each)."})
    max_code_bytes: int = field(default=1 << 20, metadata={
        "description": "Largest candidate program in bytes; a larger one is a compile_error."})
    require_full_isolation: bool = field(default=False, metadata={
        "description": "Refuse to run (raise) when full isolation is unavailable instead of running on "
                       "a weaker tier."})

    def __post_init__(self) -> None:
        for name in ("timeout_s", "test_timeout_s", "cpu_s", "memory_mb", "max_pids", "output_bytes",
                     "file_size_mb", "open_files", "tmpfs_mb", "max_code_bytes"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or v <= 0:
                raise ValueError(f"SandboxLimits.{name} must be a positive number, got {v!r}")
        if self.max_pids < 4:
            raise ValueError("SandboxLimits.max_pids must be at least 4")
        if self.open_files < 32:
            raise ValueError("SandboxLimits.open_files must be at least 32")
        if self.memory_mb < 64:
            raise ValueError("SandboxLimits.memory_mb must be at least 64")

    def wire(self) -> dict:
        return {"cpu_s": int(self.cpu_s), "as_bytes": int(self.memory_mb) << 20,
                "fsize_bytes": int(self.file_size_mb) << 20, "nofile": int(self.open_files),
                "nproc": int(self.max_pids), "output_bytes": int(self.output_bytes)}


@dataclass(frozen=True)
class ProgramResult:
    """One program run against its tests."""

    outcome: str  # an Outcome value
    test_results: tuple[TestResult, ...]  # one per test, in input order
    passed: int
    total: int
    pass_ratio: float
    isolation_tier: str
    duration_s: float
    error_type: str | None = None  # program-level error (compile error, top-level exception, crash)
    error_line: int | None = None  # line in the candidate's code
    stderr_tail: str = ""

    @property
    def coderl_class(self) -> int:
        return CODERL_CLASS[Outcome(self.outcome)]

    def to_execution(self, sample_id: str, problem_id: str, round: int) -> Execution:
        return Execution(sample_id=sample_id, problem_id=problem_id, round=round, outcome=self.outcome,
                         coderl_class=self.coderl_class, passed=self.passed, total=self.total,
                         pass_ratio=self.pass_ratio, test_results=self.test_results,
                         isolation_tier=self.isolation_tier, duration_s=self.duration_s,
                         error_type=self.error_type, error_line=self.error_line, stderr_tail=self.stderr_tail)

    def to_dict(self) -> dict:
        return {"outcome": self.outcome, "passed": self.passed, "total": self.total,
                "pass_ratio": self.pass_ratio, "isolation_tier": self.isolation_tier,
                "duration_s": round(self.duration_s, 6), "error_type": self.error_type,
                "error_line": self.error_line, "stderr_tail": self.stderr_tail,
                "test_results": [t.to_dict() for t in self.test_results]}


class _SlotFailure(Exception):
    """The supervisor did not answer in time, or died."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


_SIGNAL_NAMES = {signal.SIGSEGV: "Segfault", signal.SIGBUS: "BusError", signal.SIGABRT: "Abort",
                 signal.SIGILL: "IllegalInstruction", signal.SIGFPE: "FloatingPointException",
                 signal.SIGXCPU: "CPUTimeLimit", signal.SIGXFSZ: "FileSizeLimit", signal.SIGKILL: "Killed"}


class _Slot:
    """One warm supervisor inside its own bubblewrap, with its own cgroups and host uid."""

    def __init__(self, index: int, limits: SandboxLimits, report: IsolationReport, pair: bool = False):
        self.index = index
        self.pair = pair  # tests run in their own process (a test process and a candidate process per run)
        self.limits = limits
        self.report = report
        self.proc: subprocess.Popen | None = None
        self.cg: CgroupSet | None = None
        self.uid: int | None = None
        if report.switch_uid:
            self.uid = 1_000_000 + (os.getpid() % 100_000) * 64 + index % 64
        self.buf = bytearray()
        self.oom_seen = 0

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the slot; on any failure nothing half-started stays alive (an unarmed supervisor
        must never receive a candidate)."""
        try:
            self._start()
        except BaseException:
            self.kill()
            raise

    def _start(self) -> None:
        lim = self.limits
        rep = self.report
        if self.cg is not None:  # a restart: reuse the slot's cgroups, emptied
            self.cg.kill_all()
        elif rep.cgroup:
            self.cg = CgroupSet(rep.cgroup, f"plumline-{os.getpid()}-{self.index}-{uuid.uuid4().hex[:6]}")
            try:
                self.cg.create((lim.memory_mb + 256) << 20, lim.max_pids + 8)
            except OSError as exc:
                log.warning("slot %d: cgroup setup failed (%s); running without it", self.index, exc)
                self.cg.remove()
                self.cg = None
        tmpfs = int(lim.tmpfs_mb) << 20
        py = [rep.python, "-I", "-S", "-B", "-c", _BOOT, *_source_args()]
        if rep.bwrap:
            cmd = [rep.bwrap, "--unshare-all", "--unshare-user", "--as-pid-1", "--new-session",
                   "--cap-drop", "ALL",
                   "--uid", "1000", "--gid", "1000", "--hostname", "sandbox", "--clearenv",
                   "--setenv", "MALLOC_ARENA_MAX", "2", *_fs_args(tmpfs), *py]
            init = {"pidns": True, "wipe": ["/tmp", "/dev/shm"], "workdir": "/tmp", "pair": self.pair}
        else:
            import tempfile

            work = tempfile.mkdtemp(prefix="plumline-slot-")
            if self.uid is not None:
                os.chown(work, self.uid, self.uid)
            self._work = work
            cmd = py
            init = {"pidns": False, "wipe": [work], "workdir": work, "pair": self.pair}
        # The shell waits for one line on stdin before it becomes the sandbox: by then this (root) process
        # has moved it into the slot's cgroups, so nothing of the sandbox ever runs outside them.
        script = 'read -r _go || exit 97; export MALLOC_ARENA_MAX=2; exec "$@"'
        kw: dict = {}
        if self.uid is not None:
            kw = {"user": self.uid, "group": self.uid, "extra_groups": []}
        self.proc = subprocess.Popen(["/bin/sh", "-c", script, "sh", *cmd], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env={}, cwd="/",
                                     close_fds=True, start_new_session=True, bufsize=0, **kw)
        if self.cg is not None:
            try:
                self.cg.add_process(self.proc.pid)
            except OSError as exc:
                raise _SlotFailure(f"cannot move the slot into its cgroups: {exc}") from exc
        try:
            os.write(self.proc.stdin.fileno(), b"go\n")
        except OSError as exc:
            raise _SlotFailure(f"slot shell gone: {exc}") from exc
        self.buf = bytearray()
        self._send(init)
        hello = self._recv(time.monotonic() + 30)
        pids = hello.get("pids")
        if not hello.get("ready") or not isinstance(pids, list) or not all(isinstance(p, int) for p in pids):
            raise _SlotFailure(f"supervisor did not start: {hello!r}")
        # the template and the supervisor, as the candidate sees them: it may not signal them
        if not rep.bwrap:  # no pid namespace: at least the pipeline process itself is off limits
            pids = [*pids, os.getpid()]
        bpf = build_filter(tuple(pids)).hex() if rep.seccomp else ""
        self._send({"bpf": bpf, "limits": lim.wire(), "sig_nrs": signal_syscalls() if bpf else []})
        armed = self._recv(time.monotonic() + 30)
        if not armed.get("armed") or armed.get("seccomp") != bool(bpf):
            raise _SlotFailure(f"supervisor could not arm the sandbox: {armed!r}")
        self.hello = hello
        self.oom_seen = self.cg.oom_kills() if self.cg is not None else 0

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        if self.cg is not None:
            try:
                self.cg.kill_all()
            except OSError:
                pass
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except OSError:
                pass
            try:
                self.proc.kill()
            except OSError:
                pass
            for s in (self.proc.stdin, self.proc.stdout):
                try:
                    s.close()
                except OSError:
                    pass
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        self.proc = None

    def close(self) -> None:
        self.kill()
        if self.cg is not None:
            try:
                self.cg.remove()
            except OSError:
                pass
            self.cg = None
        work = getattr(self, "_work", None)
        if work:
            import shutil

            shutil.rmtree(work, ignore_errors=True)

    # -- protocol ---------------------------------------------------------------------------------
    def _send(self, obj: dict) -> None:
        data = proto.pack(obj)
        fd = self.proc.stdin.fileno()
        view = memoryview(data)
        while view:
            try:
                k = os.write(fd, view)
            except (BrokenPipeError, OSError) as exc:
                raise _SlotFailure(f"supervisor gone: {exc}") from exc
            view = view[k:]

    def _recv(self, deadline: float) -> dict:
        fd = self.proc.stdout.fileno()

        def need(n: int) -> bytes:
            while len(self.buf) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise _SlotFailure("timeout")
                r, _, _ = select.select([fd], [], [], left)
                if not r:
                    continue
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    raise _SlotFailure("died")
                self.buf += chunk
            out = bytes(self.buf[:n])
            del self.buf[:n]
            return out

        n = proto.unpack_header(need(4))
        return proto.loads(need(n))

    def new_oom_kills(self) -> bool:
        """Did the cgroup OOM killer act since the last time we asked?"""
        if self.cg is None:
            return False
        n = self.cg.oom_kills()
        seen, self.oom_seen = self.oom_seen, n
        return n > seen

    def call(self, unit: dict, timeout: float) -> dict:
        if not self.alive():
            self.kill()
            self.start()
        try:
            self._send(unit)
            return self._recv(time.monotonic() + timeout)
        except _SlotFailure:
            self.kill()
            raise


# A job: (code, tests) or (code, tests, entry_point).
Job = tuple


def _check_entry_point(entry_point: object) -> None:
    if entry_point is not None and not (isinstance(entry_point, str) and (entry_point == "" or
                                                                          entry_point.isidentifier())):
        raise ValueError(f"entry_point must be an identifier or None, got {entry_point!r}")


def _check_tests(tests: Sequence[TestSpec]) -> list[TestSpec]:
    out = []
    for i, t in enumerate(tests):
        if isinstance(t, dict):
            t = TestSpec.from_dict(t)
        if not isinstance(t, TestSpec):
            raise TypeError(f"test {i}: expected a TestSpec, got {type(t).__name__}")
        out.append(t)
    return out


class _Run:
    """State of one program's execution across units (restarts after a hung or crashing test)."""

    def __init__(self, code: str, tests: list[TestSpec], limits: SandboxLimits, tier: str,
                 entry_point: str | None = None, compiled_tests: bool = False):
        self.code = code
        self.entry_point = entry_point
        self.compiled_tests = compiled_tests
        self.tests = tests
        self.limits = limits
        self.tier = tier
        self.t0 = time.monotonic()
        self.deadline = self.t0 + limits.timeout_s
        self.ids = [t.test_id or f"t{i}" for i, t in enumerate(tests)]
        self.results: list[TestResult | None] = [None] * len(tests)
        self.prepared: dict[int, PreparedTest] = {}
        self.compile_error: tuple[str, int | None, str] | None = None
        self.top_error: tuple[str, int | None, str] | None = None
        self.flags: set[str] = set()  # timeout, memory, output, sandbox, crash
        self.stderr = ""

    def set(self, i: int, status: str, dur: float = 0.0, et: str | None = None, msg: str | None = None,
            line: int | None = None) -> None:
        if et in ("MemoryError",):
            self.flags.add("memory")
        self.results[i] = TestResult(test_id=self.ids[i], status=status, duration_s=float(dur), error_type=et,
                                     error_message=(msg[:500] if msg else msg), error_line=line)


def _execute(slot: _Slot, code: str, tests: Sequence[TestSpec], limits: SandboxLimits,
             tier: str, entry_point: str | None = None, compiled_tests: bool = False) -> ProgramResult:
    run = _Run(code, list(tests), limits, tier, entry_point, compiled_tests)
    try:
        if len(code.encode("utf-8", "surrogatepass")) > limits.max_code_bytes:
            run.compile_error = ("CodeTooLarge", None, f"candidate larger than {limits.max_code_bytes} bytes")
        elif "\x00" in code:
            run.compile_error = ("SyntaxError", None, "source code contains a NUL byte")
        else:
            if slot.pair:
                _run_split_tests(slot, run)
            else:
                _run_assert_tests(slot, run)
            _run_io_tests(slot, run)
    except _SlotFailure as exc:
        run.flags.add("sandbox")
        run.stderr += f"\n[plumline] sandbox failure: {exc.reason}"
    return _finish(run)


def _unit_base(run: _Run, mode: str) -> dict:
    lim = run.limits
    budget = max(0.0, run.deadline - time.monotonic())
    return {"mode": mode, "code": run.code, "limits": lim.wire(), "entry": run.entry_point or "",
            "test_timeout": min(lim.test_timeout_s, budget), "budget": budget}


def _call(slot: _Slot, run: _Run, unit: dict) -> dict | None:
    """One unit; a supervisor that does not answer by the deadline means the candidate starved it."""
    try:
        reply = slot.call(unit, unit["budget"] + 5.0)
    except _SlotFailure as exc:
        if exc.reason == "timeout":
            run.flags.add("timeout")
            return None
        if exc.reason == "died":
            # the supervisor died under us: the cgroup OOM killer, or our bug
            run.flags.add("memory" if slot.new_oom_kills() else "sandbox")
            return None
        raise
    if reply.get("clean") is False:
        # leftovers the supervisor could not kill or wipe: the next unit gets a fresh sandbox
        log.warning("sandbox slot %d: not clean after a run; restarting it", slot.index)
        slot.kill()
    # a SIGKILL we did not send: read the cgroup's OOM counter (only then: it costs a file read)
    reply["_oom"] = (reply.get("signal") == signal.SIGKILL and reply.get("stop") == "exit"
                     and slot.new_oom_kills())
    run.stderr = (reply.get("stderr_tail") or "")[-4000:]
    return reply


def _blame_next(run, rest: list[int], flag: str, death_type: str | None) -> list[int]:
    """A run stopped between tests: the next test takes the blame, so the loop always advances."""
    run.flags.add(flag)
    run.set(rest[0], TestStatus.TIMEOUT.value if flag == "timeout" else TestStatus.ERROR.value,
            0.0, death_type)
    return rest[1:]


def _top_level_failed(run, top: dict) -> bool:
    """Record a candidate whose top-level code did not compile or raised; True when it did."""
    if top.get("ok"):
        return False
    err = (str(top.get("type")), top.get("line"), str(top.get("msg") or ""))
    if top.get("kind") == "compile":
        run.compile_error = err
    else:
        run.top_error = err
        if err[0] == "MemoryError":
            run.flags.add("memory")
    return True


def _death(reply: dict) -> tuple[str, str]:
    """Why a unit's child stopped early: (flag, error_type)."""
    stop = reply.get("stop")
    sig = reply.get("signal")
    if stop in ("test_timeout", "budget"):
        return "timeout", "Timeout"
    if stop == "output":
        return "output", "OutputLimitExceeded"
    if stop == "protocol":
        return "crash", "ProtocolViolation"
    if reply.get("_oom"):
        return "memory", "MemoryLimit"
    if sig == signal.SIGXCPU:
        return "timeout", "CPUTimeLimit"
    if sig is not None:
        return "crash", _SIGNAL_NAMES.get(sig, f"Signal{sig}")
    return "crash", "ProcessExit"


def _run_assert_tests(slot: _Slot, run: _Run) -> None:
    pending: list[int] = []
    for i, t in enumerate(run.tests):
        if t.kind != TestKind.ASSERT.value:
            continue
        p = prepare_test(t.code, run.compiled_tests, run.entry_point or None)
        if p.error:
            run.set(i, TestStatus.ERROR.value, et="TestError", msg=p.error)
            continue
        run.prepared[i] = p
        pending.append(i)
    while pending:
        if time.monotonic() >= run.deadline:
            run.flags.add("timeout")
            break
        unit = _unit_base(run, "assert")
        unit["name"] = "candidate"
        unit["tests"] = [[i, run.prepared[i].wire_code, run.prepared[i].wire_sites,
                          list(run.prepared[i].guards)]
                         for i in pending]
        reply = _call(slot, run, unit)
        if reply is None:
            break
        top = reply.get("top")
        flag, death_type = _death(reply)
        if top is None:
            # died before its top-level code finished: that is the program's failure
            run.flags.add(flag)
            if flag == "crash":
                run.top_error = (death_type, None, "process ended before running the tests")
            break
        if _top_level_failed(run, top):
            break
        reported: list[int] = []
        for rec in reply.get("tests", []):
            i = rec.get("idx")
            if i not in run.prepared or run.results[i] is not None:
                continue
            reported.append(i)
            dur = float(rec.get("dur") or 0.0)
            if rec.get("state") == "ended":
                status, et, msg = judge_test(run.prepared[i], rec)
                run.set(i, status, dur, et, msg, rec.get("line") if status != "passed" else None)
            else:
                run.flags.add(flag)
                status = TestStatus.TIMEOUT.value if flag == "timeout" else TestStatus.ERROR.value
                run.set(i, status, dur, death_type, None, None)
        rest = [i for i in pending if run.results[i] is None]
        if reply.get("stop") == "done" or not rest:
            for i in rest:  # "done" without reporting them: not run, never passed
                run.set(i, TestStatus.ERROR.value, et="NotReported")
            break
        if not reported or run.results[reported[-1]].status == TestStatus.PASSED.value:
            rest = _blame_next(run, rest, flag, death_type)
        if reply.get("stop") == "budget":
            break
        pending = rest


class _Explain(ast.NodeTransformer):
    """``assert L <op> R`` (one comparison, no message) -> ``assert __plum_cmp__(L, 'op', R, line)``, which
    compares exactly as the assert would (same evaluation order, same operator) and on failure raises
    ``AssertionError("assert at test line N: got <L>")``. Messages only: the test's meaning is unchanged."""

    def visit_Assert(self, node: ast.Assert) -> ast.AST:
        t = node.test
        if node.msg is None and isinstance(t, ast.Compare) and len(t.ops) == 1 and \
                type(t.ops[0]).__name__ in _EXPLAINED:
            call = ast.Call(func=ast.Name(id="__plum_cmp__", ctx=ast.Load()),
                            args=[t.left, ast.Constant(type(t.ops[0]).__name__), t.comparators[0],
                                  ast.Constant(node.lineno)], keywords=[])
            node.test = ast.copy_location(call, t)
            ast.fix_missing_locations(node)
        return node


_EXPLAINED = frozenset({"Eq", "NotEq", "Lt", "LtE", "Gt", "GtE", "In", "NotIn", "Is", "IsNot"})


@functools.lru_cache(maxsize=4096)
def _compiled_test(source: str, compiled: bool) -> tuple[str | list | None, str | None]:
    """(wire form, error): the test's bytecode compiled here (when the sandbox's python reads it) or its
    source; or the error when it does not compile (the test errors, as its file would in a plain run)."""
    try:
        tree = ast.parse(source, "<test>")
        _Explain().visit(tree)
        code = compile(tree, "<test>", "exec", dont_inherit=True)
    except (SyntaxError, ValueError, MemoryError, RecursionError) as exc:
        return None, f"{type(exc).__name__}: {exc}"
    if compiled:
        return ["m", marshal.dumps(code).hex()], None
    return source, None


def _pair_death(reply: dict, slot: _Slot) -> tuple[str, str]:
    """Why a split execution stopped early: (flag, error_type); C's status first, then T's."""
    stop = reply.get("stop")
    if stop in ("test_timeout", "budget"):
        return "timeout", "Timeout"
    if stop == "output":
        return "output", "OutputLimitExceeded"
    for key in ("signal", "tsignal"):
        sig = reply.get(key)
        if sig == signal.SIGXCPU:
            return "timeout", "CPUTimeLimit"
        if sig == signal.SIGKILL and slot.new_oom_kills():
            return "memory", "MemoryLimit"
    sig = reply.get("signal")
    if sig is not None:
        return "crash", _SIGNAL_NAMES.get(sig, f"Signal{sig}")
    return "crash", "ProcessExit"


def _run_split_tests(slot: _Slot, run: _Run) -> None:
    """Assert tests in the test process, calls into the candidate by message passing (``_rpc.py``).
    A test passes when the test process ran it to its end without an exception; a candidate that breaks
    the message protocol gets runtime_error (ProtocolViolation)."""
    pending: list[int] = []
    wires: dict[int, str | list] = {}
    for i, t in enumerate(run.tests):
        if t.kind != TestKind.ASSERT.value:
            continue
        wire, err = _compiled_test(t.code, run.compiled_tests)
        if err is not None:
            run.set(i, TestStatus.ERROR.value, et="TestError", msg=err)
            continue
        wires[i] = wire
        pending.append(i)
    while pending:
        if time.monotonic() >= run.deadline:
            run.flags.add("timeout")
            break
        unit = _unit_base(run, "split")
        unit["name"] = "candidate"
        unit["tests"] = [[i, wires[i]] for i in pending]
        reply = _call(slot, run, unit)
        if reply is None:
            break
        top = reply.get("top")
        flag, death_type = _pair_death(reply, slot)
        proto = reply.get("protocol") or [None, ""]
        violation = proto[0] == "protocol" or reply.get("stop") == "protocol"
        reason = str(proto[1] or reply.get("protocol_error") or "")[:200]
        if top is None:
            if violation:
                run.top_error = ("ProtocolViolation", None, f"protocol: {reason}")
                run.stderr += f"\n[plumline] protocol: {reason}"
            else:
                run.flags.add(flag)
                if flag == "crash":
                    run.top_error = (death_type, None, "process ended before running the tests")
            break
        if _top_level_failed(run, top):
            break
        reported: list[int] = []
        for rec in reply.get("tests", []):
            i = rec.get("idx")
            if i not in wires or run.results[i] is not None:
                continue
            reported.append(i)
            dur = float(rec.get("dur") or 0.0)
            if rec.get("state") == "ended":
                if rec.get("ok"):
                    run.set(i, TestStatus.PASSED.value, dur)
                    continue
                et = rec.get("type") or "Error"
                if et == "CandidateDied":
                    run.flags.add(flag)
                    et = death_type
                status = TestStatus.FAILED.value if et == "AssertionError" else TestStatus.ERROR.value
                run.set(i, status, dur, et, rec.get("msg"), rec.get("line"))
            elif violation:
                run.set(i, TestStatus.ERROR.value, dur, "ProtocolViolation", reason)
            else:
                run.flags.add(flag)
                status = TestStatus.TIMEOUT.value if flag == "timeout" else TestStatus.ERROR.value
                run.set(i, status, dur, death_type, None, None)
        if violation:
            run.top_error = ("ProtocolViolation", None, f"protocol: {reason}")
            run.stderr += f"\n[plumline] protocol: {reason}"
            break
        rest = [i for i in pending if run.results[i] is None]
        if not rest:
            break
        if reply.get("stop") == "done" and proto[0] != "cdied":
            for i in rest:  # "done" without reporting them: not run, never passed
                run.set(i, TestStatus.ERROR.value, et="NotReported")
            break
        if not reported or run.results[reported[-1]].status == TestStatus.PASSED.value:
            rest = _blame_next(run, rest, flag, death_type)
        if reply.get("stop") == "budget":
            break
        pending = rest


def _run_io_tests(slot: _Slot, run: _Run) -> None:
    for i, t in enumerate(run.tests):
        if t.kind != TestKind.IO.value:
            continue
        if run.compile_error or time.monotonic() >= run.deadline:
            if not run.compile_error:
                run.flags.add("timeout")
            break
        unit = _unit_base(run, "io")
        unit["name"] = "__main__"
        unit["stdin"] = t.stdin
        unit["tests"] = []
        reply = _call(slot, run, unit)
        if reply is None:
            run.set(i, TestStatus.TIMEOUT.value if "timeout" in run.flags else TestStatus.ERROR.value,
                    et="Timeout" if "timeout" in run.flags else "SandboxError")
            break
        top = reply.get("top")
        dur = float(reply.get("dur") or 0.0)
        if top is not None and top.get("kind") == "compile":
            run.compile_error = (str(top.get("type")), top.get("line"), str(top.get("msg") or ""))
            break
        flag, death_type = _death(reply)
        if reply.get("stop") in ("test_timeout", "budget", "output") or top is None:
            run.flags.add(flag)
            run.set(i, TestStatus.TIMEOUT.value if flag == "timeout" else TestStatus.ERROR.value, dur,
                    death_type)
            if top is None and flag == "crash":
                run.flags.add("io_crash")
            continue
        if not top.get("ok"):
            et = str(top.get("type"))
            run.flags.add("io_crash")
            run.set(i, TestStatus.ERROR.value, dur, et, str(top.get("msg") or ""), top.get("line"))
            if run.top_error is None:
                run.top_error = (et, top.get("line"), str(top.get("msg") or ""))
            continue
        got = proto.normalize_stdout(reply.get("stdout") or "")
        want = proto.normalize_stdout(t.expected_stdout)
        if got == want:
            run.set(i, TestStatus.PASSED.value, dur)
        else:
            run.set(i, TestStatus.FAILED.value, dur, "WrongAnswer", "stdout differs from expected_stdout")


def _finish(run: _Run) -> ProgramResult:
    results = []
    for i, r in enumerate(run.results):
        if r is None:
            r = TestResult(test_id=run.ids[i], status=TestStatus.NOT_RUN.value)
        results.append(r)
    total = len(results)
    passed = sum(1 for r in results if r.status == TestStatus.PASSED.value)
    et, line = None, None
    f = run.flags
    if run.compile_error:
        outcome = Outcome.COMPILE_ERROR
        et, line = run.compile_error[0], run.compile_error[1]
        passed = 0
    elif "output" in f:
        outcome = Outcome.OUTPUT_LIMIT
    elif "memory" in f:
        outcome = Outcome.MEMORY_LIMIT
    elif "timeout" in f:
        outcome = Outcome.TIMEOUT
    elif run.top_error:
        outcome = Outcome.RUNTIME_ERROR
    elif "sandbox" in f:
        outcome = Outcome.SANDBOX_ERROR
    elif "io_crash" in f:
        outcome = Outcome.RUNTIME_ERROR
    elif total >= 1 and passed == total:
        outcome = Outcome.PASSED
    else:
        outcome = Outcome.FAILED
    if run.top_error and not run.compile_error:
        et, line = run.top_error[0], run.top_error[1]
    if outcome != Outcome.PASSED and outcome != Outcome.FAILED and et is None:
        et = {"output": "OutputLimitExceeded", "memory": "MemoryLimit", "timeout": "Timeout",
              "sandbox": "SandboxError"}.get(outcome.value.split("_")[0], None) or {
            Outcome.OUTPUT_LIMIT: "OutputLimitExceeded", Outcome.MEMORY_LIMIT: "MemoryLimit",
            Outcome.TIMEOUT: "Timeout", Outcome.SANDBOX_ERROR: "SandboxError"}.get(outcome)
    return ProgramResult(outcome=outcome.value, test_results=tuple(results), passed=passed, total=total,
                         pass_ratio=(passed / total if total else 0.0), isolation_tier=run.tier,
                         duration_s=time.monotonic() - run.t0, error_type=et,
                         error_line=line if isinstance(line, int) else None, stderr_tail=run.stderr[-2000:])


_LIVE: weakref.WeakSet[Sandbox] = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    for sb in list(_LIVE):
        try:
            sb.close()
        except Exception:  # noqa: BLE001, S110 - best effort at exit
            pass


@functools.lru_cache(maxsize=8)
def _reads_our_bytecode(python: str) -> bool:
    """Does the sandbox's interpreter load this interpreter's marshalled code (same bytecode magic)?
    Then tests are compiled once here instead of in every child."""
    ours = importlib.util.MAGIC_NUMBER.hex()
    try:
        if os.path.realpath(python) == os.path.realpath(sys.executable):
            return True
        p = subprocess.run([python, "-I", "-S", "-c",
                            "import importlib.util as u; print(u.MAGIC_NUMBER.hex())"],
                           capture_output=True, text=True, timeout=30, env={}, check=False)
    except (OSError, subprocess.SubprocessError):
        return False
    return p.returncode == 0 and p.stdout.strip() == ours


def _default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


class Sandbox:
    """A pool of warm sandboxed slots (one per core by default). Thread-safe; cheap to construct
    (slots start lazily on first use, about 0.1 s each)."""

    def __init__(self, limits: SandboxLimits | None = None, workers: int | None = None,
                 separate_tests: bool | None = None):
        """``separate_tests``: run each execution's tests in their own sandboxed process that talks to the
        candidate's process by message passing (the default, ``SEPARATE_TESTS``); False: the earlier
        design (asserts rewritten, run next to the candidate, re-judged in the parent)."""
        self.limits = limits or SandboxLimits()
        self.isolation: IsolationReport = probe_isolation()
        if self.limits.require_full_isolation and not self.isolation.full:
            raise RuntimeError(f"full isolation required but only tier {self.isolation.tier!r} is available: "
                               + "; ".join(self.isolation.notes))
        n = workers if workers is not None else _default_workers()
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"workers must be a positive int, got {workers!r}")
        self.workers = n
        self._compiled_tests = _reads_our_bytecode(self.isolation.python)
        self.separate_tests = SEPARATE_TESTS if separate_tests is None else bool(separate_tests)
        self._slots = [_Slot(i, self.limits, self.isolation, self.separate_tests) for i in range(n)]
        self._free: queue.LifoQueue[_Slot] = queue.LifoQueue()
        for s in reversed(self._slots):
            self._free.put(s)
        self._closed = False
        self._lock = threading.Lock()
        _LIVE.add(self)

    @property
    def tier(self) -> str:
        return self.isolation.tier

    def cpu_seconds(self) -> float | None:
        """CPU time used inside the slots' cgroups so far (None without cgroup accounting)."""
        total = 0.0
        for s in self._slots:
            if s.cg is None:
                if s.proc is not None:
                    return None
                continue
            v = s.cg.cpu_seconds()
            if v is None:
                return None
            total += v
        return total

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001, S110 - never raise from __del__
            pass

    def close(self) -> None:
        """Kill every slot and everything in it; remove the cgroups."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        for s in self._slots:
            s.close()

    def _execute_once(self, slot: _Slot, code: str, specs: list[TestSpec],
                      entry_point: str | None) -> ProgramResult:
        try:
            return _execute(slot, code, specs, self.limits, self.isolation.tier, entry_point,
                            self._compiled_tests)
        except (OSError, ValueError, _SlotFailure) as exc:  # our infrastructure, not the candidate
            log.exception("sandbox slot %d failed", slot.index)
            slot.kill()
            return ProgramResult(outcome=Outcome.SANDBOX_ERROR.value,
                                 test_results=tuple(TestResult(test_id=t.test_id or f"t{i}",
                                                               status=TestStatus.NOT_RUN.value)
                                                    for i, t in enumerate(specs)),
                                 passed=0, total=len(specs), pass_ratio=0.0,
                                 isolation_tier=self.isolation.tier, duration_s=0.0,
                                 error_type="SandboxError", stderr_tail=f"{type(exc).__name__}: {exc}")

    def run(self, code: str, tests: Sequence[TestSpec], entry_point: str | None = None) -> ProgramResult:
        """Run one program against its tests (blocks until a slot is free).

        ``entry_point``: the function under test. Tests see a candidate's top-level name that shadows a
        builtin (``def abs``) as the pristine builtin, so a candidate cannot rig the test's own
        computations; the entry point is exempt, so a problem whose function is called ``sum`` works."""
        if not isinstance(code, str):
            raise TypeError(f"code must be a str, got {type(code).__name__}")
        _check_entry_point(entry_point)
        specs = _check_tests(tests)
        if self._closed:
            raise RuntimeError("Sandbox is closed")
        slot = self._free.get()
        try:
            if self._closed:
                raise RuntimeError("Sandbox is closed")
            # A sandbox_error is our infrastructure failing (e.g. a slot lost under load), not a verdict:
            # run the program once more on a fresh slot. A candidate that breaks its slot on purpose
            # costs one extra run and still ends as sandbox_error.
            for attempt in range(SANDBOX_ERROR_RETRIES + 1):
                result = self._execute_once(slot, code, specs, entry_point)
                if result.outcome != Outcome.SANDBOX_ERROR.value:
                    return result
                if attempt < SANDBOX_ERROR_RETRIES:
                    log.warning("sandbox slot %d: sandbox_error (%s); retrying on a fresh slot", slot.index,
                                result.stderr_tail[-200:].strip())
                    slot.kill()
            return result
        finally:
            self._free.put(slot)

    def _validated(self, jobs: Iterable[Job]) -> list[tuple[str, list[TestSpec], str | None]]:
        out = []
        for k, job in enumerate(jobs):
            try:
                if not isinstance(job, (tuple, list)) or len(job) not in (2, 3):
                    raise TypeError("a job is (code, tests) or (code, tests, entry_point)")
                code, tests = job[0], job[1]
                entry_point = job[2] if len(job) == 3 else None
                if not isinstance(code, str):
                    raise TypeError(f"code must be a str, got {type(code).__name__}")
                _check_entry_point(entry_point)
                out.append((code, _check_tests(tests), entry_point))
            except (TypeError, ValueError) as exc:
                raise type(exc)(f"job {k}: {exc}") from exc
        return out

    def imap_unordered(self, jobs: Iterable[Job]) -> Iterator[tuple[int, ProgramResult]]:
        """Yield (index, result) as programs finish, running up to ``workers`` at once."""
        items = self._validated(jobs)
        if not items:
            return
        n = min(self.workers, len(items))
        if n == 1:
            for k, (c, t, e) in enumerate(items):
                yield k, self.run(c, t, e)
            return
        todo = iter(enumerate(items))
        lock = threading.Lock()
        done: queue.SimpleQueue = queue.SimpleQueue()

        def worker() -> None:
            while True:
                with lock:
                    nxt = next(todo, None)
                if nxt is None:
                    done.put(None)
                    return
                k, (c, t, e) = nxt
                try:
                    done.put((k, self.run(c, t, e), None))
                except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
                    done.put((k, None, exc))

        threads = [threading.Thread(target=worker, name=f"plumline-sandbox-{i}", daemon=True)
                   for i in range(n)]
        for th in threads:
            th.start()
        finished = 0
        while finished < n:
            item = done.get()
            if item is None:
                finished += 1
                continue
            k, res, exc = item
            if exc is not None:
                raise exc
            yield k, res

    def run_many(self, jobs: Sequence[Job]) -> list[ProgramResult]:
        """Run many programs concurrently over the slots; results in input order."""
        out: list[ProgramResult | None] = [None] * len(jobs)
        for k, r in self.imap_unordered(jobs):
            out[k] = r
        return out  # type: ignore[return-value]


def run_program(code: str, tests: Sequence[TestSpec], limits: SandboxLimits | None = None,
                entry_point: str | None = None) -> ProgramResult:
    """One-off convenience: a one-slot sandbox for a single program."""
    with Sandbox(limits=limits, workers=1) as sb:
        return sb.run(code, tests, entry_point)
