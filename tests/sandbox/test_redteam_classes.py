"""Red-team programs of the five classes of issue 15, written against the design where the tests file runs
in its own sandboxed process and reaches the candidate only by message passing (``sandbox/_rpc.py``).

1. fake passes where a comparison used to run in the candidate's process;
2. test statements that used to be dropped;
3. a split that changed the test's meaning (state across asserts, preamble run once);
4. the trusted side reachable (crash, stall or ``sandbox_error`` on purpose);
5. correct programs that used to be marked failed.

Every hostile program here must not pass; every honest one must pass; none may get ``sandbox_error``."""

from __future__ import annotations

import resource
import time

import pytest
from plumline.data_schemas import TestSpec
from plumline.sandbox import Sandbox, SandboxLimits, run_program
from plumline.sandbox._rpc import RpcEndpoint, RpcProtocolError
from plumline.sandbox.verdict import split_tests
from sandbox_helpers import healthy


def run(box, code, *tests, entry_point=None):
    return box.run(code, [TestSpec(code=t, test_id=f"t{i}") for i, t in enumerate(tests)], entry_point)


def run_file(box, code, test_file, entry_point=None):
    return box.run(code, [TestSpec(code=t, test_id=f"t{i}") for i, t in enumerate(split_tests(test_file))],
                   entry_point)


ALWAYS_EQUAL = """
class AE:
    def __eq__(self, other): return True
    def __ne__(self, other): return False
    def __lt__(self, other): return True
    def __le__(self, other): return True
    def __gt__(self, other): return True
    def __ge__(self, other): return True
    def __sub__(self, other): return 0
    def __rsub__(self, other): return 0
    def __abs__(self): return 0
    def __bool__(self): return True
    def __hash__(self): return 0
    def __contains__(self, x): return True
    def __len__(self): return 3
    def __iter__(self): return iter([])
def f(*a, **k):
    return AE()
"""

# ---------------------------------------------------------------------------------------------------
# Class 1: fake passes where the comparison ran in the candidate's process
# ---------------------------------------------------------------------------------------------------
CLASS1 = {
    "all_genexpr": (ALWAYS_EQUAL, "assert all(f(x) == y for x, y in [(1, 2), (2, 3)])"),
    "any_list": (ALWAYS_EQUAL, "assert any([f(1) == 99])"),
    "or_chain": (ALWAYS_EQUAL, "a = f(1)\nassert a == 5 or a == 6"),
    "helper_approx": (ALWAYS_EQUAL, ("def approx(a, b):\n    return abs(a - b) < 1e-6\n"
                                    "assert approx(f(1), 0.5)")),
    "helper_same": (ALWAYS_EQUAL, "def same(a, b):\n    return a == b\nassert same(f(1), [1, 2])"),
    "contains": (ALWAYS_EQUAL, "assert 7 in f(1)"),
    "sorted_compare": (ALWAYS_EQUAL, "assert f([3, 1]) == sorted([3, 1])"),
    "len_check": (ALWAYS_EQUAL, "assert len(f(1)) == 3 and f(1) == [1, 2, 3]"),
    "str_subclass_startswith": (
        ("S = type('S', (str,), {'startswith': lambda self, *a: True, '__eq__': lambda s, o: True,"
        " '__hash__': str.__hash__})\ndef f(x):\n    return S('zzz')\n"),
        "assert f(1).startswith('abc')\nassert f(1) == 'abc'"),
    "int_subclass_eq": (("class I(int):\n    def __eq__(self, o): return True\n    __hash__ = int.__hash__\n"
                        "def f(x):\n    return I(0)\n"), "assert f(1) == 42"),
    "is_not_after_rebuild": ("def f(xs):\n    xs.sort()\n    return xs\n",  # must return a new list
                             "a = [3, 1, 2]\nb = f(a)\nassert b is not a"),
    "mutate_input_to_agree": ("def f(xs):\n    xs[:] = [0]\n    return [0]\n",
                              "xs = [3, 1, 2]\nexpected = sorted([3, 1, 2])\nassert f(xs) == expected"),
    "statistics_patched": ("import statistics\nstatistics.mean = lambda xs: 42\ndef f(x):\n    return [x]\n",
                           "import statistics\nassert statistics.mean(f(1)) == 42"),
    "math_rebound": (("import types\nmath = types.SimpleNamespace(isclose=lambda *a, **k: True)\n"
                     "def f(x):\n    return -1.0\n"), "assert math.isclose(f(1), 2.0)"),
    "frame_read_shape3": (
        ("import sys\ndef f(x):\n    fr = sys._getframe(1)\n    while fr is not None:\n"
        "        for v in list(fr.f_locals.values()) + list(fr.f_globals.values()):\n"
        "            if isinstance(v, list) and v and v[0] == 'EXPECTED':\n                return v[1]\n"
        "        fr = fr.f_back\n    return None\n"),
        "want = ['EXPECTED', 12345]\nassert f(1) == want[1]"),
    "gc_scan_shape3": (
        ("import gc\ndef f(x):\n    for o in gc.get_objects():\n"
        "        if isinstance(o, list) and len(o) == 2 and o[0] == 'EXPECTED':\n"
        "            return o[1]\n    return None\n"),
        "want = ['EXPECTED', 777]\nassert f(1) == want[1]"),
    "inspect_stack_shape3": (
        ("import inspect\ndef f(x):\n    for fi in inspect.stack():\n"
        "        w = fi.frame.f_globals.get('want')\n"
        "        if w is not None:\n            return w\n    return None\n"),
        "want = 31337\nassert f(1) == want"),
    "trace_hook_rewrites": (
        ("import sys\ndef tracer(frame, event, arg):\n    if 'want' in frame.f_globals:\n"
        "        frame.f_globals['want'] = 0\n    return tracer\ndef f(x):\n    sys.settrace(tracer)\n"
        "    sys._getframe(1).f_trace = tracer\n    return 0\n"),
        "want = 99\nr = f(1)\nx = 1\nassert r == want"),
    "builtins_patched": (("import builtins\nbuiltins.abs = lambda x: 0\nbuiltins.all = lambda xs: True\n"
                         "def f(x):\n    return 100\n"), ("assert abs(f(1) - 0.5) < 1e-6\n"
                                                        "assert all([f(1) == 2])")),
    "sys_modules_swap": (("import sys, types\nm = types.ModuleType('math')\n"
                          "m.isclose = lambda *a, **k: True\n"
                         "sys.modules['math'] = m\ndef f(x):\n    return 5.0\n"),
                         "import math\nassert math.isclose(f(1), 1.0)"),
}


