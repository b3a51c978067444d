"""The run configuration: YAML validated by pydantic.

Each component owns its section and the class lives beside it; this module only composes them
(plus ``BeamConfig`` and ``TrainingConfig``), loads YAML, applies ``--set dotted.key=value``
overrides, rejects configs that cannot work before any work, and reports every error naming the
field and the file. Every field has a default and a one-line description, so ``plumline config
show`` prints a complete config and ``plumline config fields`` documents every field.

    name, out_dir, rounds, seed   the run; ``seed`` is THE seed (consumers use derive_seed(seed, ...))
    sources[*]   SourceConfig           plumline.transforms.logic.readers
    policy       BackendConfig          plumline.llm
    prompt       PromptConfig           plumline.llm (the one policy-prompt renderer)
    sampling     SamplingConfig         plumline.transforms.logic.sampling
    tests        TestSynthesisConfig    plumline.transforms.logic.synthesis
    validation   TestValidationConfig   plumline.transforms.logic.validation
    sandbox      SandboxConfig          plumline.sandbox
    dpo          pairs: PairingConfig (transforms.logic.pairing), train: DpoTrainingConfig (trainers)
    kto          rows: KtoRowsConfig (transforms.logic.pairing), train: KtoTrainingConfig (trainers)
    critic       rows: CriticRowsConfig (transforms.logic.pairing), train: CriticTrainingConfig (trainers)
    export       ExportConfig           plumline.transforms.logic.pairing
    eval         EvalConfig             plumline.transforms.logic.evaluation (held-out pass@k per round)
    prm          PrmConfig              plumline.transforms.logic.prm (process-supervision step labels),
                 + train: PrmTrainingConfig (trainers)
    training     TrainingConfig         here: which method trains the policy between rounds
    beam         BeamConfig             here: runner and options
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml
from plumline.data_schemas.overrides import OverrideError, apply_overrides
from plumline.llm import BackendConfig, PromptConfig
from plumline.pipeline.runners import DaskConfig, DataflowConfig, runner_problems
from plumline.sandbox import SandboxConfig
from plumline.trainers import DpoTrainingConfig, KtoTrainingConfig
from plumline.trainers.config import SAVE_FIELD
from plumline.trainers.critic import CriticTrainingConfig
from plumline.trainers.prm import PrmTrainingConfig
from plumline.transforms.logic.evaluation import EvalConfig, eval_problems
from plumline.transforms.logic.guided import guided_problems
from plumline.transforms.logic.pairing import CriticRowsConfig, ExportConfig, KtoRowsConfig, PairingConfig
from plumline.transforms.logic.prm import PrmConfig, prm_problems
from plumline.transforms.logic.readers import SourceConfig
from plumline.transforms.logic.sampling import SamplingConfig
from plumline.transforms.logic.synthesis import TestSynthesisConfig
from plumline.transforms.logic.validation import TestValidationConfig
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import PydanticUndefined


class ConfigError(ValueError):
    """A config that cannot run. The message names the file and the field."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class AccumulateConfig(_Section):
    """Which rows a round trains on: its own (fresh, on-policy: the default), or with earlier rounds'."""

    enabled: bool = Field(False, description="Train each round on its own rows plus the earlier rounds' "
                                             "(newest first); false: only this round's fresh rows.")
    max_rows: int | None = Field(None, ge=1, description="Cap on the rows trained on per round when "
                                                         "accumulating: this round's first, then earlier "
                                                         "rounds' newest first; None: no cap.")


class DpoConfig(_Section):
    """DPO: which pairs are made, and how the policy trains on them."""

    pairs: PairingConfig = Field(
        default_factory=PairingConfig,
        description="How executed samples become chosen/rejected pairs (dpo.parquet).")
    train: DpoTrainingConfig = Field(default_factory=DpoTrainingConfig,
                                     description="trl.DPOTrainer knobs, used when training.method is dpo.")
    accumulate: AccumulateConfig = Field(default_factory=AccumulateConfig,
                                         description="Fresh pairs per round, or accumulated with a cap.")


