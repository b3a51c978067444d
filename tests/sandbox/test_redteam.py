"""Red-team probes of the sandbox beyond ``test_hostile.py``.

``xfail(strict=True)`` tests are confirmed weaknesses: each asserts the behaviour we want and fails
today (the reason names the weakness; see the red-team report). The other tests are attacks that are
defended now and must stay so. Probes that change a slot's state for good (renice, sysctls, crashed
supervisors) run in a private one-slot sandbox (``own``) so the shared fixtures stay clean.
"""

import time

import pytest
from plumline.data_schemas import TestSpec
from plumline.sandbox import Sandbox, SandboxLimits, probe_isolation
from sandbox_helpers import healthy, specs

# the same limits as conftest.HOSTILE_LIMITS (conftest is not importable by name from every rootdir)
HOSTILE_LIMITS = SandboxLimits(timeout_s=8.0, test_timeout_s=2.0, cpu_s=6, memory_mb=512, max_pids=48,
                               output_bytes=256 * 1024, tmpfs_mb=32)

needs_full = pytest.mark.skipif(not probe_isolation().full,
                                reason=f"isolation tier is {probe_isolation().tier!r}, not full")

NOT_PASSED = {"failed", "runtime_error", "timeout", "memory_limit", "output_limit", "compile_error"}


def run(box, code, *tests, entry_point=None):
    return box.run(code, specs(*(tests or ("assert True",))), entry_point=entry_point)


@pytest.fixture
def own():
    """A private one-slot sandbox for probes that damage their slot."""
    with Sandbox(limits=HOSTILE_LIMITS, workers=1) as box:
        yield box


# =====================================================================================================
# Confirmed weaknesses (xfail strict: they fail today)
# =====================================================================================================

# --- fake passes --------------------------------------------------------------------------------------

CONSTS_READER = """
import sys
def f(x):
    consts = [c for c in sys._getframe(1).f_code.co_consts
              if type(c) in (int, str, float) and type(c) is not bool and c != x and c not in (0, 1)]
    return consts[0] if consts else None
"""


@pytest.mark.parametrize("test", ["assert f(3) == 2**40", "assert f(3) == 'ab' * 3",
                                  "assert f(3) == 10**9 + 7",
                                  "def check(candidate):\n    assert candidate(3) == 2**40\n\ncheck(f)\n"])
def test_constant_expression_expected_is_withheld(sb, test):
    r = run(sb, CONSTS_READER, test)
    assert r.passed == 0, r


FRAME_READER = """
import sys
def f(x):
    fr = sys._getframe(1)
    for c in fr.f_code.co_consts:
        if type(c) is float and c > 1:
            return c
    g = fr.f_globals
    return g.get('expected', g.get('want'))
"""


@pytest.mark.parametrize("test", ["expected = 4242\nassert f(3) == expected",
                                  "for x, want in [(1, 55), (2, 66)]:\n    assert f(x) == want"])
def test_shape3_expected_value_not_readable_from_frames(sb, test):
    r = run(sb, FRAME_READER, test)
    assert r.passed == 0, r


@pytest.mark.parametrize("test", ["assert abs(f(3) - 912345.5) < 1e-6",
                                  "import math\nassert math.isclose(f(3), 912345.5)",
                                  ("def check(candidate):\n"
                                  "    assert abs(candidate(3) - 912345.5) <= 1e-6\ncheck(f)")])
def test_tolerance_asserts_keep_the_expected_value_out_of_the_child(sb, test):
    # the pure part (abs(. - c) < eps, math.isclose) is computed in the parent: only f(3) crosses
    r = run(sb, FRAME_READER, test)
    assert r.passed == 0, r


def test_guarded_module_name_bound_by_candidate(sb):
    code = ("import types\nmath = types.SimpleNamespace(isclose=lambda *a, **k: True)\n"
            "def f(x):\n    return -1.0\n")
    r = run(sb, code, "assert math.isclose(f(1), 2.0)")
    assert r.passed == 0, r


