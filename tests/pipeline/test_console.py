"""The quiet console: log routing (console vs the run's log file, file descriptors included), the
per-stage progress lines fed by the live channel, the slow-config warnings, and a whole small run
through the CLI whose console output stays short while the log file holds the library logs."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from plumline.data_schemas import Stage
from plumline.llm import hardware, progress
from plumline.llm.hardware import parse_cpuinfo
from plumline.pipeline.config import RunConfig
from plumline.pipeline.console import (
    FILE_ONLY,
    RunProgress,
    output_to_log,
    setup_logging,
    slow_config_warnings,
    stage_total,
)
from plumline.pipeline.layout import StageMarker
from plumline.transforms.logic.readers import SourceConfig
from rich.console import Console

ZEN3 = "processor : 0\nmodel name : AMD EPYC 7B13\nflags : sse2 avx avx2 fma\nprocessor : 1\n"


@pytest.fixture(autouse=True)
def _restore_logging():
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    yield
    root.handlers[:], _ = saved[0], root.setLevel(saved[1])
    logging.captureWarnings(False)


def _cfg(**update) -> RunConfig:
    return RunConfig(sources=[SourceConfig(path="bundled:easy")], **update)


def test_quiet_console_shows_plumline_warnings_only_and_the_file_gets_everything(tmp_path):
    out = io.StringIO()
    console = Console(file=out, width=200)
    log = tmp_path / "plumline.log"
    setup_logging(console, verbose=False, log_file=log)
    logging.getLogger("vllm.engine").warning("vllm engine chatter")
    logging.getLogger("apache_beam.runners").info("beam info")
    logging.getLogger("plumline.pipeline.round").info("stage tests ...")
    logging.getLogger("plumline.llm.hardware").warning("slow dtype warning")
    logging.getLogger("plumline").error("a long traceback", extra=FILE_ONLY)
    for h in logging.getLogger().handlers:
        h.flush()
    shown, written = out.getvalue(), log.read_text()
    assert "slow dtype warning" in shown
    assert "vllm engine chatter" not in shown and "beam info" not in shown and "stage tests" not in shown
    assert "a long traceback" not in shown
    for text in ("vllm engine chatter", "beam info", "stage tests ...", "slow dtype warning",
                 "a long traceback"):
        assert text in written


def test_verbose_console_shows_library_logs(tmp_path):
    out = io.StringIO()
    setup_logging(Console(file=out, width=200), verbose=True, log_file=tmp_path / "x.log")
    logging.getLogger("vllm.engine").info("vllm engine chatter")
    assert "vllm engine chatter" in out.getvalue()


def test_output_of_this_process_and_its_children_goes_to_the_log(tmp_path, capfd):
    log = tmp_path / "run.log"
    console = Console(stderr=True, width=200)
    with output_to_log(console, log):
        os.write(1, b"fd one\n")
        os.write(2, b"fd two\n")
        print("python print")
        child = "import sys; print('child out'); print('child err', file=sys.stderr)"
        subprocess.run([sys.executable, "-c", child], check=True)
        console.print("for the person")
    captured = capfd.readouterr()
    written = log.read_text()
    for text in ("fd one", "fd two", "python print", "child out", "child err"):
        assert text in written and text not in captured.out + captured.err
    assert "for the person" in captured.err and "for the person" not in written
    os.write(1, b"after\n")  # restored
    assert "after" in capfd.readouterr().out


def test_stage_totals_come_from_earlier_files(tmp_path):
    cfg = _cfg()
    pq.write_table(pa.table({"x": list(range(5))}), tmp_path / "problems.parquet")
    pq.write_table(pa.table({"x": list(range(45))}), tmp_path / "samples.parquet")
    assert stage_total(cfg, Stage.SAMPLE, tmp_path) == 5 * (cfg.sampling.n + int(cfg.sampling.greedy))
    assert stage_total(cfg, Stage.TESTS, tmp_path) == 5 * cfg.tests.num_replies
    assert stage_total(cfg, Stage.EXECUTE, tmp_path) == 45
    assert stage_total(cfg, Stage.EXPORT, tmp_path) is None


def test_progress_lines_carry_counts_rates_and_tokens(tmp_path):
    out = io.StringIO()
    console = Console(file=out, width=200)  # not a terminal: no live bar, one line per stage
    rp = RunProgress(console, _cfg(), tmp_path)
    marker = StageMarker("sample", "k", "t", ("samples",), 12.5, {"samples": 45}, {})
    with rp:
        rp.stage_started(0, Stage.SAMPLE)
        assert os.environ[progress.ENV].endswith("sample")
        progress.add("completions_total", 45)
        progress.add("completions", 45)
        progress.add("tokens", 9000)
        time.sleep(0.05)
        rp.stage_done(0, Stage.SAMPLE, marker, ran=True)
        assert progress.ENV not in os.environ
        rp.stage_started(0, Stage.EXPORT)
        rp.stage_done(0, Stage.EXPORT, StageMarker("export", "k", "t", (), 3.0, {}, {}), ran=False)
    lines = out.getvalue().splitlines()
    assert len(lines) == 2, lines
    assert "round 0 sample" in lines[0] and "45 samples" in lines[0] and "9,000 tokens" in lines[0]
    assert "tok/s" in lines[0] and "12.5 s" in lines[0]
    assert lines[0].count("45 samples") == 1  # the stage's row count is the live count: said once
    assert lines[0].endswith("tok/s)")
    assert "done earlier" in lines[1]


def test_the_prm_bar_counts_programs_of_the_planned_total_with_completions_and_executions(tmp_path):
    out = io.StringIO()
    rp = RunProgress(Console(file=out, width=200), _cfg(), tmp_path)
    marker = StageMarker("prm", "k", "t", ("prm", "prm_stats"), 30.0, {"prm": 5, "prm_stats": 9}, {})
    with rp:
        rp.stage_started(0, Stage.PRM)
        cur = rp._running[(0, Stage.PRM)]
        assert cur.measure is not None and cur.total is None  # known once the stage planned its batches
        progress.add(progress.PRM_PROGRAMS_TOTAL, 6)
        progress.add(progress.PRM_BATCHES, 1)
        progress.add(progress.PRM_COMPLETIONS, 12)
        progress.add("executions", 11)
        progress.add(progress.PRM_PROGRAMS, 2)  # one batch of two labelled
        rp._update(cur)
        task = rp.progress.tasks[0]
        assert (task.completed, task.total, cur.total) == (2, 6, 6)
        assert task.fields["count"] == "2/6 programs · 12 completions · 11 executions"
        assert task.fields["rate"].endswith("completions/s")  # programs finish a batch at a time
        progress.add(progress.PRM_PROGRAMS, 4)
        time.sleep(0.05)
        rp.stage_done(0, Stage.PRM, marker, ran=True)
    [line] = out.getvalue().splitlines()
    assert "round 0 prm" in line and "6 programs (" in line and "12 completions (" in line
    assert "11 executions (" in line and "exec/s" in line and line.endswith("5 prm")  # prm_stats: internal
    assert "tokens" not in line  # the openai backend reports none; vLLM's would show


def test_the_summary_table_counts_prm_rows_when_the_stage_ran():
    from plumline.pipeline.console import summary_table

    data = {"counts": {"problems": 40, "dpo": 52}, "samples": {"total": 200},
            "executions": {"pass_rate": 0.145}, "tests": {"kept": 1847, "total": 1847}, "kto": {"rows": 181},
            "errors": {"total": 3}, "eval": {"greedy_pass@1": 0.08, "pass@1": 0.08}}

    def shown(manifests):
        out = io.StringIO()
        Console(file=out, width=80).print(summary_table(manifests))
        return out.getvalue()

    plain = shown([{"round": 0, **data}])
    assert " prm " not in plain and "1847" in plain
    labelled = shown([{"round": 0, **data, "prm": {"rows": 37, "programs": 40}},
                      {"round": 1, **data, "prm": {"rows": 12}},
                      {"round": 2, "eval_only": True, "errors": {"total": 1}, "eval": {"pass@1": 0.1}}])
    assert "prm" in labelled and "37" in labelled and "12" in labelled and "…" not in labelled
    assert max(len(line) for line in labelled.splitlines()) <= 80
    header = next(line for line in labelled.splitlines() if "round" in line and "prm" in line).split()
    rows = [line.split() for line in labelled.splitlines() if line.strip()[:1].isdigit()]
    col = header.index("prm") - 1  # "tests kept" is two words in the header, one value in a row
    assert [r[col] for r in rows[:2]] == ["37", "12"]
    assert rows[2][1] == "(eval)" and rows[2][col] == "-" and len(rows[2]) == len(rows[0])


def test_slow_configs_get_a_warning(monkeypatch):
    monkeypatch.setattr(hardware, "cpu_info", lambda: parse_cpuinfo(ZEN3))
    monkeypatch.setattr(hardware, "gpu_info", lambda: hardware.GpuInfo(False))
    assert slow_config_warnings(_cfg()) == []
    cfg = _cfg(policy={"kind": "vllm", "model": "m", "dtype": "bfloat16"})
    [warning] = slow_config_warnings(cfg)
    assert warning.startswith("policy.dtype") and "AMD EPYC" in warning
    cfg = _cfg(sandbox={"workers": 2}, beam={"cpu_workers": 2})
    [warning] = slow_config_warnings(cfg)
    assert "4 sandbox slots on 2 cores" in warning
    cfg = _cfg(training={"method": "dpo"}, dpo={"train": {"bf16": True}})
    assert any(w.startswith("dpo.train.bf16") for w in slow_config_warnings(cfg))


SMALL_RUN = """
name: quiet
out_dir: {out}
sources: [{{path: bundled:easy, limit: 4}}]
policy: {{kind: openai, model: canned, base_url: "{url}", max_retries: 1}}
sampling: {{n: 2, max_tokens: 64, greedy: true}}
tests: {{tests_per_problem: 3, given_tests_role: eval}}
export: {{jsonl: false}}
beam: {{cpu_workers: 2}}
sandbox: {{workers: 1}}
"""


@pytest.mark.slow
def test_a_run_through_the_cli_is_quiet_and_logs_to_the_run_folder(tmp_path, canned):
    _, url = canned
    cfg = tmp_path / "run.yaml"
    cfg.write_text(SMALL_RUN.format(out=tmp_path / "runs", url=url))
    env = {**os.environ, "COLUMNS": "120"}
    res = subprocess.run([sys.executable, "-m", "plumline.pipeline.cli", "run", str(cfg)], env=env,
                         capture_output=True, text=True, timeout=600, check=False)
    shown = (res.stdout + res.stderr).splitlines()
    assert res.returncode == 0, res.stdout + res.stderr
    assert len(shown) <= 30, "\n".join(shown)
    text = "\n".join(shown)
    assert "round 0 execute" in text and "executions" in text and "plumline.log" in text
    assert "apache_beam" not in text and "INFO" not in text
    log = (tmp_path / "runs" / "quiet" / "plumline.log").read_text()
    assert "apache_beam" in log  # Beam's own loggers
    assert "plumline.pipeline.round" in log and "stage execute" in log


def test_stages_that_ran_together_have_a_bar_each_and_say_so_on_their_lines(tmp_path):
    """A round's sample and eval run at the same time (pipeline/round.py): each has its own bar, fed by
    its own thread's channel, and its line says its seconds overlap the other's."""
    import threading

    out = io.StringIO()
    rp = RunProgress(Console(file=out, width=200), _cfg(), tmp_path)
    layout_dir = tmp_path / "round-000" / ".progress"
    with rp:
        rp.stage_started(0, Stage.SAMPLE)
        rp.stage_started(0, Stage.EVAL)
        assert set(rp._running) == {(0, Stage.SAMPLE), (0, Stage.EVAL)} and len(rp.progress.tasks) == 2

        def report(stage, n):
            with progress.thread_channel(layout_dir / stage):
                progress.add("completions_total", n)
                progress.add("completions", n)

        threads = [threading.Thread(target=report, args=a) for a in (("sample", 200), ("eval", 100))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for stage, seconds, other in ((Stage.EVAL, 80.0, "sample"), (Stage.SAMPLE, 90.0, "eval")):
            marker = StageMarker(stage.value, "k", "t", (), seconds, {}, {"ran_beside": [other]})
            rp.stage_done(0, stage, marker, ran=True)
        assert not rp._running and progress.ENV not in os.environ
    eval_line, sample_line = out.getvalue().splitlines()
    assert "round 0 eval" in eval_line and "(beside sample)" in eval_line and "100 samples" in eval_line
    assert "round 0 sample" in sample_line and "(beside eval)" in sample_line and "200 samples" in sample_line