@pytest.mark.parametrize("name", list(CLASS1))
def test_class1_comparisons_cannot_be_faked(sb, name):
    code, test = CLASS1[name]
    r = run(sb, code, test)
    assert r.outcome != "passed" and r.outcome != "sandbox_error", (name, r)


def test_class1_entry_point_does_not_rig_builtins(sb):
    code = "def f(x):\n    return 100\ndef abs(x):\n    return 0\ndef all(xs):\n    return True\n"
    r = run(sb, code, "assert abs(f(1) - 0.5) < 1e-6", "assert all([f(1) == 2])", entry_point="f")
    assert r.passed == 0, r


# ---------------------------------------------------------------------------------------------------
# Class 2: statements after the last top-level assert are not dropped
# ---------------------------------------------------------------------------------------------------
CLASS2 = {
    "loop_after_last_assert": ("def f(x):\n    return x if x < 3 else 0\n",
                               "assert f(1) == 1\nfor k in range(5):\n    assert f(k) == k\n"),
    "should_raise_block_after": ("def f(x):\n    return x\n",
                                 ("assert f(1) == 1\ntry:\n    f(-1)\nexcept ValueError:\n    pass\nelse:\n"
                                 "    raise AssertionError('no error')\n")),
    "check_call_after": ("def f(x):\n    return 0\n",
                         "assert f(0) == 0\ndef check(c):\n    assert c(2) == 2\ncheck(f)\n"),
    "main_guard_after": ("def f(x):\n    return 0\n",
                         "assert f(0) == 0\nif __name__ == '__main__':\n    assert f(5) == 5\n"),
}


@pytest.mark.parametrize("name", list(CLASS2))
def test_class2_nothing_after_the_last_assert_is_dropped(sb, name):
    code, test_file = CLASS2[name]
    assert run_file(sb, code, test_file).outcome == "failed"
    assert run(sb, code, test_file).outcome == "failed"  # the file as one test


