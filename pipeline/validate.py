"""``plumline validate RUN_DIR``: is a run folder whole and true to itself?

Checks, per round: every finished stage's files are there and every row reads back as its record
type; ids are unique; every pair's chosen and rejected programs trace back to samples and executions
of the same problem, with the chosen one passing more tests than the rejected one (PLUM: chosen
passes every kept test); KTO and critic rows trace back to executions (a critic row's class, pass
ratio, greedy baseline and relative return agree with them; a reference row is its problem's
reference solution); counts match the manifest; no problem of the evaluation rows appears in the
training rows. Returns a list of findings (empty: valid); the CLI exits non-zero when there is any.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from plumline.data_schemas import CODERL_CLASS, CODERL_RETURN, Outcome, Record, RecordError, Stage, from_table
from plumline.data_schemas.steps import join_steps
from plumline.pipeline.artifacts import ARTIFACTS
from plumline.pipeline.config import ConfigError, RunConfig, load_config
from plumline.pipeline.layout import RoundLayout

# Artifacts whose rows the training reads: an evaluation problem must never appear in them.
TRAINING_ARTIFACTS = ("dpo", "kto", "critic")
EVAL_ARTIFACT = "eval_samples"


@dataclass(frozen=True)
class Finding:
    where: str  # round folder and file
    what: str

    def __str__(self) -> str:
        return f"{self.where}: {self.what}"


def validate_run(run_dir: Path) -> list[Finding]:
    run_dir = Path(run_dir)
    findings: list[Finding] = []
    cfg_path = run_dir / "config.yaml"
    if not cfg_path.is_file():
        return [Finding(str(run_dir), "no config.yaml: not a plumline run folder")]
    try:
        cfg = load_config(cfg_path)
    except ConfigError as exc:
        return [Finding(str(cfg_path), f"config does not load: {exc}")]
    rounds = sorted(p for p in run_dir.glob("round-[0-9][0-9][0-9]") if p.is_dir())
    if not rounds:
        findings.append(Finding(str(run_dir), "no round folder"))
    for folder in rounds:
        findings += validate_round(cfg, RoundLayout(run_dir, int(folder.name.split("-")[1])))
    return findings


def _read(layout: RoundLayout, name: str, cfg: RunConfig, findings: list[Finding]) -> list[Any] | None:
    path = layout.artifact_path(name)
    if not path.exists():
        return None
    try:
        return from_table(pq.read_table(path), ARTIFACTS[name].record_type(cfg))
    except (OSError, ValueError, RecordError) as exc:  # pyarrow raises ArrowInvalid (a ValueError)
        record = ARTIFACTS[name].record_type(cfg).__name__
        findings.append(Finding(str(path), f"unreadable as {record}: {exc}"))
        return None


def _unique(records: list[Record], attr: str, where: str, findings: list[Finding]) -> None:
    dupes = [k for k, n in Counter(getattr(r, attr) for r in records).items() if n > 1]
    if dupes:
        findings.append(Finding(where, f"{len(dupes)} duplicate {attr} values, e.g. {dupes[0]!r}"))


def validate_round(cfg: RunConfig, layout: RoundLayout) -> list[Finding]:
    findings: list[Finding] = []
    where = str(layout.dir)
    data: dict[str, list[Any] | None] = {}

    def flag(name: str, what: str) -> None:
        findings.append(Finding(f"{where}/{name}.parquet", what))

    for stage in Stage:
        marker = layout.read_marker(stage)
        if marker is None:
            continue
        for name in marker.outputs:
            if not layout.artifact_path(name).exists():
                findings.append(Finding(where, f"stage {stage.value} is marked done but {name} is missing"))
            elif not ARTIFACTS[name].is_folder:
                data[name] = _read(layout, name, cfg, findings)
                rows = data[name]
                if rows is not None and marker.rows.get(name, len(rows)) != len(rows):
                    flag(name, f"{len(rows)} rows, the stage marker says {marker.rows[name]}")
    problems, samples = data.get("problems") or [], data.get("samples") or []
    executions = data.get("executions") or []
    _unique(problems, "problem_id", f"{where}/problems.parquet", findings)
    _unique(samples, "sample_id", f"{where}/samples.parquet", findings)
    _unique(executions, "sample_id", f"{where}/executions.parquet", findings)
    _unique(data.get("tests") or [], "test_id", f"{where}/tests.parquet", findings)

    sample_by_id = {s.sample_id: s for s in samples}
    execution_by_id = {e.sample_id: e for e in executions}
    known_problems = {p.problem_id for p in problems}
    for s in samples:
        if s.problem_id not in known_problems:
            flag("samples", f"sample {s.sample_id} of unknown problem")
            break
    for i, row in enumerate(data.get("dpo") or []):
        problems_in_row = set()
        for side in ("chosen", "rejected"):
            sid = getattr(row, f"{side}_sample_id")
            sample, execution = sample_by_id.get(sid), execution_by_id.get(sid)
            if sample is None or execution is None:
                missing = "sample" if sample is None else "execution"
                flag("dpo", f"row {i}: {side} sample {sid} has no {missing}")
                continue
            problems_in_row.add(sample.problem_id)
            if abs(execution.pass_ratio - getattr(row, f"{side}_pass_ratio")) > 1e-9:
                flag("dpo", f"row {i}: {side} pass ratio differs from its execution's "
                            f"({execution.pass_ratio})")
        if problems_in_row and problems_in_row != {row.problem_id}:
            flag("dpo", f"row {i}: chosen and rejected of other problems")
        if row.chosen_pass_ratio <= row.rejected_pass_ratio:
            flag("dpo", f"row {i}: chosen does not pass more than rejected")
    for i, row in enumerate(data.get("kto") or []):
        if row.sample_id not in execution_by_id:
            flag("kto", f"row {i}: sample {row.sample_id} has no execution")
            break
    critic = _critic_findings(data.get("critic") or [], sample_by_id, execution_by_id,
                              {p.problem_id: p for p in problems})
    if critic:
        flag("critic", critic[0] + (f" (and {len(critic) - 1} more)" if len(critic) > 1 else ""))
    prm = _prm_findings(data.get("prm") or [], sample_by_id, execution_by_id)
    if prm:
        flag("prm", prm[0] + (f" (and {len(prm) - 1} more)" if len(prm) > 1 else ""))
    findings += _check_manifest(layout, data)
    findings += _check_contamination(layout, data)
    return findings


def _prm_findings(rows: list[Any], sample_by_id: dict[str, Any],
                  execution_by_id: dict[str, Any]) -> list[str]:
    """Each PRM row traces back to its sample: the same prompt, its steps joined give the sample's code,
    and a failing program (its execution) has a first bad step (a passing one has none)."""
    out = []
    for i, row in enumerate(rows):
        sample, execution = sample_by_id.get(row.sample_id), execution_by_id.get(row.sample_id)
        if sample is None or execution is None:
            missing = "sample" if sample is None else "execution"
            out.append(f"row {i}: sample {row.sample_id} has no {missing}")
            continue
        if row.prompt != sample.prompt:
            out.append(f"row {i}: prompt differs from sample {row.sample_id}'s")
        if join_steps(list(row.completions)).strip() != (sample.code or "").strip():
            out.append(f"row {i}: steps do not join into sample {row.sample_id}'s code")
        if (execution.outcome == Outcome.PASSED.value) != (row.first_bad_step is None):
            out.append(f"row {i}: first bad step {row.first_bad_step} for a program whose outcome is "
                       f"{execution.outcome}")
    return out


def _critic_findings(rows: list[Any], sample_by_id: dict[str, Any], execution_by_id: dict[str, Any],
                     problem_by_id: dict[str, Any]) -> list[str]:
    """Each critic row traces back: a sample row to its execution (same class and pass ratio), a
    reference row to its problem's reference solution (class 3); its greedy baseline to the problem's
    greedy sample and execution; its relative return is its return minus the baseline's."""
    out = []
    for i, row in enumerate(rows):
        if row.source == "reference":
            problem = problem_by_id.get(row.problem_id)
            if problem is None or problem.reference_solution != row.code:
                out.append(f"row {i}: reference row whose code is not problem {row.problem_id}'s reference")
            elif row.coderl_class != CODERL_CLASS[Outcome.PASSED]:
                out.append(f"row {i}: reference row with class {row.coderl_class}, not passed")
        else:
            execution = execution_by_id.get(row.sample_id)
            if execution is None:
                out.append(f"row {i}: sample {row.sample_id} has no execution")
                continue
            if (execution.coderl_class, execution.pass_ratio) != (row.coderl_class, row.pass_ratio):
                out.append(f"row {i}: class/pass ratio {row.coderl_class}/{row.pass_ratio} differ from its "
                           f"execution's ({execution.coderl_class}/{execution.pass_ratio})")
        if row.greedy_class is None:
            if row.relative_return is not None:
                out.append(f"row {i}: a relative return without a greedy baseline")
            continue
        greedy = sample_by_id.get(row.greedy_sample_id or "")
        greedy_run = execution_by_id.get(row.greedy_sample_id or "")
        if (greedy is None or greedy_run is None or not greedy.is_greedy
                or greedy.problem_id != row.problem_id or greedy_run.coderl_class != row.greedy_class):
            out.append(f"row {i}: greedy baseline {row.greedy_sample_id} (class {row.greedy_class}) is not a "
                       f"greedy sample of {row.problem_id} with that class")
        expected = round(CODERL_RETURN[row.coderl_class] - CODERL_RETURN[row.greedy_class], 6)
        if row.relative_return is None or abs(row.relative_return - expected) > 1e-6:
            out.append(f"row {i}: relative return {row.relative_return}, expected {expected}")
    return out


def _check_manifest(layout: RoundLayout, data: dict[str, list[Any] | None]) -> list[Finding]:
    if not layout.manifest.is_file():
        return [] if not data else [Finding(str(layout.dir), "no manifest.json (the round did not finish)")]
    try:
        counts = json.loads(layout.manifest.read_text(encoding="utf-8"))["counts"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return [Finding(str(layout.manifest), f"unreadable: {exc}")]
    out = []
    for name, rows in data.items():
        if rows is not None and name in counts and counts[name] != len(rows):
            out.append(Finding(str(layout.manifest), 
                               f"counts.{name} is {counts[name]}, the file has {len(rows)}"))
    return out


def _check_contamination(layout: RoundLayout, data: dict[str, list[Any] | None]) -> list[Finding]:
    eval_problems = {r.problem_id for r in data.get(EVAL_ARTIFACT) or []}
    out = []
    for name in TRAINING_ARTIFACTS:
        leaked = {r.problem_id for r in data.get(name) or []} & eval_problems
        if leaked:
            out.append(Finding(f"{layout.dir}/{name}.parquet",
                               f"{len(leaked)} evaluation problems in training rows, e.g. {min(leaked)}"))
    return out
