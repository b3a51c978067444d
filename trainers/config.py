"""The knobs every plumline trainer shares (``BaseTrainingConfig``, ``LoraSettings``), loading a
method's section from YAML with ``key=value`` overrides, and building TRL's config objects.

The method files (``dpo.py``, ``kto.py``) subclass ``BaseTrainingConfig`` with their own knobs.
Heavy imports (torch, trl) happen inside functions so that importing a config class (the pipeline's
run config does) stays cheap.

There is no ``seed`` field: the train functions and ``plumline train --seed`` take the seed, so one
run seed drives every consumer (the round passes ``derive_seed(run seed, "train", round)``).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import yaml
from plumline.data_schemas.overrides import OverrideError, apply_overrides
from plumline.data_schemas.overrides import parse_override as _parse_override
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

# The field that decides whether a run writes the trained policy (model + tokenizer) into its
# output folder. A run config that trains over several rounds needs it True: the next round
# loads the folder as its policy (pipeline/config.py checks this before any work).
SAVE_FIELD = "save"


def transformers_warmup(warmup: float, max_steps: int) -> int | float:
    """A ``warmup_steps`` setting as transformers takes it (a whole number: a step count; below 1: a share
    of all steps), except that a warmup that comes to ONE step is none: transformers' warmup starts at
    learning rate 0, so that one step would change nothing (measured: the demo's 4 DPO steps with a 0.1
    share trained 3, the first at lr 0, its loss exactly ln 2 after it). ``max_steps`` <= 0: the step
    count is not known here, the share goes as it is."""
    if warmup >= 1:
        return 0 if warmup == 1 else int(warmup)
    if max_steps > 0 and math.ceil(warmup * max_steps) <= 1:
        return 0
    return warmup

class TrainingConfigError(ValueError):
    """A config file or override is invalid; the message names the field and the source."""


class LoraSettings(BaseModel):
    """Optional LoRA adapters (needs the ``peft`` package). The adapters are merged into the base
    weights when saving, so the output folder is a plain model vLLM can serve as the next policy."""

    model_config = ConfigDict(extra="forbid")

    r: int = Field(16, ge=1, description="LoRA rank (size of the low-rank update).")
    alpha: int = Field(32, ge=1, description="LoRA scaling alpha (lora_alpha).")
    dropout: float = Field(0.05, ge=0.0, lt=1.0, description="Dropout on the LoRA branch.")
    target_modules: list[str] | str = Field(
        "all-linear",
        description="Module names to adapt, or 'all-linear' for every linear layer but lm_head.")
    merge_on_save: bool = Field(
        True, description="Merge the adapters into the weights before saving (a plain model for vLLM); "
        "False saves the adapter only.")


class BaseTrainingConfig(BaseModel):
    """Knobs shared by every preference trainer. Defaults suit a small model; TRL's own defaults
    (bf16, gradient checkpointing) are replaced by device-aware ones so the same config runs on a
    laptop CPU and on a GPU worker."""

    model_config = ConfigDict(extra="forbid")

    beta: float = Field(0.1, gt=0.0, description="Strength of the pull towards the reference model "
                        "(higher beta: smaller deviation).")
    learning_rate: float = Field(1e-6, gt=0.0, description="Peak AdamW learning rate (TRL's default).")
    epochs: float = Field(1.0, gt=0.0, description="Passes over the data (num_train_epochs).")
    max_steps: int = Field(-1, description="Stop after this many optimizer steps; -1 means run all epochs.")
    per_device_train_batch_size: int = Field(4, ge=1, description="Rows per device per forward pass.")
    gradient_accumulation_steps: int = Field(4, ge=1, description="Forward passes per optimizer step.")
    max_length: int | None = Field(
        1024, ge=2, description="Truncate prompt+completion to this many tokens; rows whose prompt alone "
        "fills it are dropped by TRL. None: no truncation. (TRL 1.16 has no separate max_prompt_length.)")
    warmup_steps: float = Field(0.1, ge=0.0, description="Linear LR warmup: a float in [0, 1) is a share "
                                "of all steps, a whole number >= 1 is a step count.")
    lr_scheduler_type: str = Field("linear", description="transformers scheduler name (linear, cosine, ...).")
    lora: LoraSettings | None = Field(None, description="Train LoRA adapters instead of all weights "
                                      "(needs peft); None: full fine-tuning.")
    bf16: bool | None = Field(None, description="bfloat16 mixed precision. None: on where the hardware runs "
                              "it fast (a CUDA GPU that supports it, a CPU with AMX), off otherwise (TRL's "
                              "default of on fails or crawls on most CPUs; with avx512_bf16 alone float32 "
                              "measured faster).")
    use_cpu: bool | None = Field(None, description="Train on CPU. None: True when no CUDA GPU is visible.")
    gradient_checkpointing: bool | None = Field(
        None, description="Recompute activations to save memory. None: on with CUDA, off on CPU "
        "(where memory is plentiful and the recompute only costs time).")
    logging_steps: int = Field(1, ge=1, description="Log loss and metrics every N optimizer steps "
                               "(the loss curve in training_report.json has one point per log).")
    save: bool = Field(True, description="Save the trained model and tokenizer into the output folder "
                       "(the next round's policy). False: a dry run that writes only the training report, "
                       "and the folder is marked as holding no weights; a run with more than one round "
                       "needs True.")
    dataset_num_proc: int | None = Field(None, ge=1, description="Processes for tokenizing the dataset.")
    extra_args: dict[str, Any] = Field(
        default_factory=dict, description="Passed unchanged to TRL's config (DPOConfig/KTOConfig) for "
        "anything not covered above, e.g. {'weight_decay': 0.01}. Overrides the fields above.")

    @field_validator("warmup_steps")
    @classmethod
    def _warmup(cls, v: float) -> float:
        if v >= 1 and not float(v).is_integer():
            raise ValueError("a warmup of 1 or more is a step count and must be a whole number")
        return v

    def resolved_device(self) -> dict[str, Any]:
        """``use_cpu``/``bf16``/``gradient_checkpointing`` with the 'auto' (None) values decided."""
        import torch
        from plumline.llm.hardware import choose_dtype, warn_once

        cuda = torch.cuda.is_available()
        use_cpu = (not cuda) if self.use_cpu is None else self.use_cpu
        on_gpu = cuda and not use_cpu
        # The rule the generation engines use: bf16 only where the hardware has it.
        choice = choose_dtype("auto" if self.bf16 is None else "bfloat16" if self.bf16 else "float32",
                              "cuda" if on_gpu else "cpu")
        if choice.warning:
            warn_once(choice.warning)
        bf16 = choice.dtype == "bfloat16"
        gc = on_gpu if self.gradient_checkpointing is None else self.gradient_checkpointing
        return {"use_cpu": use_cpu, "bf16": bf16, "fp16": False, "gradient_checkpointing": gc}

    def device_report(self) -> dict[str, Any]:
        """``resolved_device`` plus why bf16 is on or off and the machine's CPU/GPU (training report)."""
        from plumline.llm.hardware import choose_dtype, hardware_summary

        dev = self.resolved_device()
        requested = "auto" if self.bf16 is None else "bfloat16" if self.bf16 else "float32"
        choice = choose_dtype(requested, "cpu" if dev["use_cpu"] else "cuda")
        return {**dev, "precision": choice.dtype, "precision_reason": choice.reason,
                "hardware": hardware_summary()}

    def trl_warmup_steps(self) -> int | float:
        return transformers_warmup(self.warmup_steps, self.max_steps)

    def common_trl_kwargs(self, output_dir: Path, seed: int) -> dict[str, Any]:
        """Keyword arguments every TRL config takes, before the method's own and ``extra_args``.
        ``seed`` drives adapter init, data order and dropout."""
        kw: dict[str, Any] = {
            "output_dir": str(output_dir),
            "beta": self.beta,
            "learning_rate": self.learning_rate,
            "num_train_epochs": self.epochs,
            "max_steps": self.max_steps,
            "per_device_train_batch_size": self.per_device_train_batch_size,
            "gradient_accumulation_steps": self.gradient_accumulation_steps,
            "max_length": self.max_length,
            "warmup_steps": self.trl_warmup_steps(),
            "lr_scheduler_type": self.lr_scheduler_type,
            "seed": seed,
            "data_seed": seed,
            "logging_steps": self.logging_steps,
            "dataset_num_proc": self.dataset_num_proc,
            # We save once, at the end, ourselves; no intermediate checkpoints or trackers.
            "save_strategy": "no",
            "report_to": "none",
            "disable_tqdm": True,
        }
        kw.update(self.resolved_device())
        return kw

    def trl_config(self, output_dir: Path, seed: int = 0) -> Any:
        """The method's TRL config object (``DPOConfig``/``KTOConfig``); each method overrides this."""
        raise NotImplementedError


