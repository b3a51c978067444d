"""Preference training with TRL on plumline's exports, laid out like TRL: one config + one
``train_*`` function per method, and the parts they share in named modules.

- ``dpo.py``  ``DpoTrainingConfig``, ``train_dpo``      (trl.DPOTrainer)
- ``kto.py``  ``KtoTrainingConfig``, ``train_kto``      (trl.KTOTrainer)
- ``config.py``  ``BaseTrainingConfig``, ``LoraSettings``, ``load_config`` (YAML + overrides)
- ``data.py``    loading and checking the exported Parquet rows
- ``model.py``   resolving/loading the policy and tokenizer, LoRA, saving the trained policy
- ``output.py``  the atomic output folder and ``TrainingReport``
- ``run.py``     the training loop every method shares
- ``cli.py``     ``plumline train dpo|kto`` (typer); ``exit_codes.py`` its ``TrainExit`` codes

Importing this package is cheap: torch/transformers/trl load only when training starts. Names are
resolved lazily (PEP 562).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "BaseTrainingConfig": "config", "LoraSettings": "config", "TrainingConfigError": "config",
    "load_config": "config", "SAVE_FIELD": "config",
    "NoTrainingData": "data", "TrainingDataError": "data",
    "TrainingReport": "output", "holds_policy": "output",
    "TrainExit": "exit_codes", "train_command": "cli",
    "DpoTrainingConfig": "dpo", "train_dpo": "dpo",
    "KtoTrainingConfig": "kto", "train_kto": "kto",
}

__all__ = [
    "SAVE_FIELD", "BaseTrainingConfig", "DpoTrainingConfig", "KtoTrainingConfig", "LoraSettings",
    "NoTrainingData", "TrainExit", "TrainingConfigError", "TrainingDataError", "TrainingReport",
    "holds_policy", "load_config", "train_command", "train_dpo", "train_kto",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