class KtoConfig(_Section):
    """KTO: which samples become labelled rows, and how the policy trains on them."""

    rows: KtoRowsConfig = Field(
        default_factory=KtoRowsConfig,
        description="Which candidates become KTO rows and their labels (kto.parquet).")
    train: KtoTrainingConfig = Field(default_factory=KtoTrainingConfig,
                                     description="trl.KTOTrainer knobs, used when training.method is kto.")
    accumulate: AccumulateConfig = Field(default_factory=AccumulateConfig,
                                         description="Fresh rows per round, or accumulated with a cap.")


class CriticConfig(_Section):
    """CodeRL critic: its rows, and how ``plumline train critic`` trains it (never the online loop)."""

    rows: CriticRowsConfig = Field(default_factory=CriticRowsConfig,
                                   description="Program -> outcome class rows (critic.parquet).")
    train: CriticTrainingConfig = Field(
        default_factory=CriticTrainingConfig,
        description="Critic trainer knobs for `plumline train critic --config RUN.yaml` (a separate "
                    "command: the online loop does not train the critic).")


class PrmSection(PrmConfig):
    """Process-supervision step labels (the prm stage's knobs, flat: ``prm.k``, ``prm.select``...) and
    how ``plumline train prm`` trains a PRM on them (``prm.train``: a separate command, never the online
    loop; the stage does not depend on it)."""

    train: PrmTrainingConfig = Field(
        default_factory=PrmTrainingConfig,
        description="PRM trainer knobs for `plumline train prm --config RUN.yaml` (a separate command: the "
                    "online loop does not train the PRM).")


class TrainingConfig(_Section):
    method: Literal["none", "dpo", "kto"] = Field(
        "none", description="Train the policy on each round's data: none, dpo (the dpo section) or kto "
                            "(the kto section); the next round samples from the trained model.")
    reference: Literal["initial", "previous"] = Field(
        "initial", description="Reference model of DPO/KTO in round r: the run's initial policy, or the "
                               "policy round r samples from (the previous round's model).")


class BeamConfig(_Section):
    runner: str = Field("FnApiRunner", description="Beam runner. FnApiRunner runs locally (never Prism); "
                                                   "dask: CPU stages on Beam's DaskRunner (beam.dask); "
                                                   "DataflowRunner for Google Cloud (beam.dataflow).")
    cpu_workers: int | None = Field(None, ge=1, description="Local worker processes for CPU stages "
                                                            "(read, execute, export); default: one "
                                                            "per core, or in-process for a stage "
                                                            "with under 2,000 input rows (worker "
                                                            "processes take seconds to start).")
    options: list[str] = Field(default_factory=list,
                               description="Extra Beam pipeline options, passed unchanged (Dataflow's "
                                           "project, region, image: beam.dataflow).")
    sampling_accelerator: str | None = Field(
        None, description="Accelerator resource hint on the engine step of the generation stages (tests, "
                          "sample, eval, prm) whose engine runs in the pipeline, e.g. "
                          "'type:nvidia-l4;count:1;machine_type:g2-standard-8;install-nvidia-driver'.")
    overlap_engine_stages: bool = Field(
        True, description="Run a round's generation stages that use the same engine and do not read each "
                          "other's outputs (sample and eval) at the same time, their requests in one running "
                          "batch (vLLM only): one stage's few long completions decode beside the other's "
                          "bulk. Each stage keeps its own files, marker and resume. false: one after the "
                          "other (a seeded request's output then never depends on what it was batched with, "
                          "on engines whose kernels are not batch-invariant, e.g. some GPU kernels).")
    dask: DaskConfig = Field(default_factory=DaskConfig, description="The Dask cluster of runner: dask.")
    dataflow: DataflowConfig = Field(default_factory=DataflowConfig,
                                     description="Project, buckets, worker image of runner: DataflowRunner.")


