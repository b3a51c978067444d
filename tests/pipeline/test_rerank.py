"""``plumline eval --rerank``: a tiny trained critic and a tiny trained PRM pick among eval samples
(the glue: which scorer a folder is, scores by sample id, eval.json's rerank section)."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest
from plumline.data_schemas import CriticRow, EvalSample, to_table
from plumline.data_schemas.records import PrmRow
from plumline.data_schemas.steps import split_steps
from plumline.pipeline.errors import BadRunInput

PROMPT = "<|im_start|>user\nWrite add(a, b).<|im_end|>\n<|im_start|>assistant\n"
GOOD = "def add(a, b):\n    return a + b\n"
BAD = "def add(a, b):\n    return a - b\n"


def _eval_rows() -> list[EvalSample]:
    rows = []
    for pid in ("p1", "p2"):
        for i, code in enumerate([BAD, GOOD, None]):
            rows.append(EvalSample(sample_id=f"{pid}-{i}", problem_id=pid, source="s", round=0, policy="m",
                                   policy_revision="r", is_greedy=False, sample_index=i, code=code,
                                   passed=code == GOOD, outcome="passed" if code == GOOD else "failed",
                                   tests_passed=int(code == GOOD), tests_total=1, prompt=PROMPT))
        rows.append(EvalSample(sample_id=f"{pid}-g", problem_id=pid, source="s", round=0, policy="m",
                               policy_revision="r", is_greedy=True, sample_index=0, code=BAD, passed=False,
                               outcome="failed", tests_passed=0, tests_total=1, prompt=PROMPT))
    return rows


@pytest.fixture(scope="module")
def scorers(tmp_path_factory) -> dict[str, Path]:
    """A critic and a PRM trained for a few steps on the tiny random Llama (their quality is not
    the point here: the glue is)."""
    from plumline.llm.assets import build_tiny_llama
    from plumline.trainers.critic import CriticTrainingConfig, train_critic
    from plumline.trainers.prm import PrmTrainingConfig, train_prm

    root = tmp_path_factory.mktemp("scorers")
    tiny = build_tiny_llama(root / "tiny")
    critic_rows = [CriticRow(prompt=PROMPT, code=c, outcome="passed" if c == GOOD else "failed",
                             coderl_class=3 if c == GOOD else 2, coderl_return=1.0 if c == GOOD else -0.3,
                             error_type=None, error_line=None, pass_ratio=1.0 if c == GOOD else 0.0,
                             problem_id=f"p{i}", sample_id=f"s{i}", round=0)
                   for i, c in enumerate([GOOD, BAD] * 4)]
    pq.write_table(to_table(critic_rows, CriticRow), root / "critic.parquet")
    prm_rows = [PrmRow(prompt=PROMPT, completions=tuple(split_steps(c)), labels=(True, c == GOOD),
                       problem_id=f"p{i}", sample_id=f"s{i}", round=0,
                       first_bad_step=None if c == GOOD else 1, k=2)
                for i, c in enumerate([GOOD, BAD] * 4)]
    pq.write_table(to_table(prm_rows, PrmRow), root / "prm.parquet")
    train_critic([root / "critic.parquet"], tiny, root / "critic", CriticTrainingConfig(max_steps=2))
    train_prm([root / "prm.parquet"], tiny, root / "prm", PrmTrainingConfig(max_steps=2))
    return {"critic": root / "critic", "prm": root / "prm", "policy": tiny}


@pytest.mark.slow
def test_rerank_eval_with_a_critic_and_a_prm(scorers, tmp_path):
    from plumline.pipeline.rerank import rerank_eval, scorer_kind

    assert scorer_kind(scorers["critic"]) == "critic" and scorer_kind(scorers["prm"]) == "prm"
    with pytest.raises(BadRunInput, match="neither a critic"):
        scorer_kind(scorers["policy"])
    with pytest.raises(BadRunInput, match="not a model folder"):
        scorer_kind(tmp_path / "nothing")
    pq.write_table(to_table(_eval_rows(), EvalSample), tmp_path / "eval_samples.parquet")
    out = rerank_eval(tmp_path, [str(scorers["critic"]), str(scorers["prm"])], aggregate="product")
    assert [r["kind"] for r in out] == ["critic", "prm"] and out[1]["aggregate"] == "product"
    for r in out:
        assert r["problems"] == 2 and r["samples"] == 6 and r["scored"] == 4  # programs with code
        assert r["pass@1_random"] == round(1 / 3, 4) and r["greedy_pass@1"] == 0.0 and r["pass@n"] == 1.0
        assert r["pass@1_reranked"] in (0.0, 0.5, 1.0)


def test_old_eval_files_without_prompts_are_refused(tmp_path):
    from dataclasses import replace

    from plumline.pipeline.rerank import rerank_eval
    rows = [replace(r, prompt="") for r in _eval_rows()]
    pq.write_table(to_table(rows, EvalSample), tmp_path / "eval_samples.parquet")
    with pytest.raises(BadRunInput, match="no prompts.*--force"):
        rerank_eval(tmp_path, ["whatever"])


@pytest.mark.slow
def test_plumline_eval_rerank_command(scorers, tmp_path, canned):
    """The whole command: a served model is evaluated, then both scorers pick among its samples; the
    table and eval.json show the picks beside the random and greedy baselines."""
    import json

    from plumline.pipeline.cli import app
    from typer.testing import CliRunner

    _, url = canned
    out = tmp_path / "eval"
    args = ["eval", "--model", "canned", "--backend", "openai", "--base-url", url, "--source", "bundled:easy",
            "--limit", "3", "--n", "4", "--k", "1", "--max-tokens", "64", "--out", str(out),
            "--rerank", str(scorers["critic"]), "--rerank", str(scorers["prm"]), "--rerank-aggregate", "min"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "eval.json").read_text())
    assert [r["kind"] for r in summary["rerank"]] == ["critic", "prm"]
    # the canned model: 2 of 4 samples right per problem, the greedy one right
    assert all(r["pass@1_random"] == 0.5 and r["greedy_pass@1"] == 1.0 for r in summary["rerank"])
    assert "scorer's pick" in result.output and "critic" in result.output and "prm min" in result.output
    assert "Loading weights" not in result.output  # the console stays quiet
    bad = CliRunner().invoke(app, [*args[:-2], "--rerank-aggregate", "mean"])
    assert bad.exit_code == 2 and "min or product" in bad.output
    policy = CliRunner().invoke(app, [*args[:-6], "--rerank", str(scorers["policy"])])
    assert policy.exit_code == 2 and "neither a critic" in policy.output
