"""The prm stage in a whole round: real Beam, the real sandbox, real Parquet, and the policy behind an
OpenAI-compatible endpoint (the canned server of bench/canned_openai.py, taught to continue a partial
answer). Checks the labels, one engine call per probe level, the manifest's cost, the export, and that
a rerun with the same config asks the engine nothing."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from plumline.llm.base import GenerationBackend
from plumline.llm.openai_backend import OpenAIBackend
from plumline.pipeline.config import ConfigError, load_config
from plumline.pipeline.round import run_rounds

_spec = importlib.util.spec_from_file_location(
    "canned_openai_prm", Path(__file__).resolve().parents[2] / "bench" / "canned_openai.py")
canned_openai = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(canned_openai)

FENCE = "```python\n"


class ContinuingModel(canned_openai.CannedModel):
    """The canned model, with two changes. Its wrong program is the reference solution with the last
    line replaced by ``return None`` (so a program has several steps and its bug sits on the last
    one). And it continues a partial answer (a prefix ending inside an open code block, as the prm
    stage sends it): while the prefix agrees with the reference, every other continuation completes
    the reference (so a prefix is good with 2 of k=3 passing); otherwise it returns None."""

    def reply(self, body: dict) -> list[str]:
        text = body.get("prompt", "")
        written = text.rpartition(FENCE)[2] if FENCE in text else None
        row = self._problem(text)
        if written is not None and "```" not in written and row is not None:
            self.requests.append(body)
            ref = row["reference_solution"].rstrip("\n").split("\n")
            lines = written.split("\n")  # whole lines: the prefix stops before its last newline
            rest = "\n" + "\n".join(ref[len(lines):]) + "\n```\n" if lines == ref[:len(lines)] else None
            bad = "\n    return None\n```\n"
            return [rest if rest and i % 2 == 0 else bad for i in range(int(body["n"]))]
        replies = super().reply(body)
        if row is None:
            return replies
        head = row["reference_solution"].rstrip("\n").split("\n")[:-1]
        wrong = FENCE + "\n".join(head) + "\n    return None\n```"
        return [wrong if "*args, **kwargs" in r else r for r in replies]


@pytest.fixture(scope="module")
def continuing():
    model = ContinuingModel()
    server, url = canned_openai.serve(model)
    yield model, url
    server.shutdown()


def _config(tmp_path: Path, url: str) -> Path:
    cfg = tmp_path / "run.yaml"
    cfg.write_text(f"""
