"""The train stage: the round's policy trained on its own data with TRL, in a separate process
(so the engines' memory and the accelerator are free, and a crash in training leaves the round's
data untouched)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from plumline.data_schemas import Stage, derive_seed
from plumline.llm.hardware import with_tcmalloc
from plumline.llm.reaper import watch_new_children
from plumline.pipeline.config import RunConfig
from plumline.pipeline.errors import StageFailed
from plumline.pipeline.layout import RoundLayout, atomic_write_text
from plumline.trainers.exit_codes import MEANINGS, TrainExit
from plumline.trainers.output import holds_policy

log = logging.getLogger(__name__)


class TrainingFailed(StageFailed):
    """The trainer process failed; the round's data is kept and a rerun retries training."""


def _rows(path: Path) -> int:
    return pq.ParquetFile(path).metadata.num_rows if path.exists() else 0


def _empty_reason(layout: RoundLayout, method: str) -> str:
    """Why a round has no training rows, in words (from its files)."""
    problems = _rows(layout.artifact_path("problems"))
    samples = _rows(layout.artifact_path("samples"))
    executions = _rows(layout.artifact_path("executions"))
    if executions == 0:
        return (f"no {method} rows: {problems} problems, {samples} samples and no executions (every problem "
                f"skipped? see errors.jsonl)")
    return (f"no {method} rows from {executions} executions of {problems} problems: no problem had both a "
            f"passing and a failing program (see the manifest's pairs section)")


def training_data(cfg: RunConfig, layout: RoundLayout, method: str) -> tuple[Path, int, list[int]]:
    """The file this round trains on and its rows: the round's own export, or (``<method>.accumulate``)
    its rows followed by the earlier rounds' newest first, capped at ``max_rows``, written into
    ``.stages/``. Also returns the rounds the rows come from."""
    own = layout.artifact_path(method)
    acc = getattr(cfg, method).accumulate
    if not acc.enabled or layout.round == 0:
        return own, _rows(own), [layout.round]
    import pyarrow as pa

    tables, rounds, total = [], [], 0
    for r in range(layout.round, -1, -1):
        path = RoundLayout(layout.run_dir, r).artifact_path(method)
        if not path.exists() or (acc.max_rows is not None and total >= acc.max_rows):
            continue
        table = pq.read_table(path)
        if acc.max_rows is not None:
            table = table.slice(0, acc.max_rows - total)
        if table.num_rows:
            tables.append(table)
            rounds.append(r)
            total += table.num_rows
    out = layout.stages_dir / f"train-{method}-accumulated.parquet"
    schema = tables[0].schema if tables else pq.read_schema(own)
    pq.write_table(pa.concat_tables(tables) if tables else schema.empty_table(), out)
    return out, total, rounds


def train_round(cfg: RunConfig, layout: RoundLayout, policy_model: str,
                reference: str | None = None) -> dict[str, Any]:
    """Train ``policy_model`` on this round's ``dpo`` or ``kto`` rows into ``layout.model_dir``;
    ``reference`` is the reference model of DPO/KTO (None: the policy itself).

    Returns the stage's marker info. No model folder is written when there is nothing to train on
    (no rows, or none usable): the next round then samples from the same policy."""
    method = cfg.training.method
    data, rows, from_rounds = training_data(cfg, layout, method)
    if rows == 0:
        reason = _empty_reason(layout, method)
        log.warning("round %d: the policy is not trained this round: %s", layout.round, reason)
        return {"trained": False, "reason": reason}
    section = getattr(cfg, method).train
    cfg_file = layout.stages_dir / f"train-{method}.json"
    atomic_write_text(cfg_file, section.model_dump_json(indent=2))
    seed = derive_seed(cfg.seed, Stage.TRAIN.value, layout.round)
    cmd = [sys.executable, "-m", "plumline.trainers", method, "--data", str(data), "--model", policy_model,
           "--out", str(layout.model_dir), "--config", str(cfg_file), "--seed", str(seed), "--overwrite"]
    if reference is not None and reference != policy_model:
        cmd += ["--ref-model", reference]
    log.info("round %d: training %s: %s", layout.round, method, " ".join(cmd))
    # The trainer holds every core for minutes: should this process die (SIGKILL, OOM), it must too.
    with watch_new_children() as dog:
        code = subprocess.run(cmd, check=False, env=with_tcmalloc(os.environ)).returncode
    if dog is not None:
        dog.release()
    if code == TrainExit.NO_DATA:
        log.warning("round %d: no usable %s rows, the policy is not trained this round", layout.round, method)
        return {"trained": False, "reason": f"no usable {method} rows"}
    if code != TrainExit.OK:
        cause = (f"killed by signal {-code}" if code < 0
                 else MEANINGS.get(TrainExit(code), "") if code in set(TrainExit) else "unexpected exit code")
        raise TrainingFailed(f"round {layout.round}: training {method} of {policy_model} failed "
                             f"(exit {code}: {cause}; its log is above); the round's data is kept in "
                             f"{layout.dir} and a rerun retries only the training")
    # save: false leaves a report without weights: the next round must not load it as its policy.
    return {"trained": True, "method": method, "seed": seed, "rows": rows, "from_rounds": from_rounds,
            "reference": reference or policy_model, "holds_policy": holds_policy(layout.model_dir)}