# ---------------------------------------------------------------------------------------------------
# Class 3: the tests file keeps its meaning (run once, in order, preamble once)
# ---------------------------------------------------------------------------------------------------
def test_class3_state_carried_across_asserts(sb):
    code = "def f(x):\n    return x * 10\n"
    test_file = ("gen = (k for k in range(1, 4))\nstack = []\ncount = 0\n"
                 "assert f(next(gen)) == 10\nstack.append(1)\ncount += 1\n"
                 "assert f(next(gen)) == 20\nassert stack.pop() == 1\ncount += 1\n"
                 "assert f(next(gen)) == 30 and count == 2 and not stack\n")
    r = run_file(sb, code, test_file)
    assert r.outcome == "passed" and r.total == 4, r


def test_class3_candidate_state_across_asserts(sb):
    code = "calls = []\ndef f(x):\n    calls.append(x)\n    return len(calls)\n"
    r = run_file(sb, code, "assert f('a') == 1\nassert f('b') == 2\nassert f('c') == 3\n")
    assert r.outcome == "passed" and r.passed == 3, r


def test_class3_expensive_preamble_runs_once():
    import time as _t

    code = "def f(x):\n    return x\n"
    test_file = "import time\ntime.sleep(0.6)\n" + "".join(f"assert f({k}) == {k}\n" for k in range(8))
    with Sandbox(limits=SandboxLimits(timeout_s=3, test_timeout_s=2), workers=1) as box:
        t0 = _t.monotonic()
        r = run_file(box, code, test_file)
    assert r.outcome == "passed" and r.passed == 8 and _t.monotonic() - t0 < 4.0, r  # 8 preambles: 4.8 s


def test_class3_per_assert_results_after_a_failure(sb):
    code = "def f(x):\n    return x if x != 2 else -1\n"
    r = run_file(sb, code, "xs = [1, 2, 3]\nassert f(xs[0]) == 1\nassert f(xs[1]) == 2\n"
                           "assert f(xs[2]) == 3\n")
    assert [t.status for t in r.test_results] == ["passed", "failed", "passed"], r
    assert "got -1" in (r.test_results[1].error_message or "")


# ---------------------------------------------------------------------------------------------------
# Class 4: nothing the candidate writes reaches the trusted side; protocol breakers get a candidate outcome
# ---------------------------------------------------------------------------------------------------
FORGE = ("import os, struct\ndef frame(text):\n    data = text.encode()\n"
         "    return struct.pack('>I', len(data)) + data\n")
CLASS4 = {
    "deep_nesting_forged": FORGE + "def f(x):\n"
                                   "    os.write(4, frame('[\"ret\", [' + '[' * 100000 + ']' * 100000\n"
                                   "                      + '], []]'))\n"
                                   "    os._exit(0)\n",
    "deep_tags_forged": FORGE + "def f(x):\n"
                                "    os.write(4, frame('[\"ret\", [' + '{\"t\":[' * 2000 + ']}' * 2000\n"
                                "                      + '], []]'))\n"
                                "    return 1\n",
    "garbage_bytes": "import os\ndef f(x):\n    os.write(4, b'\\xff' * 100)\n    return 1\n",
    "huge_header": "import os\ndef f(x):\n    os.write(4, b'\\xff\\xff\\xff\\xff')\n    return 1\n",
    "forged_ret_wrong_shape": FORGE + "def f(x):\n    os.write(4, frame('[\"ret\", 5, 6, 7]'))\n"
                                      "    return 1\n",
    "forged_bad_ref": FORGE + "def f(x):\n    os.write(4, frame('[\"ret\", [{\"A\": 99}], []]'))\n"
                              "    return 1\n",
    "forged_unknown_tag": FORGE + "def f(x):\n    os.write(4, frame('[\"ret\", [{\"zz\": 1}], []]'))\n"
                                  "    return 1\n",
    "forged_handle_to_test_objects": FORGE + "def f(x):\n"
                                             "    os.write(4, frame('[\"ret\", [{\"y\": 12345}], []]'))\n"
                                             "    return 1\n",
    "forged_mutation": FORGE + "def f(x):\n    os.write(4, frame('[\"ret\", [1], [[0, 5]]]'))\n"
                               "    return 1\n",
    "forged_top_twice": FORGE + "os.write(4, frame('[\"top\", true, null, null, null, [], []]'))\n"
                                "def f(x):\n    return 1\n",
}


