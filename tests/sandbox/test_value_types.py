"""Values that are not plain builtin data, and names that shadow builtins: verdicts must equal a plain
unsandboxed run, without giving up the defences (expected literals withheld, rigged objects stripped)."""

from __future__ import annotations

import fractions
from decimal import Decimal

import pytest
from plumline.data_schemas import TestSpec
from plumline.sandbox import _protocol as proto
from plumline.sandbox.verdict import prepare_test


def statuses(res):
    return [t.status for t in res.test_results]


FRACTION_CODE = "from fractions import Fraction\ndef f(n):\n    return Fraction(1, n)\n"
DECIMAL_CODE = "from decimal import Decimal\ndef f(s):\n    return Decimal(s) + Decimal('0.1')\n"


@pytest.mark.parametrize("test, status", [
    ("from fractions import Fraction\nassert f(3) == Fraction(1, 3)", "passed"),
    ("from fractions import Fraction\nassert f(3) == Fraction(2, 6)", "passed"),
    ("from fractions import Fraction\nassert f(3) == Fraction(1, 4)", "failed"),
    ("assert f(2) == 0.5", "passed"),
    ("assert f(3) != 0.5", "passed"),
    ("assert f(3) < 1", "passed"),
    # Fraction from the candidate's namespace: both sides cross as data
    ("assert f(3) == Fraction(1, 3)", "passed"),
    ("assert [f(2), f(4)] == [0.5, 0.25]", "passed"),
])
def test_fraction_results_compare_like_python(sb, test, status):
    res = sb.run(FRACTION_CODE, [TestSpec(code=test)])
    assert statuses(res) == [status], res


@pytest.mark.parametrize("test, status", [
    ("from decimal import Decimal\nassert f('0.2') == Decimal('0.3')", "passed"),
    ("import decimal\nassert f('0.2') == decimal.Decimal('0.30')", "passed"),
    ("from decimal import Decimal\nassert f('0.2') == Decimal('0.4')", "failed"),
    ("assert f('1') > 1", "passed"),
])
def test_decimal_results_compare_like_python(sb, test, status):
    res = sb.run(DECIMAL_CODE, [TestSpec(code=test)])
    assert statuses(res) == [status], res


def test_folded_expected_values_are_withheld_from_the_sandbox():
    cases = {
        "from fractions import Fraction\nassert f(3) == Fraction(1, 3)": fractions.Fraction(1, 3),
        "from decimal import Decimal\nassert f(3) == Decimal('0.3')": Decimal("0.3"),
        "assert f(3) == float('inf')": float("inf"),
        "assert f(3) == -float('inf')": float("-inf"),
        "import math\nassert f(3) == math.pi": 3.141592653589793,
        "assert f(3) == set([1, 2])": {1, 2},
        "assert f(3) == frozenset({1})": frozenset({1}),
        "assert f(3) == 10**9 + 7": 10**9 + 7,
        "assert f(3) == list(range(4))": [0, 1, 2, 3],
        "assert f(3) == 'ab' * 2": "abab",
    }
    for src, expected in cases.items():
        p = prepare_test(src)
        assert "__plum_check__(0, (__plum_plain__(f(3)),)" in p.source, (src, p.source)
        lit = p.sites[0]["operands"][1]
        assert lit[0] == "lit" and proto.decode(lit[1]) == expected, (src, lit)
    # not folded: names the test rebinds, or that it leaves to the candidate's namespace
    for src in ("float = lambda x: 0\nassert f(3) == float('inf')", "assert f(3) == Fraction(1, 3)",
                "from fractions import Fraction\nFraction = dict\nassert f(3) == Fraction(a=1)",
                "assert f(3) == int('9' * 5000)", "assert f(3) == set(range(10**7))"):
        p = prepare_test(src)
        assert p.sites[0]["operands"][1][0] != "lit", src


def test_folded_fraction_is_not_in_the_candidates_process(sb):
    # The candidate scans its caller's frame for anything that could be the expected value.
    code = ("import sys\nfrom fractions import Fraction\n"
            "def f(n):\n    fr = sys._getframe(1)\n"
            "    for v in list(fr.f_locals.values()) + list(fr.f_code.co_consts):\n"
            "        if isinstance(v, Fraction):\n            return v\n"
            "    return Fraction(0)\n")
    res = sb.run(code, [TestSpec(code="from fractions import Fraction\nassert f(3) == Fraction(1, 3)")])
    assert statuses(res) == ["failed"], res


