"""SIGKILL at random moments and at chosen stages (sampling, execution, export, training), rerun,
and the run folder equals one that was never interrupted: bench/bench_crash.py, run as a test."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench_crash.py"


@pytest.mark.slow
def test_killed_runs_resume_to_the_same_dataset(tmp_path):
    spec = importlib.util.spec_from_file_location("bench_crash", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    report = tmp_path / "crash.json"
    code = bench.main(["--train", "--limit", "3", "--kill-at", "sample,execute,export,train,random",
                       "--json", str(report)])
    trials = json.loads(report.read_text())["trials"]
    assert len(trials) == 5
    assert code == 0, [t["problems"] for t in trials if t["problems"]]
    # the kills at a stage hit that stage (not a finished run)
    hit = [t for t in trials if t["kill_at"] != "random"]
    assert all(t["kill_at"] in t["in_flight"] for t in hit), [(t["kill_at"], t["in_flight"]) for t in hit]