name: prm
out_dir: {tmp_path / 'runs'}
sources: [{{path: bundled:easy, limit: 6}}]
policy: {{kind: openai, model: canned, base_url: "{url}", max_retries: 1, endpoint: completions}}
sampling: {{n: 4, max_tokens: 64, greedy: true}}
tests: {{tests_per_problem: 4, given_tests_role: eval, mode: asserts}}
validation: {{oracle: true, agreement: true, min_kept_tests: 1}}
prm: {{enabled: true, k: 3}}
beam: {{cpu_workers: 2}}
sandbox: {{workers: 2}}
""")
    return cfg


def _prm_calls(calls: list[list[str]]) -> list[list[str]]:
    return [ids for ids in calls if ids and all(i.startswith("prm:") for i in ids)]


@pytest.mark.slow
def test_a_round_with_prm_labels_the_failing_programs(tmp_path, continuing, monkeypatch):
    model, url = continuing
    calls: list[list[str]] = []

    def counting_generate(self, requests):
        calls.append([r.request_id for r in requests])
        return GenerationBackend.generate(self, requests)

    monkeypatch.setattr(OpenAIBackend, "generate", counting_generate)
    cfg = load_config(_config(tmp_path, url))
    run_dir = Path(cfg.out_dir) / cfg.name
    m = run_rounds(cfg, run_dir)[0]
    rd = run_dir / "round-000"

    rows = pq.read_table(rd / "prm.parquet").to_pylist()
    samples = {s["sample_id"]: s for s in pq.read_table(rd / "samples.parquet").to_pylist()}
    assert len(rows) == 6  # one wrong program per problem, each with passing samples beside it
    for row in rows:
        code = samples[row["sample_id"]]["code"]
        assert "\n".join(row["completions"]) == code and code.endswith("return None")
        n = len(row["completions"])
        assert row["first_bad_step"] == n - 1  # the bug is on the last line
        assert row["labels"] == [True] * (n - 1) + [False]
        assert row["k"] == 3 and row["probe_passes"] == [2] * len(row["probed"])
        assert row["prompt"] == samples[row["sample_id"]]["prompt"]

    # ONE engine call per probe level, holding every program still searching at that level
    prm_calls = _prm_calls(calls)
    levels = max(len(r["probed"]) for r in rows)
    assert len(prm_calls) == levels == m["prm"]["probe_levels"] and levels >= 2
    assert len(prm_calls[0]) == 6
    for level, ids in enumerate(prm_calls):
        assert sorted(ids) == sorted(f"prm:{r['sample_id']}:{r['probed'][level]}" for r in rows
                                     if len(r["probed"]) > level)
    probes = sum(len(r["probed"]) for r in rows)
    http = [r for r in model.requests if FENCE in r.get("prompt", "") and "```" not in
            r["prompt"].rpartition(FENCE)[2]]
    assert len(http) == probes and all(r["n"] == 3 for r in http)  # one request per probe, n = k
    assert m["prm"]["programs"] == 6 and m["prm"]["rows"] == 6 and m["prm"]["probes"] == probes
    assert m["prm"]["completions"] == 3 * probes and m["prm"]["executions"] == 3 * probes
    assert m["prm"]["passed_completions"] == 2 * probes and m["prm"]["labelling_seconds"] > 0
    assert m["stages"]["prm"]["probes"] == probes and m["counts"]["prm"] == 6

    from datasets import load_dataset
    ds = load_dataset("parquet", data_files=str(rd / "prm.parquet"))["train"]
    assert {"prompt", "completions", "labels", "first_bad_step", "k", "probed"} <= set(ds.column_names)
    assert len(ds) == 6 and isinstance(ds[0]["completions"], list) and isinstance(ds[0]["labels"][0], bool)
    from plumline.trainers.prm import check_prm_rows
    check_prm_rows(ds, "prm.parquet")  # the PRM trainer takes the rows as they are

    # plumline validate traces every row to its sample; a tampered row is named
    from plumline.pipeline.validate import validate_run
    assert validate_run(run_dir) == []
    import pyarrow as pa
    table = pq.read_table(rd / "prm.parquet")
    rows = table.to_pylist()
    rows[0]["completions"] = [*rows[0]["completions"], "    return 42"]
    rows[0]["labels"] = [*rows[0]["labels"], False]
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), rd / "prm.parquet")
    assert any("row 0: steps do not join" in str(f) for f in validate_run(run_dir))
    pq.write_table(table, rd / "prm.parquet")

    # plumline export carries the labels with a card entry
    from plumline.pipeline.dataset_card import export_dataset
    summary = export_dataset(run_dir, tmp_path / "export")
    assert summary.rows["prm"] == 6
    assert "prm" in (tmp_path / "export" / "README.md").read_text()
    assert len(load_dataset(str(tmp_path / "export"), "prm", split="train")) == 6

    # A rerun with the same config asks the engine nothing and keeps every marker.
    markers = {p.name: p.read_text() for p in (rd / ".stages").glob("*.done")}
    n_requests, n_calls = len(model.requests), len(calls)
    run_rounds(load_config(_config(tmp_path, url)), run_dir)
    assert len(model.requests) == n_requests and len(calls) == n_calls
    assert {p.name: p.read_text() for p in (rd / ".stages").glob("*.done")} == markers

    # A prm knob reruns the prm stage only.
    run_rounds(load_config(_config(tmp_path, url), ["prm.k=2"]), run_dir)
    now = {p.name: p.read_text() for p in (rd / ".stages").glob("*.done")}
    assert [n for n in sorted(now) if now[n] != markers[n]] == ["prm.done"]
    assert calls[n_calls:] and _prm_calls(calls[n_calls:]) == calls[n_calls:]
    assert {r["k"] for r in pq.read_table(rd / "prm.parquet").to_pylist()} == {2}
    errors = [json.loads(line) for line in (rd / "errors.jsonl").read_text().splitlines()]
    assert not [e for e in errors if e["stage"] == "prm"]


def test_a_chat_endpoint_policy_is_rejected_before_any_work(tmp_path):
    cfg = tmp_path / "run.yaml"
    cfg.write_text("sources: [{path: bundled:easy}]\npolicy: {kind: openai, model: m}\n"
                   "prm: {enabled: true}\n")
    with pytest.raises(ConfigError, match="prm.enabled: true with an openai policy on the chat endpoint"):
        load_config(cfg)
    assert load_config(cfg, ["policy.endpoint=completions"]).prm.enabled


class SlowContinuingModel(ContinuingModel):
    """``ContinuingModel`` whose continuations take ``delay`` seconds each, so that a kill lands while
    the prm stage still has batches to label."""

    delay = 0.0

    def reply(self, body: dict) -> list[str]:
        text = body.get("prompt", "")
        if self.delay and FENCE in text and "```" not in text.rpartition(FENCE)[2]:
            time.sleep(self.delay)
        return super().reply(body)


RUNNER = """
import sys
from pathlib import Path
from plumline.pipeline.config import load_config
from plumline.pipeline.round import run_rounds