@pytest.mark.parametrize("name", list(CLASS4))
def test_class4_protocol_breakers_get_a_candidate_outcome(sb, name):
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    r = run(sb, CLASS4[name], "assert f(1) == 1", "assert f(2) == 1")
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    assert r.outcome not in ("passed", "sandbox_error"), (name, r)
    assert r.passed == 0 or name == "forged_top_twice", r
    # the trusted process spends little: it never decodes what the candidate wrote
    assert (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime) < 1.0
    healthy(sb)


def test_class4_protocol_violation_is_runtime_error_with_reason(sb):
    r = run(sb, CLASS4["garbage_bytes"], "assert f(1) == 1")
    assert r.outcome == "runtime_error" and r.error_type == "ProtocolViolation", r
    assert r.test_results[0].error_type == "ProtocolViolation"
    assert "protocol: " in r.stderr_tail


def test_class4_swallowed_protocol_error_still_fails(sb):
    """A test that catches everything cannot hide a broken channel."""
    r = run(sb, CLASS4["garbage_bytes"], "try:\n    f(1)\nexcept BaseException:\n    pass\n")
    assert r.outcome == "runtime_error" and r.passed == 0, r


def test_class4_candidate_cannot_signal_the_test_process(sb):
    code = ("import os, signal\ndef f(x):\n    hit = []\n"
            "    pids = [int(p) for p in os.listdir('/proc') if p.isdigit()]\n"
            "    for pid in pids:\n        if pid == os.getpid():\n            continue\n"
            "        for sig in (signal.SIGSTOP, signal.SIGINT, signal.SIGKILL):\n            try:\n"
            "                os.kill(pid, sig)\n                hit.append(pid)\n"
            "            except OSError:\n"
            "                pass\n        try:\n            os.kill(-pid, signal.SIGKILL)\n"
            "            hit.append(-pid)\n        except OSError:\n            pass\n"
            "    return [x, len(pids), hit]\n")
    r = run(sb, code, "r = f(1)\nassert r[0] == 1 and r[1] >= 4 and r[2] == []", "assert f(2)[0] == 2")
    assert r.outcome == "passed", r  # init, supervisor, the test process: none could be signalled


def test_class4_run_many_keeps_other_results(sb):
    jobs = [(CLASS4["deep_nesting_forged"], [TestSpec(code="assert f(1) == 1")]),
            ("def f(x):\n    return x\n", [TestSpec(code="assert f(1) == 1")]),
            (CLASS4["garbage_bytes"], [TestSpec(code="assert f(1) == 1")]),
            ("def f(x):\n    return x\n", [TestSpec(code="assert f(2) == 2")])]
    out = sb.run_many(jobs)
    assert [r.outcome for r in out][1::2] == ["passed", "passed"]
    assert all(r.outcome == "runtime_error" for r in out[0::2]), out


def test_class4_huge_values_cost_the_candidate_not_us(sb):
    code = ("from decimal import Decimal\nfrom fractions import Fraction\n"
            "def f(k):\n"
            "    return [Decimal('1e999999999'), Fraction(3 ** 20000, 2 ** 30000), 10 ** 50000][k]\n")
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    r = run(sb, code, "from decimal import Decimal\nassert f(0) == Decimal('1e999999999')",
            "assert f(1).denominator == 2 ** 30000", "assert f(2) == 10 ** 50000")
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    assert r.outcome == "passed", r
    assert (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime) < 1.0


def test_codec_never_raises_anything_but_protocol_errors():
    """The decoder on arbitrary JSON-shaped input: a value or RpcProtocolError, fast, never recursion."""
    import os
    import random

    ep = RpcEndpoint(-1, -1, False, os)
    rng = random.Random(7)
    tags = ["t", "f", "s", "d", "K", "V", "I", "CCo", "COr", "Cde", "Cdq", "N", "A", "i", "b", "B", "c", "T",
            "F",
            "r", "q", "D", "X", "M", "h", "y", "zz"]

    def junk(depth):
        k = rng.randrange(8 if depth < 6 else 4)
        if k == 0:
            return rng.choice([None, True, 1, -5, 1.5, "x", float("nan")])
        if k == 1:
            return rng.randrange(-3, 3)
        if k == 2:
            return "".join(rng.choice("0123456789abcdefxyz-,.") for _ in range(rng.randrange(6)))
        if k == 3:
            return []
        if k in (4, 5):
            return [junk(depth + 1) for _ in range(rng.randrange(4))]
        return {rng.choice(tags): junk(depth + 1)}

    t0 = time.process_time()
    for _ in range(20000):
        try:
            ep.decode(junk(0), [])
        except RpcProtocolError:
            pass
    deep = [0]
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(RpcProtocolError):
        ep.decode(deep, [])
    assert time.process_time() - t0 < 20


