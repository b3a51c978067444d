"""The run configuration: YAML validated by pydantic.

Each component owns its section (readers, llm, test synthesis and validation, sandbox limits,
pairing, trainers); this module composes them, loads YAML, applies ``--set dotted.key=value``
overrides and reports errors naming the field and the file. Every field has a default and a
one-line description, so ``plumline config show`` prints a complete, commented config.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from plumline.data_schemas.overrides import OverrideError, apply_overrides
from plumline.llm import BackendConfig
from plumline.sandbox import SandboxLimits
from plumline.trainers.dpo import DpoTrainingConfig
from plumline.trainers.kto import KtoTrainingConfig
from plumline.transforms.logic.pairing import PairingConfig
from plumline.transforms.logic.readers import SourceConfig
from plumline.transforms.logic.test_synthesis import TestSynthesisConfig
from plumline.transforms.logic.test_validation import TestValidationConfig
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator


class ConfigError(ValueError):
    """A config that cannot run. The message names the file and the field."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class SamplingConfig(_Section):
    n: int = Field(8, ge=1, description="Samples drawn from the policy per problem and round.")
    temperature: float = Field(0.8, ge=0.0, description="Sampling temperature.")
    top_p: float = Field(0.95, gt=0.0, le=1.0, description="Nucleus sampling threshold.")
    max_tokens: int = Field(512, ge=1, description="Maximum new tokens per completion.")
    greedy: bool = Field(True, description="Also draw one greedy (temperature 0) sample per problem, "
                                           "marked is_greedy (CodeRL's baseline).")
    batch_size: int = Field(256, ge=1, description="Problems sent to the engine in one generate call.")
    instruction: str = Field(
        "Complete the following Python function. Reply with the whole function in one "
        "```python code block.",
        description="Text put before the problem in the user message.")
    stop: list[str] = Field(default_factory=list, description="Extra stop strings.")


class SandboxConfig(_Section):
    workers: int | None = Field(None, ge=1, description="Sandbox slots per worker process "
                                                        "(default: cores / Beam workers).")
    limits: SandboxLimits = Field(default_factory=SandboxLimits,
                                  description="Per-execution limits (see plumline.sandbox.SandboxLimits).")


class ExportConfig(_Section):
    jsonl: bool = Field(False, description="Also write .jsonl copies of every Parquet file.")
    kto: bool = Field(True, description="Write kto.parquet (unpaired rows for trl.KTOTrainer).")
    critic: bool = Field(True, description="Write critic.parquet (CodeRL outcome-class rows).")


class TrainingConfig(_Section):
    method: Literal["none", "dpo", "kto"] = Field(
        "none", description="Train the policy on this round's data: none, dpo or kto.")
    dpo: DpoTrainingConfig = Field(default_factory=DpoTrainingConfig, description="DPO knobs.")
    kto: KtoTrainingConfig = Field(default_factory=KtoTrainingConfig, description="KTO knobs.")


class BeamConfig(_Section):
    runner: str = Field("FnApiRunner", description="Beam runner. FnApiRunner runs locally (never Prism); "
                                                   "DataflowRunner for Google Cloud.")
    cpu_workers: int | None = Field(None, ge=1, description="Local worker processes for CPU stages "
                                                            "(read, execute, export); default: cores.")
    options: list[str] = Field(default_factory=list,
                               description="Extra Beam pipeline options, e.g. --project=... --region=...")
    sampling_accelerator: str | None = Field(
        None, description="Dataflow resource hint for the generation stages, e.g. "
                          "'type:nvidia-l4;count:1;install-nvidia-driver'.")


