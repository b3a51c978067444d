"""Builders for Sample and Execution records, a JSONL writer fixture, and the check of bundled reference
solutions (readers, pairing and bundled-data tests)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from plumline.data_schemas import CODERL_CLASS, Execution, Outcome, Sample


def make_sample(problem_id: str, idx: int, code: str | None, completion: str | None = None, *,
                is_greedy: bool = False, finish_reason: str = "stop", prompt: str = "PROMPT") -> Sample:
    if completion is None:
        completion = f"```python\n{code}\n```" if code is not None else "no idea"
    return Sample(
        sample_id=f"{problem_id}-s{idx:03d}", problem_id=problem_id, round=0, policy="tiny",
        policy_revision="r0", prompt=prompt, completion=completion, code=code, finish_reason=finish_reason,
        prompt_tokens=10, completion_tokens=20, temperature=0.8, top_p=0.95, max_tokens=256, seed=idx,
        sample_index=idx, is_greedy=is_greedy,
    )


def make_execution(sample: Sample, passed: int, total: int, outcome: str | None = None) -> Execution:
    if outcome is None:
        outcome = Outcome.PASSED.value if total and passed == total else Outcome.FAILED.value
    return Execution(
        sample_id=sample.sample_id, problem_id=sample.problem_id, round=0, outcome=outcome,
        coderl_class=CODERL_CLASS[Outcome(outcome)], passed=passed, total=total,
        pass_ratio=(passed / total) if total else 0.0, test_results=(), isolation_tier="test",
        duration_s=0.01,
    )


def scored_entry(problem_id: str, idx: int, code: str | None, passed: int, total: int = 4, **kw):
    outcome = kw.pop("outcome", None)
    s = make_sample(problem_id, idx, code, **kw)
    return s, make_execution(s, passed, total, outcome)


@pytest.fixture
def write_jsonl(tmp_path: Path):
    """Write rows (dicts or raw str/bytes lines) to a JSONL file and return its path."""

    def _write(name: str, rows: list) -> Path:
        path = tmp_path / name
        with path.open("wb") as f:
            for r in rows:
                if isinstance(r, bytes):
                    f.write(r + b"\n")
                elif isinstance(r, str):
                    f.write(r.encode() + b"\n")
                else:
                    f.write(json.dumps(r).encode() + b"\n")
        return path

    return _write


# Bundled problem data is trusted, so its reference check runs it with plain exec, in a separate
# interpreter (isolated from the test process, with a timeout). Prints the failures as JSON.
_CHECK_REFERENCES = r"""
import doctest, json, sys
failures = []
for p in json.load(sys.stdin):
    for code in p["tests"]:
        ns = {}
        try:
            exec(p["ref"], ns)
            exec(code, ns)
        except BaseException as e:
            failures.append((p["id"], code, repr(e)))
    ns = {}
    exec(p["ref"], ns)
    runner = doctest.DocTestRunner(verbose=False)
    for test in doctest.DocTestFinder().find(ns[p["entry"]], p["entry"], globs=ns):
        runner.run(test, out=lambda s: None)
    if runner.failures or (p["examples"] is not None and runner.tries != p["examples"]):
        failures.append((p["id"], "doctest", runner.tries, runner.failures))
print(json.dumps(failures))
"""


def run_isolated(script: str, payload: object, timeout: float = 120) -> object:
    """Run ``script`` in a fresh isolated interpreter, ``payload`` as JSON on stdin; its stdout as JSON."""
    res = subprocess.run([sys.executable, "-I", "-c", script], input=json.dumps(payload), capture_output=True,
                         text=True, timeout=timeout, check=False)
    assert res.returncode == 0, res.stderr[-2000:]
    return json.loads(res.stdout)


def reference_failures(problems, examples: int | None = None) -> list:
    """Each problem's reference solution against its given and example tests and its docstring's
    doctest examples (exactly ``examples`` of them when given): the failures, empty when all hold."""
    payload = [{"id": p.problem_id, "ref": p.reference_solution, "entry": p.entry_point,
                "tests": [t.code for t in (*p.given_tests, *p.example_tests)], "examples": examples}
               for p in problems]
    return run_isolated(_CHECK_REFERENCES, payload)
