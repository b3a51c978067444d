"""Preference training with TRL on plumline's exports: one config + one ``train_*`` per method
(``dpo.py``, ``kto.py``; the PRM and critic trainers follow the same pattern).

Importing this package is cheap: torch/transformers/trl load only when training starts.
"""

from .base import (BaseTrainingConfig, LoraSettings, NoTrainingData, TrainingConfigError,
                   TrainingDataError, TrainingReport, load_config)
from .cli import train_command
from .dpo import DpoTrainingConfig, train_dpo
from .kto import KtoTrainingConfig, train_kto

__all__ = [
    "BaseTrainingConfig", "DpoTrainingConfig", "KtoTrainingConfig", "LoraSettings", "NoTrainingData",
    "TrainingConfigError", "TrainingDataError", "TrainingReport", "load_config", "train_command",
    "train_dpo", "train_kto",
]
