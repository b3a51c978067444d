"""The round's stages as data: one table, run by one loop (``pipeline/round.py``).

Each ``StageSpec`` says what a stage reads and writes (artifacts with their record types), which
config sections its output depends on, whether it holds a generation engine, and how it builds its
Beam graph (or, for training, how it runs outside Beam). The loop derives everything else from the
table: the order, which stages a changed section or a rerun stage makes stale, where every file
goes, the record type of every file, the error files to merge.

A stage reruns when its own config sections changed, or when a stage it reads from ran again (its
key includes each input's run token, see ``stage_key``). Nothing follows list order: changing
``tests.*`` reruns tests, execute, export and train, never sampling.

Adding a stage: one ``StageSpec`` in ``STAGES`` (plus its artifacts in ``ARTIFACTS``) and its
transform; a new ``Stage`` member in ``plumline.data_schemas``.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from plumline.data_schemas import (
    ErrorKind,
    ErrorRecord,
    Execution,
    Record,
    ReferenceVerdict,
    Sample,
    Stage,
    TestCase,
    content_id,
)
from plumline.pipeline.artifacts import ARTIFACTS
from plumline.pipeline.errors import BadRunInput
from plumline.transforms.logic.prm import PrmConfig
from plumline.transforms.logic.sampling import SamplingConfig

if TYPE_CHECKING:  # the table is data; Beam and the transforms load only when a stage builds
    import apache_beam as beam
    from plumline.pipeline.config import RunConfig
    from plumline.pipeline.layout import RoundLayout
    from plumline.transforms.checkpoint import CheckpointStore
    from plumline.transforms.logic.readers import SourceConfig


# Not written by any stage of the round: the policy the round samples from (round r+1 reads the
# model round r trained). Its run token comes from the loop, so a retrained model reruns its readers.
POLICY = "policy"


# --- stages ---------------------------------------------------------------------------------------


Sections = Callable[["RunConfig"], tuple[str, ...]]


def _static(*names: str) -> Sections:
    return lambda cfg: names


@dataclass(frozen=True)
class StageSpec:
    """One row of the stage table.

    inputs/sections are functions of the config because some depend on it (the test writer is the
    policy unless ``tests.writer`` is set; training reads ``dpo`` or ``kto``). ``engine`` stages hold
    one generation engine and run in-process; the others get multi-process Beam workers. A stage
    has either ``build`` (adds its Beam graph) or ``run`` (runs outside Beam, e.g. training in its
    own process); ``enabled`` turns a stage off for a config (then it neither runs nor invalidates).
    ``finish`` (optional) runs after ``build``, before the stage is marked done: it checks the
    outputs (raising ``StageFailed`` or ``BadRunInput`` when the round cannot go on) and returns
    info for the marker.
    ``problems``: the artifact holding the problems an engine stage works on (for the loop's check
    that the engine did not fail for every one of them).
    ``round_free``: the outputs do not depend on the round number (no round column, no round-derived
    seed), so a later round whose key is the same takes an earlier round's outputs instead of running.
    """

    name: Stage
    inputs: Callable[[RunConfig], tuple[str, ...]]
    outputs: tuple[str, ...]
    sections: Sections
    engine: bool = False
    build: Callable[[StageContext], None] | None = None
    run: Callable[[StageContext], dict[str, Any]] | None = None
    enabled: Callable[[RunConfig], bool] = lambda cfg: True
    description: str = ""
    finish: Callable[[StageContext], dict[str, Any]] | None = None
    problems: str = "problems"
    round_free: bool = False

    def __post_init__(self) -> None:
        if (self.build is None) == (self.run is None):
            raise ValueError(f"stage {self.name.value}: give exactly one of build and run")


@dataclass
class StageContext:
    """What a stage's build/run function gets: the config, the round, where files go, and helpers
    that read and write artifacts with their record types."""

    cfg: RunConfig
    round: int
    layout: RoundLayout
    stage: Stage
    pipeline: beam.Pipeline | None = None
    policy_model: str = ""
    reference_model: str | None = None  # training's reference model; None: the policy itself
    key: str = ""  # the stage key of this run (names its checkpoint folder)
    processes: int | None = None  # Beam worker processes of a local CPU stage (None: beam.cpu_workers)
    _error_pcolls: list[Any] = field(default_factory=list)

    def checkpoint(self, record_types: dict[str, type[Record]]) -> CheckpointStore:
        """Where a long stage saves finished elements, so a rerun with the same key resumes them."""
        from plumline.transforms.checkpoint import CheckpointStore

        return CheckpointStore(self.layout.checkpoint_dir(self.stage, self.key), record_types)

    def read(self, name: str) -> beam.PCollection:
        """Records of an artifact an earlier stage wrote; corrupt rows go to this stage's errors."""
        from plumline.transforms.io import ReadRecords

        out = self.pipeline | f"Read_{name}" >> ReadRecords(
            str(self.layout.artifact_path(name)), ARTIFACTS[name].record_type(self.cfg), self.stage)
        self._error_pcolls.append(out.errors)
        return out.records

    def write(self, name: str, pcoll: beam.PCollection) -> None:
        from plumline.transforms.io import WriteRecords

        art = ARTIFACTS[name]
        invalid = pcoll | f"Write_{name}" >> WriteRecords(
            str(self.layout.artifact_path(name).with_suffix("")), art.record_type(self.cfg), self.stage)
        self._error_pcolls.append(invalid)

    def errors(self, pcoll: beam.PCollection) -> None:
        self._error_pcolls.append(pcoll)

    def write_errors(self) -> None:
        from plumline.transforms.io import WriteErrors

        if self._error_pcolls:
            tuple(self._error_pcolls) | "WriteErrors" >> WriteErrors(
                str(self.layout.stage_errors(self.stage)).removesuffix(".jsonl"))


