"""Hostile programs: each must neither harm the host, nor fake a pass, nor poison the next run.

Many probes record what they managed to do into a variable and the test asserts it equals a literal:
a ``passed`` verdict then proves every attempt failed inside the sandbox.
"""

import socket
import time
import uuid
from pathlib import Path

import pytest
from plumline.sandbox import Sandbox, probe_isolation
from sandbox_helpers import healthy, specs

# Escape / snooping / persistence tests need the full tier (namespaces, cgroups, seccomp). On a
# weaker machine they are skipped loudly: the tier is recorded in every result anyway.
needs_full = pytest.mark.skipif(not probe_isolation().full,
                                reason=f"isolation tier is {probe_isolation().tier!r}, not full")

NOT_PASSED = {"failed", "runtime_error", "timeout", "memory_limit", "output_limit", "compile_error"}


def run(box, code, *tests):
    return box.run(code, specs(*(tests or ("assert True",))))


# --- resource abuse ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name,code,outcomes", [
    ("infinite_loop", "while True:\n    pass\n", {"timeout"}),
    ("sleep_forever", "import time\ntime.sleep(10**6)\n", {"timeout"}),
    ("fork_bomb", "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n",
     {"timeout", "runtime_error"}),
    ("exp_fork_bomb", ("import os\nfor _ in range(64):\n    try:\n        os.fork()\n    except OSError:\n"
     "        pass\nwhile True:\n    pass\n"), {"timeout", "runtime_error"}),
    ("thread_bomb", ("import threading, time\nwhile True:\n"
                     "    threading.Thread(target=time.sleep, args=(100,))"
     ".start()\n"), {"runtime_error", "timeout", "memory_limit"}),
    ("memory_bomb", "x = bytearray(8 * 1024**3)\n", {"memory_limit"}),
    ("memory_creep", "x = []\nwhile True:\n    x.append(bytearray(10**7))\n", {"memory_limit", "timeout"}),
    ("stdout_flood", "import sys\nwhile True:\n    sys.stdout.write('x' * 65536)\n", {"output_limit"}),
    ("stderr_flood", "import sys\nwhile True:\n    sys.stderr.write('y' * 65536)\n", {"output_limit"}),
    ("giant_line", "print('z' * (50 * 1024 * 1024))\n", {"output_limit", "memory_limit"}),
    ("binary_output", "import os\nos.write(1, bytes(range(256)) * 4096)\n", {"output_limit"}),
    ("ignore_sigterm", ("import signal\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nwhile True:\n"
                       "    pass\n"),
     {"timeout"}),
    ("segfault", "import ctypes\nctypes.string_at(0)\n", {"runtime_error"}),
    ("c_stack_overflow", ("import sys\nsys.setrecursionlimit(10**7)\nclass A:\n    def __repr__(self):\n"
     "        return repr(self)\nrepr(A())\n"), {"runtime_error", "memory_limit", "timeout"}),
    ("recursion_bomb", "def f(n):\n    return f(n + 1)\nf(0)\n", {"runtime_error"}),
    ("cpu_rlimit_dodge", "import resource\nresource.setrlimit(resource.RLIMIT_CPU, (10**6, 10**6))\n",
     {"runtime_error"}),
])
def test_resource_abuse_is_contained(sb, name, code, outcomes):
    t0 = time.monotonic()
    r = run(sb, code)
    assert r.outcome in outcomes, (name, r)
    assert r.isolation_tier
    assert time.monotonic() - t0 < 30
    healthy(sb)


@needs_full
def test_multi_process_memory_bomb_hits_the_cgroup(sb):
    # each process stays under its own address-space cap; together they exceed the slot's cgroup
    code = """
import os
pids = []
for _ in range(4):
    pid = os.fork()
    if pid == 0:
        b = bytearray(400 * 1024 * 1024)
        for i in range(0, len(b), 4096):
            b[i] = 1
        os._exit(0)
    pids.append(pid)
codes = [os.waitpid(p, 0)[1] for p in pids]
"""
    r = run(sb, code, "assert codes == [0, 0, 0, 0]")
    assert r.outcome in {"memory_limit", "failed", "runtime_error", "timeout"}, r
    assert r.passed == 0
    healthy(sb)


