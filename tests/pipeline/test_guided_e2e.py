"""Critic-guided sampling in a whole round and in ``plumline eval``: real Beam, the real sandbox, real
Parquet, a tiny critic really trained (its scores are random; the glue is the point), and the policy
behind an OpenAI-compatible endpoint (the canned server of bench/canned_openai.py, taught to continue a
partial answer and to fix a program when asked)."""

from __future__ import annotations

import importlib.util
import json
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from plumline.data_schemas import CriticRow, to_table
from plumline.pipeline.config import load_config
from plumline.pipeline.round import run_rounds

_spec = importlib.util.spec_from_file_location(
    "canned_openai_guided", Path(__file__).resolve().parents[2] / "bench" / "canned_openai.py")
canned_openai = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(canned_openai)

FENCE = "```python\n"
REPAIR_MARK = "Your program fails a test"  # the default repair instruction


class GuidedModel(canned_openai.CannedModel):
    """The canned model (first samples cycle right, wrong, prose...), which also repairs a program
    (the reference solution, when the repair instruction is in the prompt) and continues a partial
    answer (the reference's rest while the prefix agrees with it; ``return None`` otherwise)."""

    def reply(self, body: dict) -> list[str]:
        text = body.get("prompt", "")
        row = self._problem(text)
        n = int(body.get("n", 1))
        if row is not None and REPAIR_MARK in text:
            self.requests.append(body)
            return [f"Fixed:\n{FENCE}{row['reference_solution']}```\n"] * n
        written = text.rpartition(FENCE)[2] if FENCE in text else None
        if row is not None and written is not None and "```" not in written:
            self.requests.append(body)
            ref = row["reference_solution"].rstrip("\n").split("\n")
            lines = written.split("\n")
            agrees = lines == ref[:len(lines)]
            rest = "\n" + "\n".join(ref[len(lines):]) + "\n```\n" if agrees else "\n    return None\n```\n"
            return [rest] * n
        return super().reply(body)


@pytest.fixture(scope="module")
def guided_server():
    model = GuidedModel()
    server, url = canned_openai.serve(model)
    yield model, url
    server.shutdown()


@pytest.fixture(scope="module")
def critic(tmp_path_factory) -> Path:
    """A critic trained for two steps on the tiny random Llama (as tests/pipeline/test_rerank.py)."""
    from plumline.llm.assets import build_tiny_llama
    from plumline.trainers.critic import CriticTrainingConfig, train_critic

    root = tmp_path_factory.mktemp("critic")
    good, bad = "def add(a, b):\n    return a + b\n", "def add(a, b):\n    return a - b\n"
    rows = [CriticRow(prompt="Write add(a, b).", code=c, outcome="passed" if c == good else "failed",
                      coderl_class=3 if c == good else 2, coderl_return=1.0 if c == good else -0.3,
                      error_type=None, error_line=None, pass_ratio=1.0 if c == good else 0.0,
                      problem_id=f"p{i}", sample_id=f"s{i}", round=0) for i, c in enumerate([good, bad] * 4)]
    pq.write_table(to_table(rows, CriticRow), root / "critic.parquet")
    train_critic([root / "critic.parquet"], build_tiny_llama(root / "tiny"), root / "critic",
                 CriticTrainingConfig(max_steps=2))
    return root / "critic"


def _config(tmp_path: Path, url: str, critic: Path) -> Path:
    cfg = tmp_path / "run.yaml"
    cfg.write_text(f"""
name: guided
out_dir: {tmp_path / 'runs'}
sources: [{{path: bundled:easy, limit: 4}}]
policy: {{kind: openai, model: canned, base_url: "{url}", max_retries: 1, endpoint: completions}}
sampling: {{n: 4, max_tokens: 64, greedy: true, mode: critic_guided, guided: {{critic: "{critic}"}}}}
tests: {{tests_per_problem: 4, given_tests_role: eval, mode: asserts}}
validation: {{oracle: true, agreement: true, min_kept_tests: 1}}
beam: {{cpu_workers: 2}}
sandbox: {{workers: 2}}
""")
    return cfg


