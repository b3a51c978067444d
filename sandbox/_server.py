"""In-sandbox supervisor. Runs as ``/usr/bin/python3 -I -S -c <_protocol.py + this file>`` inside
bubblewrap (one per pool slot), so it imports only the stdlib and uses names from ``_protocol``.

Two processes per slot:

- the *template* (pid 1 of the sandbox's pid namespace): forks the supervisor, then arms itself once
  (rlimits, working folder, seccomp filter) and from then on only forks candidate processes on request
  and reaps. It stays idle and small, so a fork from it is cheap and the filter is compiled once.
- the *supervisor* (pid 2): talks to the trusted parent over pipes; per unit it gets a fresh child
  from the template *before* reading the job (so no job data, in particular no expected value, is in
  the child's memory), hands it the candidate code and the rewritten tests, supervises it (reports,
  output caps, per-test and budget deadlines), kills every leftover process, wipes the scratch
  folders and replies.

The candidate cannot signal, ptrace or read either process: both are non-dumpable and the child's
seccomp filter denies signals to pids 1 and 2.
"""
# ruff: noqa: F821, BLE001, S102, S110, S112
# F821: names come from _protocol.py and _rpc.py, prepended at run time. BLE001/S110/S112: this is the
# harness around untrusted code: whatever a candidate raises (BaseException included) must be caught and
# reported, never crash the supervisor. S102: running the candidate's and the tests' code is its job.

import _signal as _csignal  # the C module: no enum conversions (a touched object is a page fault in a child)
import builtins as _builtins
import ctypes as _ctypes
import fcntl as _fcntl
import gc as _gc
import marshal as _marshal
import os as _os
import resource as _resource
import select as _select
import signal as _signal
import socket as _socket
import sys as _sys
import time as _time
import traceback as _traceback

_PRISTINE_BUILTINS = dict(_builtins.__dict__)
# Stdlib modules tests commonly use: their dicts are restored (and sys.modules re-pointed) before each
# test, so a candidate that patched e.g. math.isclose at import time cannot rig the test's checks.
_GUARDED = {}
for _name in ("math", "cmath", "re", "collections", "itertools", "functools", "string", "random", "heapq",
              "bisect", "operator", "copy"):
    try:
        _mod = __import__(_name)
        _GUARDED[_name] = (_mod, dict(_mod.__dict__))
    except ImportError:
        pass
_LIBC = _ctypes.CDLL(None, use_errno=True)
_SIGCHLD = int(_signal.SIGCHLD)
# Checks recorded per test for the parent's re-judgement (passing ones beyond this are not kept).
MAX_RECORDED_CHECKS = 100_000
_SIG_DFL = int(_signal.SIG_DFL)
_now = _time.monotonic


class _SockFprog(_ctypes.Structure):
    _fields_ = [("len", _ctypes.c_ushort), ("filter", _ctypes.c_void_p)]