# --- the build functions: thin, each hands its inputs to one transform ---------------------------

def build_read(ctx: StageContext) -> None:
    from plumline.transforms.read import ReadProblems

    out = ctx.pipeline | "ReadProblems" >> ReadProblems(ctx.cfg.sources)
    problems = out["problems"]
    if ctx.cfg.eval.enabled:  # decontamination: no training problem overlaps a held-out one
        from plumline.transforms.decontaminate import Decontaminate

        held_out = ctx.pipeline | "ReadEvalProblems" >> ReadProblems(ctx.cfg.eval.sources, reshuffle=False)
        clean = (problems, held_out["problems"]) | "Decontaminate" >> Decontaminate()
        problems = clean["problems"]
        ctx.errors(clean["errors"])  # the eval sources' own read errors are the eval stage's to report
    ctx.write("problems", problems)
    ctx.errors(out["errors"])


def _error_kinds(path) -> Counter:
    kinds: Counter = Counter()
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                kinds[json.loads(line)["kind"]] += 1
            except (ValueError, KeyError, TypeError):
                continue
    return kinds


def _rows(ctx: StageContext, name: str) -> int:
    import pyarrow.parquet as pq

    path = ctx.layout.artifact_path(name)
    return pq.ParquetFile(path).metadata.num_rows if path.exists() else 0


