"""DPO on plumline's ``dpo`` export with ``trl.DPOTrainer``: one config, one function.

The Parquet file is loaded unchanged; its provenance columns (problem_id, sample ids, margin, ...)
are dropped by TRL itself (``remove_unused_columns`` keeps only the tokenized columns), so nothing
is removed here. Both TRL formats train: standard strings and conversational messages.

Run as its own process (the online loop frees the GPU between sampling and training)::

    plumline train dpo --data round-000/dpo.parquet --model POLICY --out round-000/model --seed 0
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from .config import BaseTrainingConfig, build_trl_config
from .model import load_reference
from .output import TrainingReport
from .run import run_training
from .shared_prefix import PackingStats, compact_lm_head_on_cpu, share_prefix_in_forward

logger = logging.getLogger(__name__)

DPO_LOSS_TYPES = ("sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard",
                  "aot", "aot_unpaired", "apo_zero", "apo_down", "discopop", "sft", "sigmoid_norm")

# Columns TRL's preference format needs; the kind is checked on every row before training.
DPO_COLUMNS = {"prompt": "text", "chosen": "text", "rejected": "text"}


class DpoTrainingConfig(BaseTrainingConfig):
    """DPO (arXiv 2305.18290) as PLUM trains it: chosen = passes all tests, rejected = fails one."""

    loss_type: list[str] = Field(
        default_factory=lambda: ["sigmoid"],
        description=f"DPO loss(es), combined with loss_weights when several: one of {list(DPO_LOSS_TYPES)}.")
    loss_weights: list[float] | None = Field(None, description="Weight per loss_type; None: all 1.0.")
    label_smoothing: float = Field(0.0, ge=0.0, lt=0.5, description="Assumed label-flip probability "
                                   "(robust DPO) or epsilon (EXO).")
    precompute_ref_log_probs: bool = Field(
        False, description="Compute the reference log-probs once before training, so the reference "
        "model is not kept in memory (halves model memory on a GPU).")
    shared_prefix: bool = Field(
        True, description="Run each pair's chosen and rejected as one sequence whose common start (the "
        "prompt, often the signature too) is computed once: the same loss and gradients from fewer "
        "tokens (the demo's pairs: 1.85x fewer than TRL's padded batch). Needs SDPA or eager attention; "
        "otherwise, or False: TRL's padded batch.")

    @field_validator("loss_type", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @field_validator("loss_type")
    @classmethod
    def _known_loss(cls, v: list[str]) -> list[str]:
        bad = [x for x in v if x not in DPO_LOSS_TYPES]
        if bad or not v:
            raise ValueError(f"unknown loss_type {bad or v}; choose from {list(DPO_LOSS_TYPES)}")
        return v

    def trl_config(self, output_dir: Path, seed: int = 0) -> Any:
        from trl import DPOConfig

        kw = self.common_trl_kwargs(output_dir, seed)
        kw.update(loss_type=list(self.loss_type), loss_weights=self.loss_weights,
                  label_smoothing=self.label_smoothing,
                  precompute_ref_log_probs=self.precompute_ref_log_probs)
        return build_trl_config(DPOConfig, kw, self.extra_args)


def train_dpo(data_files: list[str | Path], model_path: str | Path, output_dir: Path,
              cfg: DpoTrainingConfig | None = None, *, seed: int = 0,
              overwrite: bool = False, ref_model: str | Path | None = None) -> TrainingReport:
    """Train ``model_path`` with DPO on the Parquet ``data_files``; save to ``output_dir``.

    ``seed`` drives adapter init, data order and dropout (the round passes one derived from the
    run seed). ``output_dir`` receives the model, tokenizer and ``training_report.json`` only when
    training finished (written to a staging folder first); with ``cfg.save`` False it receives the
    report and a ``NO_WEIGHTS`` marker instead of a model. Raises ``NoTrainingData`` for empty data,
    ``TrainingDataError`` for unusable data, ``TrainingConfigError`` for a bad config, and
    ``FileExistsError`` when ``output_dir`` is non-empty and ``overwrite`` is False.
    """
    cfg = cfg or DpoTrainingConfig()
    reference = load_reference(ref_model)  # None: the policy's own starting point

    stats = PackingStats()

    def factory(model: str, tokenizer: Any, dataset: Any, stage: Path, peft_cfg: Any) -> Any:
        from trl import DPOTrainer

        compact_lm_head_on_cpu()
        trainer_cls = shared_prefix_trainer(stats) if cfg.shared_prefix else DPOTrainer
        # ref_model=None: TRL loads the reference from the same folder (frozen copy of the policy).
        return trainer_cls(model=model, ref_model=reference, args=cfg.trl_config(stage, seed),
                           train_dataset=dataset, processing_class=tokenizer, peft_config=peft_cfg)

    def report() -> dict[str, Any]:
        return {"shared_prefix": stats.as_dict()} if cfg.shared_prefix else {}

    return run_training("dpo", factory, cfg, data_files, model_path, Path(output_dir), DPO_COLUMNS,
                        seed=seed, overwrite=overwrite, extra_report=report)


def shared_prefix_trainer(stats: PackingStats | None = None) -> type:
    """``trl.DPOTrainer`` whose policy and reference forwards run each pair packed (``shared_prefix.py``).
    The wrappers go on at the first loss or reference computation, when TRL has built every model."""
    from accelerate.utils import is_peft_model
    from trl import DPOTrainer

    class SharedPrefixDPOTrainer(DPOTrainer):
        _prefix_shared = False  # the models are wrapped (or found unable to be) once, not at every step

        def _share_prefix(self) -> None:
            if self._prefix_shared:
                return
            self._prefix_shared = True
            policy = self.accelerator.unwrap_model(self.model)
            if is_peft_model(policy):
                policy = policy.get_base_model()  # the model TRL gave its fused head
            share_prefix_in_forward(policy, stats)
            if self.ref_model is not None:
                share_prefix_in_forward(self.accelerator.unwrap_model(self.ref_model), stats)

        def _compute_loss(self, model: Any, inputs: Any, return_outputs: bool) -> Any:
            self._share_prefix()
            return super()._compute_loss(model, inputs, return_outputs)

        def compute_ref_log_probs(self, model: Any, inputs: Any) -> Any:
            self._share_prefix()
            return super().compute_ref_log_probs(model, inputs)

    return SharedPrefixDPOTrainer