class Server:
    def __init__(self, req_fd, rep_fd, rbuf, init, ctrl, template_pid):
        self.req_fd = req_fd
        self.rep_fd = rep_fd
        self.rbuf = rbuf
        self.ctrl = ctrl
        self.pidns = bool(init.get("pidns"))
        self.pair = bool(init.get("pair"))  # tests in their own process (see _rpc.py): zygote pairs
        self.wipe_dirs = list(init.get("wipe", []))
        self.wipe_modes = {}  # dir -> its mode at start: a candidate's chmod of /tmp must not outlive it
        # dir -> st_size when empty, for folders whose size counts their entries (tmpfs adds a fixed
        # amount per entry, which nobody can take back but by removing the entry): unchanged size and
        # mode means empty, and the wipe's listdir is skipped. Probed, not assumed.
        self.empty_size = {}
        for d in self.wipe_dirs:
            try:
                st = _os.stat(d)
                self.wipe_modes[d] = st.st_mode & 0o7777
                probe = _os.path.join(d, ".plumline-size-probe")
                _os.close(_os.open(probe, _os.O_CREAT | _os.O_WRONLY | _os.O_EXCL, 0o600))
                grown = _os.stat(d).st_size
                _os.unlink(probe)
                if grown > st.st_size == _os.stat(d).st_size and not _os.listdir(d):
                    self.empty_size[d] = st.st_size
            except OSError:
                pass
        _LIBC.prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE 0: /proc/<us>/mem, fd, environ unreadable
        self.zygote = None
        self.exits = {}  # pid -> wait status, as reported by the template
        self.write_frame({"ready": True, "pids": [template_pid, _os.getpid()],
                          "python": _sys.version.split()[0]})
        arm = self.read_frame()  # the seccomp filter, built by the parent for these pids
        self.ctrl.send(b"arm" + pack(arm))
        answer = self.ctrl.recv(4096)
        if not answer.startswith(b"ok"):
            raise RuntimeError("template failed to arm: " + answer.decode("utf-8", "replace"))
        self.write_frame({"armed": True, "seccomp": answer == b"ok:seccomp"})

    # --- template channel ------------------------------------------------------------------------
    def ctrl_message(self, block):
        """Read one template message; records child exits. Returns the message or None."""
        if not block:
            r, _, _ = _select.select([self.ctrl], [], [], 0)
            if not r:
                return None
        msg = self.ctrl.recv(256)
        if not msg:
            raise EOFError("template gone")
        if msg.startswith(b"exit:"):
            _, pid, status = msg.split(b":")
            self.exits[int(pid)] = int(status)
        return msg

    def wait_exit(self, pid, timeout):
        deadline = _now() + timeout
        while pid not in self.exits:
            left = deadline - _now()
            if left <= 0:
                return None
            r, _, _ = _select.select([self.ctrl], [], [], left)
            if r:
                self.ctrl_message(True)
        return self.exits.pop(pid)

    # --- parent channel -------------------------------------------------------------------------
    def read_exact(self, n):
        while len(self.rbuf) < n:
            chunk = _os.read(self.req_fd, max(65536, n - len(self.rbuf)))
            if not chunk:
                raise EOFError
            self.rbuf += chunk
        data = bytes(self.rbuf[:n])
        self.rbuf[:n] = b"\0" * n  # do not leave request bytes (expected values) in the buffer
        del self.rbuf[:n]
        return data

    def read_frame(self):
        n = unpack_header(self.read_exact(4))
        return loads(self.read_exact(n))

    def write_frame(self, obj):
        data = pack(obj)
        view = memoryview(data)
        while view:
            k = _os.write(self.rep_fd, view)
            view = view[k:]

    # --- zygote ---------------------------------------------------------------------------------
    def fork_zygote(self):
        job_r, job_w = _os.pipe()
        rep_r, rep_w = _os.pipe()
        ver_r, ver_w = _os.pipe()
        out_r, out_w = _os.pipe()
        err_r, err_w = _os.pipe()
        pid = None
        for _ in range(400):
            _socket.send_fds(self.ctrl, [b"fork"], [job_r, rep_w, ver_r, out_w, err_w])
            while True:
                msg = self.ctrl_message(True)
                if msg.startswith(b"pid:") or msg == b"busy":
                    break
            if msg.startswith(b"pid:"):
                pid = int(msg[4:])
                break
            self.cleanup()  # pids limit still full of dying processes
            _time.sleep(0.005)
        for fd in (job_r, rep_w, ver_r, out_w, err_w):
            _os.close(fd)
        if pid is None:
            raise RuntimeError("cannot fork")
        for fd in (rep_r, out_r, err_r, ver_w):
            _os.set_blocking(fd, False)
        self.zygote = (pid, job_w, rep_r, ver_w, out_r, err_r)

    def _fork_one(self, tag, fds):
        for _ in range(400):
            _socket.send_fds(self.ctrl, [tag], fds)
            while True:
                msg = self.ctrl_message(True)
                if msg.startswith((b"pid:", b"pids:")) or msg == b"busy":
                    break
            if msg.startswith(b"pids:"):
                return tuple(int(x) for x in msg[5:].split(b":"))
            if msg.startswith(b"pid:"):
                return int(msg[4:])
            self.cleanup()  # pids limit still full of dying processes
            _time.sleep(0.005)
        return None

    def fork_pair(self):
        """Fork the test process (T) and the candidate process (C) of the next execution, before the job
        is read. T: job, reports (to us), C->T, T->C, stdout, stderr. C: job, T->C, C->T, stdout, stderr.
        We keep a read end of C->T: an I/O job has no T, and C reports to us on it."""
        tj_r, tj_w = _os.pipe()
        cj_r, cj_w = _os.pipe()
        rep_r, rep_w = _os.pipe()
        ct_r, ct_w = _os.pipe()
        tc_r, tc_w = _os.pipe()
        out_r, out_w = _os.pipe()
        err_r, err_w = _os.pipe()
        for fd in (ct_w, tc_w):  # 1 MiB channel buffers: a large value crosses in fewer wake-ups
            try:
                _fcntl.fcntl(fd, 1031, 1 << 20)  # F_SETPIPE_SZ
            except OSError:
                pass
        pids = self._fork_one(b"forkpair", [tj_r, rep_w, ct_r, tc_w, out_w, err_w,  # T's
                                            cj_r, tc_r, ct_w, out_w, err_w])  # C's
        for fd in (tj_r, rep_w, tc_w, tc_r, ct_w, out_w, err_w, cj_r):
            _os.close(fd)
        if pids is None:
            for fd in (tj_w, cj_w, rep_r, ct_r, out_r, err_r):
                _os.close(fd)
            raise RuntimeError("cannot fork")
        tpid, cpid = pids
        for fd in (rep_r, out_r, err_r):  # not ct_r: its file description is T's too (T blocks on it)
            _os.set_blocking(fd, False)
        self.zygote = (tpid, cpid, tj_w, cj_w, rep_r, ct_r, out_r, err_r)

    def kill_wait(self, pid):
        try:
            _os.kill(pid, _signal.SIGKILL)
        except ProcessLookupError:
            pass
        return self.wait_exit(pid, 5.0)

    def run_pair(self, req):
        """One execution with the pair: assert jobs run the tests in T against C (see _rpc.py); an I/O
        job runs in C alone, reporting to us, as ``run_unit`` does with a single child."""
        tpid, cpid, tj_w, cj_w, rep_r, ct_r, out_r, err_r = self.zygote
        self.zygote = None
        t_start = _now()
        mode = req.get("mode", "split")
        io = mode == "io"
        tests = req.get("tests", [])
        limits = req.get("limits", {})
        out_cap = int(limits.get("output_bytes", 1 << 20))
        rep_cap = 1 << 20
        test_timeout = float(req.get("test_timeout", 5.0))
        budget_end = t_start + float(req.get("budget", 10.0))
        reply = {"top": None, "tests": [], "stop": None, "signal": None, "exit": None, "stdout": "",
                 "stderr_tail": "", "out_bytes": 0, "clean": True, "tsignal": None, "protocol": None}
        cjob = {"mode": "io" if io else "rpc", "code": req.get("code", ""), "stdin": req.get("stdin", ""),
                "limits": limits, "name": req.get("name", "__main__"), "entry": req.get("entry", ""),
                "protect": [tpid]}
        if io:
            self.kill_wait(tpid)
            _os.close(tj_w)
            rep = ct_r  # C reports to us
            _os.set_blocking(rep, False)
        else:
            _os.close(ct_r)
            rep = rep_r
            tjob = {"tests": [[t[0], _test_code(t[1])] for t in tests], "entry": req.get("entry", ""),
                    "limits": limits}
            try:
                _write_all(tj_w, _marshal.dumps(tjob))
            except (OSError, ValueError):
                pass
            _os.close(tj_w)
            del tjob
        try:
            _write_all(cj_w, _marshal.dumps(cjob))
        except (OSError, ValueError):
            pass
        _os.close(cj_w)
        del cjob
        keep_stdout = io
        reporter = cpid if io else tpid
        phase_deadline = min(budget_end, _now() + test_timeout)
        cur = None
        rbuf = bytearray()
        rep_total = 0
        stdout_buf = bytearray()
        err_tail = bytearray()
        out_total = 0
        done = False
        expected = [t[0] for t in tests]

        def handle(msg):
            nonlocal cur, done
            if type(msg) is not list or not msg or type(msg[0]) is not str:
                raise ValueError("bad message")
            kind = msg[0]
            if kind == "compile" or kind == "top":
                if reply["top"] is not None:
                    raise ValueError("duplicate top")
                if kind == "compile":
                    reply["top"] = {"ok": False, "kind": "compile", "type": str(msg[1])[:100],
                                    "line": msg[2] if type(msg[2]) is int else None, "msg": str(msg[3])[:500]}
                else:
                    ok = msg[1] is True
                    reply["top"] = {"ok": ok, "kind": "runtime", "type": None if ok else str(msg[2])[:100],
                                    "line": msg[3] if type(msg[3]) is int else None,
                                    "msg": None if ok else str(msg[4])[:500]}
            elif kind == "start":
                if reply["top"] is None or not reply["top"]["ok"] or cur is not None or io:
                    raise ValueError("start out of order")
                k = len(reply["tests"])
                if k >= len(expected) or msg[1] != expected[k]:
                    raise ValueError("unexpected test index")
                cur = {"idx": msg[1], "state": "running", "t0": _now()}
                reply["tests"].append(cur)
                return "start"
            elif kind == "end":
                if cur is None or msg[1] != cur["idx"]:
                    raise ValueError("end out of order")
                cur["state"] = "ended"
                cur["ok"] = msg[2] is True
                cur["type"] = None if cur["ok"] else str(msg[3])[:100]
                cur["line"] = msg[4] if type(msg[4]) is int else None
                cur["msg"] = None if cur["ok"] else str(msg[5])[:500]
                cur["dur"] = _now() - cur["t0"]
                cur = None
            elif kind == "protocol" or kind == "cdied":
                reply["protocol"] = [kind, str(msg[1])[:200] if len(msg) > 1 else ""]
            elif kind == "done":
                done = True
            else:
                raise ValueError("unknown message")
            return None

        def process_reports():
            while len(rbuf) >= 4:
                n = unpack_header(bytes(rbuf[:4]))
                if len(rbuf) < 4 + n:
                    break
                payload = bytes(rbuf[4:4 + n])
                del rbuf[:4 + n]
                yield handle(loads(payload))

        fds = [rep, out_r, err_r, self.ctrl]
        kill_reason = None
        while True:
            timeout = phase_deadline - _now()
            if timeout <= 0:
                kill_reason = "budget" if budget_end <= phase_deadline else "test_timeout"
                break
            try:
                ready, _, _ = _select.select(fds, [], [], timeout)
            except InterruptedError:
                continue
            if self.ctrl in ready:
                self.ctrl_message(True)
            for fd in ready:
                if fd is self.ctrl:
                    continue
                try:
                    chunk = _os.read(fd, 1 << 16)
                except BlockingIOError:
                    continue
                if not chunk:
                    fds.remove(fd)
                    continue
                if fd == rep:
                    rep_total += len(chunk)
                    if rep_total > rep_cap:
                        kill_reason = "protocol" if io else "output"
                        break
                    rbuf += chunk
                    try:
                        for ev in process_reports():
                            if ev == "start":
                                phase_deadline = min(budget_end, _now() + test_timeout)
                    except (ValueError, TypeError, KeyError, IndexError, OverflowError,
                            RecursionError) as exc:
                        kill_reason = "protocol"
                        reply["protocol_error"] = str(exc)[:200]
                        break
                else:
                    if fd == out_r and keep_stdout:
                        stdout_buf.extend(chunk)
                    elif fd == err_r:
                        err_tail.extend(chunk)
                        if len(err_tail) > 8192:
                            del err_tail[:-4096]
                    out_total += len(chunk)
                    if out_total > out_cap:
                        kill_reason = "output"
                        break
            if kill_reason or done or reporter in self.exits:
                break
        # C and T end by themselves after "done" (T closes C's channel); otherwise they are killed now
        pids = [cpid] if io else [tpid, cpid]
        statuses = {}
        for p in pids:
            st = self.exits.pop(p, None) if p in self.exits else None
            if st is None and kill_reason is None:
                st = self.wait_exit(p, 0.5)
            if st is None:
                st = self.kill_wait(p)
            statuses[p] = st
        for fd in (rep, out_r, err_r):
            for _ in range(64):
                try:
                    chunk = _os.read(fd, 1 << 16)
                except (BlockingIOError, OSError):
                    break
                if not chunk:
                    break
                if fd == rep and kill_reason is None:
                    rep_total += len(chunk)
                    if rep_total > rep_cap:
                        kill_reason = "protocol" if io else "output"
                        break
                    rbuf += chunk
                elif fd != rep:
                    if fd == out_r and keep_stdout:
                        stdout_buf.extend(chunk)
                    elif fd == err_r:
                        err_tail.extend(chunk)
                    out_total += len(chunk)
        if kill_reason is None:
            try:
                for _ in process_reports():
                    pass
            except (ValueError, TypeError, KeyError, IndexError, OverflowError, RecursionError) as exc:
                kill_reason = "protocol"
                reply["protocol_error"] = str(exc)[:200]
        if kill_reason is None and out_total > out_cap:
            kill_reason = "output"
        reply["clean"] = self.cleanup(pgid=cpid)
        if not self.pidns:
            try:
                _os.killpg(tpid, _signal.SIGKILL)
            except OSError:
                pass
        for fd in (rep, out_r, err_r):
            try:
                _os.close(fd)
            except OSError:
                pass
        if io:
            try:
                _os.close(rep_r)
            except OSError:
                pass
        st = statuses.get(cpid)
        if st is not None:
            if _os.WIFSIGNALED(st):
                reply["signal"] = _os.WTERMSIG(st)
            elif _os.WIFEXITED(st):
                reply["exit"] = _os.WEXITSTATUS(st)
        st = statuses.get(tpid)
        if st is not None and _os.WIFSIGNALED(st):
            reply["tsignal"] = _os.WTERMSIG(st)
        return self.finish_reply(reply, kill_reason, done, stdout_buf[:out_cap] if keep_stdout else b"",
                                 err_tail, out_total, t_start)

    # --- cleanup --------------------------------------------------------------------------------
    def finish_reply(self, reply, kill_reason, done, stdout, err_tail, out_total, t_start):
        """The end of a run's reply (both paths): why it stopped, the running test's duration, output."""
        reply["stop"] = kill_reason or ("done" if done else "exit")
        for t in reply["tests"]:
            t0 = t.pop("t0", None)
            if t["state"] == "running":
                t["dur"] = (_now() - t0) if t0 is not None else 0.0
        reply["stdout"] = bytes(stdout).decode("utf-8", "replace")
        reply["stderr_tail"] = bytes(err_tail[-4096:]).decode("utf-8", "replace")
        reply["out_bytes"] = out_total
        reply["dur"] = _now() - t_start
        return reply

    def cleanup(self, pgid=None):
        """Kill every process but us and the template (pid 1), or the child's group without a pid
        namespace. Zombies are reaped by the template; ``kill(-1)`` fails once none is left."""
        clean = True
        if self.pidns:
            deadline = _now() + 3.0
            while True:
                try:
                    _os.kill(-1, _signal.SIGKILL)
                except ProcessLookupError:
                    break
                except PermissionError:
                    break
                if _now() > deadline:
                    clean = False
                    break
                _time.sleep(0.0002)
        elif pgid:
            try:
                _os.killpg(pgid, _signal.SIGKILL)
            except OSError:
                pass
        for d in self.wipe_dirs:
            try:
                st = _os.stat(d)
            except OSError:
                continue
            mode = self.wipe_modes.get(d)
            if st.st_mode & 0o7777 != mode:
                try:
                    _os.chmod(d, mode)  # first: a read-only /tmp would keep its entries from the wipe
                except (OSError, TypeError):
                    pass
            elif st.st_size == self.empty_size.get(d):
                continue  # nothing in it
            if not _wipe(d):
                clean = False
        return clean

    # --- one unit -------------------------------------------------------------------------------
    def serve(self):
        while True:
            if self.zygote is None:
                if self.pair:
                    self.fork_pair()
                else:
                    self.fork_zygote()
            try:
                req = self.read_frame()
            except EOFError:
                self.cleanup()
                return
            if req.get("op") == "ping":
                self.write_frame({"pong": True})
                continue
            if self.pair:
                reply = self.run_pair(req)
            else:
                reply = self.run_unit(req)
            del req
            self.write_frame(reply)
            del reply

    def run_unit(self, req):
        pid, job_w, rep_r, ver_w, out_r, err_r = self.zygote
        self.zygote = None
        t_start = _now()
        mode = req.get("mode", "assert")
        tests = req.get("tests", [])
        sites = {int(t[0]): t[2] for t in tests}
        job = {"mode": mode, "code": req.get("code", ""),
               "tests": [[t[0], _test_code(t[1]), [g for g in t[3] if g in _GUARDED] if len(t) > 3 else []]
                         for t in tests],
               "stdin": req.get("stdin", ""), "limits": req.get("limits", {}),
               "name": req.get("name", "__main__"), "entry": req.get("entry", "")}
        out_cap = int(req.get("limits", {}).get("output_bytes", 1 << 20))
        rep_cap = max(16 << 20, 4 * out_cap)
        test_timeout = float(req.get("test_timeout", 5.0))
        budget_end = t_start + float(req.get("budget", 10.0))
        keep_stdout = mode == "io"
        reply = {"top": None, "tests": [], "stop": None, "signal": None, "exit": None, "stdout": "",
                 "stderr_tail": "", "out_bytes": 0, "clean": True}
        try:
            _write_all(job_w, _marshal.dumps(job))  # trusted -> child only; child -> us stays JSON
        except (OSError, ValueError):
            pass
        _os.close(job_w)
        del job
        phase_deadline = min(budget_end, _now() + test_timeout)
        cur = None  # the test record being run
        rbuf = bytearray()
        rep_total = 0
        stdout_buf = bytearray()
        err_tail = bytearray()
        out_total = 0
        exited = False
        status = None
        done = False

        def keep_output(fd, chunk, total):
            """Count the candidate's stdout/stderr bytes; keep stdout when asked and stderr's tail."""
            if fd == out_r:
                if keep_stdout:
                    stdout_buf.extend(chunk)
            else:
                err_tail.extend(chunk)
                if len(err_tail) > 8192:
                    del err_tail[:-4096]
            return total + len(chunk)

        def finish_stop(reason):
            if reply["stop"] is None:
                reply["stop"] = reason

        def handle(msg):
            nonlocal cur, done
            if type(msg) is not list or not msg or type(msg[0]) is not str:
                raise ValueError("bad message")
            kind = msg[0]
            if kind == "compile":
                if reply["top"] is not None:
                    raise ValueError("duplicate top")
                reply["top"] = {"ok": False, "kind": "compile", "type": str(msg[1])[:100],
                                "line": msg[2] if type(msg[2]) is int else None, "msg": str(msg[3])[:500]}
            elif kind == "top":
                if reply["top"] is not None:
                    raise ValueError("duplicate top")
                ok = msg[1] is True
                reply["top"] = {"ok": ok, "kind": "runtime", "type": None if ok else str(msg[2])[:100],
                                "line": msg[3] if type(msg[3]) is int else None,
                                "msg": None if ok else str(msg[4])[:500]}
            elif kind == "start":
                if reply["top"] is None or not reply["top"]["ok"] or cur is not None or mode != "assert":
                    raise ValueError("start out of order")
                expect = tests[len(reply["tests"])][0] if len(reply["tests"]) < len(tests) else None
                if msg[1] != expect:
                    raise ValueError("unexpected test index")
                cur = {"idx": expect, "state": "running", "checks": [], "verdicts": [], "t0": _now()}
                reply["tests"].append(cur)
                return "start"
            elif kind == "chk":
                if cur is None or cur["state"] != "running":
                    raise ValueError("check outside a test")
                site_id = msg[1]
                tsites = sites[cur["idx"]]
                if type(site_id) is not int or not 0 <= site_id < len(tsites) or type(msg[2]) is not list:
                    raise ValueError("bad check")
                tail = len(msg) > 3 and msg[3] is True
                try:
                    values = [decode(v) for v in msg[2]]
                    verdict = evaluate_site(tsites[site_id], values)
                except (ValueError, TypeError, RecursionError, OverflowError):
                    verdict = "fail"
                if len(cur["checks"]) < MAX_RECORDED_CHECKS or verdict != "pass":
                    # A test that loops over passing asserts (even forever: it then times out) keeps
                    # memory bounded: past the cap only non-passing checks are kept for the parent.
                    cur["checks"].append([site_id, msg[2]])
                    cur["verdicts"].append(verdict)
                if not tail:  # the child waits for this verdict; a tail check is never waited for
                    byte = b"1" if verdict == "pass" else (b"2" if verdict.startswith("error") else b"0")
                    try:
                        _os.write(ver_w, byte)
                    except BlockingIOError:
                        raise ValueError("check verdicts not read")
                    except OSError:
                        pass  # the child already ended
            elif kind == "end":
                if cur is None or msg[1] != cur["idx"]:
                    raise ValueError("end out of order")
                cur["state"] = "ended"
                cur["ok"] = msg[2] is True
                cur["type"] = None if cur["ok"] else str(msg[3])[:100]
                cur["line"] = msg[4] if type(msg[4]) is int else None
                cur["msg"] = None if cur["ok"] else str(msg[5])[:500]
                cur["dur"] = _now() - cur["t0"]
                cur = None
                return "end"
            elif kind == "done":
                done = True
            else:
                raise ValueError("unknown message")
            return None

        def process_reports():
            nonlocal rbuf
            while len(rbuf) >= 4:
                n = unpack_header(bytes(rbuf[:4]))
                if len(rbuf) < 4 + n:
                    break
                payload = bytes(rbuf[4:4 + n])
                del rbuf[:4 + n]
                try:
                    msg = loads(payload)
                except ValueError:
                    raise ValueError("undecodable message")
                res = handle(msg)
                if res in ("start", "end"):
                    yield res

        ctrl = self.ctrl
        fds = [rep_r, out_r, err_r, ctrl]
        kill_reason = None
        while True:
            now = _now()
            timeout = phase_deadline - now
            if timeout <= 0:
                kill_reason = "budget" if budget_end <= phase_deadline else "test_timeout"
                break
            try:
                ready, _, _ = _select.select(fds, [], [], timeout)
            except InterruptedError:
                continue
            if ctrl in ready:
                self.ctrl_message(True)
                exited = pid in self.exits
            for fd in ready:
                if fd is ctrl:
                    continue
                try:
                    chunk = _os.read(fd, 1 << 16)
                except BlockingIOError:
                    continue
                if not chunk:
                    fds.remove(fd)
                    continue
                if fd == rep_r:
                    rep_total += len(chunk)
                    if rep_total > rep_cap:
                        kill_reason = "output"
                        break
                    rbuf += chunk
                    try:
                        for ev in process_reports():
                            if ev == "start":
                                phase_deadline = min(budget_end, _now() + test_timeout)
                    except (ValueError, TypeError, KeyError, IndexError, OverflowError,
                            RecursionError) as exc:
                        kill_reason = "protocol"
                        reply["protocol_error"] = str(exc)[:200]
                        break
                else:
                    out_total = keep_output(fd, chunk, out_total)
                    if out_total > out_cap:
                        kill_reason = "output"
                        break
            if kill_reason or done or exited:
                break
        # the child exits by itself after "done"; otherwise it is killed now
        if kill_reason is None and not exited:
            status = self.wait_exit(pid, 0.5)
        else:
            status = self.exits.pop(pid, None)
        if status is None:
            try:
                _os.kill(pid, _signal.SIGKILL)
            except ProcessLookupError:
                pass
            status = self.wait_exit(pid, 5.0)
        # drain what is already buffered (leftover writers are killed below)
        for fd in (rep_r, out_r, err_r):
            for _ in range(64):
                try:
                    chunk = _os.read(fd, 1 << 16)
                except (BlockingIOError, OSError):
                    break
                if not chunk:
                    break
                if fd == rep_r and kill_reason is None:
                    rep_total += len(chunk)
                    if rep_total > rep_cap:
                        kill_reason = "output"
                        break
                    rbuf += chunk
                elif fd != rep_r:
                    out_total = keep_output(fd, chunk, out_total)
        if kill_reason is None:
            try:
                for _ in process_reports():
                    pass
            except (ValueError, TypeError, KeyError, IndexError, OverflowError, RecursionError) as exc:
                kill_reason = "protocol"
                reply["protocol_error"] = str(exc)[:200]
        if kill_reason is None and out_total > out_cap:
            kill_reason = "output"
        reply["clean"] = self.cleanup(pgid=pid)
        for fd in (rep_r, ver_w, out_r, err_r):
            _os.close(fd)
        if status is not None:
            if _os.WIFSIGNALED(status):
                reply["signal"] = _os.WTERMSIG(status)
            elif _os.WIFEXITED(status):
                reply["exit"] = _os.WEXITSTATUS(status)
        return self.finish_reply(reply, kill_reason, done, stdout_buf[:out_cap] if keep_stdout else b"",
                                 err_tail, out_total, t_start)