def finish_read(ctx: StageContext) -> dict[str, Any]:
    """A round without problems cannot run: say why (everything overlapped the eval sources, or
    nothing readable). Counts the decontaminated problems for the manifest."""
    import logging

    kinds = _error_kinds(ctx.layout.stage_errors(Stage.READ))
    removed = kinds.get(ErrorKind.CONTAMINATED.value, 0)
    sources = ", ".join(s.path for s in ctx.cfg.sources)
    held_out = ", ".join(s.path for s in ctx.cfg.eval.sources)
    if removed:
        logging.getLogger(__name__).warning(
            "round %d: %d training problem(s) removed: they overlap the eval sources (%s); see errors.jsonl "
            "(kind contaminated)", ctx.round, removed, held_out)
    if _rows(ctx, "problems") == 0:
        if removed:
            raise BadRunInput(
                f"round {ctx.round}: every training problem ({removed}) overlaps the eval sources "
                f"({held_out}) by problem id or prompt text, so nothing is left to train on: use held-out "
                f"problems that are not in the training sources ({sources})")
        raise BadRunInput(f"round {ctx.round}: no problems read from the sources ({sources}); "
                          f"{sum(kinds.values())} read error(s), details in "
                          f"{ctx.layout.stage_errors(Stage.READ)}")
    return {"contaminated": removed}


def build_tests(ctx: StageContext) -> None:
    from plumline.pipeline.runners import generation_accelerator, with_accelerator
    from plumline.transforms.synthesize_tests import SynthesizeTests

    cfg = ctx.cfg
    out = ctx.read("problems") | "SynthesizeTests" >> with_accelerator(SynthesizeTests(
        None, cfg.tests, cfg.policy, seed=cfg.seed, sandbox_limits=cfg.sandbox.limits,
        sandbox_workers=cfg.sandbox.workers), generation_accelerator(cfg, Stage.TESTS))
    ctx.write("tests_candidates", out["tests"])
    ctx.write("tests_stats", out["stats"])
    ctx.errors(out["errors"])


def build_sample(ctx: StageContext) -> None:
    from plumline.pipeline.runners import generation_accelerator
    from plumline.transforms.checkpoint import MAIN
    from plumline.transforms.sample import SampleSolutions

    cfg = ctx.cfg
    checkpoint = ctx.checkpoint({MAIN: Sample, "errors": ErrorRecord})
    out = ctx.read("problems") | "SampleSolutions" >> SampleSolutions(
        cfg.policy, cfg.sampling, cfg.prompt, ctx.round, cfg.seed,
        accelerator=generation_accelerator(cfg, Stage.SAMPLE), checkpoint=checkpoint,
        limits=cfg.sandbox.limits, workers=cfg.sandbox.workers)
    ctx.write("samples", out.samples)
    ctx.errors(out.errors)


def build_execute(ctx: StageContext) -> None:
    from plumline.transforms.checkpoint import MAIN
    from plumline.transforms.execute import VerifyAndExecute, default_sandbox_workers

    cfg = ctx.cfg
    inputs = (ctx.read("problems"), ctx.read("tests_candidates"), ctx.read("samples"))
    workers = cfg.sandbox.workers or default_sandbox_workers(ctx.processes or cpu_workers(cfg))
    checkpoint = ctx.checkpoint({MAIN: Execution, "tests": TestCase, "errors": ErrorRecord,
                                 "references": ReferenceVerdict})
    out = inputs | "VerifyAndExecute" >> VerifyAndExecute(
        cfg.sandbox.limits, workers, cfg.validation, ctx.round, checkpoint=checkpoint)
    ctx.write("executions", out.executions)
    ctx.write("tests", out.tests)
    ctx.write("reference_verdicts", out.references)
    ctx.errors(out.errors)


def build_export(ctx: StageContext) -> None:
    from plumline.transforms.export import BuildTrainingRows

    cfg = ctx.cfg
    inputs = (ctx.read("problems"), ctx.read("samples"), ctx.read("executions"),
              ctx.read("reference_verdicts"))
    out = inputs | "BuildTrainingRows" >> BuildTrainingRows(cfg, ctx.round)
    for name in ("dpo", "kto", "critic", "pair_stats"):
        ctx.write(name, out[name])
    ctx.errors(out.errors)