class RunConfig(_Section):
    name: str = Field("run", description="Run name: the run folder is OUT/NAME.")
    out_dir: str = Field("runs", description="Folder that holds run folders.")
    rounds: int = Field(1, ge=1, description="Online rounds: sample, verify, export, train, repeat.")
    seed: int = Field(0, description="The run's one seed: every seeded choice (samples, test writer, pair "
                                     "order, training) derives its own from it with derive_seed.")
    sources: list[SourceConfig] = Field(default_factory=list, validate_default=True,
                                        description="Where problems come from (at least one).")
    policy: BackendConfig = Field(default_factory=BackendConfig, description="The policy being trained.")
    prompt: PromptConfig = Field(default_factory=PromptConfig,
                                 description="What the policy is told besides the problem (chat or plain).")
    sampling: SamplingConfig = Field(default_factory=SamplingConfig, description="Policy sampling.")
    tests: TestSynthesisConfig = Field(default_factory=TestSynthesisConfig,
                                       description="Test synthesis (PLUM stage 1).")
    validation: TestValidationConfig = Field(default_factory=TestValidationConfig,
                                             description="Test validation (oracle, CodeT agreement).")
    sandbox: SandboxConfig = Field(default_factory=SandboxConfig, description="Execution sandbox.")
    dpo: DpoConfig = Field(default_factory=DpoConfig, description="DPO pairs and DPO training.")
    kto: KtoConfig = Field(default_factory=KtoConfig, description="KTO rows and KTO training.")
    critic: CriticConfig = Field(default_factory=CriticConfig, description="CodeRL critic rows and trainer.")
    export: ExportConfig = Field(default_factory=ExportConfig,
                                 description="How the round's files are written.")
    eval: EvalConfig = Field(default_factory=EvalConfig,
                             description="Held-out evaluation (pass@k) of every round's policy.")
    prm: PrmSection = Field(default_factory=PrmSection,
                            description="Process-supervision step labels (prm.parquet, arXiv 2410.17621) "
                                        "and the PRM trainer (prm.train).")
    training: TrainingConfig = Field(default_factory=TrainingConfig, description="Training between rounds.")
    beam: BeamConfig = Field(default_factory=BeamConfig, description="Beam runner settings.")

    @field_validator("sources")
    @classmethod
    def _need_sources(cls, v: list[SourceConfig]) -> list[SourceConfig]:
        if not v:
            raise ValueError("at least one problem source is required")
        return v

    def resolved_dict(self) -> dict[str, Any]:
        return json.loads(self.model_dump_json())


# --------------------------------------------------------------------------------------------------
# Configs that validate field by field but cannot work as a whole


def config_problems(cfg: RunConfig) -> list[tuple[str, str]]:
    """(dotted field, why) for every combination of settings that cannot work; empty when none.

    Checked by ``load_config`` before any work, so a run never fails (or silently produces nothing)
    hours in because of its config."""
    out: list[tuple[str, str]] = []

    def cannot(field: str, why: str) -> None:
        out.append((field, why))

    if not cfg.policy.model.strip():
        cannot("policy.model", "empty: name the policy (a model folder, a hub name, an asset:... "
                               "reference, or the served model name for kind openai)")
    method = cfg.training.method
    if method != "none":
        train = getattr(cfg, method).train
        if cfg.rounds > 1 and not getattr(train, SAVE_FIELD):
            cannot(f"{method}.train.{SAVE_FIELD}",
                   f"false with rounds: {cfg.rounds}: training writes no weights, and the next round "
                   f"would load that model folder as its policy (set it true, or rounds: 1)")
        if cfg.rounds > 1 and train.lora is not None and not train.lora.merge_on_save:
            cannot(f"{method}.train.lora.merge_on_save",
                   f"false with rounds: {cfg.rounds}: the saved folder holds only the adapter, which the "
                   f"next round cannot load as its policy (set it true, or rounds: 1)")
    if method == "kto" and not cfg.kto.rows.enabled:
        cannot("kto.rows.enabled", "false with training.method: kto: no KTO rows to train on")
    if method == "dpo":
        per_problem = cfg.sampling.n + int(cfg.sampling.greedy and cfg.dpo.pairs.include_greedy)
        if per_problem < 2:
            cannot("sampling.n", f"{cfg.sampling.n} with training.method: dpo gives {per_problem} candidate "
                                 f"per problem (sampling.greedy: {cfg.sampling.greedy}, "
                                 f"dpo.pairs.include_greedy: {cfg.dpo.pairs.include_greedy}): a DPO pair "
                                 f"needs two")
        if cfg.sampling.temperature == 0:
            cannot("sampling.temperature", "0 with training.method: dpo: every sample is the greedy "
                                           "completion, so no two programs differ and no pair forms")
    for field, why in eval_problems(cfg.eval):
        cannot(f"eval.{field}", why)
    for field, why in prm_problems(cfg.prm, cfg.policy):
        cannot(field, why)
    for field, why in guided_problems(cfg.sampling, cfg.policy):
        cannot(field, why)
    if cfg.eval.enabled and cfg.sampling.mode != "critic_guided":  # eval may guide where training does not
        for field, why in guided_problems(cfg.eval.sampling(cfg.sampling), cfg.eval.policy(cfg.policy)):
            cannot(field, f"{why} (eval.sampling_mode: critic_guided)")
    for field, why in runner_problems(cfg):
        cannot(field, why)
    if cfg.export.format == "conversational" and cfg.policy.chat is False:
        cannot("export.format", "conversational with policy.chat: false: the policy saw plain text, not "
                                "chat messages; use standard (the exact text it saw)")
    _check_context(cannot, "sampling.max_tokens", cfg.sampling.max_tokens, "policy", cfg.policy)
    if cfg.prm.enabled and cfg.prm.max_tokens is not None:
        _check_context(cannot, "prm.max_tokens", cfg.prm.max_tokens, "policy", cfg.policy)
    if cfg.tests.enabled:
        writer = cfg.tests.writer or cfg.policy
        _check_context(cannot, "tests.max_tokens", cfg.tests.max_tokens,
                       "tests.writer" if cfg.tests.writer is not None else "policy", writer)
    elif (not cfg.tests.use_examples and cfg.tests.given_tests_role == "eval"
          and cfg.validation.min_kept_tests >= 1):
        cannot("tests.enabled", "false with tests.use_examples: false and tests.given_tests_role: eval: no "
                                "problem can have a training test, so every problem is skipped")
    return out