@needs_full
def test_cannot_starve_the_supervisor(sb):
    code = """
import os
got = []
for who in (1, 2):
    try:
        os.setpriority(os.PRIO_PROCESS, who, 19)
        got.append(('nice', who))
    except OSError:
        pass
    try:
        os.sched_setaffinity(who, {0})
        got.append(('affinity', who))
    except OSError:
        pass
os.setpriority(os.PRIO_PROCESS, 0, 5)  # its own priority stays its business
"""
    r = run(sb, code, "assert got == []")
    assert r.outcome == "passed", r


def test_blocking_on_stdin_sees_eof(sb):
    r = run(sb, "import sys\ndata = sys.stdin.read()\n", "assert data == ''")
    assert r.outcome == "passed", r


def test_hanging_test_does_not_hide_the_others(sb):
    code = "import time\ndef f(x):\n    if x == 2:\n        time.sleep(100)\n    return x\n"
    r = sb.run(code, specs("assert f(1) == 1", "assert f(2) == 2", "assert f(3) == 3", "assert f(4) == 5"))
    assert [t.status for t in r.test_results] == ["passed", "timeout", "passed", "failed"], r
    assert r.outcome == "timeout"
    assert r.passed == 2


def test_crashing_test_does_not_hide_the_others(sb):
    code = "import os\ndef f(x):\n    if x == 1:\n        os._exit(0)\n    return x\n"
    r = sb.run(code, specs("assert f(1) == 1", "assert f(2) == 2"))
    assert [t.status for t in r.test_results] == ["error", "passed"], r
    assert r.outcome == "failed"


# --- escaping / snooping -----------------------------------------------------------------------------

@needs_full
def test_cannot_write_or_delete_outside(sb, tmp_path):
    target = Path("/work/main") / f"PWNED-{uuid.uuid4().hex}"
    code = f"""
import os, shutil
done = []
for p in [{str(target)!r}, '/usr/PWNED', '/PWNED', '/proc/PWNED', '/etc/PWNED', '/dev/PWNED',
          '/dev/pts/PWNED']:
    try:
        open(p, 'w').write('x')
        done.append(p)
    except OSError:
        pass
for p in ['/usr/bin/python3', '/usr/lib/os-release', '/bin/sh']:
    try:
        os.remove(p)
        done.append(p)
    except OSError:
        pass
try:
    shutil.rmtree('/usr/share/doc')
    done.append('rmtree')
except OSError:
    pass
"""
    r = run(sb, code, "assert done == []")
    assert r.outcome == "passed", r
    assert not target.exists()
    assert Path("/usr/bin/python3").exists() and Path("/bin/sh").exists()


@needs_full
def test_cannot_read_secrets(sb, tmp_path, monkeypatch):
    secret = "hunter2-" + uuid.uuid4().hex
    host_file = Path("/tmp") / f"plumline-secret-{uuid.uuid4().hex}"
    host_file.write_text(secret)
    monkeypatch.setenv("PLUMLINE_TEST_SECRET", secret)
    try:
        code = f"""
import os
found = []
if {secret!r} in repr(dict(os.environ)):
    found.append('environ')
for pid in os.listdir('/proc'):
    if pid.isdigit():
        for f in ('environ', 'cmdline'):
            try:
                if {secret!r}.encode() in open('/proc/%s/%s' % (pid, f), 'rb').read():
                    found.append(pid + f)
            except OSError:
                pass
for p in [{str(host_file)!r}, '/etc/shadow', '/root/.bash_history', '/work/main/pyproject.toml',
          '/etc/passwd']:
    try:
        open(p).read()
        found.append(p)
    except OSError:
        pass
env = sorted(os.environ)
"""
        r = run(sb, code, "assert found == []", "assert env == []")
        assert r.outcome == "passed", r
    finally:
        host_file.unlink()