def test_named_tuples_counters_and_custom_objects_stay_usable_in_tests(sb):
    code = ("from collections import namedtuple, Counter, OrderedDict, defaultdict\n"
            "P = namedtuple('P', 'x y')\n"
            "class Box:\n    def __init__(self, v):\n        self.v = v\n"
            "def point():\n    return P(1, 2)\n"
            "def count(s):\n    return Counter(s)\n"
            "def box():\n    return [Box(3)]\n"
            "def dd():\n    d = defaultdict(list)\n    d['a'].append(1)\n    return d\n")
    tests = ["r = point()\nassert r.x == 1 and r.y == 2", "assert point() == (1, 2)",
             "assert count('aab')['z'] == 0", "assert count('aab') == {'a': 2, 'b': 1}",
             "assert box()[0].v == 3", "assert dd()['b'] == []"]
    res = sb.run(code, [TestSpec(code=t) for t in tests])
    assert statuses(res) == ["passed"] * len(tests), res


def test_rigged_subclasses_of_named_tuples_and_counters_are_still_stripped(sb):
    code = ("from collections import namedtuple, Counter\n"
            "class Liar(namedtuple('P', 'x')):\n    def __eq__(self, o):\n        return True\n"
            "    __hash__ = tuple.__hash__\n"
            "class Num(int):\n    def __sub__(self, o):\n        return 0\n"
            "Counter.__eq__ = lambda self, o: True\n"
            "def f():\n    return Liar(5)\n"
            "def g():\n    return Num(7)\n"
            "def h():\n    return Counter('ab')\n")
    tests = ["assert f() == (4,)", "assert abs(g() - 1) < 1e-9", "x = h()\nassert x == {'zz': 1}",
             "y = [f()]\nassert y[0] == (4,)"]
    res = sb.run(code, [TestSpec(code=t) for t in tests])
    assert statuses(res) == ["failed"] * len(tests), res


def test_plain_leaves_foreign_objects_and_copies_rigged_ones():
    class Box:
        pass

    class Num(int):
        def __eq__(self, o):
            return True

    box = Box()
    value = [box, Num(3), (Num(4),)]
    out = proto.plain(value)
    assert out[0] is box and type(out[1]) is int and out[1] == 3 and type(out[2][0]) is int
    frac = fractions.Fraction(1, 3)
    assert proto.plain(frac) is frac
    deep = []
    for _ in range(500):
        deep = [deep, Num(1)]
    out = proto.plain(deep)  # stripped down to MAX_DEPTH, left as is below (no RecursionError)
    assert type(out[1]) is int and type(out[0][1]) is int
    inner = out
    for _ in range(proto.MAX_DEPTH + 5):
        inner = inner[0]
    assert type(inner[1]) is Num


def test_numpy_scalars_cross_as_python_scalars():
    np = pytest.importorskip("numpy")
    assert proto.decode(proto.encode(np.int64(5))) == 5
    assert proto.decode(proto.encode(np.bool_(True))) is True
    assert proto.decode(proto.encode(np.float32(0.5))) == 0.5
    assert proto.decode(proto.encode([np.int8(1), np.str_("a")])) == [1, "a"]
    assert isinstance(proto.decode(proto.encode(np.array([1, 2]))), proto.Opaque)


@pytest.mark.parametrize("bad", [
    ["q", ["i", "1"], ["i", "0"]], ["q", ["i", "1"]], ["q", ["i", "f" * 5000], ["i", "1"]],
    ["q", ["f", "0x1p0"], ["i", "1"]], ["D", "not a number"], ["D", "1" * 5000],
])
def test_decode_rejects_malformed_fractions_and_decimals(bad):
    with pytest.raises(ValueError):
        proto.decode(bad)


def test_entry_point_may_shadow_a_builtin_and_others_still_cannot(sb):
    code = "def sum(xs):\n    return 42\ndef abs(x):\n    return 0\n"
    tests = [TestSpec(code="assert sum([1, 2]) == 42"),
             TestSpec(code="def check(candidate):\n    assert candidate([1]) == 42\ncheck(sum)"),
             TestSpec(code="assert abs(sum([1]) - 41) < 0.5")]  # abs stays the builtin: |42 - 41| = 1
    res = sb.run(code, tests, entry_point="sum")
    assert statuses(res) == ["passed", "passed", "failed"], res
    res = sb.run(code, tests)  # no entry point: the candidate's names shadow the builtins, as in a plain run
    assert statuses(res) == ["passed", "passed", "passed"], res
    with pytest.raises(ValueError):
        sb.run(code, tests, entry_point="not an identifier")
    jobs = [(code, tests[:1], "sum"), (code, tests[2:], "sum"), (code, tests[2:])]
    assert [r.passed for r in sb.run_many(jobs)] == [1, 0, 1]