def _test_code(wire):
    """A test as the parent sent it: source text, or ["m", hex] of bytecode the parent compiled."""
    if type(wire) is list and len(wire) == 2 and wire[0] == "m" and type(wire[1]) is str:
        return bytes.fromhex(wire[1])
    return wire if type(wire) is str else ""


def _write_all(fd, data):
    view = memoryview(data)
    while view:
        k = _os.write(fd, view)
        view = view[k:]


def _wipe(path, budget=1_000_000):
    """Remove everything inside ``path`` (the slot's /tmp and /dev/shm between runs). Iterative and
    relative to directory fds with one fd open at a time: any depth, names past PATH_MAX, folders made
    unreadable. True when ``path`` ends empty (else the parent restarts the slot on a fresh tmpfs)."""
    flags = _os.O_RDONLY | _os.O_DIRECTORY | _os.O_NOFOLLOW | _os.O_CLOEXEC
    try:
        cur = _os.open(path, flags)
    except OSError:
        return False
    names = []  # the path below ``path`` as names, to rmdir each level on the way back up
    try:
        while budget > 0:
            budget -= 1
            try:
                entries = _os.listdir(cur)
            except OSError:
                return False
            subdir = None
            for name in entries:
                budget -= 1
                try:
                    _os.unlink(name, dir_fd=cur)
                    continue
                except OSError:
                    pass
                subdir = name  # a folder (or something unlink refused): descend into it
                break
            if subdir is not None:
                try:
                    _os.chmod(subdir, 0o700, dir_fd=cur)  # a candidate may have made it unreadable
                except OSError:
                    pass
                try:
                    nxt = _os.open(subdir, flags, dir_fd=cur)
                except OSError:
                    return False
                _os.close(cur)
                cur = nxt
                names.append(subdir)
                continue
            if not names:
                return True  # ``path`` itself is empty
            try:
                parent = _os.open("..", flags, dir_fd=cur)
            except OSError:
                return False
            _os.close(cur)
            cur = parent
            try:
                _os.rmdir(names.pop(), dir_fd=cur)
            except OSError:
                return False
        return False
    finally:
        _os.close(cur)