def build_trl_config(config_cls: type, kwargs: dict[str, Any], extra_args: dict[str, Any]) -> Any:
    """Instantiate a TRL config; an unknown ``extra_args`` key is named in a config error."""
    if "output_dir" in extra_args:
        raise TrainingConfigError("extra_args: output_dir is set by plumline (the train command's output)")
    if "seed" in extra_args or "data_seed" in extra_args:
        raise TrainingConfigError("extra_args: seed is set by plumline (plumline train --seed, or the "
                                  "run seed)")
    known = {f.name for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(extra_args) - known)
    if unknown:
        raise TrainingConfigError(f"extra_args: {unknown} not fields of trl.{config_cls.__name__}")
    merged = {**kwargs, **extra_args}
    try:
        return config_cls(**merged)
    except (TypeError, ValueError) as e:
        raise TrainingConfigError(f"trl.{config_cls.__name__} rejected the config: {e}") from None


# --------------------------------------------------------------------------- config files


def parse_override(text: str) -> tuple[str, Any]:
    """``dotted.key=value`` with the value read as YAML (``beta=0.2``, ``lora.r=8``, ``lora=null``)."""
    try:
        return _parse_override(text)
    except OverrideError as e:
        raise TrainingConfigError(str(e)) from None


def find_section(loaded: dict[str, Any], method: str) -> dict[str, Any]:
    """The method's training section inside a YAML mapping: a run config's ``<method>.train``
    (or the older ``training.<method>`` / ``train.<method>``), a file with one section per method
    (``<method>``), or the section itself."""
    block = loaded.get(method)
    if isinstance(block, dict) and isinstance(block.get("train"), dict):
        return block["train"]  # run config: dpo: {pairs: ..., train: {...}}
    for section in ("training", "train"):
        if isinstance(loaded.get(section), dict) and isinstance(loaded[section].get(method), dict):
            return loaded[section][method]
    if isinstance(block, dict):
        return block
    return loaded


def load_config(cls: type[BaseTrainingConfig], method: str, path: Path | None = None,
                overrides: list[str] | tuple[str, ...] = ()) -> BaseTrainingConfig:
    """Build ``cls`` from an optional YAML (or JSON) file plus ``key=value`` overrides.

    The file may be the method's section itself, or a larger config holding it (see
    ``find_section``), so the pipeline's own run config works unchanged.
    """
    data: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        source = str(path)
        try:
            loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise TrainingConfigError(f"config file {path} does not exist") from None
        except yaml.YAMLError as e:
            raise TrainingConfigError(f"{path}: not valid YAML ({e})") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise TrainingConfigError(f"{path}: expected a mapping at the top level")
        data = dict(find_section(loaded, method))
    try:
        apply_overrides(data, overrides)
    except OverrideError as e:
        raise TrainingConfigError(str(e)) from None
    if overrides:
        source += " + overrides"
    try:
        return cls.model_validate(data)
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}"
                             for err in e.errors())
        raise TrainingConfigError(f"{cls.__name__} from {source}: {problems}") from None