def build_eval(ctx: StageContext) -> None:
    from plumline.pipeline.runners import generation_accelerator
    from plumline.transforms.evaluate import EvaluatePolicy
    from plumline.transforms.read import ReadProblems

    cfg = ctx.cfg
    read = ctx.pipeline | "ReadEvalProblems" >> ReadProblems(cfg.eval.sources)
    ctx.write("eval_problems", read["problems"])
    out = read["problems"] | "Evaluate" >> EvaluatePolicy(
        cfg.eval.policy(cfg.policy), cfg.eval.sampling(cfg.sampling), cfg.prompt, ctx.round, cfg.seed,
        cfg.sandbox.limits, cfg.sandbox.workers, accelerator=generation_accelerator(cfg, Stage.EVAL))
    ctx.write("eval_samples", out["eval_samples"])
    ctx.errors(read["errors"])
    ctx.errors(out["errors"])


def finish_eval(ctx: StageContext) -> dict[str, Any]:
    if _rows(ctx, "eval_problems") == 0:
        raise BadRunInput(f"round {ctx.round}: no eval problems read from the eval sources "
                          f"({', '.join(s.path for s in ctx.cfg.eval.sources)}); details in "
                          f"{ctx.layout.stage_errors(Stage.EVAL)}")
    return {}


def build_prm(ctx: StageContext) -> None:
    from plumline.data_schemas.records import PrmRow, PrmStats
    from plumline.pipeline.runners import generation_accelerator
    from plumline.transforms.checkpoint import MAIN
    from plumline.transforms.prm import LabelSteps

    cfg = ctx.cfg
    inputs = (ctx.read("problems"), ctx.read("tests"), ctx.read("samples"), ctx.read("executions"))
    checkpoint = ctx.checkpoint({MAIN: PrmRow, "errors": ErrorRecord, "stats": PrmStats})
    out = inputs | "LabelSteps" >> LabelSteps(
        cfg.prm, cfg.sampling, cfg.policy, cfg.seed, cfg.sandbox.limits, cfg.sandbox.workers,
        accelerator=generation_accelerator(cfg, Stage.PRM), checkpoint=checkpoint)
    ctx.write("prm", out.rows)
    ctx.write("prm_stats", out.stats)
    ctx.errors(out.errors)


def finish_prm(ctx: StageContext) -> dict[str, Any]:
    """The labelling cost for the marker and the manifest; a stage whose engine failed for every
    program it tried stops the round (a rerun retries it), as an empty sampling stage does."""
    import pyarrow.parquet as pq
    from plumline.data_schemas import from_table
    from plumline.data_schemas.records import PrmStats
    from plumline.pipeline.errors import StageFailed

    path = ctx.layout.artifact_path("prm_stats")
    stats = from_table(pq.read_table(path), PrmStats) if path.exists() else []
    keys = ("programs", "rows", "not_labelled", "probe_levels", "probes", "completions", "executions")
    info: dict[str, Any] = {k: sum(getattr(s, k) for s in stats) for k in keys}
    info["labelling_seconds"] = round(sum(s.duration_s for s in stats), 2)
    failed = _error_kinds(ctx.layout.stage_errors(Stage.PRM)).get(ErrorKind.ENGINE_FAILED.value, 0)
    if info["programs"] and failed >= info["programs"]:
        raise StageFailed(f"round {ctx.round}: stage prm: the engine failed for all {info['programs']} "
                          f"programs; details in {ctx.layout.stage_errors(Stage.PRM)}; a rerun retries "
                          f"this stage.")
    return info


def run_train(ctx: StageContext) -> dict[str, Any]:
    from plumline.pipeline.training import train_round

    return train_round(ctx.cfg, ctx.layout, ctx.policy_model, reference=ctx.reference_model)


def _policy_writes_tests(cfg: RunConfig) -> bool:
    # The policy writes its own tests unless tests.writer names another model or no model is asked.
    return cfg.tests.enabled and cfg.tests.writer is None


def _tests_inputs(cfg: RunConfig) -> tuple[str, ...]:
    return ("problems", POLICY) if _policy_writes_tests(cfg) else ("problems",)