@pytest.mark.parametrize("poison,test", [
    (("M['_GUARDED']['math'][1]['isclose'] = lambda *a, **k: True\nimport math\n"
     "math.isclose = lambda *a, **k: True\n"), "import math\nassert math.isclose(f(1), 2.0)"),
    ("M['_PRISTINE_BUILTINS']['abs'] = lambda x: 0\n", "assert abs(f(1) - 2.0) < 1e-6"),
    (("M['plain'].__code__ = (lambda value: value).__code__\nclass F(float):\n    def __sub__(self, o):\n"
     "        return 0.0\n"), "assert abs(f(1) - 2.0) < 1e-6"),
], ids=["guarded_snapshot", "pristine_builtins", "plain_code"])
def test_harness_snapshots_cannot_be_poisoned(sb, poison, test):
    code = ("import sys\nM = sys.modules['__main__'].__dict__\n" + poison
            + "def f(x):\n    return F(-1.0) if 'F' in globals() else -1.0\n")
    r = run(sb, code, test)
    assert r.passed == 0, r


# --- killing / crashing the supervisor (verdict evasion: sandbox_error instead of failed) ---------------

SIGIO_OWNERS = {
    "fcntl_setown": "fcntl.fcntl(r, fcntl.F_SETOWN, 2)",
    "fcntl_setown_ex": "fcntl.fcntl(r, 15, struct.pack('ii', 1, 2))",  # F_SETOWN_EX, F_OWNER_PID
    "ioctl_fiosetown_socket": "fcntl.ioctl(r, 0x8901, struct.pack('i', 2))",  # FIOSETOWN (sockets only)
}


@needs_full
@pytest.mark.parametrize("owner", list(SIGIO_OWNERS), ids=list(SIGIO_OWNERS))
def test_sigio_cannot_kill_the_supervisor(own, owner):
    code = f"""
import os, fcntl, socket, struct, time
a, b = socket.socketpair()
r = a.fileno()
try:
    {SIGIO_OWNERS[owner]}
    fcntl.fcntl(r, 10, 9)  # F_SETSIG: SIGKILL
    fcntl.fcntl(r, fcntl.F_SETFL, fcntl.fcntl(r, fcntl.F_GETFL) | os.O_ASYNC)
    b.send(b'x')
except OSError:
    pass
time.sleep(0.2)
def f(x):
    return -1
"""
    r = run(own, code, "assert f(1) == 5")
    assert r.outcome == "failed", r


@needs_full
def test_deep_folder_tree_does_not_crash_the_supervisor(own):
    code = "import os\nos.chdir('/tmp')\nfor _ in range(1500):\n    os.mkdir('a')\n    os.chdir('a')\n"
    r = run(own, code)
    assert r.outcome == "passed", r
    healthy(own)


# --- state that survives into the next candidate of the slot -----------------------------------------

WALK_TMP = """
import os
found = []
def walk(d, depth=0):
    os.chdir(d)
    for n in os.listdir('.'):
        if os.path.isdir(n):
            walk(n, depth + 1)
            os.chdir('..')
        else:
            found.append(n)
walk('/tmp')
"""


@needs_full
def test_wipe_reaches_below_path_max(own):
    code = ("import os\nos.chdir('/tmp')\nfor i in range(20):\n    n = ('d%02d' % i) * 80\n    os.mkdir(n)\n"
            "    os.chdir(n)\nopen('state', 'w').write('persisted')\n")
    assert run(own, code).outcome == "passed"
    r = run(own, WALK_TMP, "assert found == []")
    assert r.outcome == "passed", r


@needs_full
def test_prio_user_cannot_renice_the_slot(own):
    code = "import os\ntry:\n    os.setpriority(os.PRIO_USER, 0, 19)\nexcept OSError:\n    pass\n"
    assert run(own, code).outcome == "passed"
    probe = "import os\nprios = [os.getpriority(os.PRIO_PROCESS, p) for p in (1, 2, 0)]\n"
    r = run(own, probe, "assert prios == [0, 0, 0]")
    assert r.outcome == "passed", r