@needs_full
def test_no_network(sb):
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    srv.settimeout(0.2)
    port = srv.getsockname()[1]
    code = f"""
import socket
ok = []
for fam, addr in [(socket.AF_INET, ('127.0.0.1', {port})), (socket.AF_INET, ('1.1.1.1', 80)),
                  (socket.AF_INET6, ('::1', {port}))]:
    try:
        s = socket.socket(fam, socket.SOCK_STREAM)
        s.settimeout(0.5)
        s.connect(addr)
        ok.append(addr)
    except OSError:
        pass
try:
    socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    ok.append('udp')
except OSError:
    pass
try:
    socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    ok.append('raw')
except (OSError, AttributeError):
    pass
a, b = socket.socketpair()  # AF_UNIX stays allowed (multiprocessing uses it)
a.send(b'x')
unix_ok = b.recv(1) == b'x'
"""
    r = run(sb, code, "assert ok == []", "assert unix_ok is True")
    try:
        conn, _ = srv.accept()
        conn.close()
        accepted = True
    except OSError:
        accepted = False
    srv.close()
    assert r.outcome == "passed", r
    assert not accepted


@needs_full
def test_cannot_kill_supervisor_or_parent(sb):
    code = """
import os, signal
me = os.getpid()
for pid in [int(p) for p in os.listdir('/proc') if p.isdigit()]:
    if pid != me:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
try:
    os.kill(-1, signal.SIGKILL)
except OSError:
    pass
try:
    os.kill(os.getppid(), signal.SIGKILL)
except OSError:
    pass
def f():
    return 1
"""
    r = run(sb, code, "assert f() == 1")
    assert r.outcome == "passed", r
    healthy(sb)


@needs_full
def test_kernel_attack_surface_is_denied(sb):
    code = """
import ctypes, os, fcntl, termios, resource
libc = ctypes.CDLL(None, use_errno=True)
got = []
if libc.ptrace(16, 2, 0, 0) == 0:  # PTRACE_ATTACH to the supervisor
    got.append('ptrace')
if libc.mount(b'none', b'/', None, 32 | 4096, None) == 0:  # MS_REMOUNT|MS_BIND
    got.append('remount')
if libc.mount(b'tmpfs', b'/tmp', b'tmpfs', 0, None) == 0:
    got.append('mount')
if libc.unshare(0x10000000) == 0:  # CLONE_NEWUSER
    got.append('unshare')
if libc.syscall(425, 8, 0) >= 0:  # io_uring_setup
    got.append('io_uring')
if libc.syscall(321, 0, 0, 0) >= 0:  # bpf
    got.append('bpf')
if libc.syscall(248, b'user', b'k', b'v', 1, -2) >= 0:  # add_key
    got.append('keyring')
for fd in (0, 1, 2):
    try:
        fcntl.ioctl(fd, termios.TIOCSTI, b'x')
        got.append('tiocsti')
    except OSError:
        pass
try:
    resource.setrlimit(resource.RLIMIT_AS, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    got.append('rlimit')
except (ValueError, OSError):
    pass
try:
    resource.prlimit(2, resource.RLIMIT_NOFILE, (1, 1))
    got.append('prlimit')
except (ValueError, OSError):
    pass
try:
    open('/proc/2/mem', 'rb').read(1)
    got.append('mem')
except OSError:
    pass
caps = [l for l in open('/proc/self/status') if l.startswith('CapEff')][0].split()[1]
"""
    r = run(sb, code, "assert got == []", "assert caps == '0000000000000000'")
    assert r.outcome == "passed", r


@needs_full
def test_hiding_state_from_the_wipe_does_not_work(sb1):
    # The supervisor skips the wipe when a folder's ctime did not move; utime cannot set ctime back,
    # and a chmod of /tmp must not break (or protect files from) the next candidate.
    hide = """
import os
st = os.stat('/tmp')
for d in ('/tmp', '/dev/shm'):
    os.makedirs(d + '/sub/deeper', exist_ok=True)
    open(d + '/sub/deeper/state', 'w').write('persisted')
    os.chmod(d + '/sub', 0)
    os.utime(d, ns=(st.st_atime_ns, st.st_mtime_ns))
os.chmod('/tmp', 0o500)
"""
    assert run(sb1, hide).outcome == "passed"
    probe = """
import os
left = sorted(os.listdir('/tmp')) + sorted(os.listdir('/dev/shm'))
open('/tmp/mine', 'w').write('x')
"""
    r = run(sb1, probe, "assert left == []")
    assert r.outcome == "passed", r
    r = run(sb1, probe, "assert left == []")  # and again after a run that did write
    assert r.outcome == "passed", r


