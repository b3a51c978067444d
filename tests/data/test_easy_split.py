"""The demo's bundled train/eval split of easy problems (bundled:easy-train, bundled:easy-eval): read by the
real reader, disjoint, every reference solution right, every hidden test suite able to fail a wrong program.

Trusted bundled data, so solutions run with plain exec in a separate interpreter with a timeout (not
through plumline's sandbox, which these checks need not depend on)."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from data_builders import reference_failures, run_isolated
from plumline.data_schemas import ErrorRecord, Problem
from plumline.transforms.logic.readers import BUNDLED, SourceConfig, bundled_path, read_problems

REPO = Path(__file__).resolve().parents[2]
SPLITS = {  # split: (bundled name, source, at least this many problems)
    "train": ("easy-train", "plumline-easy-train", 150),
    "eval": ("easy-eval", "plumline-easy-eval", 45),
}
FAMILIES = {"strings", "lists", "math", "dicts", "sets_tuples", "algorithms"}


def _read(name: str) -> list[Problem]:
    items = list(read_problems(SourceConfig(path=f"bundled:{name}")))
    errors = [i for i in items if isinstance(i, ErrorRecord)]
    assert not errors, errors[:3]
    return items  # type: ignore[return-value]


@pytest.fixture(scope="module")
def splits() -> dict[str, list[Problem]]:
    return {split: _read(name) for split, (name, _, _) in SPLITS.items()}


@pytest.fixture(scope="module")
def everything(splits) -> list[Problem]:
    return splits["train"] + splits["eval"]


def test_bundled_names_resolve():
    assert {"easy", "easy-train", "easy-eval", "humaneval"} <= set(BUNDLED)
    for name in ("easy", "easy-train", "easy-eval"):
        assert Path(bundled_path(name)).parent.name == "assets"
    assert len(_read("easy")) == 43  # the original set still reads as before


def test_shape(splits):
    for split, (_, source, minimum) in SPLITS.items():
        problems = splits[split]
        assert len(problems) >= minimum, (split, len(problems))
        families = Counter(p.metadata["family"] for p in problems)
        assert set(families) == FAMILIES, (split, families)
        for p in problems:
            assert p.source == source and p.problem_id == f"{source}/{p.entry_point}"
            assert p.metadata["split"] == split
            assert p.metadata["difficulty"] in ("very easy", "easy", "medium")
            assert 5 <= len(p.given_tests) <= 8, p.problem_id
            assert len(p.example_tests) == 2 and p.prompt.count(">>>") == 2, p.problem_id
            assert p.starter_code == p.prompt
            assert p.reference_solution and p.reference_solution.startswith(p.prompt)
            tree = ast.parse(p.reference_solution)
            assert [n.name for n in tree.body if isinstance(n, ast.FunctionDef)] == [p.entry_point]
            fn = tree.body[0]
            assert ast.get_docstring(fn), p.problem_id
            ast.parse(p.prompt + "    pass\n")  # the prompt is a signature + docstring
            for spec in (*p.given_tests, *p.example_tests):
                assert spec.kind == "assert" and p.entry_point in spec.code
                ast.parse(spec.code)
        # a mix of very easy and harder problems, most of them easy
        levels = Counter(p.metadata["difficulty"] for p in problems)
        assert levels["very easy"] >= 5 and levels["medium"] >= 5 and levels["medium"] < len(problems) // 2


def test_files_are_plumline_format():
    """Each line is exactly Problem's fields, so the files double as format examples."""
    for name, _, _ in SPLITS.values():
        with open(bundled_path(name), encoding="utf-8") as f:
            for line in f:
                row = json.loads(line)
                assert set(row) <= set(Problem.field_names())
                assert Problem.from_dict(row).problem_id == row["problem_id"]


def _normalize(text: str) -> str:
    """Lowercase letters and digits only: stricter than the decontamination's normalized prompt
    (whitespace collapsed, case-folded), so no overlap here means none there either."""
    return " ".join(re.sub(r"[^a-z0-9]+", " ", text.lower()).split())