@needs_full
def test_namespace_sysctls_do_not_persist(own):
    code = """
for p, v in (('/proc/sys/kernel/pid_max', '301'), ('/proc/sys/kernel/msgmax', '1')):
    try:
        open(p, 'w').write(v)
    except OSError:
        pass
"""
    assert run(own, code).outcome == "passed"
    probe = ("vals = [open('/proc/sys/kernel/pid_max').read().strip(), "
             "open('/proc/sys/kernel/msgmax').read().strip()]\n")
    r = run(own, probe, "assert '301' not in vals and '1' not in vals")
    assert r.outcome == "passed", r


# --- the trusted parent ---------------------------------------------------------------------------------

@needs_full
def test_hash_collisions_do_not_burn_parent_cpu(sb):
    code = """
import os, struct
M = (1 << 61) - 1
def f(x):
    items = ','.join('["i","%x"]' % (k * M) for k in range(1, 15001))
    d = ('["chk",0,[["s",[' + items + ']]]]').encode()
    os.write(3, struct.pack('>I', len(d)) + d)
    return 1
"""
    # slots started: their start-up is not counted
    sb.run_many([("x = 1\n", [TestSpec(code="assert x == 1")])] * 4)
    t0 = time.process_time()
    r = run(sb, code, "assert f(3)")
    parent_cpu = time.process_time() - t0
    assert parent_cpu < 0.3, (parent_cpu, r)


# --- correct programs misjudged ------------------------------------------------------------------------

RAISER = "def f(x):\n    if x < 0:\n        raise ValueError('negative')\n    return x\n"


@pytest.mark.parametrize("test", [
    "try:\n    f(-1)\n    assert False, 'should raise'\nexcept ValueError:\n    pass",
    "try:\n    f(-1)\nexcept ValueError:\n    pass\nelse:\n    assert False",
])
def test_raises_idiom_passes(sb, test):
    r = run(sb, RAISER, test)
    assert r.outcome == "passed", r


def test_main_guard_in_test_runs(sb):
    r = run(sb, "def f(x):\n    return x\n", "def test():\n    assert f(1) == 1\n\n"
                                             "if __name__ == '__main__':\n    test()\n")
    assert r.outcome == "passed", r


@pytest.mark.parametrize("code,test", [
    ("def f():\n    return 1\n", "assert type(f()) == int"),
    ("def f():\n    return []\n", "assert type(f()) is list"),
    ("def f():\n    return ValueError\n", "assert f() is ValueError"),
])
def test_builtin_types_compare(sb, code, test):
    r = run(sb, code, test)
    assert r.outcome == "passed", r


def test_large_list_result_passes(sb):
    r = run(sb, "def f(n):\n    return list(range(n))\n", "assert f(10**6) == list(range(10**6))")
    assert r.outcome == "passed", r


def test_deeply_nested_result_passes(sb):
    """Was V5 (values nested deeper than 100 levels were opaque). Values cross up to 900 levels as data, and
    deeper ones as a handle to the candidate's object."""
    code = "def f(n):\n    x = []\n    for _ in range(n):\n        x = [x]\n    return x\n"
    r = run(sb, code, "y = []\nfor _ in range(150):\n    y = [y]\nassert f(150) == y")
    assert r.outcome == "passed", r
    r = run(sb, code, "assert len(f(2000)) == 1\nassert f(2000)[0][0][0] is not None")
    assert r.outcome == "passed", r


# =====================================================================================================
# Defended attacks (must keep passing)
# =====================================================================================================

