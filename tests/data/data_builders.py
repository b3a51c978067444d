"""Builders for Sample and Execution records and a JSONL writer fixture (readers/pairing tests)."""

from __future__ import annotations

import json
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