# ---------------------------------------------------------------------------------------------------
# Class 5: correct programs keep the plain verdict
# ---------------------------------------------------------------------------------------------------
CLASS5 = {
    "returns_its_argument": ("def f(a):\n    return a\n", "a = [1]\nassert f(a) is a"),
    "same_nan_object": ("def f(x):\n    return x\n", ("n = float('nan')\nassert f(n) is n\n"
                                                     "assert f([n]) == [n]")),
    "in_range": ("def f():\n    return 3\n", "assert f() in range(1, 7)"),
    "dict_views": ("def f(d):\n    return d.keys(), d.values(), d.items()\n",
                   "k, v, i = f({1: 'a'})\nassert k == {1}\nassert list(v) == ['a']\nassert (1, 'a') in i"),
    "dataclass_vs_test_built": (("from dataclasses import dataclass\n@dataclass(frozen=True)\nclass P:\n"
                                "    x: int\n"
                                "def f(v):\n    return P(v)\n"), ("assert f(1) == P(1)\n"
                                                                "assert {f(1), P(1)} == {P(1)}")),
    "enum_vs_test_built": ("import enum\nclass C(enum.Enum):\n    A = 1\ndef f():\n    return C.A\n",
                           "assert f() == C.A\nassert f() is C(1)\nassert f().value == 1"),
    "test_subclass_operators": ("def f(xs):\n    return xs\n",
                                ("class V(list):\n    def __add__(self, o):\n"
                                "        return V(a + b for a, b in zip(self, o))\n"
                                "v = V([1, 2])\nassert V(f(v)) + v == [2, 4]")),
    "big_tuple_fast": ("def f(n):\n    return tuple(range(n))\n", "assert f(150000) == tuple(range(150000))"),
    "match_truthiness": ("import re\ndef f(s):\n    return re.fullmatch('[ab]+', s)\n",
                         "assert f('abba')\nassert not f('abc')"),
    "def_sum_without_entry_point": ("def sum(xs):\n    return 'mine'\n", "assert sum([1]) == 'mine'"),
    "generator_consumed_lazily": ("def f():\n    yield 1\n    raise ValueError('stop here')\n",
                                  ("g = f()\nassert next(g) == 1\ntry:\n    next(g)\nexcept ValueError:\n"
                                  "    pass\nelse:\n"
                                  "    assert False")),
    "async_function": ("import asyncio\nasync def f(x):\n    await asyncio.sleep(0)\n    return x\n",
                       "import asyncio\nassert asyncio.run(f(3)) == 3"),
    "mutation_copied_back": ("def f(d):\n    d['k'] = [1]\n    d['k'].append(2)\n",
                             "d = {}\nf(d)\nassert d == {'k': [1, 2]}"),
    "aliasing_kept": ("def f(a, b):\n    a.append(1)\n    return b\n", ("x = []\nassert f(x, x) == [1]\n"
                                                                       "assert x == [1]")),
}


@pytest.mark.parametrize("name", list(CLASS5))
def test_class5_correct_programs_pass(sb, name):
    code, test = CLASS5[name]
    r = run(sb, code, test)
    assert r.outcome == "passed", (name, r)