@needs_full
def test_expected_literal_is_nowhere_in_child_memory(sb):
    """Scan the child's whole memory (/proc/self/mem after making itself dumpable) and the heap: the
    hit count with the literal in the test equals the count with a control test (self-made needles)."""
    code = r"""
import sys, gc, ctypes
ctypes.CDLL(None).prctl(4, 1, 0, 0, 0)
V = int('987654' + '321987')
NEEDLES = [str(V).encode(), format(V, 'x').encode()]
def scan():
    hits = 0
    maps = open('/proc/self/maps').read().splitlines()
    mem = open('/proc/self/mem', 'rb', 0)
    for line in maps:
        addr, perms = line.split()[:2]
        if 'r' not in perms or '[v' in line:
            continue
        a, b = (int(x, 16) for x in addr.split('-'))
        try:
            mem.seek(a)
            data = mem.read(b - a)
        except (OSError, ValueError, OverflowError):
            continue
        for nd in NEEDLES:
            hits += data.count(nd)
    return hits
def f(x):
    n = scan()
    for o in gc.get_objects():
        if type(o) in (list, tuple) and o is not NEEDLES and V in o:
            n += 1000
    fr = sys._getframe(1)
    while fr is not None:
        local = list(fr.f_locals.values()) if fr.f_locals is not fr.f_globals else []  # not our own globals
        if any(type(v) is int and v == V for v in list(fr.f_code.co_consts) + local):
            n += 1000000
        fr = fr.f_back
    return n
"""
    msgs = []
    for test in ("assert f(1) == -7", "assert f(1) == 987654321987",
                 ("def check(c):\n    assert c(1) == 987654321987\n\n"
                 "check(f)\n"), "assert f(1) in [987654321987, -3]"):
        r = run(sb, code, test)
        assert r.test_results[0].status == "failed", r
        msgs.append(r.test_results[0].error_message.split("got ")[1].split(",")[0])
    assert len(set(msgs)) == 1, msgs  # the same self-made hits whatever the test holds
    assert int(msgs[0]) < 1000, msgs  # nothing in frames or containers


@needs_full
def test_more_kernel_surface_is_denied(sb):
    code = """
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
calls = {
    'fsopen': (430, b'tmpfs', 0), 'open_tree': (428, -100, b'/tmp', 1), 'fspick': (433, -100, b'/', 0),
    'mount_setattr': (442, -100, b'/', 0, 0, 0), 'pidfd_open': (434, 2, 0), 'pidfd_getfd': (438, 0, 0, 0),
    'memfd_secret': (447, 0), 'landlock': (444, 0, 0, 1), 'userfaultfd': (323, 0),
    'perf_event_open': (298, 0, 0, -1, -1, 0), 'kcmp': (312, 1, 2, 0, 0, 0),
    'process_vm_readv': (310, 2, 0, 0, 0, 0, 0), 'setns': (308, 0, 0), 'unshare_newns': (272, 0x00020000),
    'clone3': (435, 0, 0), 'name_to_handle_at': (303, -100, b'/tmp', 0, 0, 0), 'quotactl': (179, 0, 0, 0, 0),
    'shmget': (29, 0, 4096, 0o1000 | 0o600), 'msgget': (68, 0, 0o1000 | 0o600),
    'semget': (64, 0, 1, 0o1000 | 0o600),
    'mq_open': (240, b'q', 0o100 | 2, 0o600, 0), 'syslog': (103, 3, 0, 0), 'chroot': (161, b'/tmp'),
    'request_key': (249, b'user', b'k', 0, 0), 'keyctl': (250, 0, -3, 0), 'iopl': (172, 3),
    'fanotify_init': (300, 0, 0), 'mknod_chr': (133, b'/tmp/nod', 0o20666, (1 << 8) | 3),
    'setpgid_into_1': (109, 0, 1), 'vhangup': (153,), 'migrate_pages_2': (256, 2, 0, 0, 0),
    'sched_setattr_2': (314, 2, 0, 0),
}
got = [name for name, args in calls.items() if libc.syscall(*args) >= 0]
writes = []
for p, v in (('/proc/sys/kernel/ns_last_pid', '100'), ('/proc/1/timerslack_ns', '900000000'),
             ('/proc/2/timerslack_ns', '900000000'), ('/proc/self/oom_score_adj', '-1000'),
             ('/proc/self/uid_map', '0 0 1')):
    try:
        fd = os.open(p, os.O_WRONLY)
        try:
            os.write(fd, v.encode())  # unbuffered: the error is not lost in a finalizer
            writes.append(p)
        finally:
            os.close(fd)
    except OSError:
        pass
"""
    r = run(sb, code, "assert got == []", "assert writes == []")
    assert r.outcome == "passed", r