def test_expression_sites_are_evaluated_outside_with_bounds():
    tol = {"ops": ["Lt"], "neg": False, "operands": [
        ["expr", ["call", "abs", [["bin", "Sub", ["h"], ["c", proto.encode(0.5)]]], []]],
        ["lit", proto.encode(1e-6)]]}
    assert proto.evaluate_site(tol, [0.5]) == "pass"
    assert proto.evaluate_site(tol, [0.6]) == "fail"
    assert proto.evaluate_site(tol, [proto.Opaque("Liar")]) == "fail"  # a rigged object never reaches abs()
    assert proto.evaluate_site(tol, ["text"]) == "error:TypeError"  # as the test itself would raise
    blowup = {"ops": [], "neg": False,
              "operands": [["expr", ["bin", "Mult", ["h"], ["c", proto.encode(10**6)]]]]}
    assert proto.evaluate_site(blowup, [[0] * 10]) == "error:MemoryError"  # 10M items: refused, not built
    power = {"ops": [], "neg": False, "operands": [["expr", ["call", "pow", [["h"], ["h"]], []]]]}
    assert proto.evaluate_site(power, [3, 10**9]) == "error:MemoryError"
    p = prepare_test("import math\ndef check(c):\n    assert math.isclose(c(2), 0.25) and c(0) == 1\n"
                     "check(f)\n")
    assert len(p.sites) == 2 and p.required == {0, 1}  # `and` split into two required asserts
    assert p.sites[0]["operands"][0][0] == "expr" and p.sites[1]["operands"][1] == ["lit", proto.encode(1)]


def test_generators_and_custom_containers_still_work_with_list_len_sorted(sb):
    code = ("def gen(n):\n    yield from range(n)\n"
            "class Bag:\n    def __len__(self):\n        return 7\n    def __iter__(self):\n"
            "        return iter([3, 1])\n")
    tests = ["assert list(gen(3)) == [0, 1, 2]", "assert sorted(Bag()) == [1, 3]", "assert len(Bag()) == 7",
             "assert sum(gen(4)) == 6", "assert abs(len(Bag()) - 7) < 1"]
    res = sb.run(code, [TestSpec(code=t) for t in tests])
    assert statuses(res) == ["passed"] * len(tests), res


@pytest.mark.parametrize("test, expected_sources", [
    ("expected = 4242\nassert f(3) == expected", ["__plum_check__(0, (__plum_plain__(f(3)),), True)"]),
    ("for x, want in [(1, 55), (2, 66)]:\n    assert f(x) == want",
     ["x = 1", "__plum_check__(0, (__plum_plain__(f(x)),))", "x = 2",
      "__plum_check__(1, (__plum_plain__(f(x)),), True)"]),
    ("for x in [1, 2]:\n    assert f(x) == x * 2",
     ["x = 1", "__plum_check__(0, (__plum_plain__(f(x)),))", "x = 2",
      "__plum_check__(1, (__plum_plain__(f(x)),), True)"]),
])
def test_named_and_looped_expected_values_become_literals(test, expected_sources):
    p = prepare_test(test)
    assert p.source.splitlines() == expected_sources
    assert all(op[0] == "lit" for site in p.sites for op in site["operands"][1:])
    assert p.required == frozenset(range(len(p.sites)))  # unrolled top-level asserts are all required


@pytest.mark.parametrize("test", [
    "expected = [1]\nexpected.append(2)\nassert f(3) == expected",  # mutated: kept
    ("for x, want in [(1, 55), (2, 66)]:\n    if x > 1:\n        break\n"
    "    assert f(x) == want"),  # break: kept
    "cases = [(1, 2)]\nfor a, b in cases:\n    assert f(a) == b",  # not a literal loop: kept
    "for x, want in [(1, 55)]:\n    want = want + 1\n    assert f(x) == want",  # rebound in the body: kept
    ("for x, w in [(1, 2)]:\n    for y in [3]:\n"
    "        assert f(x, y) == w"),  # nested: only the inner one may unroll
])
def test_literal_propagation_leaves_other_shapes_alone(sb, test):
    p = prepare_test(test)
    assert p.error is None
    code = "def f(*a):\n    return 2 if a == (1,) else 55 if a == (1, 3) else 0\n"
    plain_ns: dict = {}
    exec(code, plain_ns)  # noqa: S102 - the plain run the sandbox is compared with
    try:
        exec(test, plain_ns)  # noqa: S102
        plain = "passed"
    except AssertionError:
        plain = "failed"
    assert statuses(sb.run(code, [TestSpec(code=test)])) == [plain]
