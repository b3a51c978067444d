"""Preference training with TRL on plumline's exports: one config + one ``train_*`` per method
(``dpo.py``, ``kto.py``; the PRM and critic trainers follow the same pattern).

Importing this package is cheap: torch/transformers/trl load only when training starts. Names are
resolved lazily (PEP 562) so ``python -m plumline.trainers.dpo`` runs its module exactly once.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "BaseTrainingConfig": "base", "LoraSettings": "base", "NoTrainingData": "base",
    "TrainingConfigError": "base", "TrainingDataError": "base", "TrainingReport": "base",
    "load_config": "base", "train_command": "cli",
    "DpoTrainingConfig": "dpo", "train_dpo": "dpo",
    "KtoTrainingConfig": "kto", "train_kto": "kto",
}

__all__ = [
    "BaseTrainingConfig", "DpoTrainingConfig", "KtoTrainingConfig", "LoraSettings", "NoTrainingData",
    "TrainingConfigError", "TrainingDataError", "TrainingReport", "load_config", "train_command",
    "train_dpo", "train_kto",
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