def _description(p: Problem) -> str:
    """The docstring's prose, without the function's name, signature and examples."""
    doc = ast.get_docstring(ast.parse(p.prompt + "    pass\n").body[0]) or ""
    return _normalize(doc.split(">>>", 1)[0])


def test_splits_are_disjoint(splits, everything):
    ids = [p.problem_id for p in everything]
    assert len(set(ids)) == len(ids), [i for i, n in Counter(ids).items() if n > 1]
    for split in SPLITS:
        entries = [p.entry_point for p in splits[split]]
        assert len(set(entries)) == len(entries)
    train, held_out = splits["train"], splits["eval"]
    assert not {p.entry_point for p in train} & {p.entry_point for p in held_out}
    assert not {_normalize(p.prompt) for p in train} & {_normalize(p.prompt) for p in held_out}
    assert not {_description(p) for p in train} & {_description(p) for p in held_out}
    old = _read("easy")  # nor may the eval split repeat a problem of the original easy set
    assert not {_normalize(p.prompt) for p in old} & {_normalize(p.prompt) for p in held_out}
    assert not {p.entry_point for p in old} & {p.entry_point for p in held_out}


def test_reference_solutions_pass_their_tests_and_examples(everything):
    assert reference_failures(everything, examples=2) == []


_MUTANTS = r"""
import ast, json, sys

def example_output(code):
    # 'assert f(x) == EXPR' or 'assert f(x) is None' -> the expected value
    test = ast.parse(code).body[0].test
    if isinstance(test, ast.Compare):
        right = test.comparators[0]
        return None if isinstance(right, ast.Constant) and right.value is None else eval(compile(
            ast.Expression(right), "<example>", "eval"))
    raise ValueError(code)

def nudge(r):
    # the right answer, slightly off: the shape of an off-by-one mistake for each result type
    if isinstance(r, bool):
        return not r
    if isinstance(r, (int, float)):
        return r + 1
    if isinstance(r, (str, list, tuple)):
        return r[:-1] if r else type(r)("x" if isinstance(r, str) else [0])
    if isinstance(r, dict):
        return dict(list(r.items())[:-1]) if r else {0: 0}
    return 0

def make(kind, ref, entry, first):
    ns = {}
    exec(ref, ns)
    right = ns[entry]
    if kind == "constant":
        return lambda *a, **k: first
    if kind == "none":
        return lambda *a, **k: None
    if kind == "identity":
        return lambda *a, **k: a[0]
    if kind == "off_by_one":
        return lambda *a, **k: nudge(right(*a, **k))
    raise ValueError(kind)

survivors = []
for p in json.load(sys.stdin):
    first = example_output(p["example"])
    for kind in ("constant", "none", "identity", "off_by_one"):
        caught = False
        for code in p["tests"]:
            ns = {p["entry"]: make(kind, p["ref"], p["entry"], first)}
            try:
                exec(code, ns)
            except BaseException:
                caught = True
                break
        if not caught:
            survivors.append((p["id"], kind))
print(json.dumps(survivors))
"""


def test_hidden_tests_catch_simple_wrong_programs(everything):
    """Mutation sanity: a program returning the first example's output, returning None, returning its first
    argument, or off by one from the right answer fails at least one hidden test of every problem."""
    payload = [{"id": p.problem_id, "ref": p.reference_solution, "entry": p.entry_point,
                "example": p.example_tests[0].code, "tests": [t.code for t in p.given_tests]}
               for p in everything]
    assert run_isolated(_MUTANTS, payload) == []


def test_committed_files_are_what_the_generator_writes():
    script = REPO / "scripts" / "make_easy_problems.py"
    if not script.is_file():
        pytest.skip("the generator is not in this checkout")
    res = subprocess.run([sys.executable, str(script), "--check"], capture_output=True, text=True,
                         timeout=120, check=False)
    assert res.returncode == 0, res.stderr[-2000:]