def _tests_sections(cfg: RunConfig) -> tuple[str, ...]:
    base = ("tests", "seed", "policy") if _policy_writes_tests(cfg) else ("tests", "seed")
    # input-first tests run the reference solutions in the sandbox
    return (*base, "sandbox.limits") if cfg.tests.mode == "inputs" else base


def _train_inputs(cfg: RunConfig) -> tuple[str, ...]:
    method = cfg.training.method  # the stage is off when it is "none"
    return (POLICY,) if method == "none" else (method, POLICY)


def _train_sections(cfg: RunConfig) -> tuple[str, ...]:
    method = cfg.training.method
    return ("training",) if method == "none" else ("training", f"{method}.train", f"{method}.accumulate",
                                                   "seed")


def _read_sections(cfg: RunConfig) -> tuple[str, ...]:
    # The eval sources decide which training problems are removed (decontamination).
    return ("sources", "eval.sources") if cfg.eval.enabled else ("sources",)


# The generation settings of ``sampling``, without its mode: the prm stage continues prefixes with
# them whatever the mode.
SAMPLING_SETTINGS = tuple(f"sampling.{name}" for name in SamplingConfig.model_fields
                          if name not in ("mode", "guided"))


def _sampling_sections(cfg: RunConfig) -> tuple[str, ...]:
    # sampling.guided matters only in critic_guided mode, which also runs the examples in the sandbox
    if cfg.sampling.mode == "critic_guided":
        return ("sampling", "sandbox.limits")
    return (*SAMPLING_SETTINGS, "sampling.mode")


def _sample_sections(cfg: RunConfig) -> tuple[str, ...]:
    return ("policy", "prompt", *_sampling_sections(cfg), "seed")


def _eval_sections(cfg: RunConfig) -> tuple[str, ...]:
    # The policy's engine options matter unless eval.backend replaces them; its model is the input.
    # eval.sampling_mode (plain by default) decides whether sampling.guided matters here, not sampling.mode
    guided = cfg.eval.sampling(cfg.sampling).mode == "critic_guided"
    follows_run = cfg.eval.sampling_mode is None
    sampling = ("sampling",) if guided else (*SAMPLING_SETTINGS, *(("sampling.mode",) if follows_run else ()))
    base = ("eval", "prompt", *sampling, "seed", "sandbox.limits")
    return base if cfg.eval.backend is not None else (*base, "policy")


# The prm stage depends on its labelling knobs, not on prm.train (the trainer is a separate command).
PRM_LABEL_SECTIONS = tuple(f"prm.{name}" for name in PrmConfig.model_fields)

