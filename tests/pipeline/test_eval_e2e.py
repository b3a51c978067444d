"""Held-out evaluation through real Beam, the real sandbox and real Parquet, with the policy behind the
canned OpenAI-compatible server (conftest.py): ``plumline eval`` on its own, the eval stage in every
round of a two-round online loop (with decontamination), and a loop killed during training."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from plumline.pipeline.cli import app
from plumline.pipeline.config import load_config
from plumline.pipeline.round import run_rounds
from typer.testing import CliRunner

EASY = Path(__file__).resolve().parents[2] / "examples" / "easy_problems.jsonl"
EASY_LINES = [line for line in EASY.read_text().splitlines() if line.strip()]


def _eval_source(tmp_path: Path, lines: list[str], name: str = "held_out.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("".join(line + "\n" for line in lines))
    return path


def _rows(path: Path) -> list[dict]:
    return pq.read_table(path).to_pylist()


@pytest.mark.slow
def test_plumline_eval_scores_a_served_model_on_the_sources_own_tests(tmp_path, canned):
    """The canned model answers greedy requests right, and sampled ones right, wrong, in prose, right:
    2 of 4 samples pass, so pass@1 = 0.5 and pass@2 = 1 - C(2,2)/C(4,2) = 5/6; greedy pass@1 = 1."""
    _, url = canned
    source = tmp_path / "held_out.json"  # a JSON list, as MBPP's sanitized-mbpp.json
    source.write_text(json.dumps([json.loads(line) for line in EASY_LINES[5:8]]))
    out = tmp_path / "eval"
    args = ["eval", "--model", "canned", "--backend", "openai", "--base-url", url, "--source", str(source),
            "--n", "4", "--k", "1,2", "--max-tokens", "64", "--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "eval.json").read_text())
    assert summary["pass@1"] == 0.5 and summary["pass@2"] == round(5 / 6, 4)
    assert summary["greedy_pass@1"] == 1.0 and summary["problems"] == 3 and summary["samples"] == 12
    assert summary["model"] == "canned" and summary["sources"] == [str(source)]
    rows = _rows(out / "eval_samples.parquet")
    assert len(rows) == 3 * 5 and sum(r["is_greedy"] for r in rows) == 3
    assert {r["outcome"] for r in rows if r["code"] is None} == {"compile_error"}
    assert all(r["passed"] == (r["outcome"] == "passed") for r in rows)
    assert all(r["tests_total"] > 0 for r in rows if r["code"])
    assert "pass@1" in result.output or "50.0%" in result.output

    # A model folder that does not exist, k larger than n: exit 2 with the cause.
    missing = CliRunner().invoke(app, ["eval", "--model", str(tmp_path / "nowhere"), "--backend",
                                       "transformers", "--source", str(source), "--out", str(out)])
    assert missing.exit_code == 2 and "does not exist" in " ".join(missing.output.split())
    too_big = CliRunner().invoke(app, [*args[:-2], "--k", "1,9", "--out", str(out)])
    assert too_big.exit_code == 2 and "larger than n" in " ".join(too_big.output.split())


def _loop_config(tmp_path: Path, url: str, eval_source: Path, extra: str = "") -> Path:
    cfg = tmp_path / "loop.yaml"
    cfg.write_text(f"""
name: loop
out_dir: {tmp_path / 'runs'}
sources:
  - {{path: bundled:easy, limit: 3}}
