"""Evaluation results of a round and of a run, read back from the files (like the manifest):
``eval.json`` beside a round's ``eval_samples.parquet`` (also what ``plumline eval`` writes), the
manifest's ``eval`` section (the same dict) and the run's ``rounds.json`` (one row per round).

Which policy a round folder evaluates: the one that round samples from. Round 0 evaluates the
untrained policy (the baseline); round r the model round r-1 trained; after the last round, the
loop adds one more folder, ``round-<rounds>``, holding only the eval stage, for the last trained model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from plumline.data_schemas import EvalSample, from_table
from plumline.pipeline.config import RunConfig
from plumline.pipeline.errors import BadRunInput
from plumline.pipeline.layout import RoundLayout, atomic_write_text
from plumline.transforms.logic.evaluation import GREEDY_KEY, summarize
from plumline.transforms.logic.guided import pass_rate_by_origin

EVAL_JSON = "eval.json"
ROUNDS_JSON = "rounds.json"


def eval_summary(cfg: RunConfig, layout: RoundLayout, model: str = "") -> dict[str, Any] | None:
    """The summary of the round's ``eval_samples.parquet`` (None when the round evaluated nothing)."""
    path = layout.artifact_path("eval_samples")
    if not cfg.eval.enabled or not path.exists():
        return None
    rows = from_table(pq.read_table(path), EvalSample)
    summary = summarize(rows, cfg.eval.k, model=model, sources=[s.path for s in cfg.eval.sources],
                        n=cfg.eval.n)
    # How the n samples were drawn (critic_guided: CodeRL's critical sampling, guided by the example
    # tests only) and the pass rate of each origin (sampled, refined, repaired) on the given tests.
    sampling = cfg.eval.sampling(cfg.sampling)
    summary["sampling"] = sampling.mode
    if sampling.mode == "critic_guided":
        summary["critic"] = sampling.guided.critic
    summary["by_origin"] = pass_rate_by_origin((r.origin, r.passed) for r in rows if not r.is_greedy)
    return summary


def write_eval_json(layout: RoundLayout, summary: dict[str, Any]) -> Path:
    path = layout.dir / EVAL_JSON
    atomic_write_text(path, json.dumps(summary, indent=2))
    return path


def round_row(manifest: dict[str, Any]) -> dict[str, Any]:
    """One row of ``rounds.json``: the round, the policy it evaluated, its scores (keys as in eval.json)."""
    ev = manifest.get("eval") or {}
    scores = {k: v for k, v in ev.items() if k.startswith("pass@") or k == GREEDY_KEY}
    return {"round": manifest["round"], "policy": ev.get("model") or manifest["policy"]["model"],
            "eval_only": bool(manifest.get("eval_only")), **scores,
            "problems": ev.get("problems"),
            "by_source": {src: {k: v for k, v in s.items() if k.startswith("pass@") or k == GREEDY_KEY}
                          for src, s in (ev.get("by_source") or {}).items()}}


def write_rounds_json(run_dir: Path, cfg: RunConfig, manifests: list[dict[str, Any]]) -> Path:
    """``rounds.json``: eval results of every round so far (pass@1 greedy, pass@k, per source)."""
    path = run_dir / ROUNDS_JSON
    rows = [round_row(m) for m in manifests]
    atomic_write_text(path, json.dumps({"run": cfg.name, "k": cfg.eval.k, "n": cfg.eval.n,
                                        "sources": [s.path for s in cfg.eval.sources], "rounds": rows},
                                       indent=2))
    return path


def check_policy_model(model: str, kind: str, round: int) -> None:
    """A policy given as a local path must be a model folder; say so before any engine starts."""
    if kind == "openai":  # a served model's name, not a path
        return
    from plumline.trainers.model import resolve_model

    try:
        resolve_model(model)
    except FileNotFoundError as exc:
        raise BadRunInput(f"round {round}: the policy model cannot be loaded: {exc}") from None


def eval_run_config(model: str, source: str, *, fmt: str = "auto", limit: int | None = None, n: int = 10,
                    k: list[int] | None = None, greedy: bool = True, backend: str = "vllm",
                    base_url: str | None = None, temperature: float | None = None,
                    max_tokens: int | None = None, seed: int = 0, workers: int | None = None,
                    name: str = "eval", sampling: str = "plain", critic: str | None = None) -> RunConfig:
    """The run config ``plumline eval`` runs the eval stage with (the policy is ``model``). Raises
    ``ConfigError`` naming the option when the settings cannot work.

    ``sampling``: ``plain`` or ``critic-guided`` (CodeRL's critical sampling at the same budget of n,
    guided by the problems' example tests only, never the tests that score them), which needs
    ``critic``, a ``plumline train critic`` output folder."""
    from plumline.llm import BackendConfig
    from plumline.pipeline.config import ConfigError, check_config, resolve_model_ref
    from plumline.sandbox import SandboxConfig
    from plumline.transforms.logic.evaluation import EvalConfig
    from plumline.transforms.logic.readers import SourceConfig
    from plumline.transforms.logic.sampling import GuidedSamplingConfig, SamplingConfig
    from pydantic import ValidationError

    mode = sampling.replace("-", "_")
    if mode not in ("plain", "critic_guided"):
        raise ConfigError(f"--sampling: {sampling!r} is not plain or critic-guided")
    if mode == "critic_guided":
        if not critic:
            raise ConfigError("--critic: required with --sampling critic-guided (a folder written by "
                              "plumline train critic)")
        from plumline.trainers.model import resolve_model

        try:
            critic = resolve_model(critic)
        except FileNotFoundError as exc:
            raise ConfigError(f"--critic: {exc}") from None
    elif critic:
        raise ConfigError("--critic: only used with --sampling critic-guided")
    try:
        src = SourceConfig(path=source, format=fmt, limit=limit)
        policy = BackendConfig(kind=backend, model=resolve_model_ref(model),
                               **({"base_url": base_url} if base_url else {}))
        ev = EvalConfig(sources=[src], n=n, k=k if k is not None else [1], greedy=greedy,
                        temperature=temperature, max_tokens=max_tokens, sampling_mode=mode)
        cfg = RunConfig(name=name, sources=[src], policy=policy, eval=ev, seed=seed,
                        sandbox=SandboxConfig(workers=workers),
                        sampling=SamplingConfig(mode=mode, guided=GuidedSamplingConfig(critic=critic)))
    except ValidationError as exc:
        raise ConfigError("; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                                    for e in exc.errors())) from None
    return check_config(cfg, "plumline eval")
