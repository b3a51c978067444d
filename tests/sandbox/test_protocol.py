"""Pure parts: the plain-data wire format, the parent-side checks, test rewriting and splitting."""

import math
from collections import Counter, OrderedDict, namedtuple

import pytest
from hypothesis import given
from hypothesis import strategies as st
from plumline.sandbox._protocol import Opaque, decode, encode, evaluate_site, normalize_stdout, plain
from plumline.sandbox.verdict import judge_test, prepare_test, split_tests

plain_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text() | st.binary(),
    lambda inner: st.lists(inner, max_size=4) | st.tuples(inner, inner)
    | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=20,
)


@given(plain_values)
def test_roundtrip_is_exact(v):
    out = decode(encode(v))
    assert out == v
    assert type(out) is type(v)


def test_special_floats_and_big_ints_roundtrip():
    assert math.isnan(decode(encode(float("nan"))))
    assert decode(encode(float("-inf"))) == float("-inf")
    big = 7 ** 10000  # beyond int->str digit limits
    assert decode(encode(big)) == big
    assert decode(encode(frozenset({1, 2}))) == frozenset({1, 2})
    assert decode(encode(1 + 2j)) == 1 + 2j


def test_subclasses_are_stripped_to_raw_values():
    class Evil(int):
        def __eq__(self, other):
            return True

        __hash__ = int.__hash__

    class EvilStr(str):
        def __eq__(self, other):
            return True

        __hash__ = str.__hash__

    for v, want in ((Evil(5), 5), (EvilStr("a"), "a"), (True, True)):
        out = decode(encode(v))
        assert type(out) is type(want) and out == want
    assert decode(encode(Evil(5))) != 3
    P = namedtuple("P", "x y")
    assert decode(encode(P(1, 2))) == (1, 2)
    assert type(decode(encode(Counter("aab")))) is dict
    assert decode(encode(OrderedDict(a=1))) == {"a": 1}


def test_non_plain_values_are_opaque_and_fail_every_check():
    class AlwaysEq:
        def __eq__(self, other):
            return True

    enc = encode(AlwaysEq())
    assert enc[0] == "?"
    site = {"ops": ["Eq"], "operands": [["val"], ["lit", encode(3)]], "neg": False}
    assert evaluate_site(site, [decode(enc)]) == "fail"
    ne = {"ops": ["NotEq"], "operands": [["val"], ["lit", encode(3)]], "neg": False}
    assert evaluate_site(ne, [Opaque("x")]) == "fail"
    truth_neg = {"ops": [], "operands": [["val"]], "neg": True}
    assert evaluate_site(truth_neg, [Opaque("x")]) == "fail"


def test_self_referencing_and_huge_values_do_not_crash():
    a = []
    a.append(a)
    assert encode(a)[0] == "?" or "too" in str(encode(a))
    deep = []
    cur = deep
    for _ in range(5000):
        cur.append([])
        cur = cur[0]
    assert encode(deep) == ["?", "too deep"]


def test_hostile_iter_is_opaque():
    class Bad(list):
        def __iter__(self):
            raise RuntimeError("boom")

    # list.__iter__ is used, not the override: the raw content is read
    assert decode(encode(Bad([1, 2]))) == [1, 2]


@pytest.mark.parametrize("bad", [["i"], ["i", 5], ["x", []], ["d", [[1]]], ["l", "notalist"], [1, 2],
                                 {"a": 1},
                                 ["d", [[["l", []], 1]]]])
def test_decode_rejects_malformed(bad):
    with pytest.raises((ValueError, TypeError)):
        decode(bad)


def test_evaluate_site_semantics():
    lit = lambda v: ["lit", encode(v)]
    assert evaluate_site({"ops": ["Eq"], "operands": [["val"], lit(1.0)]}, [1]) == "pass"
    assert evaluate_site({"ops": ["Lt", "Lt"], "operands": [lit(0), ["val"], lit(10)]}, [5]) == "pass"
    assert evaluate_site({"ops": ["In"], "operands": [["val"], lit([1, 2])]}, [3]) == "fail"
    assert evaluate_site({"ops": ["Lt"], "operands": [["val"], lit(1)]}, ["a"]) == "error:TypeError"
    assert evaluate_site({"ops": ["Is"], "operands": [["val"], lit(None)]}, [None]) == "pass"
    assert evaluate_site({"ops": [], "operands": [["val"]], "neg": True}, [0]) == "pass"
    assert evaluate_site({"ops": ["Eq"], "operands": [["val"], lit(1)]}, []) == "fail"  # missing value


