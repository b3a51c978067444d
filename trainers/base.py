"""What every plumline trainer shares: the common config knobs, loading and checking the exported
Parquet, device defaults, the loss-curve report, and saving the model where the next round finds it.

The method files (``dpo.py``, ``kto.py``; later ``prm.py``, ``critic.py``) follow TRL's layout: one
documented config class plus one ``train_*`` function each, built on the helpers here.

Heavy imports (torch, transformers, trl, datasets) happen inside functions so that importing a
config class (the pipeline's YAML config does) stays cheap.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from plumline.data_schemas.overrides import OverrideError, apply_overrides
from plumline.data_schemas.overrides import parse_override as _parse_override

logger = logging.getLogger(__name__)

REPORT_NAME = "training_report.json"


class TrainingDataError(ValueError):
    """The training data cannot be used (missing file, wrong columns, a malformed row).
    The message names the file and, for a bad row, its index and the reason."""


class NoTrainingData(TrainingDataError):
    """Nothing to train on: no rows in the given files (or none left after TRL drops rows whose
    prompt fills ``max_length``). The online loop catches this and skips training for the round."""


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
        "all-linear", description="Module names to adapt, or 'all-linear' for every linear layer but lm_head.")
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
    bf16: bool | None = Field(None, description="bfloat16 mixed precision. None: on when a CUDA GPU "
                              "supports it, off otherwise (TRL's default of on fails on most CPUs).")
    use_cpu: bool | None = Field(None, description="Train on CPU. None: True when no CUDA GPU is visible.")
    gradient_checkpointing: bool | None = Field(
        None, description="Recompute activations to save memory. None: on with CUDA, off on CPU "
        "(where memory is plentiful and the recompute only costs time).")
    seed: int = Field(42, description="Seed for weight init of adapters, data order and dropout.")
    logging_steps: int = Field(1, ge=1, description="Log loss and metrics every N optimizer steps "
                               "(the loss curve in training_report.json has one point per log).")
    save: bool = Field(True, description="Save the final model and tokenizer into the output dir "
                       "(the next round's policy).")
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

        cuda = torch.cuda.is_available()
        use_cpu = (not cuda) if self.use_cpu is None else self.use_cpu
        on_gpu = cuda and not use_cpu
        bf16 = (on_gpu and torch.cuda.is_bf16_supported()) if self.bf16 is None else self.bf16
        gc = on_gpu if self.gradient_checkpointing is None else self.gradient_checkpointing
        return {"use_cpu": use_cpu, "bf16": bf16, "fp16": False, "gradient_checkpointing": gc}

    def common_trl_kwargs(self, output_dir: Path) -> dict[str, Any]:
        """Keyword arguments every TRL config takes, before the method's own and ``extra_args``."""
        kw: dict[str, Any] = {
            "output_dir": str(output_dir),
            "beta": self.beta,
            "learning_rate": self.learning_rate,
            "num_train_epochs": self.epochs,
            "max_steps": self.max_steps,
            "per_device_train_batch_size": self.per_device_train_batch_size,
            "gradient_accumulation_steps": self.gradient_accumulation_steps,
            "max_length": self.max_length,
            "warmup_steps": int(self.warmup_steps) if self.warmup_steps >= 1 else self.warmup_steps,
            "lr_scheduler_type": self.lr_scheduler_type,
            "seed": self.seed,
            "data_seed": self.seed,
            "logging_steps": self.logging_steps,
            "dataset_num_proc": self.dataset_num_proc,
            # We save once, at the end, ourselves; no intermediate checkpoints or trackers.
            "save_strategy": "no",
            "report_to": "none",
            "disable_tqdm": True,
        }
        kw.update(self.resolved_device())
        return kw


# --------------------------------------------------------------------------- config files


def parse_override(text: str) -> tuple[str, Any]:
    """``dotted.key=value`` with the value read as YAML (``beta=0.2``, ``lora.r=8``, ``lora=null``)."""
    try:
        return _parse_override(text)
    except OverrideError as e:
        raise TrainingConfigError(str(e)) from None


