"""The deterministic mutant generator used to measure test recall."""

from __future__ import annotations

import ast

from plumline.transforms.logic.mutants import generate_mutants


def test_small_function_mutants_are_the_expected_ones_and_are_caught():
    code = "def f(a, b):\n    if a < b:\n        return a + 1\n    return b\n"
    muts = generate_mutants(code, max_mutants=50, only_function="f")
    names = [m.name.split(" @")[0] for m in muts]
    assert names == ["early return None", "negate condition", "cmp Lt->LtE", "bin Add->Sub", "int -1",
                     "int +1"]
    caught = 0
    for m in muts:
        ns: dict = {}
        exec(compile(m.code, "m", "exec"), ns)  # noqa: S102 - our own mutants of our own code
        try:
            assert ns["f"](1, 2) == 2 and ns["f"](3, 2) == 2 and ns["f"](2, 2) == 2
        except AssertionError:
            caught += 1
    assert caught == len(muts)  # these three asserts catch every one


def test_humaneval_mutants_are_distinct_parseable_and_deterministic(humaneval):
    for p in humaneval[:30]:
        a = generate_mutants(p.reference_solution, 12, only_function=p.entry_point)
        b = generate_mutants(p.reference_solution, 12, only_function=p.entry_point)
        assert a == b and 1 <= len(a) <= 12
        texts = {m.code for m in a}
        assert len(texts) == len(a) and ast.unparse(ast.parse(p.reference_solution)) not in texts
        for m in a:
            ast.parse(m.code)


def test_unparsable_code_and_missing_function_give_no_mutants():
    assert generate_mutants("def f(:\n", 5) == []
    assert generate_mutants("def f():\n    return 1\n", 5, only_function="g") == []
