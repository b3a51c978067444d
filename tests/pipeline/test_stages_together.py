"""Engine stages that share one engine run at the same time (pipeline/round.py ``together_with``): which
stages go together, and a real round (Beam, sandbox, Parquet) run that way against the canned
OpenAI-compatible server, compared file by file with the same round run one stage after the other.

Only vLLM shares its running batch across callers (``shares_running_batch``), so the end-to-end tests
let the canned server's backend count as one: the thread, channel, marker and failure handling under
test are the runner's, whatever engine serves."""

from __future__ import annotations

import logging
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from plumline.data_schemas import Stage, comparable_rows
from plumline.llm import BackendConfig
from plumline.pipeline.config import RunConfig, load_config
from plumline.pipeline.errors import BadRunInput
from plumline.pipeline.round import RoundRunner, run_rounds
from plumline.pipeline.stages import POLICY, STAGES

EASY = Path(__file__).resolve().parents[2] / "examples" / "easy_problems.jsonl"


def _cfg(**update) -> RunConfig:
    cfg = RunConfig(sources=[{"path": "bundled:easy"}], policy=BackendConfig(kind="vllm", model="m"),
                    eval={"sources": [{"path": "bundled:easy-eval"}]}, tests={"enabled": False})
    return cfg.model_copy(update=update) if update else cfg


def _partners(cfg: RunConfig, tmp_path: Path, stage: Stage, ready: tuple[str, ...]) -> list[str]:
    runner = RoundRunner(cfg, tmp_path, 0)
    runner.tokens.update({name: "token" for name in ready})
    table = [s for s in STAGES if s.enabled(cfg)]
    i = next(i for i, s in enumerate(table) if s.name == stage)
    return [s.name.value for s in runner.together_with(table[i], table[i + 1:])]


def test_sample_and_eval_of_one_policy_engine_go_together(tmp_path):
    cfg = _cfg()
    assert _partners(cfg, tmp_path, Stage.SAMPLE, ("problems", "tests_candidates", "tests_stats")) == ["eval"]
    # tests that the policy writes: its engine too, and it reads only the problems
    writing = cfg.model_copy(update={"tests": cfg.tests.model_copy(update={"enabled": True})})
    assert _partners(writing, tmp_path, Stage.TESTS, ("problems",)) == ["sample", "eval"]
    # the prm stage reads the executions: not before they exist
    prm = cfg.model_copy(update={"prm": cfg.prm.model_copy(update={"enabled": True})})
    assert _partners(prm, tmp_path, Stage.SAMPLE, ("problems",)) == ["eval"]
    assert _partners(prm, tmp_path, Stage.PRM, ("problems", "tests", "samples", "executions")) == []
    assert POLICY in RoundRunner(cfg, tmp_path, 0).tokens


def test_stages_of_different_engines_or_engines_without_a_shared_batch_go_one_by_one(tmp_path):
    ready = ("problems",)
    other = _cfg()
    other = other.model_copy(update={"eval": other.eval.model_copy(
        update={"backend": BackendConfig(kind="vllm", model="m", max_model_len=1024)})})
    assert _partners(other, tmp_path, Stage.SAMPLE, ready) == []  # two engines at once may not fit a GPU
    for kind in ("transformers", "openai"):
        cfg = _cfg(policy=BackendConfig(kind=kind, model="m"))
        assert _partners(cfg, tmp_path, Stage.SAMPLE, ready) == [], kind
    off = _cfg()
    off = off.model_copy(update={"beam": off.beam.model_copy(update={"overlap_engine_stages": False})})
    assert _partners(off, tmp_path, Stage.SAMPLE, ready) == []


def _round_config(tmp_path: Path, url: str, name: str, eval_source: str, overlap: bool) -> RunConfig:
    path = tmp_path / f"{name}.yaml"
    path.write_text(f"""
name: {name}
out_dir: {tmp_path / 'runs'}
sources: [{{path: bundled:easy, limit: 4}}]
policy: {{kind: openai, model: canned, base_url: "{url}", max_retries: 1}}
sampling: {{n: 4, max_tokens: 64, batch_size: 2}}
tests: {{tests_per_problem: 4, given_tests_role: eval, batch_size: 2}}
validation: {{oracle: true, agreement: true, min_kept_tests: 1}}
eval: {{sources: [{{path: {eval_source}}}], n: 2, k: [1]}}
training: {{method: none}}
beam: {{cpu_workers: 2, overlap_engine_stages: {str(overlap).lower()}}}
sandbox: {{workers: 1}}
""")
    return load_config(path)


@pytest.fixture
def shared_batch_everywhere(monkeypatch):
    """The canned server's backend counted as one sharing its batch, and reporting its completions on
    the progress channel as the vLLM backend does."""
    from plumline.llm import progress
    from plumline.llm.openai_backend import OpenAIBackend

    monkeypatch.setattr("plumline.pipeline.round.shares_running_batch", lambda cfg: True)
    serve = OpenAIBackend._generate_batch

    def reporting(self, items):
        results = serve(self, items)
        progress.add("completions", sum(len(r.completions) for r in results))
        return results

    monkeypatch.setattr(OpenAIBackend, "_generate_batch", reporting)


