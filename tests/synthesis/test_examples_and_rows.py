"""Example tests from real HumanEval prompts, the rows of every origin, and the statistics."""

from __future__ import annotations

import ast

import pytest
from plumline.data_schemas import Problem, TestCase, TestSpec, TestSynthesisStats, to_table
from plumline.transforms.logic.synthesis import (
    TestSynthesisConfig,
    assemble_problem_tests,
    build_test_prompt,
    build_test_prompt_text,
    extract_example_tests,
    given_test_cases,
    make_test_cases,
    parse_test_reply,
    problem_test_stats,
)


def _run(problem: Problem, code: str) -> None:
    """Run one example test against the canonical solution, in-process: these are trusted dataset
    files and our own generated asserts, never model output."""
    ns: dict = {}
    exec(compile(problem.reference_solution, "ref", "exec"), ns)  # noqa: S102
    exec(compile(code, "test", "exec"), ns)  # noqa: S102


def test_docstring_examples_of_the_first_20_humaneval_problems(humaneval):
    first = humaneval[:20]
    found = {p.problem_id: extract_example_tests(p) for p in first}
    assert found["HumanEval/0"] == [
        "assert has_close_elements([1.0, 2.0, 3.0], 0.5) == False",
        "assert has_close_elements([1.0, 2.8, 3.0, 4.0, 5.0, 2.0], 0.3) == True"]
    # a printed float compares with a tolerance
    assert found["HumanEval/2"] == ["assert abs(truncate_number(3.5) - 0.5) < 1e-06"]
    assert sum(bool(v) for v in found.values()) >= 17
    for p in first:
        for code in found[p.problem_id]:
            ast.parse(code)
            _run(p, code)  # every docstring example of these problems is right


def test_arrow_lines_are_used_only_when_unambiguous(humaneval):
    by_id = {p.problem_id: p for p in humaneval}
    assert "assert will_it_fly([3, 2, 3], 9) == True" in extract_example_tests(by_id["HumanEval/72"])
    assert "assert fib4(0) == 0" in extract_example_tests(by_id["HumanEval/46"])
    # "fruit_distribution(...) ->19 - 5 - 6 = 8" and "is_simple_power(1, 4) => true" are not literals
    assert extract_example_tests(by_id["HumanEval/67"]) == []
    assert extract_example_tests(by_id["HumanEval/76"]) == []


def test_input_output_lines():
    p = Problem(problem_id="p", source="s", entry_point="two_sum",
                prompt="Return the sum.\nInput: a = 2, b = 3\nOutput: 5\nInput: nonsense here\nOutput: 1\n")
    assert extract_example_tests(p) == ["assert two_sum(a=2, b=3) == 5"]


def test_examples_found_in_most_of_humaneval(humaneval):
    with_examples = sum(bool(extract_example_tests(p)) for p in humaneval)
    assert with_examples >= 130  # measured: 139 of 164


def test_prompts_mention_the_entry_point_and_k(humaneval):
    p = humaneval[0]
    msgs = build_test_prompt(p, 7)
    assert [m["role"] for m in msgs] == ["system", "user"]
    assert "Write 7 different unit tests for `has_close_elements`" in msgs[1]["content"]
    assert p.prompt.strip() in msgs[1]["content"]
    text = build_test_prompt_text(p, 7)
    assert text.endswith("assert has_close_elements(")


def test_given_tests_are_reserved_for_evaluation_by_default(humaneval):
    p = humaneval[0]
    rows = given_test_cases(p, "eval")
    assert len(rows) == 1 and rows[0].origin == "given" and rows[0].for_training is False
    assert all(t.for_training for t in given_test_cases(p, "both"))
    with pytest.raises(ValueError):
        given_test_cases(p, "sometimes")


def test_rows_keep_dropped_tests_with_reasons_and_never_repeat_an_id():
    p = Problem(problem_id="p1", source="s",
                prompt="def add(a, b):\n    '''Add.\n    >>> add(1, 2)\n    3\n    '''\n",
                entry_point="add", given_tests=(TestSpec(code="assert add(5, 5) == 10"),))
    replies = [("```python\nassert add(1, 2) == 3\nassert add(2, 2) == 4\nassert add(2,2) == 4\n"
                "assert add(5, 5) == 10\nassert sub(1) == 0\n```"), "no tests here"]
    out = assemble_problem_tests(p, replies, TestSynthesisConfig(), writer="m")
    by_origin = {}
    for t in out.tests:
        by_origin.setdefault(t.origin, []).append(t)
    assert [t.code for t in by_origin["given"]] == ["assert add(5, 5) == 10"]
    assert [t.code for t in by_origin["example"]] == ["assert add(1, 2) == 3"]
    synth = by_origin["synthesized"]
    assert [(t.code, t.kept) for t in synth if t.kept] == [("assert add(2, 2) == 4", True)]
    drops = sorted((t.drop_reason, t.drop_detail) for t in synth if not t.kept)
    assert drops == [("no_entry_point_call", "no call of add()"),
                     ("no_tests_in_reply", "no assert statement found")]
    ids = [t.test_id for t in out.tests]
    assert len(ids) == len(set(ids))
    s = out.stats
    # written: 4 asserts that mention add or sub + the duplicate of the example/given ones collapse
    assert (s.written, s.parsed, s.duplicates, s.replies) == (5, 4, 3, 2)
    assert s.dropped_by_reason == {"duplicate": 3, "no_entry_point_call": 1, "no_tests_in_reply": 1}
    assert (s.synthesized_total, s.synthesized_kept) == (2, 1)
    assert (s.given_total, s.given_kept, s.example_total, s.example_kept) == (1, 1, 1, 1)
    assert s.kept_training == 2  # the example and one synthesized test; the given one is eval-only
    assert TestSynthesisStats.from_dict(s.to_dict()) == s  # a valid record, Json field included
    # rows are valid records with the Arrow schema
    table = to_table(out.tests, TestCase)
    assert table.num_rows == len(out.tests)
    for row in table.to_pylist():
        TestCase.from_dict(row)


def test_generation_failure_and_no_entry_point_still_give_example_and_given_rows():
    p = Problem(problem_id="p2", source="s", prompt="Read two ints and print their sum.",
                given_tests=(TestSpec(kind="io", stdin="1 2\n", expected_stdout="3\n"),))
    out = assemble_problem_tests(p, None, TestSynthesisConfig(given_tests_role="both"))
    assert [t.origin for t in out.tests] == ["given"] and out.tests[0].for_training
    q = Problem(problem_id="p3", source="s", prompt="def f(x):\n    pass\n", entry_point="f")
    out = assemble_problem_tests(q, ["x"], TestSynthesisConfig(), generation_error="engine died")
    assert out.tests == [] and out.stats.dropped_by_reason == {"generation_failed": 1}


def test_problem_stats_count_written_kept_and_duplicates():
    p = Problem(problem_id="p", source="s", prompt="def add(a, b): ...", entry_point="add")
    parsed = parse_test_reply("assert add(1, 2) == 3\nassert add(1, 1) == 3\nassert add(1,1)==3", "add")
    rows = make_test_cases(p, parsed, writer="w")
    s1 = problem_test_stats("p", rows, duplicates=1, replies=1)
    assert s1.written == 3 and s1.kept == 2 and s1.dropped_by_reason == {"duplicate": 1}