@pytest.mark.slow
def test_a_round_with_critic_guided_sampling(tmp_path, guided_server, critic):
    model, url = guided_server
    cfg = load_config(_config(tmp_path, url, critic))
    run_dir = Path(cfg.out_dir) / cfg.name
    m = run_rounds(cfg, run_dir)[0]
    rd = run_dir / "round-000"

    samples = pq.read_table(rd / "samples.parquet").to_pylist()
    by_problem: dict[str, list[dict]] = {}
    for s in samples:
        by_problem.setdefault(s["problem_id"], []).append(s)
    assert len(by_problem) == 4
    for pid, mine in by_problem.items():
        sampled = [s for s in mine if not s["is_greedy"]]
        assert len(sampled) == 4 and sum(s["is_greedy"] for s in mine) == 1, pid  # the plain budget
        # n0 = 2 plain (right, wrong): the right one is refined, the wrong one repaired, one slot each
        assert Counter(s["origin"] for s in sampled) == {"sampled": 2, "refined": 1, "repaired": 1}, pid
        assert sorted(s["sample_index"] for s in mine) == list(range(5))
        assert len({s["prompt"] for s in mine}) == 1  # the policy prompt, whatever the origin
        ids = {s["sample_id"] for s in mine}
        assert all(s["parent_sample_id"] in ids for s in mine if s["origin"] != "sampled")
    assert len({s["sample_id"] for s in samples}) == len(samples)

    # every sample was executed by the execute stage; the refined and repaired ones pass
    executions = {e["sample_id"]: e for e in pq.read_table(rd / "executions.parquet").to_pylist()}
    assert set(executions) == {s["sample_id"] for s in samples}
    assert all(executions[s["sample_id"]]["outcome"] == "passed" for s in samples if s["origin"] != "sampled")
    assert m["samples"]["by_origin"] == {"sampled": 12, "refined": 4, "repaired": 4}
    guided = m["guided"]
    assert guided["problems_without_examples"] == 0
    assert guided["pass_rate_by_origin"]["refined"]["pass_rate"] == 1.0
    assert guided["pass_rate_by_origin"]["repaired"] == {"samples": 4, "passed": 4, "pass_rate": 1.0}
    from plumline.pipeline.validate import validate_run
    assert validate_run(run_dir) == []  # every row still traces to its sample and execution

    # the repair prompts name an example test, never one of the problems' other (given) tests
    repairs = [r for r in model.requests if REPAIR_MARK in r.get("prompt", "")]
    assert len(repairs) == 4 and all("failed" in r["prompt"] for r in repairs)
    easy = canned_openai.load_easy()
    for r in repairs:
        row = next(row for name, row in easy.items() if f"def {name}(" in r["prompt"])
        shown = row["example_tests"][0]["code"]
        hidden = [t["code"] for t in row["given_tests"] if t["code"] != shown]
        assert f"`{shown}`" in r["prompt"] and not any(h in r["prompt"] for h in hidden)


@pytest.mark.slow
def test_plumline_eval_with_critic_guided_sampling(tmp_path, guided_server, critic):
    """The eval's samples drawn the guided way (examples only), scored on the given tests; eval.json
    says how they were drawn and gives the pass rate of each origin."""
    from plumline.pipeline.config import check_config
    from plumline.pipeline.evaluation import eval_run_config
    from plumline.pipeline.round import evaluate_model

    _, url = guided_server
    plain = eval_run_config("canned", "bundled:easy", limit=3, n=4, k=[1], backend="openai", base_url=url,
                            max_tokens=64)
    # plumline eval --sampling critic-guided --critic CRITIC, with the canned server's completions endpoint
    # (a chat endpoint cannot continue a prefix; the command has no option for it: vllm/transformers)
    cli = eval_run_config("canned", "bundled:easy", limit=3, n=4, k=[1], backend="transformers",
                          max_tokens=64, sampling="critic-guided", critic=str(critic))
    cfg = check_config(plain.model_copy(update={
        "policy": plain.policy.model_copy(update={"endpoint": "completions"}), "sampling": cli.sampling,
        "eval": cli.eval}))
    out = tmp_path / "eval"
    summary = evaluate_model(cfg, out)
    on_disk = json.loads((out / "eval.json").read_text())
    assert on_disk["sampling"] == summary["sampling"] == "critic_guided"
    assert on_disk["critic"] == str(critic.resolve())
    assert on_disk["by_origin"]["refined"] == {"samples": 3, "passed": 3, "pass_rate": 1.0}
    assert on_disk["by_origin"]["repaired"]["samples"] == 3
    assert on_disk["by_origin"]["sampled"] == {"samples": 6, "passed": 3, "pass_rate": 0.5}
    rows = pq.read_table(out / "eval_samples.parquet").to_pylist()
    assert Counter(r["origin"] for r in rows if not r["is_greedy"]) == {"sampled": 6, "refined": 3,
                                                                         "repaired": 3}
    assert on_disk["samples"] == 12 and on_disk["problems"] == 3


def test_plumline_eval_says_what_critic_guided_sampling_needs(tmp_path):
    from plumline.pipeline.cli import app
    from typer.testing import CliRunner

    args = ["eval", "--model", "m", "--backend", "openai", "--base-url", "http://127.0.0.1:9/v1",
            "--source", "bundled:easy", "--out", str(tmp_path / "out"), "--sampling", "critic-guided"]
    def run(extra: list[str]) -> tuple[int, str]:
        result = CliRunner().invoke(app, extra)
        return result.exit_code, " ".join(result.output.split())  # the console wraps long lines

    code, text = run(args)
    assert code == 2 and "--critic: required with --sampling critic-guided" in text
    code, text = run([*args, "--critic", str(tmp_path / "nothing")])
    assert code == 2 and "--critic: model folder" in text and "does not exist" in text
    (tmp_path / "critic").mkdir()
    (tmp_path / "critic" / "config.json").write_text("{}")
    code, text = run([*args, "--critic", str(tmp_path / "critic")])
    assert code == 2 and "sampling.mode: critic_guided with an openai policy on the chat endpoint" in text
    code, text = run([*args[:-1], "best-of"])
    assert code == 2 and "not plain or critic-guided" in text
    help_text = CliRunner().invoke(app, ["eval", "--help"]).output
    assert "--sampling" in help_text and "--critic" in help_text