@needs_full
def test_background_daemon_and_state_do_not_outlive_the_run(sb1):
    daemon = """
import os, time
for p in ('/tmp/state', '/dev/shm/state'):
    open(p, 'w').write('persisted')
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        while True:
            time.sleep(0.05)
            try:
                open('/tmp/daemon', 'w').write('alive')
            except OSError:
                pass
    os._exit(0)
time.sleep(0.2)
"""
    r1 = run(sb1, daemon)
    assert r1.outcome == "passed", r1
    probe = """
import os, time
time.sleep(0.3)
left = sorted(os.listdir('/tmp')) + sorted(os.listdir('/dev/shm'))
procs = sorted(int(p) for p in os.listdir('/proc') if p.isdigit())
n = len(procs)
"""
    # visible: init (1), supervisor (2), the test process, ourselves
    r2 = run(sb1, probe, "assert left == []", "assert n == 4")
    assert r2.outcome == "passed", r2


@needs_full
def test_cannot_read_other_candidates_files(sb):
    writer = ("import time\nopen('/tmp/mine', 'w').write('secret')\nopen('/dev/shm/mine', 'w').write('s')\n"
              "time.sleep(1.0)\n")
    reader = "import os, time\ntime.sleep(0.4)\nseen = os.listdir('/tmp') + os.listdir('/dev/shm')\n"
    rs = sb.run_many([(writer, specs("assert True")), (reader, specs("assert seen == []"))])
    assert [r.outcome for r in rs] == ["passed", "passed"], rs


def test_shadowing_stdlib_modules_does_not_rig_tests(sb):
    code = """
import sys, types, math, builtins
fake = types.ModuleType('math')
fake.isclose = lambda *a, **k: True
fake.fabs = lambda x: 0.0
sys.modules['math'] = fake
math.isclose = lambda *a, **k: True
open('/tmp/math.py', 'w').write('isclose = lambda *a, **k: True')
sys.path.insert(0, '/tmp')
builtins.abs = lambda x: 0
builtins.len = lambda x: 3
def abs(x):
    return 0
def f(x):
    return 100.0
"""
    r = run(sb, code, "import math\nassert math.isclose(f(1), 2.0)", "assert abs(f(1) - 2.0) < 1e-6",
            "assert len(str(f(1))) == 3", "import math\nassert math.fabs(f(1) - 2.0) < 1e-9")
    assert r.passed == 0, r
    assert r.outcome == "failed"


# --- fake passes ------------------------------------------------------------------------------------

WRONG = "def f(x):\n    return -1\n"