def test_class5_large_results_cross_fast():
    """Results of 10**5-10**6 elements: correct through the sandbox, and the channel's CPU cost (encode on
    the candidate's side, decode on the test's side) well under a second each. CPU time, not wall time:
    this suite shares its machine."""
    import json
    import os

    cases = [("def f(n):\n    return list(range(n))\n", "assert f(10**6) == list(range(10**6))",
              list(range(10**6))),
             ("def f(n):\n    return [(i, str(i)) for i in range(n)]\n",
              "r = f(10**5)\nassert len(r) == 10**5 and r[7] == (7, '7')",
              [(i, str(i)) for i in range(10**5)]),
             ("def f(n):\n    return {i: i * 2 for i in range(n)}\n", "assert len(f(10**5)) == 10**5",
              {i: i * 2 for i in range(10**5)}),
             ("def f(n):\n    return [i / 7 for i in range(n)]\n", "assert f(10**6)[7] == 1.0",
              [i / 7 for i in range(10**6)])]
    with Sandbox(limits=SandboxLimits(timeout_s=60, test_timeout_s=30), workers=1) as box:
        for code, test, _ in cases:
            r = run(box, code, test)
            assert r.outcome == "passed", r
    cand, tst = RpcEndpoint(-1, -1, True, os), RpcEndpoint(-1, -1, False, os)

    def cpu_seconds(work):
        # the best of three: a shared CI machine (or a garbage collection landing in one try) once
        # inflated a single measurement to 6.7x its JSON baseline
        best = float("inf")
        for _ in range(3):
            t0 = time.process_time()
            out = work()
            best = min(best, time.process_time() - t0)
        return best, out

    for _, _, value in cases:
        # a plain JSON round trip of the same value scales the bound with the machine's speed
        baseline, _ = cpu_seconds(lambda v=value: json.loads(json.dumps(v)))
        spent, back = cpu_seconds(
            lambda v=value: tst.decode(json.loads(cand.frame(["ret"], [v], {}, []))[1][0], []))
        assert back == value
        assert spent < max(1.0, 6 * baseline), (spent, baseline)  # quiet machine: 0.5-3x json


def test_the_earlier_design_still_runs():
    r = run_program("def f(x):\n    return x + 1\n", [TestSpec(code="assert f(1) == 2")])
    assert r.outcome == "passed"
    with Sandbox(workers=1, separate_tests=False) as box:
        assert run(box, "def f(x):\n    return x + 1\n", "assert f(1) == 2", "assert f(1) == 3").passed == 1


def test_class1_test_objects_handed_over_do_not_lead_to_test_frames(sb):
    """The candidate may call, iterate and read public attributes of the test's own objects it was handed;
    never a generator's frame, a function's globals or a bound method's instance internals."""
    code = ("def f(obj):\n    out = []\n"
            "    for name in ('gi_frame', 'gi_code', '__globals__', '__self__', 'f_globals'):\n"
            "        try:\n            out.append(getattr(obj, name))\n        except Exception:\n"
            "            pass\n"
            "    for o in out:\n        for name in ('f_globals', 'f_locals', 'co_consts'):\n"
            "            try:\n"
            "                g = getattr(o, name)\n"
            "                return g['want'] if 'want' in g else list(g)\n"
            "            except Exception:\n                pass\n    return None\n")
    r = run(sb, code, "want = 4242\ndef gen():\n    yield want\nassert f(gen()) == want",
            "want = 4242\nassert f(lambda: want) == want", "want = 4242\nclass K:\n    def m(self):\n"
            "        return want\nassert f(K().m) == want")
    assert r.passed == 0 and r.outcome == "failed", r


def test_module_names_bound_by_the_candidate(sb):
    """A stdlib module's name bound to a candidate object is the real module in the tests; bound to plain
    data or a function, it stays the candidate's (as in a plain run)."""
    code = ("import types\nstatistics = types.SimpleNamespace(mean=lambda xs: 42)\nnumbers = [3, 4]\n"
            "def calendar(x):\n    return x * 2\n")
    r = run(sb, code, "assert statistics.mean([1, 2, 3]) == 2", "assert numbers == [3, 4]",
            "assert calendar(2) == 4")
    assert r.outcome == "passed", r