# --- the child (runs the candidate) ----------------------------------------------------------------

def _child(job_r, rep_w, ver_r, out_w, err_w, limits):
    """Runs in a process forked from the armed template (filter, rlimits, folder already in place).
    Returns an exit code, which nobody trusts: verdicts come only from checked reports."""
    job = _child_prologue(job_r, limits)
    if job is None:
        return 71
    return _child_body(job, rep_w, ver_r, out_w, err_w)


def _child_prologue(job_r, limits):
    """Own session, per-process rlimits, the job (marshal, from the supervisor); None if unreadable."""
    _os.setsid()
    for res, key, extra in ((_resource.RLIMIT_CPU, "cpu_s", 1), (_resource.RLIMIT_NPROC, "nproc", 0)):
        value = limits.get(key)
        if value:
            try:
                _resource.setrlimit(res, (int(value), int(value) + extra))
            except (ValueError, OSError):
                pass
    chunks = []
    while True:
        b = _os.read(job_r, 1 << 16)  # a 1 MiB buffer is an mmap + mremap + munmap for a 1 KiB job
        if not b:
            break
        chunks.append(b)
    _os.close(job_r)
    data = b"".join(chunks)
    del chunks
    try:
        job = _marshal.loads(data)  # written by the supervisor (trusted), never by a candidate
    except (EOFError, ValueError, TypeError):
        return None
    del data
    if type(job) is not dict:
        return None
    return job


