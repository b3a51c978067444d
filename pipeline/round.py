"""One round of the online loop, as a sequence of Beam pipelines (one per stage).

    read     sources               -> problems.parquet
    tests    problems              -> tests_candidates.parquet   (engine: the test writer)
    sample   problems              -> samples.parquet            (engine: the policy)
    execute  problems, tests, samples -> tests.parquet, executions.parquet  (sandbox)
    export   problems, samples, executions -> dpo/kto/critic.parquet
    then     errors.jsonl, manifest.json, and training (a separate process) when configured

Why one pipeline per stage: the engine stages must hold one engine per machine (a vLLM engine
per Beam worker process would not fit), while CPU stages want multi-process workers; each stage's
output is materialized, so a crash loses only the stage in flight and a rerun resumes; and on
Dataflow the generation stages are the only jobs that need GPU workers.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.options.pipeline_options import PipelineOptions
from plumline.data_schemas import (
    CriticRow,
    DpoChatRow,
    DpoRow,
    Execution,
    KtoChatRow,
    KtoRow,
    Problem,
    Record,
    Sample,
    TestCase,
)
from plumline.llm import close_shared_backends
from plumline.pipeline.config import RunConfig, dump_config
from plumline.pipeline.layout import STAGES, RoundLayout, atomic_write_text
from plumline.pipeline.manifest import build_manifest, read_errors
from plumline.transforms.execute import VerifyAndExecute, default_sandbox_workers
from plumline.transforms.export import BuildTrainingRows
from plumline.transforms.io import ReadRecords, WriteErrors, WriteRecords
from plumline.transforms.read import ReadProblems
from plumline.transforms.sample import SampleSolutions
from plumline.transforms.synthesize_tests import SynthesizeTests

log = logging.getLogger(__name__)

ENGINE_STAGES = {"tests", "sample"}


def record_types(cfg: RunConfig) -> dict[str, type[Record]]:
    chat = cfg.pairing.format == "conversational"
    return {
        "problems": Problem, "tests_candidates": TestCase, "tests": TestCase, "samples": Sample,
        "executions": Execution, "dpo": DpoChatRow if chat else DpoRow,
        "kto": KtoChatRow if chat else KtoRow, "critic": CriticRow,
    }


def cpu_workers(cfg: RunConfig) -> int:
    return cfg.beam.cpu_workers or os.cpu_count() or 1


def pipeline_options(cfg: RunConfig, stage: str) -> tuple[object | None, PipelineOptions]:
    """The runner and options for one stage. Locally: FnApiRunner (never Prism), in-process for the
    engine stages (one engine per machine), multi-process workers for CPU stages."""
    args = list(cfg.beam.options)
    if cfg.beam.runner == "FnApiRunner":
        from apache_beam.runners.portability.fn_api_runner import FnApiRunner
        workers = 1 if stage in ENGINE_STAGES else cpu_workers(cfg)
        if workers > 1:
            args += [f"--direct_num_workers={workers}", "--direct_running_mode=multi_processing"]
        else:
            args += ["--direct_num_workers=1", "--direct_running_mode=in_memory"]
        return FnApiRunner(), PipelineOptions(args)
    return None, PipelineOptions([f"--runner={cfg.beam.runner}", *args])


def _ensure_outputs(layout: RoundLayout, stage: str, types: dict[str, type[Record]]) -> dict[str, int]:
    """Beam writes nothing for an empty collection on some runners: write an empty, typed file, and
    count rows for the stage marker."""
    counts = {}
    for stem in STAGES[stage][0]:
        path = layout.parquet(stem)
        if not path.exists():
            pq.write_table(pa.Table.from_pylist([], schema=types[stem].arrow_schema()), path)
        counts[stem] = pq.ParquetFile(path).metadata.num_rows
    err = layout.stage_errors(stage)
    if not err.exists():
        err.write_text("")
    return counts


class StageFailed(RuntimeError):
    """A stage that failed for every problem (e.g. the engine died): not marked done, so a rerun retries."""


def _engine_stage_failed_everywhere(layout: RoundLayout, stage: str, n_problems: int) -> str | None:
    """The reason, when every problem of an engine stage ended in an error of that stage."""
    if stage not in ENGINE_STAGES or n_problems == 0:
        return None
    failed, first = set(), None
    for err in read_errors(layout.stage_errors(stage)):
        # Generation failures only: a completion without code is reported under stage "extract".
        if err.stage not in ("sample", "synthesize_tests") or not err.problem_id:
            continue
        failed.add(err.problem_id)
        first = first or err.reason
    return first if len(failed) >= n_problems else None


class RoundRunner:
    """Runs (or resumes) one round in ``run_dir``."""

    def __init__(self, cfg: RunConfig, run_dir: Path, round: int, *, force: bool = False,
                 on_stage: Callable[[int, str], None] | None = None):
        self.cfg = cfg
        self.layout = RoundLayout(run_dir, round)
        self.round = round
        self.force = force
        self.on_stage = on_stage  # progress hook: called with (round, stage) as each stage starts
        self.types = record_types(cfg)

    # -- stages --------------------------------------------------------------------------------
    def _records(self, p, stem: str, stage: str):
        out = p | f"Read_{stem}" >> ReadRecords(str(self.layout.parquet(stem)), self.types[stem], stage)
        return out.records, out.errors

    def _write(self, pcoll, stem: str):
        return pcoll | f"Write_{stem}" >> WriteRecords(str(self.layout.dir / stem), self.types[stem],
                                                       jsonl=self.cfg.export.jsonl)

    def _write_stats(self, stats, stage: str):
        """Per-problem stat dicts of a stage (summed into the manifest)."""
        return (stats | "StatsJson" >> beam.Map(json.dumps)
                | "WriteStats" >> beam.io.WriteToText(str(self.layout.stages_dir / f"{stage}.stats"),
                                                      file_name_suffix=".jsonl", num_shards=1,
                                                      shard_name_template=""))

    def _write_errors(self, stage: str, errors: list):
        return tuple(errors) | f"WriteErrors_{stage}" >> WriteErrors(
            str(self.layout.stage_errors(stage)).removesuffix(".jsonl"))

    def build_stage(self, p: beam.Pipeline, stage: str) -> None:
        cfg = self.cfg
        if stage == "read":
            out = p | "ReadProblems" >> ReadProblems(cfg.sources)
            self._write(out["problems"], "problems")
            self._write_errors(stage, [out["errors"]])
        elif stage == "tests":
            problems, read_errors = self._records(p, "problems", stage)
            # The writer is cfg.tests.writer, or the policy itself; one shared engine per process.
            out = problems | "SynthesizeTests" >> SynthesizeTests(None, cfg.tests, cfg.policy)
            self._write(out["tests"], "tests_candidates")
            self._write_stats(out["stats"], stage)
            self._write_errors(stage, [read_errors, out["errors"]])
        elif stage == "sample":
            problems, read_errors = self._records(p, "problems", stage)
            out = problems | "SampleSolutions" >> SampleSolutions(
                cfg.policy, cfg.sampling, self.round, cfg.seed, accelerator=cfg.beam.sampling_accelerator)
            self._write(out.samples, "samples")
            self._write_errors(stage, [read_errors, out.errors])
        elif stage == "execute":
            problems, e1 = self._records(p, "problems", stage)
            tests, e2 = self._records(p, "tests_candidates", stage)
            samples, e3 = self._records(p, "samples", stage)
            workers = cfg.sandbox.workers or default_sandbox_workers(cpu_workers(cfg))
            out = (problems, tests, samples) | "VerifyAndExecute" >> VerifyAndExecute(
                cfg.sandbox.limits, workers, cfg.validation, self.round)
            self._write(out.executions, "executions")
            self._write(out.tests, "tests")
            self._write_errors(stage, [e1, e2, e3, out.errors])
        elif stage == "export":
            problems, e1 = self._records(p, "problems", stage)
            samples, e2 = self._records(p, "samples", stage)
            executions, e3 = self._records(p, "executions", stage)
            out = (problems, samples, executions) | "BuildTrainingRows" >> BuildTrainingRows(
                cfg.pairing, cfg.sampling.instruction, cfg.policy.system_prompt, self.round,
                kto=cfg.export.kto, critic=cfg.export.critic)
            self._write(out.dpo, "dpo")
            self._write(out.kto, "kto")
            self._write(out.critic, "critic")
            self._write_stats(out.stats, stage)
            self._write_errors(stage, [e1, e2, e3, out.errors])
        else:
            raise ValueError(f"unknown stage {stage!r}")

    def run_stage(self, stage: str) -> None:
        config_hash = self.cfg.section_hash(*STAGES[stage][1])
        if not self.force and self.layout.stage_done(stage, config_hash):
            log.info("round %d: stage %s already done, skipping", self.round, stage)
            return
        self.layout.invalidate_from(stage)
        self.layout.stages_dir.mkdir(parents=True, exist_ok=True)
        for stem in STAGES[stage][0]:
            self.layout.parquet(stem).unlink(missing_ok=True)
        log.info("round %d: stage %s ...", self.round, stage)
        start = time.monotonic()
        runner, options = pipeline_options(self.cfg, stage)
        with beam.Pipeline(runner=runner, options=options) as p:
            self.build_stage(p, stage)
        elapsed = time.monotonic() - start
        counts = _ensure_outputs(self.layout, stage, self.types)
        n_problems = pq.ParquetFile(self.layout.parquet("problems")).metadata.num_rows
        reason = _engine_stage_failed_everywhere(self.layout, stage, n_problems)
        if reason:
            raise StageFailed(f"round {self.round}: stage {stage} failed for all {n_problems} problems; "
                              f"first reason: {reason}. Details in {self.layout.stage_errors(stage)}; "
                              f"a rerun retries this stage.")
        self.layout.mark_done(stage, config_hash, {"seconds": round(elapsed, 2), "rows": counts})
        log.info("round %d: stage %s done in %.1f s: %s", self.round, stage, elapsed, counts)

    def merge_errors(self) -> int:
        lines = []
        for stage in STAGES:
            path = self.layout.stage_errors(stage)
            if path.exists():
                lines += [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        atomic_write_text(self.layout.errors, "".join(line + "\n" for line in lines))
        return len(lines)

    def run(self) -> dict:
        self.layout.dir.mkdir(parents=True, exist_ok=True)
        started = time.time()
        for stage in STAGES:
            if self.on_stage:
                self.on_stage(self.round, stage)
            self.run_stage(stage)
        self.merge_errors()
        manifest = build_manifest(self.cfg, self.layout, self.types, started_at=started)
        atomic_write_text(self.layout.manifest, json.dumps(manifest, indent=2, sort_keys=False))
        return manifest


def train_round(cfg: RunConfig, layout: RoundLayout, policy_model: str) -> Path | None:
    """Train on this round's data in a separate process (frees the accelerator between stages)."""
    method = cfg.training.method
    if method == "none":
        return None
    data = layout.parquet(method)
    if not data.exists() or pq.ParquetFile(data).metadata.num_rows == 0:
        log.warning("round %d: no %s rows, the policy is not trained this round", layout.round, method)
        return None
    section = getattr(cfg.training, method)
    train_hash = cfg.section_hash(*STAGES["export"][1], "training") + "-" + policy_model
    marker = layout.stages_dir / "train.done"
    if marker.exists() and marker.read_text().strip() == train_hash and layout.model_dir.is_dir():
        log.info("round %d: already trained, reusing %s", layout.round, layout.model_dir)
        return layout.model_dir
    cfg_file = layout.stages_dir / f"train-{method}.json"
    atomic_write_text(cfg_file, section.model_dump_json(indent=2))
    cmd = [sys.executable, "-m", "plumline.trainers", method, "--data", str(data), "--model", policy_model,
           "--out", str(layout.model_dir), "--config", str(cfg_file), "--overwrite"]
    log.info("round %d: training %s: %s", layout.round, method, " ".join(cmd))
    code = subprocess.run(cmd, check=False).returncode
    if code == 3:  # the trainer found no usable rows (e.g. all dropped by max_length)
        log.warning("round %d: no usable %s rows, the policy is not trained this round", layout.round, method)
        return None
    if code != 0:
        raise RuntimeError(f"round {layout.round}: training failed (exit {code}); data kept in {layout.dir}")
    atomic_write_text(marker, train_hash)
    return layout.model_dir


def run_rounds(cfg: RunConfig, run_dir: Path, *, force: bool = False,
               on_stage: Callable[[int, str], None] | None = None) -> list[dict]:
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / "config.yaml", dump_config(cfg))
    manifests = []
    round_cfg = cfg
    for r in range(cfg.rounds):
        runner = RoundRunner(round_cfg, run_dir, r, force=force, on_stage=on_stage)
        manifests.append(runner.run())
        if cfg.training.method != "none":
            # Free the engines (and the accelerator) before training runs in its own process.
            close_shared_backends()
            model = train_round(round_cfg, runner.layout, round_cfg.policy.model)
            if model is not None:
                round_cfg = round_cfg.model_copy(update={
                    "policy": round_cfg.policy.model_copy(update={"model": str(model)})})
    return manifests