@pytest.mark.slow
def test_a_round_run_together_writes_what_it_writes_one_stage_at_a_time(
        tmp_path, canned, shared_batch_everywhere, caplog):
    _, url = canned
    held_out = tmp_path / "held_out.jsonl"
    held_out.write_text("".join(line + "\n" for line in EASY.read_text().splitlines()[6:9]))
    caplog.set_level(logging.INFO, logger="plumline.pipeline.round")
    started: list[str] = []
    together = _round_config(tmp_path, url, "together", str(held_out), overlap=True)
    [manifest] = run_rounds(together, tmp_path / "runs" / "together",
                            on_stage=lambda r, s: started.append(s.value))
    assert "round 0: stages tests, sample, eval run together on one engine" in caplog.text
    assert started == ["read", "tests", "sample", "eval", "execute", "export"]
    apart = _round_config(tmp_path, url, "apart", str(held_out), overlap=False)
    run_rounds(apart, tmp_path / "runs" / "apart")
    a, b = tmp_path / "runs" / "together" / "round-000", tmp_path / "runs" / "apart" / "round-000"
    files = sorted(p.name for p in a.glob("*.parquet"))
    assert {"samples.parquet", "eval_samples.parquet", "tests.parquet"} <= set(files)
    assert files == sorted(p.name for p in b.glob("*.parquet"))
    for name in files:
        assert comparable_rows(pq.read_table(a / name)) == comparable_rows(pq.read_table(b / name)), name
    for stage in ("tests", "sample", "eval"):  # each stage has its own marker and its own progress
        others = sorted({"tests", "sample", "eval"} - {stage})
        assert sorted(manifest["stages"][stage]["ran_beside"]) == others
    assert "ran_beside" not in manifest["stages"]["execute"]
    from plumline.llm.progress import read_progress

    assert read_progress(a / ".progress" / "sample")["completions"] == 4 * 5  # n=4 + greedy, 4 problems
    assert read_progress(a / ".progress" / "eval")["completions"] == 3 * 3  # n=2 + greedy, 3 problems
    assert manifest["eval"]["problems"] == 3
    # a rerun finds every stage done
    caplog.clear()
    run_rounds(together, tmp_path / "runs" / "together")
    assert "stage sample already done" in caplog.text and "stage eval already done" in caplog.text
    # sampling again while tests and eval are kept: it ran beside nothing
    (a / ".stages" / "sample.done").unlink()
    [again] = run_rounds(together, tmp_path / "runs" / "together")
    assert "ran_beside" not in again["stages"]["sample"]
    assert again["stages"]["eval"]["ran_beside"] == manifest["stages"]["eval"]["ran_beside"]  # as it was


@pytest.mark.slow
def test_a_stage_that_fails_beside_another_leaves_the_other_finished(tmp_path, canned,
                                                                    shared_batch_everywhere):
    """Eval finds no problem in its source and stops the round; sampling, running beside it, finishes and
    is marked done, so the rerun (after the source is fixed) does not sample again."""
    _, url = canned
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    cfg = _round_config(tmp_path, url, "fails", str(empty), overlap=True)
    run_dir = tmp_path / "runs" / "fails"
    with pytest.raises(BadRunInput, match="no eval problems"):
        run_rounds(cfg, run_dir)
    folder = run_dir / "round-000"
    assert (folder / ".stages" / "sample.done").is_file() and (folder / "samples.parquet").is_file()
    assert not (folder / ".stages" / "eval.done").exists()


def test_ctrl_c_while_stages_run_together_cancels_engine_calls_and_waits_for_them(tmp_path, monkeypatch):
    """Ctrl-C reaches the thread waiting for the stages: the engine calls in flight are cancelled (the
    stages then end without being marked done, ``RoundRunner._run_stage``), every stage thread is waited
    for, the engine serves again afterwards, and the interrupt goes on up."""
    import _thread
    import signal
    import threading

    runner = RoundRunner(_cfg(), tmp_path, 0)
    released = threading.Event()
    calls: list[str] = []
    ended: list[str] = []

    def blocked_stage(spec):  # a stage waiting on its engine until the engine call is cancelled
        released.wait(30)
        ended.append(spec.name.value)
        raise RuntimeError("generation cancelled")

    def cancel(reason):
        calls.append(f"cancel: {reason}")
        released.set()

    monkeypatch.setattr(runner, "run_stage", blocked_stage)
    monkeypatch.setattr("plumline.pipeline.round.cancel_shared_generation", cancel)
    monkeypatch.setattr("plumline.pipeline.round.resume_shared_generation", lambda: calls.append("resume"))
    group = [s for s in STAGES if s.name in (Stage.SAMPLE, Stage.EVAL)]
    # Python's own Ctrl-C handler, whatever an earlier test in this process left installed
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        threading.Timer(0.5, _thread.interrupt_main).start()
        with pytest.raises(KeyboardInterrupt):
            runner._run_together(group)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert calls == ["cancel: the run was interrupted", "resume"]
    assert sorted(ended) == ["eval", "sample"]  # both threads ended before the interrupt went on
    assert runner._interrupted.is_set() and runner._together == ()