def _check_context(cannot: Any, field: str, max_tokens: int, name: str, backend: BackendConfig) -> None:
    if backend.max_model_len is not None and max_tokens >= backend.max_model_len:
        cannot(field, f"{max_tokens} >= {name}.max_model_len {backend.max_model_len}: no prompt fits beside "
                      f"the completion, every request would be rejected")


def check_config(cfg: RunConfig, origin: str = "<config>") -> RunConfig:
    """Raise ``ConfigError`` naming every field of ``config_problems`` (and ``origin``, the file)."""
    problems = config_problems(cfg)
    if problems:
        raise ConfigError("\n".join([f"config cannot work ({origin}):",
                                      *(f"  {field}: {why}" for field, why in problems)]))
    return cfg


def _format_validation_error(exc: ValidationError, origin: str) -> str:
    lines = [f"invalid config ({origin}):"]
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "<root>"
        lines.append(f"  {loc}: {err['msg']}")
    return "\n".join(lines)


def load_config(path: str | Path | None, overrides: list[str] | None = None,
                base_dir: Path | None = None) -> RunConfig:
    """Load YAML (or start from defaults when path is None), apply overrides, validate each field,
    then reject combinations that cannot work (``config_problems``).

    Relative source paths are resolved against the config file's folder (or ``base_dir``), so a
    config works from any working directory."""
    origin = str(path) if path else "<defaults>"
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file not found: {p}")
        try:
            loaded = yaml.safe_load(p.read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{p}: not valid YAML: {exc}") from exc
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{p}: the top level must be a mapping of sections")
        data = loaded
        base_dir = base_dir or p.resolve().parent
    try:
        apply_overrides(data, overrides or [])
    except OverrideError as exc:
        raise ConfigError(str(exc)) from exc
    try:
        cfg = RunConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc, origin)) from exc
    if overrides:
        origin += " with --set " + " ".join(overrides)
    check_config(cfg, origin)
    if base_dir is not None:
        cfg = _resolve_relative_paths(cfg, base_dir)
    return cfg


def _resolve_relative_paths(cfg: RunConfig, base_dir: Path) -> RunConfig:
    def resolved(src: SourceConfig) -> SourceConfig:
        p = src.path
        if ":" in p.split("/")[0] or Path(p).is_absolute() or Path(p).exists():
            return src  # bundled:..., gs://..., absolute, or relative to cwd and present
        candidate = base_dir / p
        return (src.model_copy(update={"path": str(candidate)}) if candidate.exists()
                or any(ch in p for ch in "*?[") else src)

    ev = cfg.eval.model_copy(update={"sources": [resolved(s) for s in cfg.eval.sources]})
    return cfg.model_copy(update={"sources": [resolved(s) for s in cfg.sources], "eval": ev})