@needs_full
@pytest.mark.parametrize("nr", [0x40000000 | 39, 0x40000000 | 165], ids=["x32_getpid", "x32_mount"])
def test_x32_abi_is_killed(sb, nr):
    code = f"import ctypes\nctypes.CDLL(None).syscall({nr})\ndef f():\n    return 1\n"
    r = run(sb, code, "assert f() == 1")
    assert r.outcome == "runtime_error", r
    healthy(sb)


FIND_CHECK = """
import sys, gc
def _check():
    fr = sys._getframe(1)
    while fr is not None:
        c = fr.f_globals.get('__plum_check__')
        if c is not None:
            return c
        fr = fr.f_back
"""


@pytest.mark.parametrize("name,code", [
    ("call_check_with_forged_values", FIND_CHECK + "def f(x):\n    c = _check()\n"
                                                   "    for v in (912345, 1, 0, -1):\n"
     "        try:\n            c(0, (v,))\n        except AssertionError:\n            pass\n"
     "    return -1\n"),
    ("replace_check_in_test_globals", ("import sys\ndef f(x):\n"
                                       "    sys._getframe(1).f_globals['__plum_check__'] = "
     "lambda *a, **k: None\n    return -1\n")),
    ("verdict_oracle_then_answer", ("import os, json, struct\ndef f(x):\n    for guess in range(0, 2000):\n"
     "        d = json.dumps(['chk', 0, [['i', '%x' % guess]]]).encode()\n"
     "        os.write(3, struct.pack('>I', len(d)) + d)\n        if os.read(4, 1) == b'1':\n"
     "            return guess\n    return -1\n")),
    ("patch_os_read_verdict", ("import os\n_r = os.read\n"
                               "os.read = lambda fd, n: b'1' if fd == 4 else _r(fd, n)\n"
     "def f(x):\n    return -1\n")),
    ("keyboard_interrupt", "def f(x):\n    raise KeyboardInterrupt\n"),
    ("generator_exit", "def f(x):\n    raise GeneratorExit\n"),
    ("system_exit_0", "def f(x):\n    raise SystemExit(0)\n"),
    ("audit_hook_kills_test", ("import sys\ndef hook(ev, args):\n    if ev in ('exec', 'marshal.loads'):\n"
     "        raise SystemExit(0)\nsys.addaudithook(hook)\ndef f(x):\n    return -1\n")),
    ("threading_settrace", ("import threading, sys\ndef tr(fr, ev, arg):\n    return None\n"
                            "threading.settrace(tr)\n"
     "sys.setprofile(lambda *a: None)\ndef f(x):\n    return -1\n")),
    ("forge_end_then_next_start", ("import os, json, struct\ndef send(m):\n    d = json.dumps(m).encode()\n"
     "    os.write(3, struct.pack('>I', len(d)) + d)\ndef f(x):\n"
     "    send(['end', 0, True, None, None, None, 0])\n"
     "    send(['start', 1])\n    send(['chk', 0, [['i', '1']], True])\n"
     "    send(['end', 1, True, None, None, None, 0])\n"
     "    send(['done'])\n    os._exit(0)\n")),
    ("close_report_channel", "import os\ndef f(x):\n    os.close(3)\n    os.close(4)\n    return -1\n"),
    ("lying_class_property", ("class L(list):\n    @property\n    def __class__(self):\n        return list\n"
     "    def __eq__(self, o):\n        return True\ndef f(x):\n    return L([7])\n")),
    ("not_implemented", "def f(x):\n    return NotImplemented\n"),
    ("generator_value", "def f(x):\n    yield 912345\n"),
    ("self_containing_list", "def f(x):\n    a = []\n    a.append(a)\n    return a\n"),
    ("dict_subclass_hostile_items", ("class D(dict):\n    def items(self):\n"
                                     "        return [(912345, 912345)]\n"
     "    def __iter__(self):\n        return iter([912345])\n    def __eq__(self, o):\n        return True\n"
     "def f(x):\n    return D()\n")),
    ("str_subclass_in_container", ("class S(str):\n    def __eq__(self, o):\n        return True\n"
     "    __hash__ = str.__hash__\ndef f(x):\n    return [S('x')]\n")),
    ("int_index_hash_tricks", ("class I(int):\n    def __index__(self):\n        return 912345\n"
     "    def __hash__(self):\n        return hash(912345)\n    def __eq__(self, o):\n        return True\n"
     "def f(x):\n    return I(-1)\n")),
    ("nan_value", "def f(x):\n    return float('nan')\n"),
    ("patch_marshal_json", ("import marshal, json\nmarshal.loads = lambda *a: None\n"
                            "json.dumps = lambda *a, **k: '[]'\n"
     "def f(x):\n    return -1\n")),
    ("exit_at_shutdown_thread", ("import threading, os, time\ndef later():\n    time.sleep(0.05)\n"
                                 "    os._exit(0)\n"
     "def f(x):\n    threading.Thread(target=later, daemon=True).start()\n    time.sleep(1)\n"
     "    return -1\n")),
])
def test_more_fake_passes_are_caught(sb, name, code):
    tests = ("assert f(3) == [912345]" if "container" in name or "lying" in name else "assert f(3) == 912345",
             ("def check(candidate):\n    assert candidate(3) == 912345\n"
             "    assert candidate(4) == 912345\n\ncheck(f)\n"))
    r = run(sb, code, *tests)
    assert r.passed == 0, (name, r)
    assert r.outcome in NOT_PASSED, (name, r)


