"""Differential test: honest programs and wrong ones, with tests files of many shapes (loops, helpers,
generators, state across asserts, mutation, identity, views, dataclasses, enums, floats, NaN, re.Match,
callbacks, the test's own classes, a candidate's ``def sum`` ...): the sandbox's verdict must equal a
plain run's (the program and the tests file in one fresh interpreter; pass = exit status 0).

Each tests file runs two ways: whole (one test) and split per top-level assert (``split_tests``)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
from plumline.data_schemas import TestSpec
from plumline.sandbox import Sandbox, SandboxLimits
from plumline.sandbox.verdict import split_tests

# (name, honest program, wrong program, tests file with {a}, values of a)
TEMPLATES: list[tuple[str, str, str, str, list]] = [
    ("loop", "def f(x):\n    return x * 2\n", "def f(x):\n    return x * 2 + (x == 3)\n",
     "cases = [(k, 2 * k) for k in range({a})]\nfor x, want in cases:\n    assert f(x) == want\n", [1, 4, 7]),
    ("helper", "def f(x):\n    return x / 3\n", "def f(x):\n    return x / 3 + 1e-3\n",
     "def approx(a, b):\n    return abs(a - b) < 1e-9\nassert approx(f({a}), {a} / 3)\n", [1, 2.5, -7, 0]),
    ("generator", "def f(n):\n    for i in range(n):\n        yield i * i\n",
     "def f(n):\n    for i in range(n - 1):\n        yield i * i\n",
     ("assert list(f({a})) == [i * i for i in range({a})]\n"
     "assert sum(f({a})) == sum(i * i for i in range({a}))\n"),
     [1, 3, 50, 5000]),
    ("state_across_asserts", "def f(x):\n    return x + 1\n", "def f(x):\n    return x + (x != 2)\n",
     ("it = iter(range({a}, {a} + 3))\nassert f(next(it)) == {a} + 1\nassert f(next(it)) == {a} + 2\n"
     "assert f(next(it)) == {a} + 3\n"), [0, 1, 2, 10]),
    ("stack_class", ("class Stack:\n    def __init__(self):\n        self.items = []\n"
                     "    def push(self, x):\n"
     "        self.items.append(x)\n    def pop(self):\n        return self.items.pop()\n"
     "    def empty(self):\n        return not self.items\n"),
     ("class Stack:\n    def __init__(self):\n        self.items = []\n    def push(self, x):\n"
     "        self.items.append(x)\n    def pop(self):\n        return self.items.pop(0)\n"
     "    def empty(self):\n        return not self.items\n"),
     ("s = Stack()\nfor k in range({a}):\n    s.push(k)\nassert s.pop() == {a} - 1\n"
     "assert s.empty() == ({a} == 1)\n"),
     [1, 2, 5]),
    ("mutation", "def f(xs):\n    xs.sort()\n", "def f(xs):\n    xs = sorted(xs)\n",
     "a = {a}\nf(a)\nassert a == sorted({a})\n", [[3, 1, 2], [1], [5, 4, 3, 2, 1], ["b", "a"]]),
    ("nested_mutation", "def f(m):\n    m[0].append(9)\n    m.append([])\n", ("def f(m):\n"
                                                                             "    m = [m[0] + [9], []]\n"),
     ("inner = list({a})\nm = [inner]\nf(m)\nassert m == [list({a}) + [9], []]\n"
     "assert m[0] is inner\n"), [[1], [], [1, 2]]),
    ("identity", "def f(xs):\n    xs.append(0)\n    return xs\n", "def f(xs):\n    return xs + [0]\n",
     "a = {a}\nb = f(a)\nassert b is a\nassert a[-1] == 0\n", [[1], [], [1, 2, 3]]),
    ("identity_is_not", "def f(xs):\n    return sorted(xs)\n", "def f(xs):\n    xs.sort()\n    return xs\n",
     "a = {a}\nb = f(a)\nassert b is not a\nassert b == sorted(a)\n", [[2, 1], [3, 1, 2]]),
    ("views", "def f(d):\n    return d.keys()\n", "def f(d):\n    return list(d)\n",
     "assert f({a}) == set({a})\nassert list(f({a})) == list({a})\n", [{1: 2}, {"a": 1, "b": 2}]),
    ("values_items", "def f(d):\n    return d.items()\n", "def f(d):\n    return sorted(d.items())\n",
     "assert f({a}) == {a}.items()\nassert ('b', 2) in f({a})\n", [{"a": 1, "b": 2}, {"b": 2, "a": 1}]),
    ("dataclass", ("from dataclasses import dataclass\n@dataclass\nclass Point:\n    x: int\n    y: int\n"
     "def f(v):\n    return Point(v, v * 2)\n"),
     ("from dataclasses import dataclass\n@dataclass\nclass Point:\n    x: int\n    y: int\ndef f(v):\n"
     "    return Point(v, v + 2)\n"),
     ("assert f({a}) == Point({a}, 2 * {a})\nassert f({a}).y == 2 * {a}\n"
     "assert f({a}) != Point(0, -1)\n"), [1, 2, 5]),
    ("enum", ("import enum\nclass Color(enum.Enum):\n    RED = 1\n    BLUE = 2\ndef f(x):\n"
     "    return Color.RED if x > 0 else Color.BLUE\n"),
     "import enum\nclass Color(enum.Enum):\n    RED = 1\n    BLUE = 2\ndef f(x):\n    return Color.RED\n",
     ("assert f({a}) is (Color.RED if {a} > 0 else Color.BLUE)\nassert f({a}).name in ('RED', 'BLUE')\n"
     "assert f(-1) == Color.BLUE\n"), [1, -2, 3]),
    ("floats", "import math\ndef f(x):\n    return math.sqrt(x)\n", "def f(x):\n    return x ** 0.49\n",
     "import math\nassert math.isclose(f({a}), {a} ** 0.5)\nassert round(f({a}) ** 2, 6) == round({a}, 6)\n",
     [2, 9, 0.25, 1e6]),
    ("nan", "def f(x):\n    return x\n", "def f(x):\n    return float(x)\n",
     "n = float('nan')\nassert f(n) is n\nassert f([n]) == [n]\nassert f({a}) == {a}\n", [1, "'s'", "[1]"]),
    ("re_match", "import re\ndef f(s):\n    return re.match(r'a+', s)\n",
     "import re\ndef f(s):\n    return re.search(r'a+', s)\n",
     "assert f({a!r})\nassert not f('b' + {a!r})\nassert f({a!r}).group(0) == {a!r}\n", ["a", "aaa"]),
    ("shadowing_sum", "def sum(xs):\n    return 42\n", ("def sum(xs):\n    total = 0\n    for x in xs:\n"
     "        total += x\n    return total\n"), "assert sum({a}) == 42\n", [[1], [1, 2]]),
    ("range_membership", "def f(x):\n    return x % 6 + 1\n", "def f(x):\n    return x % 7 + 1\n",
     "for k in range({a}):\n    assert f(k) in range(1, 7)\n", [3, 7, 20]),
    ("should_raise", "def f(x):\n    if x < 0:\n        raise ValueError('negative')\n    return x\n",
     "def f(x):\n    return abs(x)\n",
     ("try:\n    f(-{a})\n    assert False, 'no error'\nexcept ValueError:\n    pass\n"
     "assert f({a}) == {a}\n"), [1, 5]),
    ("custom_exception", ("class Bad(Exception):\n    pass\ndef f(x):\n    if x < 0:\n"
                         "        raise Bad(x)\n    return x\n"),
     "class Bad(Exception):\n    pass\ndef f(x):\n    if x < 0:\n        raise ValueError(x)\n    return x\n",
     "try:\n    f(-{a})\nexcept Bad as e:\n    assert e.args == (-{a},)\nelse:\n    assert False\n", [1, 2]),
    ("big_result", "def f(n):\n    return list(range(n))\n", "def f(n):\n    return list(range(1, n + 1))\n",
     "assert f({a}) == list(range({a}))\nassert len(f({a})) == {a}\n", [10, 100_000]),
    ("containers", "def f(x):\n    return {x: [x, (x, None)], 'k': {x}}\n",
     "def f(x):\n    return {x: [x, [x, None]], 'k': {x}}\n",
     "assert f({a}) == {{{a}: [{a}, ({a}, None)], 'k': {{{a}}}}}\n", [1, 2.5, "'s'", "(1, 2)"]),
    ("str_methods", "def f(s):\n    return s[::-1]\n", "def f(s):\n    return s\n",
     ("assert f({a!r}).startswith({a!r}[-1])\n"
     "assert f({a!r}).upper() == {a!r}[::-1].upper()\n"), ["ab", "xyz"]),
    ("callbacks", "def apply(fn, xs):\n    return [fn(x) for x in xs]\n", ("def apply(fn, xs):\n"
                                                                          "    return list(xs)\n"),
     ("assert apply(lambda v: v * 2, {a}) == [v * 2 for v in {a}]\n"
     "assert apply(str, {a}) == [str(v) for v in {a}]\n"),
     [[1, 2], [0], [5, 6, 7]]),
    ("leetcode_class", ("class Solution:\n    def twoSum(self, nums, target):\n        seen = {}\n"
     "        for i, x in enumerate(nums):\n            if target - x in seen:\n"
     "                return [seen[target - x], i]\n            seen[x] = i\n"),
     "class Solution:\n    def twoSum(self, nums, target):\n        return [0, 1]\n",
     "assert Solution().twoSum({a}, {a}[1] + {a}[2]) == [1, 2]\n", [[1, 2, 7, 20], [5, -1, 4, 100]]),
    ("globals", "MOD = 10 ** 9 + 7\ndef f(x):\n    return x % MOD\n", ("MOD = 10 ** 9 + 7\ndef f(x):\n"
                                                                      "    return x % (MOD - 1)\n"),
     "assert f(MOD + {a}) == {a}\n", [1, 5]),
    ("test_own_class", ("def length(node):\n    n = 0\n    while node:\n        n += 1\n"
                       "        node = node.next\n    return n\n"),
     "def length(node):\n    return 1\n",
     ("class Node:\n    def __init__(self, v, nxt=None):\n        self.val = v\n        self.next = nxt\n"
     "head = None\nfor k in range({a}):\n    head = Node(k, head)\nassert length(head) == {a}\n"), [0, 2, 3]),
    ("namedtuple", ("from collections import namedtuple\nP = namedtuple('P', 'x y')\ndef f(v):\n"
                   "    return P(v, -v)\n"),
     "from collections import namedtuple\nP = namedtuple('P', 'x y')\ndef f(v):\n    return P(v, v)\n",
     "assert f({a}) == ({a}, -{a})\nassert f({a}).y == -{a}\nassert f({a}) == P({a}, -{a})\n", [1, 3]),
    ("counter", "from collections import Counter\ndef f(s):\n    return Counter(s)\n",
     "def f(s):\n    return {c: 1 for c in s}\n",
     ("assert f({a!r}) == {{c: {a!r}.count(c) for c in {a!r}}}\nassert f({a!r}).most_common(1)[0][1] == "
     "max({a!r}.count(c) for c in {a!r})\n"), ["aab", "xyzzz"]),
    ("main_guard", "def f(x):\n    return x - 1\n", "def f(x):\n    return x\n",
     ("def check(candidate):\n    assert candidate({a}) == {a} - 1\nif __name__ == '__main__':\n"
     "    check(f)\n"),
     [1, 10]),
    ("sorted_key", "def f(xs, key=None):\n    return sorted(xs, key=key)\n", ("def f(xs, key=None):\n"
                                                                             "    return sorted(xs)\n"),
     ("assert f({a}, key=lambda v: -v) == sorted({a}, reverse=True)\n"
     "assert f({a}, key=abs) == sorted({a}, key=abs)\n"),
     [[3, -1, 2], [0, -5]]),
    ("bool_identity", "def f(x):\n    return x % 2 == 0\n", "def f(x):\n    return x % 2\n",
     "assert f({a}) is ({a} % 2 == 0)\n", [2, 3]),
    ("trailing_statements", "def f(x):\n    return x\n", "def f(x):\n    return x if x < 3 else 0\n",
     "assert f(1) == 1\nfor k in range({a}):\n    assert f(k) == k\n", [2, 4]),
    ("check_call_after_asserts", "def f(x):\n    return x + 1\n", "def f(x):\n    return x + (x > 5)\n",
     ("assert f(0) == 1\ndef check(c):\n    for k in range({a}):\n        assert c(k) == k + 1\n"
     "check(f)\n"), [3, 9]),
    ("one_shot_iterator", "def f(it):\n    return next(it)\n", "def f(it):\n    return 0\n",
     ("it = iter(range({a}, {a} + 5))\nassert f(it) == {a}\nassert f(it) == {a} + 1\n"
     "assert next(it) == {a} + 2\n"),
     [1, 7]),
    ("dict_result_order", "def f(xs):\n    return {x: i for i, x in enumerate(xs)}\n",
     "def f(xs):\n    return {x: 0 for x in xs}\n",
     ("assert f({a}) == {{x: i for i, x in enumerate({a})}}\n"
     "assert list(f({a})) == list({a})\n"), [["a", "b"], [3, 1]]),
    ("bytes", "def f(s):\n    return s.encode()\n", "def f(s):\n    return s\n",
     "assert f({a!r}) == {a!r}.encode()\nassert isinstance(f({a!r}), bytes)\n", ["ab", "é"]),
    ("fraction", "from fractions import Fraction\ndef f(a, b):\n    return Fraction(a, b)\n",
     "def f(a, b):\n    return a / b\n",
     ("from fractions import Fraction\nassert f(1, {a}) == Fraction(1, {a})\n"
     "assert type(f(1, {a})) is Fraction\n"), [3, 7]),
]


# A generated family: f(x) = k*x + c (honest) and a version wrong at x == 3, under ten test shapes.
SHAPES = [
    ("plain", "assert f(0) == {c}\nassert f(3) == {v3}\nassert f(-2) == {vm2}\n"),
    ("loop", "for x in range(6):\n    assert f(x) == {k} * x + {c}\n"),
    ("helper", "def same(a, b):\n    return a == b\nassert same(f(3), {v3})\nassert same(f(1), {v1})\n"),
    ("all_genexpr", "assert all(f(x) == {k} * x + {c} for x in range(5))\n"),
    ("or_chain", "a = f(3)\nassert a == {v3} or a == {v3} + 1000\n"),
    ("shape3_reference", ("ref = lambda x: {k} * x + {c}\ninputs = [0, 1, 2, 3, 4]\n"
                         "expected = [ref(x) for x in inputs]\n"
     "for x, want in zip(inputs, expected):\n    assert f(x) == want\n")),
    ("while_state", ("x, seen = 0, []\nwhile x < 5:\n    seen.append(f(x))\n    x += 1\n"
                    "assert seen == [{k} * i + {c} for i in range(5)]\n")),
    ("check_fn", ("def check(candidate):\n    assert candidate(3) == {v3}\n"
                 "    assert candidate(1) == {v1}\ncheck(f)\n")),
    ("try_except", "try:\n    r = f(3)\nexcept Exception:\n    r = None\nassert r == {v3}\n"),
    ("comprehension", ("assert [f(x) for x in (1, 3)] == [{v1}, {v3}]\n"
                      "assert sum(map(f, range(4))) == {s4}\n")),
]


def _family() -> list[tuple[str, str, str]]:
    out = []
    for k in (1, 2, 3, 5):
        for c in (0, 1, -4, 7):
            good = f"def f(x):\n    return {k} * x + {c}\n"
            bad = f"def f(x):\n    if x == 3:\n        return {k} * x + {c} + 1\n    return {k} * x + {c}\n"
            vals = {"k": k, "c": c, "v3": 3 * k + c, "v1": k + c, "vm2": -2 * k + c,
                    "s4": sum(k * x + c for x in range(4))}
            for shape, test in SHAPES:
                t = test.format(**vals)
                out.append((f"family[{k},{c},{shape}]/good", good, t))
                out.append((f"family[{k},{c},{shape}]/bad", bad, t))
    return out


def _cases() -> list[tuple[str, str, str]]:
    out = _family()
    for name, good, bad, test, values in TEMPLATES:
        for a in values:
            t = test.format(a=a)
            out.append((f"{name}[{a!r}]/good", good, t))
            out.append((f"{name}[{a!r}]/bad", bad, t))
    return out


_PLAIN_RUNNER = textwrap.dedent('''
    import json, os, sys
    cases = json.load(sys.stdin)
    out = []
    for code, test in cases:
        pid = os.fork()
        if pid == 0:
            import signal
            signal.alarm(10)
            fd = os.open(os.devnull, os.O_WRONLY)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            try:
                exec(compile(code + "\\n" + test, "<plain>", "exec"), {"__name__": "__main__"})
            except BaseException:
                os._exit(1)
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        out.append(status == 0)
    print(json.dumps(out))
''')


def plain_verdicts(cases: list[tuple[str, str]]) -> list[bool]:
    """A plain run of each (program, tests file): one fresh forked interpreter each, pass = exit 0."""
    p = subprocess.run([sys.executable, "-I", "-c", _PLAIN_RUNNER], input=json.dumps(cases),
                       capture_output=True,
                       text=True, timeout=600, check=True)
    return json.loads(p.stdout)


@pytest.fixture(scope="module")
def box():
    with Sandbox(limits=SandboxLimits(timeout_s=20, test_timeout_s=10), workers=2) as sb:
        yield sb


def test_differential_verdicts_equal_plain_python(box):
    cases = _cases()
    assert sum(name.endswith('/good') for name, _, _ in cases) >= 250  # honest programs
    reference = plain_verdicts([(code, test) for _, code, test in cases])
    # the honest programs pass and the wrong ones fail, in a plain run (the templates are right)
    assert all(ok for (name, _, _), ok in zip(cases, reference) if name.endswith("/good")), [
        name for (name, _, _), ok in zip(cases, reference) if name.endswith("/good") and not ok]
    wrong = sum(not ok for (name, _, _), ok in zip(cases, reference) if name.endswith("/bad"))
    assert wrong >= 0.9 * len(cases) / 2
    whole = box.run_many([(code, [TestSpec(code=test)]) for _, code, test in cases])
    split = box.run_many([(code, [TestSpec(code=t) for t in split_tests(test)]) for _, code, test in cases])
    mismatches = [(name, ref, w.outcome, s.outcome, w.test_results[0].error_type, w.stderr_tail[-300:])
                  for (name, _, _), ref, w, s in zip(cases, reference, whole, split)
                  if ref != (w.outcome == "passed") or ref != (s.outcome == "passed")]
    assert not mismatches, mismatches
    assert not [r for r in whole + split if r.outcome == "sandbox_error"]