@pytest.mark.parametrize("name,code", [
    ("os_exit_at_import", "import os\nos._exit(0)\n"),
    ("sys_exit_at_import", "import sys\nsys.exit(0)\n"),
    ("os_exit_in_call", "import os\ndef f(x):\n    os._exit(0)\n"),
    ("sys_exit_in_call", "import sys\ndef f(x):\n    sys.exit(0)\n"),
    ("excepthook_exit", "import sys, os\nsys.excepthook = lambda *a: os._exit(0)\n" + WRONG
     + "raise RuntimeError\n"),
    ("atexit_exit", "import atexit, os\natexit.register(lambda: os._exit(0))\n" + WRONG),
    ("del_exit", "import os\nclass D:\n    def __del__(self):\n        os._exit(0)\nkeep = D()\n" + WRONG),
    ("eq_always_true", ("class A:\n    def __eq__(self, o):\n        return True\n    def __ne__(self, o):\n"
     "        return False\ndef f(x):\n    return A()\n")),
    ("int_subclass", ("class I(int):\n    def __eq__(self, o):\n        return True\n"
                      "    __hash__ = int.__hash__\n"
     "def f(x):\n    return I(-1)\n")),
    ("float_subclass_sub", ("class F(float):\n    def __sub__(self, o):\n        return 0.0\n"
     "    def __eq__(self, o):\n        return True\n    __hash__ = float.__hash__\ndef f(x):\n"
     "    return F(-1.0)\n")),
    ("str_subclass", ("class S(str):\n    def __eq__(self, o):\n        return True\n"
                      "    __hash__ = str.__hash__\n"
     "def f(x):\n    return S('nope')\n")),
    ("list_subclass", ("class L(list):\n    def __eq__(self, o):\n        return True\n"
     "def f(x):\n    return L()\n")),
    ("patched_builtins", "import builtins\nbuiltins.abs = lambda x: 0\n"
                         "builtins.isinstance = lambda *a: True\n"
     "builtins.AssertionError = type('X', (Exception,), {})\n" + WRONG),
    ("frame_introspection", ("import sys\ndef f(x):\n    fr = sys._getframe(1)\n    while fr is not None:\n"
     "        for v in list(fr.f_locals.values()) + list(fr.f_code.co_consts):\n"
     "            if type(v) is int and v > 100:\n                return v\n        fr = fr.f_back\n"
     "    return -1\n")),
    ("gc_scan_for_expected", ("import gc\ndef f(x):\n    best = -1\n    for o in gc.get_objects():\n"
     "        if type(o) is list and 912345 in o:\n            return 912345\n    return best\n")),
    ("forge_report_channel", ("import os, json, struct\ndef f(x):\n"
                              "    for msg in (['end', 0, True, None, None, None, 0],"
     " ['done']):\n        d = json.dumps(msg).encode()\n        os.write(3, struct.pack('>I', len(d)) + d)\n"
     "    os._exit(0)\n")),
    ("forge_check_values", ("import os, json, struct\ndef f(x):\n"
                            "    d = json.dumps(['chk', 0, [['i', 'deadbeef']]])"
     ".encode()\n    os.write(3, struct.pack('>I', len(d)) + d)\n    os.read(4, 1)\n    return -1\n")),
    ("forge_check_then_exit", ("import os, json, struct\ndef f(x):\n"
                               "    d = json.dumps(['chk', 0, [['i', '1']]])"
     ".encode()\n    os.write(3, struct.pack('>I', len(d)) + d)\n    os._exit(0)\n")),
    ("settrace_tamper", "import sys\ndef tr(frame, event, arg):\n    frame.f_locals.clear()\n    return tr\n"
     "sys.settrace(tr)\n" + WRONG),
])
def test_fake_passes_are_caught(sb, name, code):
    tests = ("assert f(3) == 912345", "assert abs(f(3) - 912345.0) < 1e-6", "assert f(3) in [912345]",
             "def check(candidate):\n    assert candidate(3) == 912345\n\ncheck(f)\n")
    r = run(sb, code, *tests)
    assert r.passed == 0, (name, r)
    assert r.outcome in NOT_PASSED, (name, r)
    healthy(sb)


# --- benign programs still pass -------------------------------------------------------------------