STAGES: tuple[StageSpec, ...] = (
    StageSpec(Stage.READ, inputs=lambda cfg: (), outputs=("problems",), sections=_read_sections,
              build=build_read, finish=finish_read, round_free=True,
              description="read every source into Problem records, minus those overlapping eval sources"),
    StageSpec(Stage.TESTS, inputs=_tests_inputs, outputs=("tests_candidates", "tests_stats"),
              sections=_tests_sections, engine=True, build=build_tests, round_free=True,
              description="inputs from the writer and the examples, mutated; expected outputs from the "
                          "reference (asserts mode: the writer's asserts); example and given tests join"),
    StageSpec(Stage.SAMPLE, inputs=lambda cfg: ("problems", POLICY), outputs=("samples",),
              sections=_sample_sections, engine=True, build=build_sample,
              description="sample n solutions (and a greedy one) per problem from the policy"),
    # Right after sampling: the same engine, still loaded, evaluates the policy the round sampled from
    # (round 0: the untrained baseline; the last round's trained model: run_rounds' final eval round).
    StageSpec(Stage.EVAL, inputs=lambda cfg: (POLICY,), outputs=("eval_problems", "eval_samples"),
              sections=_eval_sections, engine=True, build=build_eval, finish=finish_eval,
              enabled=lambda cfg: cfg.eval.enabled, problems="eval_problems",
              description="pass@k of the round's policy on held-out problems, on their own tests"),
    StageSpec(Stage.EXECUTE, inputs=lambda cfg: ("problems", "tests_candidates", "samples"),
              outputs=("executions", "tests", "reference_verdicts"),
              sections=_static("validation", "sandbox.limits"),
              build=build_execute,
              description="validate the tests (oracle, agreement) and run every sample in the sandbox"),
    StageSpec(Stage.EXPORT, inputs=lambda cfg: ("problems", "samples", "executions", "reference_verdicts"),
              outputs=("dpo", "kto", "critic", "pair_stats"),
              sections=_static("dpo.pairs", "kto.rows", "critic.rows", "export", "seed"),
              build=build_export, description="chosen/rejected pairs, KTO rows, critic rows"),
    StageSpec(Stage.PRM, inputs=lambda cfg: ("problems", "tests", "samples", "executions", POLICY),
              outputs=("prm", "prm_stats"),
              sections=_static(*PRM_LABEL_SECTIONS, "seed", "sandbox.limits", *SAMPLING_SETTINGS, "policy"),
              engine=True,
              build=build_prm, finish=finish_prm, enabled=lambda cfg: cfg.prm.enabled,
              description="step labels: binary search over line prefixes, each continued prm.k times"),
    StageSpec(Stage.TRAIN, inputs=_train_inputs, outputs=("model",), sections=_train_sections,
              run=run_train, enabled=lambda cfg: cfg.training.method != "none",
              description="train the policy on this round's data (TRL), in its own process"),
)


def stage_spec(name: Stage) -> StageSpec:
    """The table's row of one stage."""
    return next(spec for spec in STAGES if spec.name == name)


def check_table(cfg: RunConfig, stages: Sequence[StageSpec] = STAGES) -> None:
    """The table is well formed for this config: every input is written by an earlier stage (or is
    the policy), every artifact is known and has one producer. Raises ValueError naming the stage."""
    produced: dict[str, Stage] = {}
    for spec in stages:
        for name in spec.outputs:
            if name not in ARTIFACTS:
                raise ValueError(f"stage {spec.name.value}: unknown artifact {name!r}")
            if name in produced:
                raise ValueError(f"artifact {name!r} written by {produced[name].value} and {spec.name.value}")
            produced[name] = spec.name
    for i, spec in enumerate(stages):
        if not spec.enabled(cfg):
            continue
        earlier = {n for s in stages[:i] if s.enabled(cfg) for n in s.outputs}
        for name in spec.inputs(cfg):
            if name != POLICY and name not in earlier:
                raise ValueError(f"stage {spec.name.value} reads {name!r} before any stage writes it")


def stage_key(spec: StageSpec, cfg: RunConfig, input_tokens: dict[str, str]) -> str:
    """What a stage's output is a function of: its own config sections and the run tokens of its
    inputs (a token changes whenever the producing stage runs again)."""
    values = {s: section_value(cfg, s) for s in spec.sections(cfg)}
    return content_id("stage", spec.name.value, values, sorted(input_tokens.items()))


def section_value(cfg: RunConfig, dotted: str) -> Any:
    """The resolved value of a config section by dotted path (``dpo.pairs``), as plain data."""
    value: Any = cfg.resolved_dict()
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            raise KeyError(f"stage table names config section {dotted!r}, which the config does not have")
        value = value[part]
    return value


def cpu_workers(cfg: RunConfig) -> int:
    """The most worker processes a local CPU stage uses: ``beam.cpu_workers``, else one per core."""
    return cfg.beam.cpu_workers or os.cpu_count() or 1