cfg = load_config(sys.argv[1], sys.argv[2:])
run_rounds(cfg, Path(cfg.out_dir) / cfg.name)
"""


def _label_set(rows: list[dict]) -> set[tuple]:
    return {(r["sample_id"], tuple(r["labels"]), r["first_bad_step"], tuple(r["probed"]),
             tuple(r["probe_passes"])) for r in rows}


@pytest.mark.slow
def test_a_run_killed_during_prm_resumes_without_labelling_finished_batches_again(tmp_path):
    from plumline.llm import progress
    from plumline.pipeline.validate import validate_run

    model = SlowContinuingModel()
    server, url = canned_openai.serve(model)
    cfg_path = _config(tmp_path, url)
    one_per_batch = ["prm.batch_size=1"]  # six batches: the kill falls between two of them
    ref_dir, run_dir = tmp_path / "ref" / "prm", tmp_path / "killed" / "prm"
    try:
        # Everything up to export once (prm off), copied: both runs label the very same programs.
        run_rounds(load_config(cfg_path, [*one_per_batch, "prm.enabled=false",
                                          f"out_dir={ref_dir.parent}"]), ref_dir)
        shutil.copytree(ref_dir, run_dir)
        reference = run_rounds(load_config(cfg_path, [*one_per_batch, f"out_dir={ref_dir.parent}"]),
                               ref_dir)[0]
        ref_rows = pq.read_table(ref_dir / "round-000" / "prm.parquet").to_pylist()
        assert len(ref_rows) == 6

        # A run killed (SIGKILL, the whole process group) once a labelled batch is checkpointed.
        stages = run_dir / "round-000" / ".stages"
        script = tmp_path / "run_round.py"
        script.write_text(RUNNER)
        model.delay = 0.5
        proc = subprocess.Popen([sys.executable, str(script), str(cfg_path), *one_per_batch,
                                 f"out_dir={run_dir.parent}"], start_new_session=True,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline and proc.poll() is None:
                if list(stages.glob("prm.*.parts/*.jsonl")):
                    break
                time.sleep(0.05)
            assert proc.poll() is None, "the run ended before a prm batch was checkpointed"
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
        model.delay = 0.0
        time.sleep(1.0)  # continuations the killed run asked for leave the server
        assert not (stages / "prm.done").exists() and (stages / "export.done").exists()
        [parts] = stages.glob("prm.*.parts")
        shards = [json.loads(p.read_text().splitlines()[0])["ids"] for p in parts.glob("*.jsonl")]
        done = {sid for ids in shards for sid in ids}
        assert 1 <= len(done) < 6, done  # batches of one: some labelled, some not

        # The rerun resumes: only the programs not checkpointed go to the engine again.
        samples = {s["sample_id"]: s for s in pq.read_table(stages.parent / "samples.parquet").to_pylist()}
        n_requests = len(model.requests)
        with progress.channel(tmp_path / "live") as live:
            m = run_rounds(load_config(cfg_path, [*one_per_batch, f"out_dir={run_dir.parent}"]), run_dir)[0]
            counts = progress.read_progress(live)
        asked = [r["prompt"] for r in model.requests[n_requests:]]
        assert asked  # the programs left were labelled now
        labelled_before = {samples[sid]["prompt"] for sid in done}
        assert not [p for p in asked if any(p.startswith(prompt) for prompt in labelled_before)]
        rows = pq.read_table(stages.parent / "prm.parquet").to_pylist()
        ids = [r["sample_id"] for r in rows]
        assert len(ids) == len(set(ids)) == 6  # every row exactly once
        assert _label_set(rows) == _label_set(ref_rows)  # the labels of an uninterrupted run
        # the cost counts each batch once (restored batches' stats, the new ones' stats)
        for key in ("programs", "rows", "probes", "completions", "executions", "passed_completions"):
            assert m["prm"][key] == reference["prm"][key], key
        # the live bar: every program of the total, the restored ones counted as done at the start
        assert counts[progress.PRM_PROGRAMS] == counts[progress.PRM_PROGRAMS_TOTAL] == 6
        assert counts[progress.PRM_BATCHES] == 6 - len(done)
        assert counts[progress.PRM_COMPLETIONS] == 3 * len(asked) == counts["executions"]
        assert (stages / "prm.done").exists() and not list(stages.glob("prm.*.parts"))
        assert validate_run(run_dir) == []
        from plumline.pipeline.report import build_report
        assert "plot-prm-first-bad" in build_report(run_dir)[1]  # report.html has its PRM panel
    finally:
        server.shutdown()