def _child_body(job, rep_w, ver_r, out_w, err_w):
    mode = job.get("mode")
    # stdin: the io test's input in an anonymous file, or nothing
    if mode == "io":
        mfd = _os.memfd_create("stdin")
        _write_all(mfd, job.get("stdin", "").encode("utf-8", "surrogateescape"))
        _os.lseek(mfd, 0, 0)
        _os.dup2(mfd, 0)
        _os.close(mfd)
    # else: fd 0 is already /dev/null, inherited from the template (_main)
    # park the channel ends above 3/4 first: one of them may itself be fd 3 or 4
    rep_hi = _fcntl.fcntl(rep_w, _fcntl.F_DUPFD, 16)  # lowest free fd >= 16: clobbers nothing
    ver_hi = _fcntl.fcntl(ver_r, _fcntl.F_DUPFD, 16)
    _os.dup2(out_w, 1)
    _os.dup2(err_w, 2)
    _os.dup2(rep_hi, 3)
    _os.dup2(ver_hi, 4)
    _os.closerange(5, 1 << 16)
    _os.set_inheritable(3, False)
    _os.set_inheritable(4, False)
    # SIGINT, SIGTERM, SIGALRM and SIGPIPE were set once in the template (_child_signals); only the
    # template's own SIGCHLD handler and wakeup fd are undone here
    try:
        _csignal.signal(_SIGCHLD, _SIG_DFL)
        _csignal.set_wakeup_fd(-1)
    except (OSError, ValueError):
        pass
    _sys.argv = ["solution.py"]
    send = _sender(3)
    code = job.get("code", "")
    try:
        co = compile(code, "<candidate>", "exec")
    except BaseException as exc:
        line = getattr(exc, "lineno", None) if isinstance(exc, SyntaxError) else None
        send(["compile", type(exc).__name__, line if type(line) is int else None, _msg(exc)], True)
        return 0
    # a real module, so pickling its functions by reference works (multiprocessing)
    mod_name = job.get("name", "__main__")
    module = type(_sys)(mod_name)
    module.__file__ = "solution.py"
    module.__builtins__ = _builtins
    _sys.modules[mod_name] = module
    # sys.modules["__main__"] was this harness (its snapshots of builtins and modules, its helpers): the
    # candidate's own module stands there instead. (Frames still reach the harness: for tests whose
    # expected values are computed in the child, that is a defence, not a guarantee; see README.)
    _sys.modules["__main__"] = module
    ns = module.__dict__
    try:
        exec(co, ns)
        top_exc = None
    except SystemExit as exc:
        top_exc = exc if (mode != "io" or exc.code not in (None, 0)) else None
    except BaseException as exc:
        top_exc = exc
    if top_exc is not None:
        _flush()
        _print_tb(top_exc)
        send(["top", False, type(top_exc).__name__, _cand_line(top_exc), _msg(top_exc)])
    else:
        _flush()
        send(["top", True, None, None, None])
    if mode == "io" or top_exc is not None:
        send(["done"], True)
        _os._exit(0)
    del co

    def check(site, values, tail=False):
        if tail:  # the test ends right after this assert: the parent's judgement is all that matters
            # flagged, so the supervisor sends no verdict byte that the next test would read as its own
            send(["chk", site, [encode(v) for v in values], True])
            return
        send(["chk", site, [encode(v) for v in values]], True)
        while True:
            try:
                r = _os.read(4, 1)
                break
            except InterruptedError:
                continue
        if r == b"1":
            return
        if r == b"2":
            raise TypeError("comparison not supported between the values of this assert")
        raise AssertionError

    settrace, setprofile, modules = _sys.settrace, _sys.setprofile, _sys.modules
    entry = job.get("entry")  # the function under test keeps its name even when it shadows a builtin
    shadowing = [n for n in ns if n in _PRISTINE_BUILTINS and not n.startswith("__") and n != entry]
    for idx, src, guards in job.get("tests", []):
        send(["start", idx], True)
        t1 = _now()
        try:
            settrace(None)
            setprofile(None)
            # bytecode compiled by the trusted parent (marshal from the supervisor only), else source
            tco = _marshal.loads(src) if type(src) is bytes else compile(src, f"<test {idx}>", "exec")
            g = dict(ns)
            for name in shadowing:  # a candidate's top-level `abs`/`len`/... must not rig the test
                g[name] = _PRISTINE_BUILTINS[name]
            # The guarded modules this test uses as modules (only those: each check costs page faults):
            # restored from the snapshot, and bound under their name instead of a candidate's look-alike.
            for name in guards:
                mod, snapshot = _GUARDED[name]
                modules[name] = mod
                d = mod.__dict__
                if d != snapshot:
                    d.clear()
                    d.update(snapshot)
                if name != entry:
                    g[name] = mod
            g["__builtins__"] = _PRISTINE_BUILTINS
            g["__name__"] = "__main__"  # a test's own `if __name__ == "__main__": check()` runs
            g["__plum_check__"] = check
            g["__plum_plain__"] = plain
            exec(tco, g)
            send(["end", idx, True, None, None, None, _now() - t1])
        except BaseException as exc:
            _print_tb(exc)
            send(["end", idx, False, type(exc).__name__, _cand_line(exc), _msg(exc), _now() - t1])
    _flush()
    send(["done"], True)
    _os._exit(0)  # no atexit handlers, no __del__ finalizers: they cannot change anything now


