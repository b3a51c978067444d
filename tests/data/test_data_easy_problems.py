"""The bundled easy problem set: well formed, and every reference solution passes its own tests."""

from __future__ import annotations

import ast
import json
import subprocess
import sys

import pytest
from data_builders import reference_failures
from plumline.data_schemas import ErrorRecord, Problem
from plumline.transforms.logic.readers import SourceConfig, bundled_path, read_problems


@pytest.fixture(scope="module")
def easy() -> list[Problem]:
    items = list(read_problems(SourceConfig(path="bundled:easy")))
    assert not [i for i in items if isinstance(i, ErrorRecord)]
    return items  # type: ignore[return-value]


def test_shape(easy):
    assert 40 <= len(easy) <= 60
    assert len({p.problem_id for p in easy}) == len(easy)
    assert len({p.entry_point for p in easy}) == len(easy)
    harder = [p for p in easy if p.metadata.get("difficulty") in ("medium", "hard")]
    assert 5 <= len(harder) < len(easy) // 2
    for p in easy:
        assert p.source == "plumline-easy" and p.problem_id == f"plumline-easy/{p.entry_point}"
        assert 3 <= len(p.given_tests) <= 6, p.problem_id
        assert p.prompt.count(">>>") in (1, 2), p.problem_id
        assert p.reference_solution and p.reference_solution.startswith(p.prompt)
        tree = ast.parse(p.reference_solution)
        assert [n.name for n in tree.body if isinstance(n, ast.FunctionDef)] == [p.entry_point]
        ast.parse(p.prompt + "    pass\n")  # the prompt is a signature + docstring
        for t in p.given_tests:
            assert t.kind == "assert" and p.entry_point in t.code
            ast.parse(t.code)


def test_file_is_plumline_format():
    """Each line is exactly Problem's fields, so the file doubles as a format example."""
    with open(bundled_path("easy"), encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            assert set(row) <= set(Problem.field_names())
            assert Problem.from_dict(row).problem_id == row["problem_id"]


def test_reference_solutions_pass_their_tests(easy):
    """The doctest examples must hold too."""
    assert reference_failures(easy) == []


def test_a_wrong_solution_is_caught(easy):
    """The tests are not vacuous: a constant-returning solution fails at least one test of every problem."""
    script = r"""
import json, sys
survivors = []
for p in json.load(sys.stdin):
    ok = True
    for code in p["tests"]:
        ns = {p["entry"]: lambda *a, **k: 0}
        try:
            exec(code, ns)
        except BaseException:
            ok = False
            break
    if ok:
        survivors.append(p["id"])
print(json.dumps(survivors))
"""
    payload = [{"id": p.problem_id, "entry": p.entry_point, "tests": [t.code for t in p.given_tests]}
               for p in easy]
    res = subprocess.run([sys.executable, "-I", "-c", script], input=json.dumps(payload), capture_output=True,
                         text=True, timeout=60, check=False)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout) == []
