"""The train stage: the round's policy trained on its own data with TRL, in a separate process
(so the engines' memory and the accelerator are free, and a crash in training leaves the round's
data untouched)."""

from __future__ import annotations

import logging
import subprocess
import sys
from typing import Any

import pyarrow.parquet as pq
from plumline.data_schemas import Stage, derive_seed
from plumline.pipeline.config import RunConfig
from plumline.pipeline.errors import StageFailed
from plumline.pipeline.layout import RoundLayout, atomic_write_text
from plumline.trainers.exit_codes import TrainExit
from plumline.trainers.output import holds_policy

log = logging.getLogger(__name__)


class TrainingFailed(StageFailed):
    """The trainer process failed; the round's data is kept and a rerun retries training."""


def train_round(cfg: RunConfig, layout: RoundLayout, policy_model: str) -> dict[str, Any]:
    """Train ``policy_model`` on this round's ``dpo`` or ``kto`` rows into ``layout.model_dir``.

    Returns the stage's marker info. No model folder is written when there is nothing to train on
    (no rows, or none usable): the next round then samples from the same policy."""
    method = cfg.training.method
    data = layout.artifact_path(method)
    if not data.exists() or pq.ParquetFile(data).metadata.num_rows == 0:
        log.warning("round %d: no %s rows, the policy is not trained this round", layout.round, method)
        return {"trained": False, "reason": f"no {method} rows"}
    section = getattr(cfg, method).train
    cfg_file = layout.stages_dir / f"train-{method}.json"
    atomic_write_text(cfg_file, section.model_dump_json(indent=2))
    seed = derive_seed(cfg.seed, Stage.TRAIN.value, layout.round)
    cmd = [sys.executable, "-m", "plumline.trainers", method, "--data", str(data), "--model", policy_model,
           "--out", str(layout.model_dir), "--config", str(cfg_file), "--seed", str(seed), "--overwrite"]
    log.info("round %d: training %s: %s", layout.round, method, " ".join(cmd))
    code = subprocess.run(cmd, check=False).returncode
    if code == TrainExit.NO_DATA:
        log.warning("round %d: no usable %s rows, the policy is not trained this round", layout.round, method)
        return {"trained": False, "reason": f"no usable {method} rows"}
    if code != TrainExit.OK:
        raise TrainingFailed(f"round {layout.round}: training {method} failed (exit {code}); "
                             f"data kept in {layout.dir}; a rerun retries training")
    # save: false leaves a report without weights: the next round must not load it as its policy.
    return {"trained": True, "method": method, "seed": seed, "holds_policy": holds_policy(layout.model_dir)}