def load_config(cls: type[BaseTrainingConfig], method: str, path: Path | None = None,
                overrides: list[str] | tuple[str, ...] = ()) -> BaseTrainingConfig:
    """Build ``cls`` from an optional YAML file plus ``key=value`` overrides.

    The file may be the method's section itself, or a larger config holding it under ``<method>``
    or ``train.<method>`` (so the pipeline's own config file works unchanged).
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
        for section in ("training", "train"):  # a run config's section (training.<method>)
            if isinstance(loaded.get(section), dict) and isinstance(loaded[section].get(method), dict):
                loaded = loaded[section][method]
                break
        else:
            if isinstance(loaded.get(method), dict):
                loaded = loaded[method]
        data = dict(loaded)
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


# --------------------------------------------------------------------------- data


def _is_messages(value: Any) -> bool:
    return (isinstance(value, list) and len(value) > 0
            and all(isinstance(m, dict) and isinstance(m.get("role"), str)
                    and isinstance(m.get("content"), str) for m in value))


def check_rows(dataset: Any, columns: dict[str, str], label: str) -> str:
    """Check every row's training columns before TRL sees them; returns ``"standard"`` or
    ``"conversational"``.

    ``columns`` maps a column name to its kind: ``"text"`` (a string, or a non-empty list of
    role/content messages) or ``"bool"``. Why here: TRL fails on a null or mixed-format row deep in
    a ``map`` with a message that names neither the row nor the file.
    """
    missing = [c for c in columns if c not in dataset.column_names]
    if missing:
        raise TrainingDataError(f"{label}: missing column(s) {missing}; found {dataset.column_names}")
    fmt: str | None = None
    for name, kind in columns.items():
        values = dataset[name]
        for i, v in enumerate(values):
            if kind == "bool":
                if not isinstance(v, bool):
                    raise TrainingDataError(f"{label}: row {i}: column {name!r} must be a bool, "
                                            f"got {type(v).__name__}")
                continue
            if isinstance(v, str):
                row_fmt = "standard"
                if name != "prompt" and not v.strip():
                    raise TrainingDataError(f"{label}: row {i}: column {name!r} is empty")
            elif _is_messages(v):
                row_fmt = "conversational"
            else:
                raise TrainingDataError(
                    f"{label}: row {i}: column {name!r} must be a string or a list of role/content "
                    f"messages, got {_describe(v)}")
            if fmt is None:
                fmt = row_fmt
            elif fmt != row_fmt:
                raise TrainingDataError(f"{label}: row {i}: column {name!r} is {row_fmt} but earlier "
                                        f"values are {fmt}; one file must use one format")
    return fmt or "standard"


def _describe(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, list):
        return "an empty list" if not v else f"a list of {type(v[0]).__name__} (not role/content messages)"
    return type(v).__name__


def load_parquet(data_files: list[str | Path] | tuple[str | Path, ...] | str | Path) -> tuple[Any, list[str]]:
    """Load exported Parquet files unchanged with ``datasets``; returns (dataset, file list).

    Raises ``TrainingDataError`` for a missing or unreadable file and ``NoTrainingData`` when the
    files hold no rows.
    """
    import datasets

    if isinstance(data_files, (str, Path)):
        data_files = [data_files]
    files = [str(Path(f).expanduser().resolve()) for f in data_files]
    if not files:
        raise NoTrainingData("no data files given")
    for f in files:
        if not Path(f).is_file():
            raise TrainingDataError(f"data file {f} does not exist or is not a file")
    # An empty Parquet file has a schema but no rows; datasets fails on it with an unhelpful
    # error in some versions, so count rows from the footer first.
    import pyarrow.parquet as pq

    rows = 0
    for f in files:
        try:
            rows += pq.ParquetFile(f).metadata.num_rows
        except Exception as e:  # noqa: BLE001 - any read failure is a bad input file
            raise TrainingDataError(f"data file {f} is not readable Parquet: {e}") from None
    if rows == 0:
        raise NoTrainingData(f"no rows in {', '.join(files)}")
    try:
        ds = datasets.load_dataset("parquet", data_files=files, split="train")
    except Exception as e:  # noqa: BLE001 - e.g. files with different schemas
        raise TrainingDataError(f"cannot load {', '.join(files)} as one dataset: {e}") from None
    return ds, files


# --------------------------------------------------------------------------- model + tokenizer


def resolve_model(model_path: str | Path) -> str:
    """A local folder, or a hub id (``org/name``). A path-looking string that does not exist is an
    error here rather than a network lookup deep inside transformers."""
    text = str(model_path)
    p = Path(text).expanduser()
    if p.exists():
        if not (p / "config.json").is_file():
            raise FileNotFoundError(f"model folder {p} has no config.json")
        return str(p.resolve())
    if p.is_absolute() or text.startswith((".", "~")) or text.count("/") > 1 or os.sep != "/" and os.sep in text:
        raise FileNotFoundError(f"model folder {text} does not exist")
    return text


def load_tokenizer(model: str, conversational: bool) -> Any:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model)
    if tok.pad_token is None:
        # Padding is masked out; the EOS token is the usual stand-in for models shipped without one.
        tok.pad_token = tok.eos_token
    if conversational and not getattr(tok, "chat_template", None):
        raise TrainingDataError(f"the data is conversational but the tokenizer of {model} has no chat "
                                "template; export the standard (string) format or use a chat model")
    return tok


def peft_config(lora: LoraSettings | None) -> Any:
    if lora is None:
        return None
    try:
        from peft import LoraConfig
    except ImportError:
        raise TrainingConfigError("lora is set but the 'peft' package is not installed") from None
    return LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                      target_modules=lora.target_modules, task_type="CAUSAL_LM")


# --------------------------------------------------------------------------- report + save


@dataclasses.dataclass
class TrainingReport:
    """What a training run did; written to ``<output_dir>/training_report.json``."""

    method: str
    model: str
    output_dir: str
    data_files: list[str]
    data_format: str  # "standard" | "conversational"
    dataset_rows: int  # rows in the Parquet files
    train_rows: int  # rows TRL trained on (after dropping over-long prompts)
    steps: int  # optimizer steps taken
    epochs: float
    runtime_s: float
    train_loss: float | None  # TRL's average loss over the run
    loss_curve: list[dict[str, float]]  # [{"step", "loss"}] one per log
    log_history: list[dict[str, Any]]  # every metric TRL logged (rewards, margins, ...)
    saved: bool
    device: dict[str, Any]
    config: dict[str, Any]
    versions: dict[str, str]
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def write(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / REPORT_NAME
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2, default=str, allow_nan=True) + "\n")
        tmp.replace(path)
        return path

    @classmethod
    def read(cls, folder: Path) -> TrainingReport:
        data = json.loads((Path(folder) / REPORT_NAME).read_text())
        return cls(**data)


def versions() -> dict[str, str]:
    import datasets
    import torch
    import transformers
    import trl

    out = {"trl": trl.__version__, "transformers": transformers.__version__, "torch": torch.__version__,
           "datasets": datasets.__version__}
    try:
        import peft

        out["peft"] = peft.__version__
    except ImportError:
        pass
    return out


def loss_curve(log_history: list[dict[str, Any]]) -> list[dict[str, float]]:
    return [{"step": int(e["step"]), "loss": float(e["loss"])}
            for e in log_history if "loss" in e and "step" in e]


def _clean_log(log_history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for e in log_history:
        row: dict[str, Any] = {}
        for k, v in e.items():
            if k == "step":
                row[k] = int(v)
            elif hasattr(v, "item"):  # numpy / torch scalars
                row[k] = v.item()
            else:
                row[k] = v
        out.append(row)
    return out


def staging_dir(output_dir: Path) -> Path:
    """Where a run writes before the final rename: a crashed run never leaves a half-written
    ``output_dir`` that the next round would load as its policy."""
    return output_dir.with_name(f".{output_dir.name}.partial")


def prepare_output(output_dir: Path, overwrite: bool) -> Path:
    if output_dir.exists() and any(output_dir.iterdir()) and not overwrite:
        raise FileExistsError(f"output dir {output_dir} exists and is not empty (pass overwrite=True)")
    stage = staging_dir(output_dir)
    if stage.exists():
        shutil.rmtree(stage)
    stage.mkdir(parents=True)
    return stage


def finish_output(stage: Path, output_dir: Path) -> None:
    if output_dir.exists():
        shutil.rmtree(output_dir)
    stage.rename(output_dir)


def _route_logs(trainer: Any, method: str) -> None:
    """Send TRL's per-step metrics to ``logging`` instead of stdout (transformers' PrinterCallback
    prints them), so a spawned trainer's stdout carries only its one-line JSON summary."""
    from transformers import TrainerCallback
    from transformers.trainer_callback import PrinterCallback

    class _LogCallback(TrainerCallback):
        def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kw: Any) -> None:
            if logs:
                logger.info("%s step %s: %s", method, state.global_step,
                            ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                      for k, v in logs.items()))

    trainer.remove_callback(PrinterCallback)
    trainer.add_callback(_LogCallback())


