"""Dense, per-line rewards from a trained PRM (arXiv 2410.17621), for RL trainers.

``dense_rewards`` is the formula; ``write_dense_rewards`` scores a round's ``samples.parquet`` and
writes one ``DenseRewardRow`` per sample (sample_id, its lines, the PRM's scores and the rewards)::

    plumline train rewards --prm RUN/prm --samples RUN/round-000/samples.parquet --out rewards.parquet

A "line" is a step as the PRM labeller splits it (``plumline.data_schemas.steps.split_steps``): one
code line with the blank and comment lines above it, so ``lines[i]`` is what ``rewards[i]`` rewards.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from plumline.data_schemas.base import RecordError, to_table
from plumline.data_schemas.records import DenseRewardRow, Sample
from plumline.data_schemas.steps import split_steps

from .data import NoTrainingData, TrainingDataError

logger = logging.getLogger(__name__)


def dense_rewards(step_scores: Sequence[float], *, baseline: float = 0.0) -> list[float]:
    """Per-line rewards, normalised by the program's line count (the paper's guard against reward
    hacking by writing more lines)::

        r_l = (p_l - baseline) / L        for l = 1..L

    where ``p_l`` is the PRM's P(good) at the end of line l (``prm_step_scores``) and L the number of
    lines. The reward is given at the token that ends line l. The sum over a program is
    ``mean(p) - baseline``, within [-baseline, 1 - baseline] however many lines the policy writes.
    ``baseline`` 0 keeps every reward >= 0; 0.5 makes lines the PRM doubts negative. A NaN score (a
    line past the scorer's ``max_length``) gives a NaN reward; no lines give no rewards.
    """
    n = len(step_scores)
    return [(float(p) - baseline) / n for p in step_scores]


@dataclass
class RewardsSummary:
    """What ``write_dense_rewards`` did (printed by the command as one JSON line)."""

    out: str
    rows: int
    lines: int
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> samples left out

    def to_dict(self) -> dict[str, object]:
        return {"out": self.out, "rows": self.rows, "lines": self.lines, "skipped": dict(self.skipped)}


def _read_samples(path: Path, skipped: dict[str, int]) -> list[Sample]:
    """The valid samples of ``path``; a malformed row is logged (naming it) and left out."""
    import pyarrow.parquet as pq

    if not path.is_file():
        raise TrainingDataError(f"samples file {path} does not exist or is not a file")
    try:
        table = pq.read_table(path)
    except Exception as e:  # noqa: BLE001 - any read failure is a bad input file
        raise TrainingDataError(f"samples file {path} is not readable Parquet: {e}") from None
    missing = [n for n in ("sample_id", "prompt", "code") if n not in table.column_names]
    if missing:
        raise TrainingDataError(f"{path}: missing column(s) {missing}: not a samples.parquet")
    out = []
    for i, row in enumerate(table.to_pylist()):
        try:
            out.append(Sample.from_dict(row))
        except RecordError as e:
            logger.warning("%s: row %d (sample_id %s): %s; left out", path, i, row.get("sample_id"), e)
            skipped["invalid_row"] = skipped.get("invalid_row", 0) + 1
    return out


def write_dense_rewards(prm_model: str | Path, samples_path: str | Path, out_path: str | Path, *,
                        baseline: float = 0.0, batch_size: int = 8, device: str = "auto",
                        dtype: str = "auto", max_length: int | None = None) -> RewardsSummary:
    """Score every sample with code in ``samples_path`` with the PRM at ``prm_model`` and write
    ``out_path`` (Parquet, ``DenseRewardRow``), atomically. Samples without code (or with only blank
    lines) and malformed rows are logged by sample and left out, and counted in the summary.

    Raises ``TrainingDataError`` for a missing or unreadable samples file, ``NoTrainingData`` when
    no sample has code, ``FileNotFoundError``/``ValueError`` for a folder that is not a trained PRM.
    """
    import pyarrow.parquet as pq

    from .prm import PrmScorer

    samples_path, out_path = Path(samples_path).expanduser(), Path(out_path).expanduser()
    skipped: dict[str, int] = {}
    scored: list[tuple[Sample, list[str]]] = []
    for s in _read_samples(samples_path, skipped):
        steps = split_steps(s.code or "")
        if not steps:
            logger.warning("%s: sample %s has no code; left out", samples_path, s.sample_id)
            skipped["no_code"] = skipped.get("no_code", 0) + 1
            continue
        scored.append((s, steps))
    if not scored:
        raise NoTrainingData(f"no sample with code in {samples_path}")
    scorer = PrmScorer(prm_model, device=device, dtype=dtype)
    scores = scorer.step_scores([s.prompt for s, _ in scored], [steps for _, steps in scored],
                                batch_size=batch_size, max_length=max_length)
    rows = [DenseRewardRow(sample_id=s.sample_id, problem_id=s.problem_id, round=s.round,
                           prm_model=scorer.path, lines=tuple(steps), scores=tuple(p),
                           rewards=tuple(dense_rewards(p, baseline=baseline)), baseline=baseline)
            for (s, steps), p in zip(scored, scores, strict=True)]
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f".{out_path.name}.partial")
    pq.write_table(to_table(rows, DenseRewardRow), tmp)
    tmp.replace(out_path)
    unscored = sum(1 for r in rows for p in r.scores if math.isnan(p))
    if unscored:
        logger.warning("%d lines did not fit max_length=%s: their rewards are NaN", unscored, max_length)
    summary = RewardsSummary(out=str(out_path.resolve()), rows=len(rows),
                             lines=sum(len(r.lines) for r in rows), skipped=skipped)
    logger.info("dense rewards: %d samples, %d lines -> %s (left out: %s)", summary.rows, summary.lines,
                summary.out, skipped or "none")
    return summary