def test_plain_keeps_identity_for_plain_and_strips_subclasses():
    x = [1, [2, 3]]
    assert plain(x) is x

    class F(float):
        def __sub__(self, o):
            return 0.0

    out = plain(F(100.0))
    assert type(out) is float and out - 3.0 == 97.0
    obj = object()
    assert plain(obj) is obj


def test_prepare_withholds_literals_from_the_sandbox():
    p = prepare_test("assert f(3) == 912873\nassert g('x') == 'SECRET-EXPECTED'\nassert 77 == h()")
    assert "912873" not in p.source and "SECRET-EXPECTED" not in p.source and "77" not in p.source
    assert len(p.sites) == 3 and p.required == frozenset({0, 1, 2})
    assert p.sites[2]["operands"][0][0] == "lit"


def test_prepare_check_function_required_sites():
    src = ("def check(candidate):\n    assert candidate(1) == 2\n    for i in range(3):\n"
           "        assert candidate(i) == i + 1\n\ncheck(f)\n")
    p = prepare_test(src)
    assert p.required == frozenset({0})  # the one in the loop may legitimately run 0 times
    assert p.error is None


def test_prepare_reports_bad_tests():
    assert prepare_test("assert (").error.startswith("SyntaxError")
    assert "reserved" in prepare_test("__plum_check__(0, ())").error


def test_judge_test_rejects_forged_reports():
    p = prepare_test("assert f(1) == 2")
    # "ended ok" without reporting the check: a forged pass
    assert judge_test(p, {"ok": True, "checks": []})[:2] == ("failed", "UnverifiedPass")
    assert judge_test(p, {"ok": True, "checks": [[0, [encode(2)]]]}) == ("passed", None, None)
    status, et, msg = judge_test(p, {"ok": True, "checks": [[0, [encode(3)]]]})
    assert (status, et) == ("failed", "AssertionError") and "got 3" in msg
    assert judge_test(p, {"ok": True, "checks": [[7, [encode(2)]]]})[:2] == ("error", "ProtocolViolation")
    assert judge_test(p, {"ok": True, "checks": [[0, [["zz", 1]]]]})[:2] == ("error", "ProtocolViolation")
    assert judge_test(p, {"ok": False, "type": "NameError", "checks": []})[:2] == ("error", "NameError")


def test_split_tests():
    src = "import math\nassert f(1) == 1\nx = 3\nassert f(x) == 3\nfor k in range(3):\n    assert f(k) == k\n"
    parts = split_tests(src)  # pieces of one file, run in order in one namespace: nothing repeated or dropped
    assert "".join(parts) == src and len(parts) == 2
    assert parts[0] == "import math\nassert f(1) == 1\n"
    assert parts[1].startswith("x = 3") and parts[1].rstrip().endswith("assert f(k) == k")
    parts = split_tests(src, shared=False)  # each with the preamble so far (the earlier design)
    assert len(parts) == 2
    assert parts[0].startswith("import math") and "x = 3" not in parts[0]
    assert "x = 3" in parts[1] and parts[1].rstrip().endswith("assert f(x) == 3")
    assert split_tests("def check(c):\n    assert c(1)\ncheck(f)\n") == [("def check(c):\n"
                                                                         "    assert c(1)\ncheck(f)\n")]
    assert split_tests("") == []
    assert split_tests("assert (") == ["assert ("]


def test_normalize_stdout():
    assert normalize_stdout("1 2  \r\n3\n\n\n") == ["1 2", "3"]
    assert normalize_stdout("a\n b") != normalize_stdout("a\nb")


def test_int_lists_travel_compactly_and_exactly():
    from plumline.sandbox import _protocol as p

    for value in (list(range(-20, 20)), tuple(range(16)), [2**200, -(2**70)] * 8):
        enc = p.encode(value)
        assert enc[0] in ("Li", "Ti") and p.decode(enc) == value and type(p.decode(enc)) is type(value)
    assert p.encode([1, 2])[0] == "l" and p.encode([True] * 20)[0] == "l"  # bools stay bools
    for bad in (["Li", "1,zz"], ["Li", 5], ["Ti", "1,,2"]):
        with pytest.raises(ValueError):
            p.decode(bad)