def save_trained(trainer: Any, tokenizer: Any, stage: Path, lora: LoraSettings | None) -> None:
    """Save weights + tokenizer as a plain Hugging Face folder (safetensors), the next policy."""
    model = trainer.model
    model = getattr(trainer.accelerator, "unwrap_model", lambda m: m)(model)
    if lora is not None and lora.merge_on_save and hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    # TRL turns the KV cache off for training; the saved policy is for generation, so turn it back on
    # (transformers' generate would otherwise recompute every step).
    if getattr(model.config, "use_cache", None) is False:
        model.config.use_cache = True
    model.save_pretrained(stage, safe_serialization=True)
    tokenizer.save_pretrained(stage)
    # safetensors may write 0600 files; the policy folder is read by other users/containers
    # (a vLLM server, a Dataflow worker), so make it as readable as any file we create.
    umask = os.umask(0)
    os.umask(umask)
    for f in stage.rglob("*"):
        if f.is_file():
            f.chmod(0o666 & ~umask)


def run_training(method: str, trainer_factory: Any, cfg: BaseTrainingConfig, data_files: Any,
                 model_path: str | Path, output_dir: Path, columns: dict[str, str],
                 overwrite: bool, extra_report: dict[str, Any] | None = None) -> TrainingReport:
    """Shared body of ``train_dpo``/``train_kto``: load + check data, build the trainer with
    ``trainer_factory(model, tokenizer, dataset, stage_dir, peft_config)``, train, save, report."""
    output_dir = Path(output_dir).expanduser().resolve()
    dataset, files = load_parquet(data_files)
    label = ", ".join(files)
    fmt = check_rows(dataset, columns, label)
    dataset_rows = len(dataset)
    model = resolve_model(model_path)
    tokenizer = load_tokenizer(model, fmt == "conversational")
    peft_cfg = peft_config(cfg.lora)
    stage = prepare_output(output_dir, overwrite)
    try:
        logger.info("%s: %d %s rows from %s, model %s", method, dataset_rows, fmt, label, model)
        trainer = trainer_factory(model, tokenizer, dataset, stage, peft_cfg)
        _route_logs(trainer, method)
        train_rows = len(trainer.train_dataset)
        if train_rows == 0:
            raise NoTrainingData(f"{label}: all {dataset_rows} rows were dropped because their prompt "
                                 f"fills max_length={cfg.max_length}")
        t0 = time.monotonic()
        result = trainer.train()
        runtime = time.monotonic() - t0
        # Anything TRL wrote into the staging dir (checkpoints, logs) is not part of the model.
        for leftover in stage.iterdir():
            if leftover.is_dir():
                shutil.rmtree(leftover)
            else:
                leftover.unlink()
        if cfg.save:
            save_trained(trainer, tokenizer, stage, cfg.lora)
        history = list(trainer.state.log_history)
        report = TrainingReport(
            method=method, model=model, output_dir=str(output_dir), data_files=files, data_format=fmt,
            dataset_rows=dataset_rows, train_rows=train_rows, steps=int(trainer.state.global_step),
            epochs=float(trainer.state.epoch or 0.0), runtime_s=round(runtime, 3),
            train_loss=float(result.training_loss) if result.training_loss is not None else None,
            loss_curve=loss_curve(history), log_history=_clean_log(history), saved=cfg.save,
            device=cfg.resolved_device(), config=cfg.model_dump(mode="json"), versions=versions(),
            extra=dict(extra_report or {}),
        )
        report.write(stage)
        del trainer
        finish_output(stage, output_dir)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    logger.info("%s: %d steps in %.1fs, loss %s; saved to %s", method, report.steps, report.runtime_s,
                report.train_loss, output_dir)
    return report


def build_trl_config(config_cls: type, kwargs: dict[str, Any], extra_args: dict[str, Any]) -> Any:
    """Instantiate a TRL config; an unknown ``extra_args`` key is named in a config error."""
    if "output_dir" in extra_args:
        raise TrainingConfigError("extra_args: output_dir is set by plumline (the train command's output)")
    known = {f.name for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(extra_args) - known)
    if unknown:
        raise TrainingConfigError(f"extra_args: {unknown} not fields of trl.{config_cls.__name__}")
    merged = {**kwargs, **extra_args}
    try:
        return config_cls(**merged)
    except (TypeError, ValueError) as e:
        raise TrainingConfigError(f"trl.{config_cls.__name__} rejected the config: {e}") from None