def _protect(pids, nrs):
    """Stack a filter on this (candidate) process: no signal to ``pids`` (the test process), by any of
    the signal syscalls ``nrs`` (numbers resolved by the parent's libseccomp). Classic BPF by hand: the
    slot's main filter already checks the architecture."""
    pids = [p for p in pids or [] if type(p) is int and p > 0]
    nrs = [n for n in nrs or [] if type(n) is int and n >= 0]
    if not pids or not nrs:
        return True
    targets = []
    for p in pids:
        targets += [p & 0xFFFFFFFF, (-p) & 0xFFFFFFFF]
    off = 16 if _sys.byteorder == "little" else 20  # low half of args[0] in struct seccomp_data
    prog = [(0x20, 0, 0, 0)]  # ld [nr]
    n = len(nrs)
    for j, nr in enumerate(nrs):
        prog.append((0x15, n - j, 0, nr))  # jeq nr -> check
    prog.append((0x06, 0, 0, 0x7FFF0000))  # allow
    prog.append((0x20, 0, 0, off))  # check: ld [args[0] low]
    m = len(targets)
    for j, t in enumerate(targets):
        prog.append((0x15, m - j, 0, t))  # jeq target -> deny
    prog.append((0x06, 0, 0, 0x7FFF0000))
    prog.append((0x06, 0, 0, 0x00050000 | 1))  # deny: errno EPERM
    raw = b"".join(struct.pack("=HBBI", *ins) for ins in prog)
    buf = _ctypes.create_string_buffer(raw, len(raw))
    fprog = _SockFprog(len(prog), _ctypes.cast(buf, _ctypes.c_void_p))
    return _LIBC.prctl(22, 2, _ctypes.byref(fprog), 0, 0) == 0


def _pair_fds(pairs, keep_from):
    """Move the channel fds to their numbers (1 and 2 are stdout/stderr), close everything else."""
    hi = [(_fcntl.fcntl(fd, _fcntl.F_DUPFD, 16), target) for fd, target in pairs]
    for fd, target in hi:
        _os.dup2(fd, target)
    _os.closerange(keep_from, 1 << 16)
    for _, target in hi:
        if target > 2:
            _os.set_inheritable(target, False)
    try:
        _csignal.signal(_SIGCHLD, _SIG_DFL)
        _csignal.set_wakeup_fd(-1)
    except (OSError, ValueError):
        pass


def _cand_child(job_r, tc_r, ct_w, out_w, err_w, limits):
    """The candidate process: runs the candidate's code, then serves the test process's requests
    (calls and operations on its objects) until the test process closes the channel."""
    job = _child_prologue(job_r, limits)
    if job is None:
        return 71
    if job.get("mode") == "io":  # no test process: report to the supervisor on the C->T pipe
        return _child_body(job, ct_w, tc_r, out_w, err_w)
    if not _protect(job.get("protect"), limits.get("sig_nrs")):
        return 72
    _pair_fds([(out_w, 1), (err_w, 2), (tc_r, 3), (ct_w, 4)], 5)
    for fd in (3, 4):
        _os.set_blocking(fd, True)
    _sys.argv = ["solution.py"]
    ep = RpcEndpoint(3, 4, True, _os)
    try:
        try:
            co = compile(job.get("code", ""), "<candidate>", "exec")
        except BaseException as exc:
            line = getattr(exc, "lineno", None) if isinstance(exc, SyntaxError) else None
            ep.send(["compile", type(exc).__name__, line if type(line) is int else None, _msg(exc)])
            return 0
        mod_name = job.get("name", "__main__")
        module = type(_sys)(mod_name)
        module.__file__ = "solution.py"
        module.__builtins__ = _builtins
        _sys.modules[mod_name] = module
        _sys.modules["__main__"] = module
        ns = module.__dict__
        try:
            exec(co, ns)
            top_exc = None
        except BaseException as exc:
            top_exc = exc
        del co
        _flush()
        if top_exc is not None:
            _print_tb(top_exc)
            ep.send(["top", False, type(top_exc).__name__, _cand_line(top_exc), _msg(top_exc), [], []])
            return 0
        names, wires = [], []
        memo, objs = {}, []
        for name, value in list(ns.items()):
            if type(name) is not str or name.startswith("__"):
                continue
            n0 = len(objs)
            try:
                w = ep.encode(value, memo, objs, max_nodes=RPC_DATA_NAME_NODES, fast=False)
            except BaseException:
                for o in objs[n0:]:
                    memo.pop(id(o), None)
                del objs[n0:]
                w = ep.export(value)
            names.append(name)
            wires.append(w)
        ep.send(["top", True, None, None, None, names, wires])
        del names, wires, memo, objs
        while True:
            msg = ep.recv()
            if msg[0] != "req":
                break
            ep.serve(msg)
    except (RpcPeerGone, RpcProtocolError):
        pass
    _flush()
    _os._exit(0)


_CMP_OPS = {"Eq": lambda a, b: a == b, "NotEq": lambda a, b: a != b, "Lt": lambda a, b: a < b,
            "LtE": lambda a, b: a <= b, "Gt": lambda a, b: a > b, "GtE": lambda a, b: a >= b,
            "In": lambda a, b: a in b, "NotIn": lambda a, b: a not in b, "Is": lambda a, b: a is b,
            "IsNot": lambda a, b: a is not b}


def _plum_cmp(left, op, right, line):
    """The comparison of a rewritten ``assert L <op> R`` in the test process (see core._Explain)."""
    if _CMP_OPS[op](left, right):
        return True
    try:
        got = repr(left)[:300]
    except BaseException:
        got = "?"
    raise AssertionError(f"assert at test line {line}: got {got}")


