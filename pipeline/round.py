"""The loop that runs a round's stage table (``pipeline/stages.py``), and the rounds of a run.

Each stage is its own Beam pipeline (or, for training, its own process), materialized in the round
folder. Why: generation stages must hold one engine per machine (a vLLM engine per Beam worker
process would not fit) while CPU stages want multi-process workers; a crash loses only the stage in
flight and a rerun resumes; on Dataflow only the generation stages need GPU workers; training frees
the accelerator by running after the engines are closed.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from plumline.data_schemas import ErrorKind, Stage, content_id
from plumline.llm import close_shared_backends
from plumline.pipeline.artifacts import ARTIFACTS
from plumline.pipeline.config import RunConfig, check_config, dump_config
from plumline.pipeline.errors import StageFailed
from plumline.pipeline.layout import RoundLayout, StageMarker, atomic_write_text
from plumline.pipeline.manifest import build_manifest, read_errors
from plumline.pipeline.stages import (
    POLICY,
    STAGES,
    StageContext,
    StageSpec,
    check_table,
    cpu_workers,
    stage_key,
)

log = logging.getLogger(__name__)

# Error kinds that mean "the engine did not produce anything for this problem".
_ENGINE_FAILURES = {ErrorKind.ENGINE_FAILED.value, ErrorKind.PROMPT_FAILED.value}


def pipeline_options(cfg: RunConfig, spec: StageSpec) -> tuple[Any, Any]:
    """The runner and options for one stage. Locally: FnApiRunner (never Prism), in-process for the
    engine stages (one engine per machine), multi-process workers for CPU stages."""
    from apache_beam.options.pipeline_options import PipelineOptions

    args = list(cfg.beam.options)
    if cfg.beam.runner == "FnApiRunner":
        from apache_beam.runners.portability.fn_api_runner import FnApiRunner
        workers = 1 if spec.engine else cpu_workers(cfg)
        if workers > 1:
            args += [f"--direct_num_workers={workers}", "--direct_running_mode=multi_processing"]
        else:
            args += ["--direct_num_workers=1", "--direct_running_mode=in_memory"]
        return FnApiRunner(), PipelineOptions(args)
    return None, PipelineOptions([f"--runner={cfg.beam.runner}", *args])


def policy_token(model: str) -> str:
    """The run token of a policy given by path: a model trained by an earlier round brings its own
    (the loop passes the train stage's token), a model named in the config is identified by name."""
    return content_id("policy", model)


class RoundRunner:
    """Runs (or resumes) one round in ``run_dir`` by walking the stage table."""

    def __init__(self, cfg: RunConfig, run_dir: Path, round: int, *, force: bool = False,
                 on_stage: Callable[[int, Stage], None] | None = None, policy: str | None = None,
                 policy_run_token: str | None = None, stages: tuple[StageSpec, ...] = STAGES):
        self.cfg = cfg
        self.layout = RoundLayout(run_dir, round)
        self.round = round
        self.force = force
        self.on_stage = on_stage  # progress hook: called with (round, stage) as each stage starts
        self.stages = stages
        self.policy = policy or cfg.policy.model
        self.tokens: dict[str, str] = {POLICY: policy_run_token or policy_token(self.policy)}
        self.ran: list[Stage] = []  # stages that ran (not skipped) in this call, in order
        check_table(cfg, stages)

    # -- one stage -------------------------------------------------------------------------------
    def run_stage(self, spec: StageSpec) -> StageMarker:
        inputs = {name: self.tokens[name] for name in spec.inputs(self.cfg)}
        key = stage_key(spec, self.cfg, inputs)
        done = None if self.force else self.layout.finished(spec.name, key)
        if done is not None:
            log.info("round %d: stage %s already done, skipping", self.round, spec.name.value)
            self._record_outputs(spec, done)
            return done
        self.layout.forget(spec.name)
        self.layout.stages_dir.mkdir(parents=True, exist_ok=True)
        for name in spec.outputs:
            _remove(self.layout.artifact_path(name))
        self.layout.stage_errors(spec.name).unlink(missing_ok=True)
        log.info("round %d: stage %s ...", self.round, spec.name.value)
        start = time.monotonic()
        ctx = StageContext(cfg=self.cfg, round=self.round, layout=self.layout, stage=spec.name,
                           policy_model=self.policy)
        info: dict[str, Any] = {}
        if spec.build is not None:
            import apache_beam as beam

            runner, options = pipeline_options(self.cfg, spec)
            with beam.Pipeline(runner=runner, options=options) as p:
                ctx.pipeline = p
                spec.build(ctx)
                ctx.write_errors()
            self._ensure_outputs(spec)
        else:
            close_shared_backends()  # free the engines (and the accelerator) before e.g. training
            info = spec.run(ctx) or {}
        if not self.layout.stage_errors(spec.name).exists():
            self.layout.stage_errors(spec.name).write_text("")
        self._fail_if_engine_failed_everywhere(spec)
        outputs = tuple(n for n in spec.outputs if self.layout.artifact_path(n).exists())
        rows = {n: pq.ParquetFile(self.layout.artifact_path(n)).metadata.num_rows
                for n in outputs if not ARTIFACTS[n].is_folder}
        marker = self.layout.mark_done(spec.name, key, outputs, time.monotonic() - start, rows, info)
        self.ran.append(spec.name)
        self._record_outputs(spec, marker)
        log.info("round %d: stage %s done in %.1f s: %s", self.round, spec.name.value, marker.seconds, rows)
        return marker

    def _record_outputs(self, spec: StageSpec, marker: StageMarker) -> None:
        for name in spec.outputs:
            self.tokens[name] = marker.token

    def _ensure_outputs(self, spec: StageSpec) -> None:
        """Beam writes nothing for an empty collection on some runners: write an empty, typed file."""
        for name in spec.outputs:
            path = self.layout.artifact_path(name)
            if not ARTIFACTS[name].is_folder and not path.exists():
                schema = ARTIFACTS[name].record_type(self.cfg).arrow_schema()
                pq.write_table(pa.Table.from_pylist([], schema=schema), path)

    def _fail_if_engine_failed_everywhere(self, spec: StageSpec) -> None:
        if not spec.engine:
            return
        n_problems = pq.ParquetFile(self.layout.artifact_path("problems")).metadata.num_rows
        if n_problems == 0:
            return
        failed, first = set(), None
        for err in read_errors(self.layout.stage_errors(spec.name)):
            if err.kind in _ENGINE_FAILURES and err.problem_id:
                failed.add(err.problem_id)
                first = first or err.reason
        if len(failed) >= n_problems:
            raise StageFailed(
                f"round {self.round}: stage {spec.name.value} failed for all {n_problems} problems; "
                f"first reason: {first}. Details in {self.layout.stage_errors(spec.name)}; "
                f"a rerun retries this stage.")

    # -- the round -------------------------------------------------------------------------------
    def merge_errors(self) -> int:
        lines = []
        for spec in self.stages:
            path = self.layout.stage_errors(spec.name)
            if spec.enabled(self.cfg) and path.exists():
                lines += [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        atomic_write_text(self.layout.errors, "".join(line + "\n" for line in lines))
        return len(lines)

    def run(self, *, until: Stage | None = None) -> dict:
        """Run every enabled stage in table order (up to and including ``until``), then write
        errors.jsonl and manifest.json."""
        self.layout.dir.mkdir(parents=True, exist_ok=True)
        started = time.time()
        for spec in self.stages:
            if not spec.enabled(self.cfg):
                continue
            if self.on_stage:
                self.on_stage(self.round, spec.name)
            self.run_stage(spec)
            if spec.name == until:
                break
        self.merge_errors()
        manifest = build_manifest(self.cfg, self.layout, started_at=started)
        atomic_write_text(self.layout.manifest, json.dumps(manifest, indent=2, sort_keys=False))
        return manifest

    @property
    def trained_model(self) -> Path | None:
        marker = self.layout.read_marker(Stage.TRAIN)
        if marker is None or "model" not in marker.outputs or not marker.info.get("holds_policy"):
            return None
        return self.layout.model_dir

    @property
    def model_token(self) -> str | None:
        return self.tokens.get("model")


def enabled_stages(cfg: RunConfig) -> list[Stage]:
    return [s.name for s in STAGES if s.enabled(cfg)]


def run_rounds(cfg: RunConfig, run_dir: Path, *, force: bool = False,
               on_stage: Callable[[int, Stage], None] | None = None) -> list[dict]:
    """Every round of ``cfg``: round r+1 samples from the model round r trained (when it trained)."""
    check_config(cfg)  # a config built in code gets the checks load_config applies to a file
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / "config.yaml", dump_config(cfg))
    manifests = []
    policy, token = cfg.policy.model, None
    for r in range(cfg.rounds):
        round_cfg = cfg.model_copy(update={"policy": cfg.policy.model_copy(update={"model": policy})})
        runner = RoundRunner(round_cfg, run_dir, r, force=force, on_stage=on_stage, policy=policy,
                             policy_run_token=token)
        manifests.append(runner.run())
        if runner.trained_model is not None:
            policy, token = str(runner.trained_model), runner.model_token
    close_shared_backends()
    return manifests


def _remove(path: Path) -> None:
    if path.is_dir():
        import shutil

        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
