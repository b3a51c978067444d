"""The reply parser: every shape a model answers in, and hostile input."""

from __future__ import annotations

import ast
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from plumline.data_schemas import TestDropReason
from plumline.transforms.logic.synthesis import (
    check_test,
    normalize_test,
    parse_replies,
    parse_test_reply,
)

EP = "add"
DUPLICATE, EMPTY_REPLY, NO_TESTS = (TestDropReason.DUPLICATE, TestDropReason.EMPTY_REPLY,
                                   TestDropReason.NO_TESTS)


def reasons(parsed):
    return [d.reason for d in parsed.dropped]


def test_fenced_block_with_prose_and_solution_is_split_into_asserts():
    reply = ("Sure! Here are the tests.\n```python\ndef add(a, b):\n    return a + b\n\n"
             "assert add(1, 2) == 3\nassert add(-1, 1) == 0, 'zero'\n```\nHope this helps.")
    p = parse_test_reply(reply, EP)
    # the reply's own solution is not a test and never travels with one
    assert p.kept == ["assert add(1, 2) == 3", "assert add(-1, 1) == 0"]
    assert all("def add" not in k for k in p.kept)
    assert p.dropped == []


def test_json_list_of_strings_and_objects():
    assert parse_test_reply('["assert add(1, 2) == 3", "assert add(0, 0) == 0"]', EP).kept == \
        ["assert add(1, 2) == 3", "assert add(0, 0) == 0"]
    reply = '```json\n{"tests": [{"code": "assert add(2, 2) == 4"}, {"input": [1, 2], "output": 3}]}\n```'
    assert parse_test_reply(reply, EP).kept == ["assert add(2, 2) == 4", "assert add(1, 2) == 3"]


def test_check_function_is_unrolled_with_candidate_renamed():
    reply = ("def check(candidate):\n    assert candidate(1, 2) == 3\n    assert candidate(2, 2) == 4\n\n"
             "check(add)\n")
    assert parse_test_reply(reply, EP).kept == ["assert add(1, 2) == 3", "assert add(2, 2) == 4"]
    # the check parameter may have any name
    reply = "def check(fn):\n    assert fn(5, 5) == 10\n"
    assert parse_test_reply(reply, EP).kept == ["assert add(5, 5) == 10"]


def test_bare_asserts_mixed_with_prose():
    reply = "Tests:\nassert add(2, 3) == 5\nThis one checks negatives:\nassert add(-2, -3) == -5\nDone."
    assert parse_test_reply(reply, EP).kept == ["assert add(2, 3) == 5", "assert add(-2, -3) == -5"]


def test_pytest_unittest_and_doctest_forms():
    reply = "def test_small():\n    x = 2\n    assert add(x, 1) == 3\n"
    assert parse_test_reply(reply, EP).kept == ["x = 2\nassert add(x, 1) == 3"]
    reply = ("import unittest\nclass T(unittest.TestCase):\n    def test_a(self):\n"
             "        self.assertEqual(add(1, 2), 3)\n        self.assertTrue(add(1, 1) == 2)\n")
    assert parse_test_reply(reply, EP).kept == ["assert add(1, 2) == 3", "assert add(1, 1) == 2"]
    assert parse_test_reply(">>> add(1, 2)\n3\n>>> add(0, 0)\n0\n", EP).kept == \
        ["assert add(1, 2) == 3", "assert add(0, 0) == 0"]


def test_comparison_without_assert_becomes_an_assert_but_bare_calls_do_not():
    p = parse_test_reply("add(1, 2) == 3\nadd(4, 4)\nprint(add(3, 3))\n", EP)
    assert p.kept == ["assert add(1, 2) == 3"]


def test_setup_statements_travel_with_the_asserts_that_need_them():
    reply = ("```python\nimport math\nxs = [1, 2]\nys = xs + [3]\nassert add(*xs) == 3\n"
             "assert add(1, 1) == 2\nassert add(math.floor(2.5), ys[2]) == 5\n```")
    p = parse_test_reply(reply, EP)
    assert p.kept == ["xs = [1, 2]\nassert add(*xs) == 3", "assert add(1, 1) == 2",
                      "import math\nxs = [1, 2]\nys = xs + [3]\nassert add(math.floor(2.5), ys[2]) == 5"]
    for code in p.kept:
        ast.parse(code)


def test_every_bad_test_is_dropped_with_its_reason():
    reply = "\n".join([
        "assert add(1, 2) == 3",
        "assert add(1,2)==3  # same test, other formatting",
        "assert foo(1) == 2",                       # never calls the entry point
        "assert add(helper(1), 2) == 3",            # calls an undefined function
        "assert add(x, 2) == 3",                    # undefined name
        "assert add(int(input()), 1) == 2",         # reads stdin
        "import os\nassert add(len(os.listdir('.')), 1) == 1",  # touches the world
        "assert add(().__class__.__bases__[0], 1)",  # dunder escape
        "assert add(1, 2",                          # broken
        "assert add(" + "1 + " * 400 + "1, 0) == 401",   # too long
    ])
    p = parse_test_reply(reply, EP, max_chars=500)
    assert p.kept == ["assert add(1, 2) == 3"]
    assert sorted(reasons(p)) == sorted([DUPLICATE, "no_entry_point_call", "calls_other_function",
                                         "undefined_name", "not_self_contained", "not_self_contained",
                                         "not_self_contained", "syntax_error", "too_long"])
    assert all(d.reason != "not_self_contained" or d.detail for d in p.dropped)