def _test_child(job_r, rep_w, ct_r, tc_w, out_w, err_w, limits):
    """The test process: runs the tests file against the candidate's names (data or proxies, see
    _rpc.py), in order, in one namespace, and reports each test's start and end to the supervisor.
    It never runs candidate code; the candidate's process cannot signal it (``_protect``) or read
    its memory (non-dumpable)."""
    job = _child_prologue(job_r, limits)
    if job is None:
        return 71
    _LIBC.prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE 0
    _pair_fds([(out_w, 1), (err_w, 2), (rep_w, 3), (ct_r, 4), (tc_w, 5)], 6)
    for fd in (3, 4, 5):
        _os.set_blocking(fd, True)
    _sys.argv = ["tests.py"]
    send = _sender(3)
    ep = RpcEndpoint(4, 5, False, _os)

    def stop(kind, why):
        send([kind, str(why)[:200]])
        send(["done"], True)
        _os._exit(0)

    try:
        first = ep.recv()
    except RpcPeerGone:
        stop("cdied", "the candidate's process ended before its top-level code finished")
    except RpcProtocolError as exc:
        stop("protocol", exc)
    kind = first[0]
    if kind == "compile" and len(first) == 4:
        send(["compile", str(first[1])[:100], first[2] if type(first[2]) is int else None,
              str(first[3])[:500]])
        send(["done"], True)
        return 0
    if kind != "top" or len(first) != 7 or type(first[5]) is not list or type(first[6]) is not list or \
            len(first[5]) != len(first[6]):
        stop("protocol", "malformed top-level report")
    if first[1] is not True:
        send(["top", False, str(first[2])[:100], first[3] if type(first[3]) is int else None,
              str(first[4])[:500]])
        send(["done"], True)
        return 0
    objs = []
    try:
        values = [ep.decode(w, objs) for w in first[6]]
    except RpcProtocolError as exc:
        stop("protocol", exc)
    except MemoryError:
        stop("protocol", "the candidate's globals do not fit in memory")
    entry = job.get("entry") or ""
    g = {}
    for name, value in zip(first[5], values):
        if type(name) is not str or not name.isidentifier() or name.startswith("__"):
            continue
        if name != entry:
            # Other names than the function under test may not shadow the builtins (when the entry point
            # is known; without it, as in a plain run, they do), and a stdlib module's name bound to an
            # object of the candidate (`math = SimpleNamespace(isclose=...)`) is the real module in the
            # tests. Plain data and functions of the candidate under such a name stay as in a plain run.
            if entry and name in _PRISTINE_BUILTINS:
                continue
            if _r_importable(name) and type(value) in _R_PROXIES and value._rpc_tn != "function":
                try:
                    value = __import__(name)
                except BaseException:
                    continue
        g[name] = value
    del first, values, objs
    send(["top", True, None, None, None])
    g["__builtins__"] = _builtins
    g["__name__"] = "__main__"
    g["__plum_cmp__"] = _plum_cmp
    for idx, src in job.get("tests", []):
        send(["start", idx], True)
        t1 = _now()
        ok, err = True, None
        try:
            co = _marshal.loads(src) if type(src) is bytes else compile(src, f"<test {idx}>", "exec")
            exec(co, g)
        except BaseException as exc:
            ok, err = False, exc
        if ep.broken is not None:  # even when the test caught it: the candidate broke the protocol
            if ep.broken == "gone":
                send(["end", idx, False, "CandidateDied", ep.line, "the candidate's process ended",
                      _now() - t1])
                stop("cdied", "the candidate's process ended during a test")
            send(["end", idx, False, "ProtocolViolation", None, ep.broken, _now() - t1])
            stop("protocol", ep.broken)
        if ok:
            send(["end", idx, True, None, None, None, _now() - t1])
        else:
            _print_tb(err)
            line = getattr(err, "__plum_line__", None)
            send(["end", idx, False, type(err).__name__, line if type(line) is int else None, _msg(err),
                  _now() - t1])
        err = None
    _flush()
    send(["done"], True)
    _os._exit(0)


def _set_limits(limits):
    def setl(res, value):
        if value is None:
            return
        try:
            _resource.setrlimit(res, (value, value))
        except (ValueError, OSError):
            pass

    setl(_resource.RLIMIT_AS, limits.get("as_bytes"))
    setl(_resource.RLIMIT_FSIZE, limits.get("fsize_bytes"))
    setl(_resource.RLIMIT_NOFILE, limits.get("nofile"))
    setl(_resource.RLIMIT_CORE, 0)
    setl(_resource.RLIMIT_MEMLOCK, 0)
    setl(_resource.RLIMIT_MSGQUEUE, 0)


def _sender(fd):
    """Frames are buffered and written together at flush points (fewer supervisor wake-ups)."""
    pending = []

    def send(obj, flush=False):
        try:
            data = pack(obj)
        except (ValueError, TypeError, RecursionError, OverflowError):
            data = pack(obj[:2] + [["?", "unencodable"]] if obj and obj[0] == "chk" else ["protocol"])
        pending.append(data)
        if flush:
            out = b"".join(pending)
            pending.clear()
            try:
                _write_all(fd, out)
            except OSError:
                _os._exit(75)
    return send


def _msg(exc):
    try:
        return str(exc)[:500]
    except BaseException:
        return "<unprintable>"


def _cand_line(exc):
    line = None
    try:
        tb = exc.__traceback__
        while tb is not None:
            if tb.tb_frame.f_code.co_filename == "<candidate>":
                line = tb.tb_lineno
            tb = tb.tb_next
        if line is None and isinstance(exc, SyntaxError) and exc.filename == "<candidate>":
            line = exc.lineno
    except BaseException:
        return None
    return line if type(line) is int else None


def _print_tb(exc):
    try:
        tb = exc.__traceback__
        while tb is not None and not tb.tb_frame.f_code.co_filename.startswith(("<candidate", "<test")):
            tb = tb.tb_next
        text = "".join(_traceback.format_exception(type(exc), exc, tb))
        _os.write(2, text.encode("utf-8", "replace")[-4000:])
    except BaseException:
        pass


def _flush():
    for stream in (getattr(_sys, "stdout", None), getattr(_sys, "stderr", None)):
        try:
            stream.flush()
        except BaseException:
            pass


def _child_signals():
    """The dispositions every candidate starts with, set once in the template (inherited by fork)."""
    for sig, handler in ((_signal.SIGINT, _signal.default_int_handler), (_signal.SIGTERM, _signal.SIG_DFL),
                         (_signal.SIGALRM, _signal.SIG_DFL), (_signal.SIGPIPE, _signal.SIG_IGN)):
        try:
            _signal.signal(sig, handler)
        except (OSError, ValueError):
            pass