# Beam's worker processes start anew for every stage. On 2 cores (bench/bench_cpu_stages.py) they cost
# 2.3-3.9 s of read, execute and export at the demo's size (40 problems, 200 samples); execute breaks
# even at 2,000 samples and is 12% faster with them at 6,000 (export: in-process faster still). A stage
# with fewer input rows than this runs in-process by default (its sandbox slots are threads of the one
# process, one per core).
IN_PROCESS_BELOW_ROWS = 2000


def stage_processes(cfg: RunConfig, rows: int | None) -> int:
    """Worker processes of a local CPU stage whose largest input holds ``rows`` rows (None: not known
    before it runs): ``beam.cpu_workers`` when set, else 1 below ``IN_PROCESS_BELOW_ROWS``, else cores."""
    if cfg.beam.cpu_workers is None and rows is not None and rows < IN_PROCESS_BELOW_ROWS:
        return 1
    return cpu_workers(cfg)


# A JSON-lines source file up to this size is counted by its newlines (a few milliseconds).
_COUNTED_SOURCE_BYTES = 16 << 20


def source_rows(src: SourceConfig) -> int | None:
    """At most how many problems a source gives, where that is cheap to know: its ``limit``, else the
    rows of its one file (found as the reader finds it, bundled sets too) when that is Parquet (its
    metadata) or plain JSON lines (its newlines, up to 16 MiB); None for anything else (globs,
    folders, compressed files, JSON lists, remote paths, a file that is not there)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from plumline.transforms.logic.readers import expand_paths, resolve_format

    if src.limit is not None:
        return src.limit
    if any(ch in src.path for ch in "*?["):
        return None  # a glob: not counted (it may match many files)
    try:
        [path] = map(Path, expand_paths(src))
        if not path.is_file():
            return None
        fmt = resolve_format(src, str(path))
        if fmt == "parquet":
            return pq.ParquetFile(path).metadata.num_rows
        if fmt not in ("jsonl", "humaneval", "mbpp") or path.stat().st_size > _COUNTED_SOURCE_BYTES:
            return None
        data = path.read_bytes()
        if data.startswith(b"\x1f\x8b") or data.lstrip()[:1] == b"[":  # gzip, or one JSON list
            return None
        return data.count(b"\n") + (not data.endswith(b"\n") and bool(data))
    except (OSError, ValueError, pa.ArrowException):  # the stage's own read reports what is wrong
        return None


def stage_input_rows(cfg: RunConfig, spec: StageSpec, layout: RoundLayout) -> int | None:
    """Rows of the largest Parquet input of a stage (read: its sources' rows added up, the held-out
    ones it reads for decontamination too, each as ``source_rows`` knows it); None when that is not
    known before the stage runs."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if spec.name == Stage.READ:
        sources = [*cfg.sources, *(cfg.eval.sources if cfg.eval.enabled else ())]
        counts = [source_rows(src) for src in sources]
        return sum(counts) if counts and all(n is not None for n in counts) else None
    counts = []
    for name in spec.inputs(cfg):
        art = ARTIFACTS.get(name)
        path = layout.artifact_path(name) if art is not None and not art.is_folder else None
        if path is not None and path.is_file():
            try:
                counts.append(pq.ParquetFile(path).metadata.num_rows)
            except (OSError, pa.ArrowException):  # unreadable: the stage's own read reports it
                return None
    return max(counts) if counts else None


def describe_stages(cfg: RunConfig) -> list[dict[str, str]]:
    """The table as rows for people (``plumline config stages``, the README)."""
    rows = []
    for spec in STAGES:
        runs_as = ("engine, in-process" if spec.engine
                   else "own process" if spec.run else "CPU, worker processes (in-process when small)")
        rows.append({"stage": spec.name.value, "reads": ", ".join(spec.inputs(cfg)) or "-",
                     "writes": ", ".join(spec.outputs), "sections": ", ".join(spec.sections(cfg)),
                     "runs as": runs_as if spec.enabled(cfg) else f"{runs_as} (off in this config)",
                     "does": spec.description})
    return rows