def test_redefining_the_entry_point_inside_a_test_is_refused():
    reply = "def test_a():\n    add = lambda a, b: 3\n    assert add(1, 2) == 3\n"
    assert reasons(parse_test_reply(reply, EP)) == ["redefines_entry_point"]


def test_stdlib_modules_are_imported_when_missing_but_others_are_not():
    reason, code, _ = check_test("assert math.isclose(add(0.1, 0.2), 0.3)", EP, 1000)
    assert reason is None and code.startswith("import math\n")
    reason, _, _ = check_test("assert numpy.sum(add(1, 2)) == 3", EP, 1000)
    assert reason == "undefined_name"


def test_empty_and_testless_replies():
    assert reasons(parse_test_reply("", EP)) == [EMPTY_REPLY]
    assert reasons(parse_test_reply("   \n", EP)) == [EMPTY_REPLY]
    assert reasons(parse_test_reply("I cannot write tests for this.", EP)) == [NO_TESTS]
    p = parse_test_reply("x" * 6000, EP)
    assert reasons(p) == [NO_TESTS] and p.kept == []


def test_normalize_collapses_formatting_quotes_and_messages():
    a = normalize_test("assert add( 1,2 )==3, 'first'")
    b = normalize_test('assert add(1, 2) == 3  # comment')
    assert a == b == "assert add(1, 2) == 3"
    assert (normalize_test("assert add('a', \"b\") == 'ab'")
            == normalize_test('assert add("a", \'b\') == "ab"'))
    assert normalize_test("assert add(1, 2) == 3") != normalize_test("assert add(2, 1) == 3")


def test_duplicates_collapse_across_replies_and_cap_is_deterministic():
    r1 = "assert add(1, 2) == 3\nassert add(2, 2) == 4"
    r2 = "```python\nassert add(1,2) == 3\nassert add(3, 3) == 6\nassert add(4, 4) == 8\n```"
    p = parse_replies([r1, r2], EP, 1000, max_tests=3)
    assert p.kept == ["assert add(1, 2) == 3", "assert add(2, 2) == 4", "assert add(3, 3) == 6"]
    assert reasons(p) == [DUPLICATE, "over_limit"]
    assert all(d.detail for d in p.dropped)  # every drop says why in words


def test_huge_hostile_replies_are_bounded():
    import time
    for reply in ["(((\n" * 50000, "assert add(1) == 1\n" * 20000,
                  "assert add(" + "[" * 5000 + "]" * 5000 + ") == 1", "def f(:\n  " * 10000, "\x00" * 1000]:
        t = time.perf_counter()
        p = parse_test_reply(reply, EP)
        assert time.perf_counter() - t < 5
        assert len(p.kept) <= 1


# ---- properties

@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=400))
def test_never_crashes_on_arbitrary_text(text):
    p = parse_test_reply(text, EP, max_chars=300)
    for code in p.kept:
        tree = ast.parse(code)
        assert any(isinstance(n, ast.Call) and getattr(n.func, "id", None) == EP for n in ast.walk(tree))
        assert any(isinstance(n, ast.Assert) for n in ast.walk(tree))
        assert len(code) <= 300
    assert all(d.reason for d in p.dropped)


_ints = st.integers(min_value=-10**6, max_value=10**6)
_tests = st.lists(st.tuples(_ints, _ints), min_size=1, max_size=8, unique=True)


def _asserts(pairs):
    return [f"assert add({a}, {b}) == {a + b}" for a, b in pairs]


@settings(max_examples=100, deadline=None)
@given(_tests, st.sampled_from(["bare", "fenced", "json", "check", "prose"]))
def test_every_form_recovers_exactly_the_tests(pairs, form):
    lines = _asserts(pairs)
    if form == "bare":
        reply = "\n".join(lines)
    elif form == "fenced":
        reply = "Here you go:\n```python\n" + "\n".join(lines) + "\n```\nEnjoy."
    elif form == "json":
        reply = json.dumps(lines)
    elif form == "check":
        reply = "def check(candidate):\n" + "".join("    " + ln.replace("add(", "candidate(") + "\n"
                                                    for ln in lines) + "\ncheck(add)\n"
    else:
        reply = "".join(f"Test {i}: the sum.\n{ln}\n" for i, ln in enumerate(lines))
    p = parse_test_reply(reply, EP)
    assert p.kept == [normalize_test(ln) for ln in lines]
    assert p.dropped == []


@settings(max_examples=100, deadline=None)
@given(_tests, st.lists(st.sampled_from([" ", "  "]), min_size=1, max_size=3))
def test_reformatted_copies_are_duplicates(pairs, spaces):
    lines = _asserts(pairs)
    pad = "".join(spaces)
    copies = [ln.replace(", ", "," + pad).replace(" == ", pad + "==") + "  # again" for ln in lines]
    p = parse_test_reply("\n".join(lines + copies), EP)
    assert len(p.kept) == len(lines)
    assert reasons(p) == [DUPLICATE] * len(lines)