def _warm():
    """Lazy initialisation done once here instead of in every child. The first builtin ``compile()`` of
    a process builds the AST node types (``PyAST_Check``): in a child that was ~150 copy-on-write page
    faults and 1.5 ms of every execution. The json codec, exec of a module and a check report are
    exercised too. Trusted constant code only."""
    job = loads(pack({"mode": "assert", "code": "def f(x):\n    return x\n",
                      "tests": [[0, "assert f(1) == 1", []]],
                      "stdin": "", "limits": {"cpu_s": 1}, "name": "candidate"})[4:])
    ns = {"__builtins__": _builtins}
    exec(compile(job["code"], "<warm>", "exec"), ns)
    g = dict(ns)
    g["__plum_check__"] = lambda site, values, tail=False: pack(["chk", site, [encode(v) for v in values]])
    g["__plum_plain__"] = plain
    exec(compile("__plum_check__(0, (__plum_plain__(f(1)),), True)", "<warm>", "exec"), g)
    pack(["end", 0, True, None, None, None, 0.0])
    try:
        rpc_warm(_os)
    except BaseException:
        pass
    # the error path (a raising candidate or test): traceback formatting has lazy state of its own
    try:
        exec(compile("def g(x):\n    return x[1]\ng(0)\n", "<candidate>", "exec"), dict(ns))
    except TypeError as exc:
        "".join(_traceback.format_exception(type(exc), exc, exc.__traceback__))
        pack(["end", 0, False, type(exc).__name__, _cand_line(exc), _msg(exc), 0.0])


class Template:
    """pid 1: forks candidate processes for the supervisor and reaps everything."""

    def __init__(self, ctrl, server_pid, workdir):
        self.ctrl = ctrl
        self.server_pid = server_pid
        self.workdir = workdir
        self.children = set()
        self.limits = {}

    def arm(self, payload):
        cfg = loads(payload[4:])
        self.limits = dict(cfg.get("limits", {}))
        self.limits["sig_nrs"] = [n for n in cfg.get("sig_nrs", []) if type(n) is int]
        _set_limits(self.limits)
        try:
            _os.chdir(self.workdir)
        except OSError:
            pass
        bpf = bytes.fromhex(cfg.get("bpf", ""))
        if bpf:
            buf = _ctypes.create_string_buffer(bpf, len(bpf))
            prog = _SockFprog(len(bpf) // 8, _ctypes.cast(buf, _ctypes.c_void_p))
            if _LIBC.prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS
                return b"err:no_new_privs"
            if _LIBC.prctl(22, 2, _ctypes.byref(prog), 0, 0) != 0:  # PR_SET_SECCOMP, MODE_FILTER
                return b"err:seccomp"
            return b"ok:seccomp"
        return b"ok"

    def serve(self):
        _LIBC.prctl(4, 0, 0, 0, 0)  # non-dumpable
        _child_signals()
        wake_r, wake_w = _os.pipe()
        _os.set_blocking(wake_r, False)
        _os.set_blocking(wake_w, False)
        _signal.signal(_signal.SIGCHLD, lambda *a: None)
        _signal.set_wakeup_fd(wake_w)
        _warm()
        _gc.collect()
        _gc.freeze()  # the GC never writes to the template's objects in a child (no copy-on-write faults)
        # Give freed heap pages (the compiler's scratch memory from building this very file) back to the
        # kernel: every resident page is a page-table entry to copy at each fork and to tear down at each
        # child's exit.
        try:
            _LIBC.malloc_trim(0)
        except (AttributeError, OSError):
            pass
        while True:
            try:
                r, _, _ = _select.select([self.ctrl, wake_r], [], [], 1.0)
            except InterruptedError:
                r = [wake_r]
            if wake_r in r or not r:
                try:
                    _os.read(wake_r, 4096)
                except BlockingIOError:
                    pass
                if self.reap():
                    return
            if self.ctrl in r:
                try:
                    msg, fds, _, _ = _socket.recv_fds(self.ctrl, 65536, 16)
                except OSError:
                    return
                if not msg:
                    return
                if msg.startswith(b"arm"):
                    self.ctrl.send(self.arm(msg[3:]))
                elif msg == b"fork" and len(fds) == 5:
                    self.fork(fds)
                elif msg == b"forkpair" and len(fds) == 11:
                    self.fork_pair(fds)
                else:
                    for fd in fds:
                        _os.close(fd)

    def fork(self, fds, target=None):
        pid = self.spawn(fds, target or _child)
        self.ctrl.send(b"busy" if pid is None else b"pid:%d" % pid)

    def fork_pair(self, fds):
        """The test process and the candidate process of one execution, forked back to back (one request,
        and the template's own pages are shared with a new child once instead of twice between requests)."""
        tpid = self.spawn(fds[:6], _test_child)
        cpid = self.spawn(fds[6:], _cand_child) if tpid is not None else None
        if tpid is None:
            for fd in fds[6:]:
                _os.close(fd)
        if cpid is None:
            if tpid is not None:
                try:
                    _os.kill(tpid, _signal.SIGKILL)  # reaped (and reported) like any child
                except OSError:
                    pass
            self.ctrl.send(b"busy")
            return
        self.ctrl.send(b"pids:%d:%d" % (tpid, cpid))

    def spawn(self, fds, target):
        """Fork a child running ``target(*fds, limits)``; the pid, or None (fds closed either way)."""
        try:
            pid = _os.fork()
        except OSError:
            for fd in fds:
                _os.close(fd)
            return None
        if pid == 0:
            code = 70
            try:
                _csignal.set_wakeup_fd(-1)
                _os.close(self.ctrl.detach())
                code = target(*fds, self.limits)
            except BaseException:
                try:
                    _os.write(2, _traceback.format_exc().encode()[-2000:])
                except BaseException:
                    pass
            _os._exit(code)
        for fd in fds:
            _os.close(fd)
        self.children.add(pid)
        return pid

    def reap(self):
        """Reap every zombie (orphans land here too); report our candidates' exits. True when the
        supervisor is gone."""
        while True:
            try:
                pid, status = _os.waitpid(-1, _os.WNOHANG)
            except ChildProcessError:
                return False
            if pid == 0:
                return False
            if pid == self.server_pid:
                return True
            if pid in self.children:
                self.children.discard(pid)
                try:
                    self.ctrl.send(b"exit:%d:%d" % (pid, status))
                except OSError:
                    return True


def _read_frame(fd, rbuf):
    while len(rbuf) < 4:
        chunk = _os.read(fd, 65536)
        if not chunk:
            raise EOFError
        rbuf += chunk
    n = unpack_header(bytes(rbuf[:4]))
    while len(rbuf) < 4 + n:
        chunk = _os.read(fd, 65536)
        if not chunk:
            raise EOFError
        rbuf += chunk
    data = bytes(rbuf[4:4 + n])
    del rbuf[:4 + n]
    return loads(data)


def _main():
    req_fd = _os.dup(0)
    rep_fd = _os.dup(1)
    nfd = _os.open("/dev/null", _os.O_RDWR)
    _os.dup2(nfd, 0)
    _os.dup2(nfd, 1)
    _os.close(nfd)
    _os.set_inheritable(req_fd, False)
    _os.set_inheritable(rep_fd, False)
    _signal.signal(_signal.SIGPIPE, _signal.SIG_IGN)
    for key in list(_os.environ):
        del _os.environ[key]
    rbuf = bytearray()
    try:
        init = _read_frame(req_fd, rbuf)
    except EOFError:
        return
    ctrl_t, ctrl_s = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_SEQPACKET)
    template_pid = _os.getpid()
    pid = _os.fork()
    if pid == 0:  # the supervisor
        ctrl_t.close()
        try:
            Server(req_fd, rep_fd, rbuf, init, ctrl_s, template_pid).serve()
        except (EOFError, OSError):
            pass
        _os._exit(0)
    _os.close(req_fd)
    _os.close(rep_fd)
    ctrl_s.close()
    Template(ctrl_t, pid, init.get("workdir", "/tmp")).serve()


if __name__ == "__main__":
    _main()