def dump_config(cfg: RunConfig) -> str:
    """The resolved config as YAML, with every default written out."""
    return yaml.safe_dump(cfg.resolved_dict(), sort_keys=False, allow_unicode=True)


# --------------------------------------------------------------------------------------------------
# ``plumline config fields``


def _nested(annotation: Any) -> tuple[type | None, str]:
    """The model or dataclass an annotation holds (through ``X | None`` and ``list[X]``), and the path
    step to its fields: ``""`` for a section, ``"[*]"`` for the items of a list."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _nested(args[0]) if len(args) == 1 else (None, "")
    if origin in (list, tuple):
        args = typing.get_args(annotation)
        inner, step = _nested(args[0]) if args else (None, "")
        return (inner, "[*]" + step) if inner is not None else (None, "")
    if isinstance(annotation, type) and (issubclass(annotation, BaseModel)
                                         or dataclasses.is_dataclass(annotation)):
        return annotation, ""
    return None, ""


def _fields(cls: type) -> list[tuple[str, Any, Any, str]]:
    """(name, annotation, default or PydanticUndefined, description) of a pydantic model or dataclass."""
    if issubclass(cls, BaseModel):
        return [(name, f.annotation, f.get_default(call_default_factory=True), f.description or "")
                for name, f in cls.model_fields.items()]
    hints = typing.get_type_hints(cls)
    out = []
    for df in dataclasses.fields(cls):
        if df.default is not dataclasses.MISSING:
            default = df.default
        elif df.default_factory is not dataclasses.MISSING:
            default = df.default_factory()
        else:
            default = PydanticUndefined
        out.append((df.name, hints.get(df.name, df.type), default, df.metadata.get("description", "")))
    return out


def describe_fields(model: type = RunConfig, prefix: str = "") -> list[tuple[str, str, str]]:
    """(dotted name, default, description) for every field, for ``plumline config fields``.

    Sections are listed, then their fields: nested models and dataclasses (``sandbox.limits.*``),
    optional sections (``tests.writer.*``, ``dpo.train.lora.*``: their default is None) and the items
    of lists (``sources[*].path``)."""
    out: list[tuple[str, str, str]] = []
    for name, annotation, default, description in _fields(model):
        dotted = f"{prefix}{name}"
        inner, step = _nested(annotation)
        if default is PydanticUndefined:
            shown = "(required)"
        elif inner is not None and default is not None and not isinstance(default, list):
            shown = ""  # a section: its fields carry the defaults
        else:
            shown = repr(default)
        out.append((dotted, shown, description))
        if inner is not None:
            out.extend(describe_fields(inner, f"{dotted}{step}."))
    return out


ASSET_PREFIX = "asset:"


def resolve_model_ref(model: str) -> str:
    """``asset:smollm2`` / ``asset:tiny-llama``: the bundled offline models, prepared into the cache
    on first use (DESIGN.md, "Bundled assets"). Anything else is returned unchanged."""
    if not model.startswith(ASSET_PREFIX):
        return model
    from plumline.llm import assets

    name = model[len(ASSET_PREFIX):]
    if name == "smollm2":
        return str(assets.prepare_smollm2())
    if name == "tiny-llama":
        return str(assets.build_tiny_llama(assets.default_cache_dir() / "tiny-llama"))
    raise ConfigError(f"policy.model: unknown asset {name!r} (known: asset:smollm2, asset:tiny-llama)")


def resolve_assets(cfg: RunConfig) -> RunConfig:
    """Replace asset references by the prepared folders, so config.yaml records real paths."""
    policy = cfg.policy.model_copy(update={"model": resolve_model_ref(cfg.policy.model)})
    tests = cfg.tests
    if tests.writer is not None:
        tests = tests.model_copy(update={"writer": tests.writer.model_copy(
            update={"model": resolve_model_ref(tests.writer.model)})})
    return cfg.model_copy(update={"policy": policy, "tests": tests})
