"""The training loop every method shares: load and check the data, load the policy, build the
method's TRL trainer, train, save into the atomic output folder, write the report.

A method supplies only its trainer factory and the columns its rows need (see ``dpo.py``)."""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .config import BaseTrainingConfig
from .data import NoTrainingData, check_rows, load_parquet
from .model import load_tokenizer, peft_config, resolve_model, save_trained
from .output import (
    TrainingReport,
    clean_log,
    clear_folder,
    finish_output,
    loss_curve,
    mark_no_weights,
    prepare_output,
    versions,
)

logger = logging.getLogger(__name__)

# (model, tokenizer, dataset, staging folder, peft config or None) -> a TRL trainer
TrainerFactory = Callable[[str, Any, Any, Path, Any], Any]


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


def run_training(method: str, trainer_factory: TrainerFactory, cfg: BaseTrainingConfig, data_files: Any,
                 model_path: str | Path, output_dir: Path, columns: dict[str, str], *, seed: int,
                 overwrite: bool,
                 extra_report: dict[str, Any] | Callable[[], dict[str, Any]] | None = None) -> TrainingReport:
    """Shared body of ``train_dpo``/``train_kto``: load + check data, build the trainer with
    ``trainer_factory(model, tokenizer, dataset, stage_dir, peft_config)``, train, save, report.
    ``extra_report``: more fields for the report, or a function giving them after training."""
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
        logger.info("%s: %d %s rows from %s, model %s, seed %d", method, dataset_rows, fmt, label, model,
                    seed)
        trainer = trainer_factory(model, tokenizer, dataset, stage, peft_cfg)
        _route_logs(trainer, method)
        train_rows = len(trainer.train_dataset)
        if train_rows == 0:
            raise NoTrainingData(f"{label}: all {dataset_rows} rows were dropped because their prompt "
                                 f"fills max_length={cfg.max_length}")
        t0 = time.monotonic()
        result = trainer.train()
        runtime = time.monotonic() - t0
        clear_folder(stage)  # TRL's checkpoints and logs are not part of the model
        if cfg.save:
            save_trained(trainer, tokenizer, stage, cfg.lora)
        else:
            mark_no_weights(stage)
        history = list(trainer.state.log_history)
        report = TrainingReport(
            method=method, model=model, output_dir=str(output_dir), data_files=files, data_format=fmt,
            dataset_rows=dataset_rows, train_rows=train_rows, steps=int(trainer.state.global_step),
            epochs=float(trainer.state.epoch or 0.0), runtime_s=round(runtime, 3),
            train_loss=float(result.training_loss) if result.training_loss is not None else None,
            loss_curve=loss_curve(history), log_history=clean_log(history), saved=cfg.save, seed=seed,
            device=cfg.device_report(), config=cfg.model_dump(mode="json"), versions=versions(),
            extra=dict((extra_report() if callable(extra_report) else extra_report) or {}),
        )
        report.write(stage)
        del trainer
        finish_output(stage, output_dir)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    logger.info("%s: %d steps in %.1fs, loss %s; %s %s", method, report.steps, report.runtime_s,
                report.train_loss, "saved to" if cfg.save else "report only (save: false) in", output_dir)
    return report
