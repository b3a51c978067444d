"""The loop that runs a round's stage table (``pipeline/stages.py``), and the rounds of a run.

Each stage is its own Beam pipeline (or, for training, its own process), materialized in the round
folder. Why: generation stages must hold one engine per machine (a vLLM engine per Beam worker
process would not fit) while CPU stages want multi-process workers; a crash loses only the stage in
flight and a rerun resumes; on Dataflow only the generation stages need GPU workers; training runs
after the engines are closed (GPU: it needs the memory) or parked (CPU: the next round loads the trained
weights into the same engine, ``llm/registry.py``).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from plumline.data_schemas import ErrorKind, Stage, canonical_order, content_id
from plumline.llm import (
    cancel_shared_generation,
    close_shared_backends,
    park_shared_backends,
    progress,
    resume_shared_generation,
    shares_running_batch,
)
from plumline.pipeline.artifacts import ARTIFACTS
from plumline.pipeline.config import RunConfig, check_config, dump_config
from plumline.pipeline.errors import RunFolderError, StageFailed, storage_problem
from plumline.pipeline.evaluation import check_policy_model, eval_summary, write_eval_json, write_rounds_json
from plumline.pipeline.layout import (
    RoundLayout,
    StageMarker,
    atomic_write_parquet,
    atomic_write_text,
    link_or_copy,
)
from plumline.pipeline.manifest import build_manifest, read_errors
from plumline.pipeline.report import try_write_report
from plumline.pipeline.runners import FNAPI, runner_kind, stage_engine, stage_runner
from plumline.pipeline.stages import (
    POLICY,
    STAGES,
    StageContext,
    StageSpec,
    check_table,
    cpu_workers,
    stage_input_rows,
    stage_key,
    stage_processes,
    stage_spec,
)

log = logging.getLogger(__name__)

# Error kinds that mean "the engine did not produce anything for this problem".
_ENGINE_FAILURES = {ErrorKind.ENGINE_FAILED.value, ErrorKind.PROMPT_FAILED.value}


def pipeline_options(cfg: RunConfig, spec: StageSpec, processes: int | None = None) -> tuple[Any, Any]:
    """The runner and options for one stage (``pipeline/runners.py``). Locally: FnApiRunner (never
    Prism), in-process for the engine stages (one engine per machine), ``processes`` worker processes
    for a CPU stage (default ``beam.cpu_workers``, else cores); ``beam.runner: dask`` sends the CPU
    stages to Dask, DataflowRunner makes each stage a job."""
    return stage_runner(cfg, spec.name, engine=spec.engine, cpu_workers=processes or cpu_workers(cfg))


def policy_token(model: str) -> str:
    """The run token of a policy given by path: a model trained by an earlier round brings its own
    (the loop passes the train stage's token), a model named in the config is identified by name."""
    return content_id("policy", model)


class RoundRunner:
    """Runs (or resumes) one round in ``run_dir`` by walking the stage table."""

    def __init__(self, cfg: RunConfig, run_dir: Path, round: int, *, force: bool = False,
                 on_stage: Callable[[int, Stage], None] | None = None, policy: str | None = None,
                 policy_run_token: str | None = None, stages: tuple[StageSpec, ...] = STAGES,
                 reference: str | None = None, layout: RoundLayout | None = None,
                 on_stage_done: Callable[[int, Stage, StageMarker, bool], None] | None = None):
        self.cfg = cfg
        self.layout = layout or RoundLayout(run_dir, round)
        self.round = round
        self.force = force
        self.on_stage = on_stage  # progress hook: called with (round, stage) as each stage starts
        self.on_stage_done = on_stage_done  # ... and with (round, stage, marker, ran) as each ends
        self.stages = stages
        self.policy = policy or cfg.policy.model
        self.reference = reference  # training's reference model (None: the policy itself)
        self.tokens: dict[str, str] = {POLICY: policy_run_token or policy_token(self.policy)}
        self.ran: list[Stage] = []  # stages that ran (not skipped) in this call, in order of finishing
        self._together: tuple[Stage, ...] = ()  # stages running at the same time (each leaves the
        #                                          others' files be)
        self._executing: set[Stage] = set()  # those of them that ran, not kept or reused: beside whom
        self._interrupted = threading.Event()  # Ctrl-C while stages ran together: none is marked done
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
        reused = None if self.force else self._reuse_earlier_round(spec, key)
        if reused is not None:
            self._record_outputs(spec, reused)
            return reused
        try:
            return self._run_stage(spec, key)
        except Exception as exc:
            problem = storage_problem(exc)
            if problem is None:
                raise
            raise RunFolderError(
                f"round {self.round}: stage {spec.name.value} could not write to {self.layout.dir}: "
                f"{problem}. Nothing of this stage is marked done; free space or fix the folder, then "
                f"rerun: finished stages are kept.") from exc

    def _reuse_earlier_round(self, spec: StageSpec, key: str) -> StageMarker | None:
        """A round-free stage (``StageSpec.round_free``) that an earlier round of this run finished
        with the same key: its files, linked into this round, and its token, so the stages reading
        them match too. The same sources read again, or tests written again by a pinned writer,
        would give the same rows (the key says so); this round gets them in milliseconds."""
        if not spec.round_free or type(self.layout) is not RoundLayout:
            return None
        for earlier_round in range(self.round - 1, -1, -1):
            earlier = RoundLayout(self.layout.run_dir, earlier_round)
            marker = earlier.finished(spec.name, key)
            if marker is None:
                continue
            start = time.monotonic()
            self._clear_stage(spec, keep_checkpoints_of=None)
            for name in spec.outputs:
                _remove(self.layout.artifact_path(name).with_suffix(".jsonl"))
            for name in marker.outputs:
                src, dst = earlier.artifact_path(name), self.layout.artifact_path(name)
                link_or_copy(src, dst)
                if not ARTIFACTS[name].is_folder and src.with_suffix(".jsonl").is_file():
                    link_or_copy(src.with_suffix(".jsonl"), dst.with_suffix(".jsonl"))
            if earlier.stage_errors(spec.name).is_file():
                link_or_copy(earlier.stage_errors(spec.name), self.layout.stage_errors(spec.name))
            seconds = time.monotonic() - start
            adopted = self.layout.adopt(marker, seconds, {"reused_from_round": earlier_round})
            log.info("round %d: stage %s has the key round %d finished with: its outputs reused",
                     self.round, spec.name.value, earlier_round)
            return adopted
        return None

    def _clear_stage(self, spec: StageSpec, *, keep_checkpoints_of: str | None) -> None:
        """Before a stage's outputs are (re)made: no marker, no outputs or error lines of an earlier
        attempt, no partial writes; element checkpoints only of the key ``keep_checkpoints_of``."""
        self.layout.forget(spec.name)
        self.layout.stages_dir.mkdir(parents=True, exist_ok=True)
        if not self._together:  # else removed before the stages started: these may be theirs now
            self.layout.remove_partial_writes()
        self.layout.drop_checkpoints(spec.name, keep_key=keep_checkpoints_of)
        for name in spec.outputs:
            _remove(self.layout.artifact_path(name))
        self.layout.stage_errors(spec.name).unlink(missing_ok=True)

    def _run_stage(self, spec: StageSpec, key: str) -> StageMarker:
        # Finished elements of an interrupted run with this key are kept; other keys' are stale.
        self._clear_stage(spec, keep_checkpoints_of=None if self.force else key)
        log.info("round %d: stage %s ...", self.round, spec.name.value)
        start = time.monotonic()
        if spec.name in self._together:
            self._executing.add(spec.name)
        ctx = StageContext(cfg=self.cfg, round=self.round, layout=self.layout, stage=spec.name,
                           policy_model=self.policy, key=key, reference_model=self.reference)
        info: dict[str, Any] = {}
        if spec.build is not None:
            import apache_beam as beam

            if runner_kind(self.cfg.beam.runner) == FNAPI and not spec.engine:
                rows = stage_input_rows(self.cfg, spec, self.layout)
                ctx.processes = stage_processes(self.cfg, rows)
                log.info("round %d: stage %s: %s (%s input rows)", self.round, spec.name.value,
                         "in-process" if ctx.processes == 1 else f"{ctx.processes} worker processes",
                         "unknown" if rows is None else f"{rows:,}")
            runner, options = pipeline_options(self.cfg, spec, ctx.processes)
            with beam.Pipeline(runner=runner, options=options) as p:
                ctx.pipeline = p
                spec.build(ctx)
                ctx.write_errors()
        else:
            # Free the accelerator for training; an engine on CPU waits, parked, to load the trained
            # weights for the next round (a restart costs ~40 s on 2 cores, a reload ~1 s).
            park_shared_backends()
            info = spec.run(ctx) or {}
        if self._interrupted.is_set():  # its engine calls were cancelled: errors, not results
            raise StageFailed(f"round {self.round}: stage {spec.name.value} stopped: the run was "
                              f"interrupted; a rerun resumes it")
        self._finish_outputs(spec)
        self._fail_if_engine_failed_everywhere(spec)
        if spec.finish is not None:
            info = {**info, **(spec.finish(ctx) or {})}
        beside = [s.value for s in self._together if s != spec.name and s in self._executing]
        if beside:  # its seconds overlap theirs (the console and benches say so); a stage of the group
            info["ran_beside"] = beside  # that was kept or reused ran beside nothing
        outputs = tuple(n for n in spec.outputs if self.layout.artifact_path(n).exists())
        rows = {n: pq.ParquetFile(self.layout.artifact_path(n)).metadata.num_rows
                for n in outputs if not ARTIFACTS[n].is_folder}
        marker = self.layout.mark_done(spec.name, key, outputs, time.monotonic() - start, rows, info)
        self.layout.drop_checkpoints(spec.name)  # the stage's files are whole now
        self.ran.append(spec.name)
        self._record_outputs(spec, marker)
        log.info("round %d: stage %s done in %.1f s: %s", self.round, spec.name.value, marker.seconds, rows)
        return marker

    def _record_outputs(self, spec: StageSpec, marker: StageMarker) -> None:
        for name in spec.outputs:
            self.tokens[name] = marker.token

    def _finish_outputs(self, spec: StageSpec) -> None:
        """Each Parquet output in canonical row order (workers write in any order), written whole
        under a temporary name and renamed; an empty, typed file where Beam wrote none; the JSON-lines
        copy when asked; the stage's error lines sorted too. Two runs of one config give equal files."""
        for name in spec.outputs:
            art = ARTIFACTS[name]
            if art.is_folder:
                continue
            path, cls = self.layout.artifact_path(name), art.record_type(self.cfg)
            schema = cls.arrow_schema()
            table = pq.read_table(path).cast(schema) if path.exists() else schema.empty_table()
            table = canonical_order(table, cls)
            atomic_write_parquet(path, table)
            if self.cfg.export.jsonl and not art.internal:
                atomic_write_text(path.with_suffix(".jsonl"), "".join(
                    json.dumps(row, ensure_ascii=False) + "\n" for row in table.to_pylist()))
        errors = self.layout.stage_errors(spec.name)
        lines = sorted(line for line in errors.read_text(encoding="utf-8").splitlines() if line.strip()) \
            if errors.exists() else []
        atomic_write_text(errors, "".join(line + "\n" for line in lines))

    def _fail_if_engine_failed_everywhere(self, spec: StageSpec) -> None:
        if not spec.engine:
            return
        problems = self.layout.artifact_path(spec.problems)
        n_problems = pq.ParquetFile(problems).metadata.num_rows if problems.exists() else 0
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
        """Run every enabled stage in table order (up to and including ``until``), engine stages that
        can share their engine together (``together_with``), then write errors.jsonl and manifest.json."""
        self.layout.dir.mkdir(parents=True, exist_ok=True)
        started = time.time()
        table = [spec for spec in self.stages if spec.enabled(self.cfg)]
        if until is not None and any(spec.name == until for spec in table):
            table = table[:next(i for i, spec in enumerate(table) if spec.name == until) + 1]
        handled: set[Stage] = set()
        for i, spec in enumerate(table):
            if spec.name in handled:
                continue
            group = [spec, *self.together_with(spec, table[i + 1:])]
            handled.update(s.name for s in group)
            if len(group) == 1:
                if self.on_stage:
                    self.on_stage(self.round, spec.name)
                marker = self.run_stage(spec)
                if self.on_stage_done:
                    self.on_stage_done(self.round, spec.name, marker, spec.name in self.ran)
            else:
                self._run_together(group)
        self.merge_errors()
        manifest = build_manifest(self.cfg, self.layout, started_at=started)
        if manifest.get("eval"):
            write_eval_json(self.layout, manifest["eval"])
        if not any(s.name == Stage.READ for s in self.stages):
            manifest["eval_only"] = True  # the final evaluation of the last round's model
        atomic_write_text(self.layout.manifest, json.dumps(manifest, indent=2, sort_keys=False))
        return manifest

    def together_with(self, spec: StageSpec, later: list[StageSpec]) -> list[StageSpec]:
        """The later stages that can run at the same time as ``spec``: engine stages holding the same
        engine, whose engine lets concurrent callers share its batch, and whose inputs exist now
        (so none reads what ``spec``, or a stage not yet run, writes)."""
        engine = stage_engine(self.cfg, spec.name) if spec.engine and spec.build else None
        if not self.cfg.beam.overlap_engine_stages or engine is None or not shares_running_batch(engine):
            return []
        out = []
        for other in later:
            theirs = stage_engine(self.cfg, other.name) if other.engine and other.build else None
            if theirs is None or theirs.cache_key() != engine.cache_key():
                continue
            if all(name in self.tokens for name in other.inputs(self.cfg)):
                out.append(other)
        return out

    def _run_together(self, group: list[StageSpec]) -> None:
        """Each stage of ``group`` in a thread of its own; the first failure (in table order) is raised
        once all have ended. Ctrl-C cancels the engine calls in flight, and no stage is marked done."""
        log.info("round %d: stages %s run together on one engine", self.round,
                 ", ".join(s.name.value for s in group))
        self.layout.remove_partial_writes()
        failures: dict[Stage, BaseException] = {}
        # Waited for through events, not Thread.join: a join that Ctrl-C interrupts can leave the
        # thread marked stopped while it runs (CPython's _wait_for_tstate_lock), and a later join
        # would then return at once.
        began = {spec.name: threading.Event() for spec in group}
        ended = {spec.name: threading.Event() for spec in group}

        def work(spec: StageSpec) -> None:
            began[spec.name].set()
            try:
                with progress.thread_channel(self.layout.progress_dir(spec.name)):
                    marker = self.run_stage(spec)
                if self.on_stage_done:
                    self.on_stage_done(self.round, spec.name, marker, spec.name in self.ran)
            except BaseException as exc:  # noqa: BLE001 - raised in the calling thread below
                failures[spec.name] = exc
            finally:
                ended[spec.name].set()

        for spec in group:
            if self.on_stage:
                self.on_stage(self.round, spec.name)
        threads = [threading.Thread(target=work, args=(spec,), name=f"plumline-{spec.name.value}")
                   for spec in group]
        self._together = tuple(spec.name for spec in group)
        self._executing = set()
        try:
            for t in threads:
                t.start()
            for spec in group:
                while not ended[spec.name].wait(0.2):  # a timed wait: Ctrl-C reaches this thread
                    pass
        except BaseException:
            self._interrupted.set()
            cancel_shared_generation("the run was interrupted")
            for spec in group:  # a thread whose start Ctrl-C cut short may still begin: a second to
                if began[spec.name].wait(1.0):
                    ended[spec.name].wait()
            resume_shared_generation()
            raise
        finally:
            self._together = ()
        for spec in group:
            if spec.name in failures:
                for other, exc in failures.items():
                    if other != spec.name:
                        log.error("round %d: stage %s failed too: %s", self.round, other.value, exc)
                raise failures[spec.name]

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
               on_stage: Callable[[int, Stage], None] | None = None,
               on_stage_done: Callable[[int, Stage, StageMarker, bool], None] | None = None,
               stages: tuple[StageSpec, ...] = STAGES) -> list[dict]:
    """Every round of ``cfg``: round r+1 samples from the model round r trained (when it trained).

    With eval sources, each round evaluates the policy it samples from, and when the last round
    trained a model, one more folder (``round-<rounds>``) evaluates it with the eval stage alone.
    ``rounds.json`` collects the eval results after every round. The reference model of training
    is the initial policy (``training.reference: initial``) or the round's own policy (``previous``)."""
    check_config(cfg)  # a config built in code gets the checks load_config applies to a file
    check_policy_model(cfg.policy.model, cfg.policy.kind, 0)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run_dir / "config.yaml", dump_config(cfg))
    except OSError as exc:
        raise RunFolderError(f"cannot write the run folder {run_dir}: {storage_problem(exc) or exc}") from exc
    manifests: list[dict] = []
    initial = cfg.policy.model
    policy, token = initial, None

    def round_config(model: str) -> RunConfig:
        return cfg.model_copy(update={"policy": cfg.policy.model_copy(update={"model": model})})

    sampled_from = policy
    for r in range(cfg.rounds):
        sampled_from = policy
        reference = initial if cfg.training.reference == "initial" and policy != initial else None
        runner = RoundRunner(round_config(policy), run_dir, r, force=force, on_stage=on_stage, policy=policy,
                             policy_run_token=token, reference=reference, on_stage_done=on_stage_done,
                             stages=stages)
        manifests.append(runner.run())
        write_rounds_json(run_dir, cfg, manifests)
        try_write_report(run_dir)  # report.html over the rounds so far (plumline report rebuilds it)
        if runner.trained_model is not None:
            policy, token = str(runner.trained_model), runner.model_token
    if cfg.eval.enabled and policy != sampled_from:
        final = RoundRunner(round_config(policy), run_dir, cfg.rounds, force=force, on_stage=on_stage,
                            policy=policy, policy_run_token=token,
                            stages=tuple(s for s in stages if s.name == Stage.EVAL),
                            on_stage_done=on_stage_done)
        manifests.append(final.run())
        write_rounds_json(run_dir, cfg, manifests)
        try_write_report(run_dir)
    close_shared_backends()
    return manifests


def evaluate_model(cfg: RunConfig, out_dir: Path, *, force: bool = False) -> dict:
    """``plumline eval``: the eval stage on its own, for ``cfg.policy`` on ``cfg.eval.sources``,
    writing ``out_dir/eval_samples.parquet``, ``out_dir/eval.json`` and ``out_dir/errors.jsonl``.
    A rerun with the same settings reuses the finished stage. Returns the summary."""
    check_config(cfg)
    check_policy_model(cfg.policy.model, cfg.policy.kind, 0)
    layout = FlatLayout(out_dir, 0)
    runner = RoundRunner(cfg, out_dir, 0, force=force, stages=(stage_spec(Stage.EVAL),), layout=layout)
    runner.run_stage(runner.stages[0])
    runner.merge_errors()
    close_shared_backends()
    summary = eval_summary(cfg, layout, model=cfg.policy.model) or {}
    write_eval_json(layout, summary)
    return summary


class FlatLayout(RoundLayout):
    """A round's files directly in ``run_dir`` (``plumline eval --out DIR``)."""

    @property
    def dir(self) -> Path:
        return self.run_dir


def _remove(path: Path) -> None:
    if path.is_dir():
        import shutil

        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
