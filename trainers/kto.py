"""KTO on plumline's ``kto`` export with ``trl.KTOTrainer``: one config, one function.

Rows are unpaired (prompt, completion, label): label True for a program that passed every test.
PLUM reports KTO alongside DPO; it uses every sample, not only problems with both a pass and a fail.

Run as its own process::

    plumline train kto --data round-000/kto.parquet --model POLICY --out round-000/model --seed 0
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from .config import BaseTrainingConfig, build_trl_config
from .data import NoTrainingData
from .model import load_reference
from .output import TrainingReport
from .run import run_training
from .shared_prefix import compact_lm_head_on_cpu

logger = logging.getLogger(__name__)

KTO_COLUMNS = {"prompt": "text", "completion": "text", "label": "bool"}


class KtoTrainingConfig(BaseTrainingConfig):
    """KTO (arXiv 2402.01306) on pass/fail-labelled samples."""

    loss_type: Literal["kto", "apo_zero_unpaired"] = Field(
        "kto", description="'kto' (the paper's loss, estimates a KL term from mismatched pairs in a "
        "batch) or 'apo_zero_unpaired'.")
    desirable_weight: float = Field(1.0, gt=0.0, description="Weight of losses on passing samples; "
                                    "raise it when passes are rarer than failures.")
    undesirable_weight: float = Field(1.0, gt=0.0, description="Weight of losses on failing samples.")
    precompute_ref_log_probs: bool = Field(
        False, description="Compute the reference log-probs once before training, so the reference "
        "model is not kept in memory.")

    @model_validator(mode="after")
    def _kl_needs_pairs(self) -> KtoTrainingConfig:
        # TRL estimates the KL term by rotating completions inside a device batch: one row has no partner.
        if self.loss_type == "kto" and self.per_device_train_batch_size < 2:
            raise ValueError("per_device_train_batch_size must be >= 2 for loss_type 'kto' "
                             "(its KL estimate pairs each prompt with another row's completion)")
        return self

    def trl_config(self, output_dir: Path, seed: int = 0) -> Any:
        from trl import KTOConfig

        kw = self.common_trl_kwargs(output_dir, seed)
        kw.update(loss_type=self.loss_type, desirable_weight=self.desirable_weight,
                  undesirable_weight=self.undesirable_weight,
                  precompute_ref_log_probs=self.precompute_ref_log_probs)
        return build_trl_config(KTOConfig, kw, self.extra_args)


def train_kto(data_files: list[str | Path], model_path: str | Path, output_dir: Path,
              cfg: KtoTrainingConfig | None = None, *, seed: int = 0,
              overwrite: bool = False, ref_model: str | Path | None = None) -> TrainingReport:
    """Train ``model_path`` with KTO on the Parquet ``data_files``; save to ``output_dir``.

    Same contract and errors as ``train_dpo``. The report's ``extra`` holds the label balance
    (desirable/undesirable row counts), which decides whether the weights need adjusting.
    """
    cfg = cfg or KtoTrainingConfig()
    reference = load_reference(ref_model)  # None: the policy's own starting point
    balance: dict[str, Any] = {}

    def factory(model: str, tokenizer: Any, dataset: Any, stage: Path, peft_cfg: Any) -> Any:
        from trl import KTOTrainer

        compact_lm_head_on_cpu()
        labels = dataset["label"]
        balance["desirable_rows"] = int(sum(bool(x) for x in labels))
        balance["undesirable_rows"] = len(labels) - balance["desirable_rows"]
        if cfg.loss_type == "kto" and len(labels) < 2:
            raise NoTrainingData(f"KTO's KL estimate needs at least 2 rows, got {len(labels)}")
        return KTOTrainer(model=model, ref_model=reference, args=cfg.trl_config(stage, seed),
                          train_dataset=dataset, processing_class=tokenizer, peft_config=peft_cfg)

    return run_training("kto", factory, cfg, data_files, model_path, Path(output_dir), KTO_COLUMNS,
                        seed=seed, overwrite=overwrite, extra_report=balance)

