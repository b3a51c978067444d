"""``plumline eval --rerank MODEL``: what a trained critic or process reward model is worth at
inference. Among the n sampled programs of each evaluation problem, the scorer picks one (the critic:
highest probability of "passed"; the PRM: best aggregate of its step scores), and that pick's pass@1 is
reported beside a random pick's and the greedy sample's, on the same samples (``eval.json``'s
``rerank``). The scorers run after the generation engine is closed, so they get the accelerator.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Literal

import pyarrow.parquet as pq
from plumline.data_schemas import EvalSample, from_table
from plumline.pipeline.errors import BadRunInput
from plumline.transforms.logic.rerank import rerank_summary

logger = logging.getLogger(__name__)
ScorerKind = Literal["critic", "prm"]


def scorer_kind(model_dir: str | Path) -> ScorerKind:
    """Whether ``model_dir`` holds a critic (``plumline train critic``) or a PRM (``plumline train
    prm``), read from its ``config.json``; ``BadRunInput`` naming the folder otherwise."""
    from plumline.trainers.critic import CRITIC_CLASSES
    from plumline.trainers.model import resolve_model
    from plumline.trainers.prm import SEPARATOR_ATTR

    try:
        folder = Path(resolve_model(str(model_dir)))
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (FileNotFoundError, OSError, ValueError) as exc:
        raise BadRunInput(f"--rerank {model_dir}: not a model folder ({exc})") from None
    archs = config.get("architectures") or []
    if SEPARATOR_ATTR in config and any(a.endswith("ForTokenClassification") for a in archs):
        return "prm"
    if any(a.endswith("ForSequenceClassification") for a in archs) and \
            len(config.get("id2label") or {}) == len(CRITIC_CLASSES):
        return "critic"
    raise BadRunInput(f"--rerank {model_dir}: neither a critic (plumline train critic) nor a process reward "
                      f"model (plumline train prm): its architectures are {archs or 'unknown'}")


def score_samples(model_dir: str | Path, kind: ScorerKind, rows: list[EvalSample], *,
                  aggregate: str = "min", batch_size: int = 8) -> dict[str, float]:
    """sample_id -> the scorer's preference for each sampled program with code (higher is better)."""
    todo = [r for r in rows if r.code and not r.is_greedy]
    if not todo:
        return {}
    prompts, codes = [r.prompt for r in todo], [r.code or "" for r in todo]
    if kind == "critic":
        from plumline.trainers.critic import PASSED_CLASS, critic_scores

        probs = critic_scores(model_dir, prompts, codes, batch_size=batch_size)
        return {r.sample_id: p[PASSED_CLASS] for r, p in zip(todo, probs)}
    from plumline.trainers.prm import aggregate as combine
    from plumline.trainers.prm import prm_step_scores

    steps = prm_step_scores(model_dir, prompts, codes, batch_size=batch_size)
    return {r.sample_id: combine(s, aggregate) for r, s in zip(todo, steps)}


def rerank_eval(out_dir: Path, models: list[str], *, aggregate: str = "min") -> list[dict[str, Any]]:
    """Rerank the samples of ``out_dir/eval_samples.parquet`` with every model in ``models``; returns
    one summary per model (also what ``eval.json``'s ``rerank`` holds)."""
    rows = from_table(pq.read_table(out_dir / "eval_samples.parquet"), EvalSample)
    if any(r.code and not r.prompt for r in rows):
        raise BadRunInput(f"{out_dir / 'eval_samples.parquet'} has no prompts (written by an older "
                          f"plumline): run plumline eval again with --force to rerank")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # the console stays quiet (issue: a bar per model load)
    out = []
    for model in models:
        kind = scorer_kind(model)
        logger.info("reranking %d eval samples with the %s in %s", len(rows), kind, model)
        scores = score_samples(model, kind, rows, aggregate=aggregate)
        out.append({"model": str(model), "kind": kind, **({"aggregate": aggregate} if kind == "prm" else {}),
                    **rerank_summary(rows, scores)})
    return out