policy: {{kind: openai, model: canned, base_url: "{url}", max_retries: 1}}
sampling: {{n: 4, max_tokens: 64, greedy: true}}
tests: {{tests_per_problem: 4, given_tests_role: eval}}
validation: {{oracle: true, agreement: true, min_kept_tests: 1}}
eval: {{sources: [{{path: {eval_source}}}], n: 4, k: [1, 2]}}
training: {{method: dpo}}
dpo: {{train: {{max_steps: 1}}}}
beam: {{cpu_workers: 2}}
sandbox: {{workers: 1}}
{extra}
""")
    return cfg


@pytest.mark.slow
def test_two_rounds_evaluate_every_policy_and_decontaminate_training(tmp_path, canned):
    """Round 0 evaluates the initial policy, round 1 the model round 0 trained, and the final folder
    round-002 the model round 1 trained; a training problem that is also an eval problem is removed."""
    from plumline.llm.assets import build_tiny_llama

    _, url = canned
    tiny = build_tiny_llama(tmp_path / "tiny")
    # EASY_LINES[0] is among the 3 training problems: it must leave training.
    held_out = _eval_source(tmp_path, [EASY_LINES[0], *EASY_LINES[6:9]])
    cfg = load_config(_loop_config(tmp_path, url, held_out), ["rounds=2", f"policy.model={tiny}"])
    manifests = run_rounds(cfg, Path(cfg.out_dir) / cfg.name)
    run = Path(cfg.out_dir) / "loop"
    assert [m["round"] for m in manifests] == [0, 1, 2]
    assert manifests[2]["eval_only"] and not manifests[0].get("eval_only")
    for m in manifests[:2]:
        assert m["problems"]["contaminated"] == 1 and m["problems"]["read"] == 2
    errors = [json.loads(line) for line in (run / "round-000" / "errors.jsonl").read_text().splitlines()]
    assert sum(e["kind"] == "contaminated" and e["stage"] == "read" for e in errors) == 1

    policies = [str(tiny), str(run / "round-000" / "model"), str(run / "round-001" / "model")]
    for r, m in enumerate(manifests):
        folder = run / f"round-{r:03d}"
        ev = m["eval"]
        assert ev["pass@1"] == 0.5 and ev["pass@2"] == round(5 / 6, 4) and ev["greedy_pass@1"] == 1.0
        assert ev["problems"] == 4 and ev["model"] == policies[r]
        assert json.loads((folder / "eval.json").read_text()) == ev
        rows = _rows(folder / "eval_samples.parquet")
        assert {row["policy"] for row in rows} == {policies[r]} and {row["round"] for row in rows} == {r}
    assert not (run / "round-002" / "samples.parquet").exists()  # the final folder only evaluates
    s1 = _rows(run / "round-001" / "samples.parquet")
    assert {s["policy"] for s in s1} == {policies[1]}

    table = json.loads((run / "rounds.json").read_text())
    assert [row["round"] for row in table["rounds"]] == [0, 1, 2]
    assert all(row["pass@1"] == 0.5 and row["greedy_pass@1"] == 1.0 for row in table["rounds"])
    assert [row["policy"] for row in table["rounds"]] == policies
    assert set(table["rounds"][0]["by_source"]) == {"plumline-easy"}  # Problem.source of the rows

    # Training's reference is the initial policy from round 1 on (training.reference: initial).
    marker = json.loads((run / "round-001" / ".stages" / "train.done").read_text())
    assert marker["info"]["reference"] == str(tiny)

    # A rerun redoes nothing.
    markers = {p: p.read_text() for p in run.glob("round-*/.stages/*.done")}
    run_rounds(cfg, Path(cfg.out_dir) / cfg.name)
    assert {p: p.read_text() for p in run.glob("round-*/.stages/*.done")} == markers


@pytest.mark.slow
def test_an_eval_source_that_is_all_training_stops_the_round_with_the_cause(tmp_path, canned):
    _, url = canned
    held_out = _eval_source(tmp_path, EASY_LINES[:3])  # exactly the training problems
    cfg = load_config(_loop_config(tmp_path, url, held_out))
    from plumline.pipeline.errors import BadRunInput

    with pytest.raises(BadRunInput, match=r"round 0: every training problem \(3\) overlaps the eval sources"):
        run_rounds(cfg, Path(cfg.out_dir) / cfg.name)
    cfg = load_config(_loop_config(tmp_path, url, held_out), ["policy.kind=vllm",
                                                              f"policy.model={tmp_path / 'no-model'}"])
    with pytest.raises(BadRunInput, match="round 0: the policy model cannot be loaded: .*does not exist"):
        run_rounds(cfg, Path(cfg.out_dir) / cfg.name)


RUNNER = """
import sys
from pathlib import Path
from plumline.pipeline.config import load_config
from plumline.pipeline.round import run_rounds

cfg = load_config(sys.argv[1], sys.argv[2:])
run_rounds(cfg, Path(cfg.out_dir) / cfg.name)
"""


@pytest.mark.slow
def test_a_loop_killed_during_training_resumes_and_redoes_nothing_finished(tmp_path, canned):
    from plumline.llm.assets import build_tiny_llama

    model, url = canned
    tiny = build_tiny_llama(tmp_path / "tiny")
    held_out = _eval_source(tmp_path, EASY_LINES[6:8])
    cfg_path = _loop_config(tmp_path, url, held_out)
    overrides = [f"policy.model={tiny}", "dpo.train.max_steps=2"]
    script = tmp_path / "run_loop.py"
    script.write_text(RUNNER)
    stages = tmp_path / "runs" / "loop" / "round-000" / ".stages"
    proc = subprocess.Popen([sys.executable, str(script), str(cfg_path), *overrides], start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        trainer = None
        while time.monotonic() < deadline and proc.poll() is None:
            found = subprocess.run(["pgrep", "-s", str(proc.pid), "-f", "plumline.trainers"],
                                   capture_output=True, text=True, check=False).stdout.split()
            if found:
                trainer = found[0]
                break
            time.sleep(0.2)
        assert trainer, "the trainer never started"
        time.sleep(1.0)  # well inside training: torch and TRL take seconds to load
        os.kill(proc.pid, signal.SIGKILL)  # the loop alone, as an OOM kill would: its trainer must follow
        proc.wait(timeout=30)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and subprocess.run(
                ["pgrep", "-s", str(proc.pid), "-f", "plumline.trainers"], capture_output=True,
                check=False).returncode == 0:
            time.sleep(0.2)
        assert subprocess.run(["pgrep", "-s", str(proc.pid), "-f", "plumline.trainers"],
                              check=False).returncode == 1, "the trainer outlived the killed loop"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert not (stages / "train.done").exists() and (stages / "export.done").exists()
    done = {p.name: p.read_text() for p in stages.glob("*.done")}
    assert set(done) == {"read.done", "tests.done", "sample.done", "eval.done", "execute.done", "export.done"}
    requests = len(model.requests)

    manifests = run_rounds(load_config(cfg_path, overrides), tmp_path / "runs" / "loop")
    assert {p.name: p.read_text() for p in stages.glob("*.done") if p.name in done} == done  # not redone
    assert (stages / "train.done").exists() and (stages.parent / "model" / "config.json").is_file()
    assert len(model.requests) - requests == len(EASY_LINES[6:8]) * 2  # only the final eval of the model
    assert [m["round"] for m in manifests] == [0, 1] and manifests[1]["eval_only"]