@pytest.mark.parametrize("name,code,test", [
    ("deep_legal_recursion", ("import sys\nsys.setrecursionlimit(20000)\ndef depth(n):\n"
     "    return 0 if n == 0 else 1 + depth(n - 1)\n"), "assert depth(10000) == 10000"),
    ("default_recursion", "def depth(n):\n    return 0 if n == 0 else 1 + depth(n - 1)\n",
     "assert depth(900) == 900"),
    ("threads", ("import threading\ndef f(n):\n    out = []\n"
                 "    ts = [threading.Thread(target=out.append, args=(i,))"
     " for i in range(n)]\n    [t.start() for t in ts]\n    [t.join() for t in ts]\n"
     "    return sorted(out)\n"),
     "assert f(16) == list(range(16))"),
    ("output_within_cap", ("for i in range(5000):\n    print('line', i)\ndef f():\n"
                          "    return 1\n"), "assert f() == 1"),
    ("half_second_cpu", ("import time\ndef f():\n    t = time.process_time()\n    n = 0\n"
     "    while time.process_time() - t < 0.5:\n        n += 1\n    return n > 0\n"), "assert f() is True"),
    ("temp_files", ("import tempfile, os\ndef f(s):\n"
                    "    with tempfile.NamedTemporaryFile('w+', delete=False) as fh:\n"
     "        fh.write(s)\n    with open(fh.name) as g:\n        out = g.read()\n    os.unlink(fh.name)\n"
     "    with tempfile.TemporaryDirectory() as d:\n        open(os.path.join(d, 'x'), 'w').write('1')\n"
     "    return out\n"), "assert f('hello') == 'hello'"),
    ("unicode", "def f(s):\n    print('héllo ✓ 日本 🙂')\n    return s[::-1]\n",
     "assert f('日本語✓') == '✓語本日'"),
    ("memory_200mb", "def f():\n    b = bytearray(200 * 1024 * 1024)\n    b[-1] = 7\n    return b[-1]\n",
     "assert f() == 7"),
    ("stdlib", ("import json, re, collections, itertools, heapq, datetime, fractions, decimal, hashlib, "
                "random, math\n"
     "import string, functools, bisect, textwrap, statistics, typing, dataclasses, enum, copy, operator\n"
     "def f():\n    return [json.loads(json.dumps({'a': [1]}))['a'][0], len(re.findall(r'\\d', 'a1b2')),\n"
     "            collections.Counter('aab')['a'], hashlib.sha256(b'x').hexdigest()[:4],\n"
     "            str(fractions.Fraction(1, 3) + fractions.Fraction(1, 6)), heapq.nsmallest(1, [3, 1])[0],\n"
     "            datetime.date(2020, 1, 2).isoformat(), str(decimal.Decimal('1.10') + 1)]\n"),
     "assert f() == [1, 2, 2, '2d71', '1/2', 1, '2020-01-02', '2.10']"),
    ("multiprocessing_pool", ("import multiprocessing as mp\ndef sq(x):\n    return x * x\n"
     "def f():\n    with mp.get_context('fork').Pool(2) as p:\n        return p.map(sq, range(5))\n"),
     "assert f() == [0, 1, 4, 9, 16]"),
    ("subprocess_allowed", ("import subprocess\ndef f():\n"
                            "    return subprocess.run(['/usr/bin/python3', '-c', "
     "'print(6*7)'], capture_output=True, text=True).stdout.strip()\n"), "assert f() == '42'"),
])
def test_benign_programs_pass(sb, name, code, test):
    if name == "half_second_cpu":
        # 0.5 s of CPU within the 2 s test timeout needs a quarter of a core; a machine shared with other
        # work may not give it: this case runs with the default limits (3 s per test, 10 s in all)
        with Sandbox(workers=1) as box:
            r = run(box, code, test)
    else:
        r = run(sb, code, test)
    assert r.outcome == "passed", (name, r)


def test_io_tests(sb):
    from plumline.data_schemas import TestSpec

    code = "n = int(input())\nprint(*[i * i for i in range(n)])\nimport sys\nsys.exit(0)\n"
    tests = [TestSpec(kind="io", stdin="3\n", expected_stdout="0 1 4  \n\n", test_id="a"),
             TestSpec(kind="io", stdin="2\n", expected_stdout="0 2\n", test_id="b"),
             TestSpec(kind="io", stdin="x\n", expected_stdout="", test_id="c")]
    r = sb.run(code, tests)
    assert [t.status for t in r.test_results] == ["passed", "failed", "error"], r
    assert r.test_results[2].error_type == "ValueError"
    assert r.outcome == "runtime_error"
    r = sb.run("import sys\nprint(sum(map(int, sys.stdin.read().split())))\n",
               [TestSpec(kind="io", stdin="1 2 3", expected_stdout="6")])
    assert r.outcome == "passed", r
    r = sb.run("while True: pass", [TestSpec(kind="io", stdin="", expected_stdout="")])
    assert r.outcome == "timeout", r