def test_codec_round_trip_and_numbering_agree():
    """Random nested values: decode(encode(v)) == v, and both sides number the same objects in the same
    order (what argument identity and mutation copy-back rely on), fast paths and slow paths alike."""
    import json
    import math
    import os
    import random

    ep = RpcEndpoint(-1, -1, True, os)
    rng = random.Random(11)

    def scalar():
        return rng.choice([0, -7, 2**80, 2**4000, 1.5, float("nan"), float("inf"), "s", "", None, True,
                           False])

    def value(depth):
        k = rng.randrange(9 if depth < 4 else 1)
        if k == 0:
            return scalar()
        n = rng.choice([0, 1, 3, 9, 12, 20, 70])
        if k == 1:
            pick = rng.choice([scalar, lambda: rng.randrange(-2**63, 2**63), lambda: rng.random() * 1e300])
            return [pick() for _ in range(n)] if rng.random() < 0.5 else tuple(pick() for _ in range(n))
        if k == 2:
            return [tuple(scalar() for _ in range(2)) for _ in range(n)]
        if k == 3:
            return [[scalar() for _ in range(2)] for _ in range(n)]
        if k == 4:
            return tuple(value(depth + 1) for _ in range(min(n, 4)))
        if k == 5:
            return {rng.choice(["a", "b", 1, 2.5, (1, 2)]): value(depth + 1) for _ in range(min(n, 4))}
        if k == 6:
            return {rng.choice([1, 2, 3, "x", None]) for _ in range(n)}
        if k == 7:
            inner = [1, 2]
            return [inner, inner, value(depth + 1)]  # aliasing
        return bytearray(b"ab")

    def same(a, b):
        if isinstance(a, float) and math.isnan(a):
            return isinstance(b, float) and math.isnan(b)
        if type(a) is not type(b):
            return False
        if isinstance(a, (list, tuple)):
            return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
        if isinstance(a, dict):
            return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
        return a == b

    for _ in range(400):
        v = value(0)
        memo, objs = {}, []
        text = ep.frame(["ret"], [v], memo, objs)
        back_objs = []
        back = ep.decode(json.loads(text)[1][0], back_objs)
        assert same(v, back), (v, back)
        assert [type(o) for o in objs] == [type(o) for o in back_objs]


HOSTILE_OBJECTS = {
    "getattr_raises": (("class O:\n    def __getattr__(self, n):\n        raise SystemExit(0)\ndef f():\n"
                       "    return O()\n"),
                       "assert f().value == 1"),
    "len_lies": ("class O:\n    def __len__(self):\n        return 'three'\ndef f():\n    return O()\n",
                 "assert len(f()) == 3"),
    "hash_huge": (("class O:\n    def __hash__(self):\n        return 10 ** 100\n    def __eq__(self, o):\n"
                  "        return True\ndef f():\n    return O()\n"), "assert f() in {1: 2}"),
    "bool_raises": (("class O:\n    def __bool__(self):\n        raise KeyboardInterrupt\ndef f():\n"
                    "    return O()\n"),
                    "assert f()"),
    "repr_huge": (("class O:\n    def __repr__(self):\n        return 'x' * 10 ** 7\n"
                   "    def __eq__(self, o):\n"
                  "        return True\ndef f():\n    return O()\n"), "assert f() == 1"),
    "many_handles": ("class O:\n    pass\ndef f():\n    return [O() for _ in range(200000)]\n",
                     "assert f() == [1]"),
    "iter_forever": ("def f():\n    while True:\n        yield 1\n", "assert 2 in f()"),
    "callback_recursion": ("def f(cb, n):\n    return cb(f, n)\n",
                           "def cb(g, n):\n    return g(cb, n + 1)\nassert f(cb, 0) == 1"),
    "exception_with_handles": (("class E(Exception):\n    pass\nclass O:\n    pass\ndef f():\n"
                               "    raise E(O(), O())\n"),
                               "try:\n    f()\nexcept E as e:\n    assert e.args[0] == 5\n"),
    "exit_in_callback": ("import os\ndef f(cb):\n    cb(1)\n    os._exit(0)\n", "assert f(lambda x: x) == 1"),
}


@pytest.mark.parametrize("name", list(HOSTILE_OBJECTS))
def test_hostile_objects_never_pass_and_never_break_the_slot(sb, name):
    code, test = HOSTILE_OBJECTS[name]
    r = run(sb, code, test)
    assert r.outcome not in ("passed", "sandbox_error"), (name, r)
    healthy(sb)


def test_class4_io_programs_that_forge_reports(sb):
    """An I/O program reports to the supervisor itself: forged, deep or huge reports end as a candidate
    outcome, never sandbox_error, and the slot stays healthy."""
    forged = {
        "deep": FORGE + "os.write(3, frame('[' * 100000 + ']' * 100000))\nprint(5)\n",
        "huge": "import os\nos.write(3, b'\\x00\\x10\\x00\\x00' + b'[' * (2 << 20))\nprint(5)\n",
        "garbage": "import os\nos.write(3, b'\\xff' * 64)\nprint(5)\n",
        "fake_done": FORGE + "os.write(3, frame('[\"top\", true, null, null, null]') + frame('[\"done\"]'))\n"
                             "print(4)\n",
    }
    for name, code in forged.items():
        r = sb.run(code, [TestSpec(kind="io", stdin="", expected_stdout="5")])
        assert r.outcome not in ("passed", "sandbox_error"), (name, r)
    healthy(sb)