def test_huge_values_stay_bounded(sb):
    code = "def f(x):\n    return list(range(10**7))\n"
    t0 = time.monotonic()
    r = run(sb, code, "assert f(3) == 912345")
    assert r.passed == 0 and r.outcome in NOT_PASSED, r
    assert time.monotonic() - t0 < 15
    healthy(sb)


BENIGN = [
    ("is_none", "def f():\n    return None\n", "assert f() is None"),
    ("is_false", "def f():\n    return 1 > 2\n", "assert f() is False"),
    ("float_tolerance", "def f():\n    return 0.1 + 0.2\n", "assert abs(f() - 0.3) < 1e-9"),
    ("isinstance", "def f():\n    return [1]\n", "assert isinstance(f(), list)"),
    ("assert_msg", "def f():\n    return 1\n", "assert f() == 1, 'msg'"),
    ("assert_fstring_msg", "def f(x):\n    return x\n", "x = 3\nassert f(x) == 3, f'bad {f(x)}'"),
    ("in_with", "def f():\n    return 1\n", ("import contextlib\nwith contextlib.suppress(KeyError):\n"
                                            "    assert f() == 1")),
    ("in_try", "def f():\n    return 1\n", "try:\n    assert f() == 1\nexcept ZeroDivisionError:\n    pass"),
    ("loop", "def f(x):\n    return x * 2\n", "for i in range(5):\n    assert f(i) == i * 2"),
    ("comprehension", "def f(x):\n    return x * 2\n", "assert all(f(i) == 2 * i for i in range(5))"),
    ("nested_function", "def f(x):\n    return x * 2\n", ("def t():\n    def inner():\n"
                                                          "        assert f(2) == 4\n"
     "    inner()\nt()")),
    ("lambda", "def f(x):\n    return x * 2\n", "g = lambda: f(2)\nassert g() == 4"),
    ("in_class", "def f(x):\n    return x * 2\n", ("class T:\n    def test(self):\n"
                                                  "        assert f(2) == 4\nT().test()")),
    ("approx_helper", "def f():\n    return 0.1 + 0.2\n", ("def approx(a, b, tol=1e-9):\n"
                                                           "    return abs(a - b) <= tol\n"
     "assert approx(f(), 0.3)")),
    ("helper_named_like_builtin", "def f(x):\n    return sorted(x)\n", ("def sorted(x):\n    return list(x)\n"
     "assert f([3, 1]) == [1, 3]")),
    ("global_stmt", "def f(x):\n    return x\n", ("n = 0\ndef bump():\n    global n\n    n += 1\nbump()\n"
                                                 "assert f(n) == 1")),
    ("walrus", "def f(x):\n    return x + 1\n", "assert (y := f(1)) == 2 and y == 2"),
    ("async", "import asyncio\nasync def f(x):\n    await asyncio.sleep(0)\n    return x\n",
     "import asyncio\nassert asyncio.run(f(3)) == 3"),
    ("generator_consumed", "def f(n):\n    yield from range(n)\n", "assert list(f(3)) == [0, 1, 2]"),
    ("main_guard_in_program", "def f(x):\n    return x\nif __name__ == '__main__':\n    print(input())\n",
     "assert f(1) == 1"),
    ("input_eof", "def f():\n    try:\n        return input()\n    except EOFError:\n        return 'eof'\n",
     "assert f() == 'eof'"),
    ("pickle_function", ("import pickle\ndef f(x):\n    return x + 1\ndef g():\n"
                        "    return pickle.loads(pickle.dumps(f))(1)\n"),
     "assert g() == 2"),
    ("huge_recursion_limit", ("import sys\nsys.setrecursionlimit(10**6)\ndef d(n):\n"
                             "    return 0 if n == 0 else 1 + d(n - 1)\n"),
     "assert d(50000) == 50000"),
    ("unicode_identifier", "def ƒ(x):\n    return x\n", "assert ƒ(1) == 1"),
    ("nan_isnan", "def f():\n    return float('nan')\n", "import math\nassert math.isnan(f())"),
    ("inf", "def f():\n    return float('inf')\n", "assert f() == float('inf')"),
    ("counter_as_dict", "from collections import Counter\ndef f(s):\n    return Counter(s)\n",
     "assert f('aab') == {'a': 2, 'b': 1}\nassert f('aab').most_common(1) == [('a', 2)]"),
    ("namedtuple", ("from collections import namedtuple\nP = namedtuple('P', 'x y')\ndef f():\n"
                   "    return P(1, 2)\n"),
     "assert f() == (1, 2)\nassert f().x == 1"),
    ("int_enum", ("import enum\nclass E(enum.IntEnum):\n    A = 1\ndef f():\n"
                 "    return E.A\n"), "assert f() == 1"),
    ("fraction", "from fractions import Fraction\ndef f():\n    return Fraction(1, 3)\n",
     "from fractions import Fraction\nassert f() == Fraction(1, 3)"),
    ("raises_flag", "def f(x):\n    raise ValueError\n", ("raised = False\ntry:\n    f(-1)\n"
                                                          "except ValueError:\n"
     "    raised = True\nassert raised")),
    ("check_kwarg", "def f(x):\n    return x\n", ("def check(candidate):\n    assert candidate(1) == 1\n"
                                                 "check(candidate=f)")),
    ("callable_result", "def f():\n    return lambda x: x + 1\n", "g = f()\nassert g(1) == 2"),
    ("thread_pool", ("import concurrent.futures as cf\ndef f(n):\n    with cf.ThreadPoolExecutor(4) as ex:\n"
     "        return list(ex.map(lambda x: x * x, range(n)))\n"), "assert f(4) == [0, 1, 4, 9]"),
    ("mp_process_queue", ("import multiprocessing as mp\ndef w(q):\n    q.put(5)\ndef f():\n"
                          "    q = mp.Queue()\n"
     "    p = mp.Process(target=w, args=(q,))\n    p.start()\n    v = q.get(timeout=5)\n    p.join()\n"
     "    return v\n"),
     "assert f() == 5"),
    ("shadowed_entry_point", "def sum(xs):\n    return 42\n", "assert sum([1]) == 42"),
    ("big_string", "def f():\n    return 'a' * 10**6\n", "assert f() == 'a' * 10**6"),
    ("mutated_argument", "def f(a):\n    a.append(1)\n", "x = []\nf(x)\nassert x == [1]"),
]


@pytest.mark.parametrize("name,code,test", BENIGN, ids=[b[0] for b in BENIGN])
def test_more_benign_programs_pass(sb, name, code, test):
    r = sb.run(code, [TestSpec(code=test, test_id="t0")],
               entry_point="sum" if name == "shadowed_entry_point" else None)
    assert r.outcome == "passed", (name, r)