class RunConfig(_Section):
    name: str = Field("run", description="Run name: the run folder is OUT/NAME.")
    out_dir: str = Field("runs", description="Folder that holds run folders.")
    rounds: int = Field(1, ge=1, description="Online rounds: sample, verify, export, train, repeat.")
    seed: int = Field(0, description="Base seed; every sample's seed derives from it and the ids.")
    sources: list[SourceConfig] = Field(default_factory=list, validate_default=True,
                                        description="Where problems come from.")
    policy: BackendConfig = Field(default_factory=BackendConfig, description="The policy being trained.")
    sampling: SamplingConfig = Field(default_factory=SamplingConfig, description="Policy sampling.")
    tests: TestSynthesisConfig = Field(default_factory=TestSynthesisConfig,
                                       description="Test synthesis (PLUM stage 1).")
    validation: TestValidationConfig = Field(default_factory=TestValidationConfig,
                                             description="Test validation (oracle, CodeT agreement).")
    sandbox: SandboxConfig = Field(default_factory=SandboxConfig, description="Execution sandbox.")
    pairing: PairingConfig = Field(default_factory=PairingConfig, description="Preference pairs.")
    export: ExportConfig = Field(default_factory=ExportConfig, description="Extra export formats.")
    training: TrainingConfig = Field(default_factory=TrainingConfig, description="Training per round.")
    beam: BeamConfig = Field(default_factory=BeamConfig, description="Beam runner settings.")

    @field_validator("sources")
    @classmethod
    def _need_sources(cls, v: list[SourceConfig]) -> list[SourceConfig]:
        if not v:
            raise ValueError("at least one problem source is required")
        return v

    def resolved_dict(self) -> dict[str, Any]:
        return json.loads(self.model_dump_json())

    def section_hash(self, *sections: str) -> str:
        """Hash of the named sections: a finished stage is reused only if its inputs' config matches."""
        data = self.resolved_dict()
        picked = {s: data[s] for s in sections}
        return hashlib.sha256(json.dumps(picked, sort_keys=True).encode()).hexdigest()[:16]


def _format_validation_error(exc: ValidationError, origin: str) -> str:
    lines = [f"invalid config ({origin}):"]
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "<root>"
        lines.append(f"  {loc}: {err['msg']}")
    return "\n".join(lines)


def load_config(path: str | Path | None, overrides: list[str] | None = None,
                base_dir: Path | None = None) -> RunConfig:
    """Load YAML (or start from defaults when path is None), apply overrides, validate.

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
    if base_dir is not None:
        cfg = _resolve_relative_paths(cfg, base_dir)
    return cfg


def _resolve_relative_paths(cfg: RunConfig, base_dir: Path) -> RunConfig:
    sources = []
    for src in cfg.sources:
        p = src.path
        if ":" in p.split("/")[0] or Path(p).is_absolute() or Path(p).exists():
            sources.append(src)  # bundled:..., gs://..., absolute, or relative to cwd and present
        else:
            candidate = base_dir / p
            sources.append(src.model_copy(update={"path": str(candidate)}) if candidate.exists()
                           or any(ch in p for ch in "*?[") else src)
    return cfg.model_copy(update={"sources": sources})


def dump_config(cfg: RunConfig) -> str:
    """The resolved config as YAML, with every default written out."""
    return yaml.safe_dump(cfg.resolved_dict(), sort_keys=False, allow_unicode=True)


def describe_fields(model: type[BaseModel] = RunConfig, prefix: str = "") -> list[tuple[str, str, str]]:
    """(dotted name, default, description) for every field, for ``plumline config fields``."""
    out: list[tuple[str, str, str]] = []
    for name, f in model.model_fields.items():
        dotted = f"{prefix}{name}"
        ann = f.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            out.append((dotted, "", f.description or ""))
            out.extend(describe_fields(ann, dotted + "."))
        elif isinstance(ann, type) and dataclasses.is_dataclass(ann):
            out.append((dotted, "", f.description or ""))
            for df in dataclasses.fields(ann):
                default = df.default if df.default is not dataclasses.MISSING else ""
                out.append((f"{dotted}.{df.name}", repr(default), df.metadata.get("description", "")))
        else:
            default = f.default if f.default_factory is None else f.default_factory()
            out.append((dotted, repr(default), f.description or ""))
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
