"""Chosen/rejected pairs (DPO), unpaired rows (KTO) and critic rows from executed samples of one problem,
and the config sections that shape them: ``dpo.pairs`` (``PairingConfig``), ``kto.rows``
(``KtoRowsConfig``), ``critic.rows`` (``CriticRowsConfig``) and ``export`` (``ExportConfig``).

Pure functions, no Beam. Everything is deterministic given the run's seed: inputs are sorted by ids
first and every "random" choice is a content hash of (``derive_seed(seed, "pairs", problem id)``,
sample id), so the output does not depend on the order samples arrive in (Beam gives no order).

Choices (documented because they shape the data):

- Executions with outcome ``sandbox_error`` are dropped: the failure is ours, not the policy's.
- Executions that ran no kept test (``total == 0``) are dropped: their pass ratio carries no signal.
- Samples without extracted code (``Sample.code is None``) are, by default, rejected candidates with
  pass ratio 0: producing no program is a real failure of the policy (on-policy DPO should push
  away from it). In ``completion_text="code"`` mode they are skipped (there is no code to show), and
  ``no_code="skip"`` skips them always. The critic never sees them (it classifies programs).
- A passing completion cut off by the token limit (``finish_reason == "length"``) is not used as
  chosen or desirable unless ``allow_truncated_chosen``: training toward unfinished text teaches the
  model not to stop. A failing truncated completion stays rejected (running out of tokens is a failure).
- With ``dedupe``, samples whose programs normalize to the same text (AST without comments,
  docstrings and formatting; whitespace-collapsed text when it does not parse) collapse into one
  candidate represented by its smallest sample id. A program whose copies disagree on the pass ratio
  is flaky and is left out of pairs and KTO rows (counted in the stats).
- Critic rows carry CodeRL's baseline: the problem's greedy sample's class and the relative return
  (return minus the greedy's); None when the problem has no greedy sample with a verdict. Reference
  solutions join (``critic.rows.include_references``) only when known to pass every kept test.
- KTO rows are drawn from the same candidates as the pairs: ``dpo.pairs``' dedupe, completion_text,
  include_greedy, no_code and allow_truncated_chosen apply to them too.
- The prompt column is exactly what the policy saw: in the standard format each row's prompt is its
  sample's stored prompt (``Sample.prompt``, rendered by ``plumline.llm.render_prompt``); in the
  conversational format it is the same messages (``plumline.llm.prompt_messages``) the chat template
  rendered.
"""

from __future__ import annotations

import ast
import dataclasses
import math
from collections.abc import Sequence
from typing import Any, Literal

from plumline.data_schemas import (
    CODERL_CLASS,
    CODERL_RETURN,
    CriticRow,
    DpoChatRow,
    DpoRow,
    ErrorKind,
    ErrorRecord,
    Execution,
    KtoChatRow,
    KtoRow,
    Message,
    Outcome,
    PairingStats,
    Problem,
    Sample,
    Stage,
    TestStatus,
    content_id,
    derive_seed,
    status_value,
)
from plumline.llm import PromptConfig, prompt_messages
from pydantic import BaseModel, ConfigDict, Field

Scored = Sequence[tuple[Sample, Execution]]
PromptArg = str | Sequence[Message] | None
ExportFormat = Literal["standard", "conversational"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class PairingConfig(_Section):
    """How executed samples become candidates and DPO pairs (the ``dpo.pairs`` section)."""

    strategy: Literal["plum", "margin"] = Field(
        default="plum", description="plum: chosen passes every kept test, rejected fails one; margin: "
                                    "pass-ratio gap >= min_margin.")
    min_margin: float = Field(default=0.4, ge=0.0, le=1.0,
                              description="margin strategy: smallest chosen-minus-rejected pass-ratio gap.")
    min_chosen_pass_ratio: float = Field(default=0.0, ge=0.0, le=1.0,
                                         description="margin strategy: a chosen program passes at least "
                                                     "this share.")
    max_pairs_per_problem: int | None = Field(
        default=8, ge=1, description="Cap on DPO pairs per problem (None: every valid pair).")
    dedupe: bool = Field(default=True, description="Collapse samples whose programs normalize to the same "
                                                   "code (for pairs and KTO rows).")
    completion_text: Literal["raw", "code"] = Field(
        default="raw", description="Export the raw completion (on-policy) or the extracted code in a "
                                   "```python fence.")
    include_greedy: bool = Field(default=True, description="Use the greedy sample as a candidate too.")
    no_code: Literal["reject", "skip"] = Field(
        default="reject", description="Samples with no extractable code: rejected candidates (pass 0) or "
                                      "skipped.")
    allow_truncated_chosen: bool = Field(
        default=False, description="Allow a passing completion cut by max_tokens as chosen/desirable.")


class KtoRowsConfig(_Section):
    """Which candidates become KTO rows and with which label (the ``kto.rows`` section)."""

    enabled: bool = Field(True, description="Write kto.parquet (unpaired rows for trl.KTOTrainer).")
    desirable_min_pass_ratio: float = Field(
        default=1.0, ge=0.0, le=1.0,
        description="A completion is desirable when its pass ratio reaches this.")
    max_undesirable_ratio: float | None = Field(
        default=None, gt=0.0,
        description="Keep at most this many undesirable rows per desirable one, per problem (None: all).")
    max_rows_per_problem: int | None = Field(default=None, ge=1,
                                             description="Cap on KTO rows per problem (None: no cap).")


class CriticRowsConfig(_Section):
    """CodeRL critic rows: program -> outcome class (the ``critic.rows`` section)."""

    enabled: bool = Field(True, description="Write critic.parquet (CodeRL outcome-class rows).")
    dedupe: bool = Field(True, description="One row per distinct program (normalized as for pairs); "
                                           "false: one row per sample.")
    include_references: bool = Field(
        False, description="Add each problem's reference solution as a 'passed' row (source: reference), "
                           "only where the reference is known to pass every kept training test "
                           "(reference_passes); false: sampled programs only.")


class ExportConfig(_Section):
    """How the round's files are written (the ``export`` section)."""

    jsonl: bool = Field(False, description="Also write .jsonl copies of every Parquet file.")
    format: ExportFormat = Field(
        default="standard",
        description="TRL dataset format of dpo/kto rows: standard (prompt as the exact text the policy saw) "
                    "or conversational (role/content messages; needs a chat policy).")


# ----------------------------------------------------------------------------------------------------
# Program normalization


class _StripDocstrings(ast.NodeTransformer):
    """Drop docstrings (module, class, function); other string constants are semantic and stay."""

    def _strip(self, node: ast.AST) -> ast.AST:
        self.generic_visit(node)
        body = getattr(node, "body", None)
        if (isinstance(body, list) and body and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]  # type: ignore[attr-defined]
        return node

    visit_Module = visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = _strip


def normalize_program(code: str) -> str:
    """A key equal for programs that differ only in comments, docstrings and formatting."""
    try:
        tree = ast.parse(code)
        tree = _StripDocstrings().visit(tree)
        return "ast:" + ast.dump(tree, annotate_fields=False, include_attributes=False)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return "txt:" + " ".join(code.split())


# ----------------------------------------------------------------------------------------------------
# Candidates


@dataclasses.dataclass(frozen=True)
class Candidate:
    """One distinct program (or one sample without dedupe) with its verdict."""

    key: str  # normalized program (or sample id when not deduping)
    sample: Sample  # representative: smallest sample id
    execution: Execution
    pass_ratio: float
    count: int  # samples collapsed into it
    flaky: bool
    has_code: bool
    truncated: bool
    rank: str  # seeded order


@dataclasses.dataclass
class Prepared:
    candidates: list[Candidate]
    errors: list[ErrorRecord]
    samples: int
    sandbox_errors: int
    no_tests: int
    no_code: int
    greedy_skipped: int


def _err(problem_id: str, sample_id: str | None, kind: ErrorKind, reason: str,
         detail: str = "") -> ErrorRecord:
    return ErrorRecord(stage=Stage.EXPORT, kind=kind, reason=reason, input=sample_id or problem_id,
                       problem_id=problem_id, sample_id=sample_id, detail=detail[:300])


def prepare_candidates(problem_id: str, scored: Scored, cfg: PairingConfig, seed: int = 0) -> Prepared:
    """Validate, filter and (optionally) collapse the scored samples of one problem. ``seed`` is the
    run's seed: the candidates' order (which pairs a cap keeps) derives from it and the problem id."""
    errors: list[ErrorRecord] = []
    ok: list[tuple[Sample, Execution]] = []
    seen: set[str] = set()
    counts = {"samples": 0, "sandbox_errors": 0, "no_tests": 0, "no_code": 0, "greedy_skipped": 0}
    entries = []
    for i, entry in enumerate(scored):
        if (not isinstance(entry, tuple) or len(entry) != 2 or not isinstance(entry[0], Sample)
                or not isinstance(entry[1], Execution)):
            errors.append(_err(problem_id, None, ErrorKind.INTERNAL,
                               f"scored entry {i} is not a (Sample, Execution) pair", repr(entry)[:200]))
            continue
        entries.append(entry)
    entries.sort(key=lambda se: (se[0].sample_id, se[1].sample_id))
    for s, e in entries:
        counts["samples"] += 1
        if s.problem_id != problem_id or e.problem_id != problem_id:
            errors.append(_err(problem_id, s.sample_id, ErrorKind.CORRUPT_RECORD,
                               f"belongs to problem {s.problem_id!r}/{e.problem_id!r}, not {problem_id!r}"))
            continue
        if e.sample_id != s.sample_id:
            errors.append(_err(problem_id, s.sample_id, ErrorKind.CORRUPT_RECORD,
                               f"execution is of sample {e.sample_id!r}"))
            continue
        if s.sample_id in seen:
            errors.append(_err(problem_id, s.sample_id, ErrorKind.DUPLICATE_ID,
                               "duplicate sample id; the first is used"))
            continue
        seen.add(s.sample_id)
        ratio_ok = isinstance(e.pass_ratio, float) and math.isfinite(e.pass_ratio)
        if not (ratio_ok and 0.0 <= e.pass_ratio <= 1.0):
            errors.append(_err(problem_id, s.sample_id, ErrorKind.CORRUPT_RECORD,
                               f"pass_ratio {e.pass_ratio!r} is not in [0, 1]"))
            continue
        if e.outcome == Outcome.SANDBOX_ERROR.value:
            counts["sandbox_errors"] += 1
            continue
        if s.is_greedy and not cfg.include_greedy:
            counts["greedy_skipped"] += 1
            continue
        if s.code is None:
            counts["no_code"] += 1
            if cfg.no_code == "skip" or cfg.completion_text == "code":
                continue
        elif e.total == 0:
            counts["no_tests"] += 1
            continue
        ok.append((s, e))

    groups: dict[str, list[tuple[Sample, Execution]]] = {}
    for s, e in ok:
        if s.code is None:
            key = "nocode:" + " ".join(s.completion.split())
        else:
            key = normalize_program(s.code)
        groups.setdefault(key if cfg.dedupe else s.sample_id, []).append((s, e))

    pair_seed = derive_seed(seed, "pairs", problem_id)
    cands: list[Candidate] = []
    for key, members in groups.items():
        s, e = members[0]  # smallest sample id (entries were sorted)
        ratios = {0.0 if m.code is None else x.pass_ratio for m, x in members}
        flaky = len(ratios) > 1
        ratio = 0.0 if s.code is None else e.pass_ratio
        if not cfg.dedupe:
            key = normalize_program(s.code) if s.code is not None else "nocode:" + s.sample_id
        cands.append(Candidate(
            key=key,
            sample=s, execution=e, pass_ratio=ratio, count=len(members), flaky=flaky,
            has_code=s.code is not None, truncated=s.finish_reason == "length",
            rank=content_id("pair", pair_seed, s.sample_id)))
    cands.sort(key=lambda c: (c.rank, c.sample.sample_id))
    return Prepared(cands, errors, counts["samples"], counts["sandbox_errors"], counts["no_tests"],
                    counts["no_code"], counts["greedy_skipped"])


def _can_be_chosen(c: Candidate, cfg: PairingConfig) -> bool:
    return c.has_code and not c.flaky and (cfg.allow_truncated_chosen or not c.truncated)


def _excluded_truncated_pass(c: Candidate, cfg: PairingConfig) -> bool:
    return c.truncated and not cfg.allow_truncated_chosen and c.pass_ratio >= 1.0


def select_pairs(cands: Sequence[Candidate], cfg: PairingConfig) -> list[tuple[Candidate, Candidate]]:
    """Deterministic pairs spread over distinct chosen and rejected programs.

    Each step takes the valid pair whose programs have been used least (then the seeded order), so
    with a cap of k the first pairs use k different chosen and k different rejected programs when
    there are that many, rather than every pair of the top program.
    """
    if cfg.strategy == "plum":
        chosen = [c for c in cands if _can_be_chosen(c, cfg) and c.pass_ratio >= 1.0]
        rejected = [c for c in cands if not c.flaky and c.pass_ratio < 1.0]
        valid = [(a, b) for a in chosen for b in rejected]
    else:
        pool = [c for c in cands if not c.flaky and not _excluded_truncated_pass(c, cfg)]
        valid = [(a, b) for a in pool for b in pool
                 if a.key != b.key and _can_be_chosen(a, cfg) and a.pass_ratio >= cfg.min_chosen_pass_ratio
                 and a.pass_ratio - b.pass_ratio >= cfg.min_margin - 1e-12]
    valid = [(a, b) for a, b in valid if a.key != b.key]
    if cfg.max_pairs_per_problem is None:
        return valid
    order = {c.sample.sample_id: i for i, c in enumerate(cands)}
    used: dict[str, int] = {}
    remaining = list(valid)
    out: list[tuple[Candidate, Candidate]] = []
    cap = cfg.max_pairs_per_problem
    while remaining and len(out) < cap:
        def score(p: tuple[Candidate, Candidate]) -> tuple[int, int, int, int]:
            ua, ub = used.get(p[0].key, 0), used.get(p[1].key, 0)
            return (max(ua, ub), ua + ub, order[p[0].sample.sample_id], order[p[1].sample.sample_id])

        best = min(range(len(remaining)), key=lambda i: score(remaining[i]))
        a, b = remaining.pop(best)
        used[a.key] = used.get(a.key, 0) + 1
        used[b.key] = used.get(b.key, 0) + 1
        out.append((a, b))
    return out


# ----------------------------------------------------------------------------------------------------
# Text


def completion_text(sample: Sample, cfg: PairingConfig) -> str:
    """What a row shows as the model's answer: the raw completion, or the code in a fence."""
    if cfg.completion_text == "code" and sample.code is not None:
        return f"```python\n{sample.code.rstrip()}\n```"
    return sample.completion


def _prompt_messages(prompt: PromptArg, sample: Sample) -> tuple[Message, ...]:
    if prompt is None:
        return (Message(role="user", content=sample.prompt),)
    if isinstance(prompt, str):
        return (Message(role="user", content=prompt),)
    msgs = tuple(prompt)
    if not msgs or not all(isinstance(m, Message) for m in msgs):
        raise ValueError("a conversational prompt must be a non-empty sequence of Message")
    return msgs


def _prompt_text(prompt: PromptArg, sample: Sample) -> str:
    if isinstance(prompt, str):
        return prompt
    return sample.prompt  # the exact text the policy saw


# ----------------------------------------------------------------------------------------------------
# Rows


def make_dpo_rows(problem_id: str, prompt: PromptArg, scored: Scored, cfg: PairingConfig, round: int, *,
                  seed: int = 0, format: ExportFormat = "standard") -> list[DpoRow | DpoChatRow]:
    """DPO rows of one problem. ``prompt``: the exported prompt (see ``export_prompt``; None: each row
    takes its chosen sample's stored prompt); ``seed``: the run's seed."""
    prep = prepare_candidates(problem_id, scored, cfg, seed)
    return _dpo_rows(problem_id, prompt, select_pairs(prep.candidates, cfg), cfg, round, format)


def _dpo_rows(problem_id: str, prompt: PromptArg, pairs: Sequence[tuple[Candidate, Candidate]],
              cfg: PairingConfig, round: int, format: ExportFormat) -> list[DpoRow | DpoChatRow]:
    rows: list[DpoRow | DpoChatRow] = []
    for a, b in pairs:
        common = {"problem_id": problem_id, "chosen_sample_id": a.sample.sample_id,
                  "rejected_sample_id": b.sample.sample_id, "chosen_pass_ratio": a.pass_ratio,
                  "rejected_pass_ratio": b.pass_ratio, "margin": a.pass_ratio - b.pass_ratio,
                  "strategy": cfg.strategy, "round": round}
        if format == "conversational":
            rows.append(DpoChatRow(
                prompt=_prompt_messages(prompt, a.sample),
                chosen=(Message(role="assistant", content=completion_text(a.sample, cfg)),),
                rejected=(Message(role="assistant", content=completion_text(b.sample, cfg)),),
                **common))
        else:
            rows.append(DpoRow(prompt=_prompt_text(prompt, a.sample), chosen=completion_text(a.sample, cfg),
                               rejected=completion_text(b.sample, cfg), **common))
    return rows


def _kto_candidates(cands: Sequence[Candidate], cfg: KtoRowsConfig,
                    pairs: PairingConfig) -> list[tuple[Candidate, bool]]:
    rows: list[tuple[Candidate, bool]] = []
    for c in cands:
        if c.flaky or _excluded_truncated_pass(c, pairs):
            continue
        desirable = c.has_code and c.pass_ratio >= cfg.desirable_min_pass_ratio
        if desirable and c.truncated and not pairs.allow_truncated_chosen:
            continue
        rows.append((c, desirable))
    if cfg.max_undesirable_ratio is not None:
        n_good = sum(1 for _, d in rows if d)
        allowed = math.ceil(cfg.max_undesirable_ratio * n_good)
        kept_bad = 0
        balanced = []
        for c, d in rows:  # rows follow the seeded order, so the kept undesirable ones are a seeded choice
            if not d:
                if kept_bad >= allowed:
                    continue
                kept_bad += 1
            balanced.append((c, d))
        rows = balanced
    if cfg.max_rows_per_problem is not None and len(rows) > cfg.max_rows_per_problem:
        # alternate desirable and undesirable so a cap keeps both kinds
        good = [r for r in rows if r[1]]
        bad = [r for r in rows if not r[1]]
        mixed: list[tuple[Candidate, bool]] = []
        for i in range(max(len(good), len(bad))):
            mixed.extend(x[i] for x in (good, bad) if i < len(x))
        rows = mixed[: cfg.max_rows_per_problem]
    return rows


def make_kto_rows(problem_id: str, prompt: PromptArg, scored: Scored, cfg: KtoRowsConfig, round: int, *,
                  pairs: PairingConfig | None = None, seed: int = 0,
                  format: ExportFormat = "standard") -> list[KtoRow | KtoChatRow]:
    """KTO rows of one problem: one per candidate (``pairs`` decides the candidates), label = its pass
    ratio reaches ``cfg.desirable_min_pass_ratio``."""
    pairs = pairs or PairingConfig()
    prep = prepare_candidates(problem_id, scored, pairs, seed)
    return _kto_rows(problem_id, prompt, prep, cfg, pairs, round, format)


def _kto_rows(problem_id: str, prompt: PromptArg, prep: Prepared, cfg: KtoRowsConfig, pairs: PairingConfig,
              round: int, format: ExportFormat) -> list[KtoRow | KtoChatRow]:
    out: list[KtoRow | KtoChatRow] = []
    for c, label in _kto_candidates(prep.candidates, cfg, pairs):
        common = {"label": label, "problem_id": problem_id, "sample_id": c.sample.sample_id,
                  "pass_ratio": c.pass_ratio, "round": round}
        if format == "conversational":
            text = completion_text(c.sample, pairs)
            out.append(KtoChatRow(prompt=_prompt_messages(prompt, c.sample),
                                  completion=(Message(role="assistant", content=text),), **common))
        else:
            out.append(KtoRow(prompt=_prompt_text(prompt, c.sample),
                              completion=completion_text(c.sample, pairs), **common))
    return out


def greedy_baseline(problem_id: str, scored: Scored) -> tuple[Sample, Execution] | None:
    """CodeRL's baseline for one problem: its greedy sample (``Sample.is_greedy``) with its execution;
    the smallest sample id when there are several. None when the problem has no greedy sample, or its
    run gave no verdict on the policy: a sandbox error (ours, not the policy's), or code that ran no
    kept test. A greedy completion without code counts: its execution is a compile error (class 0)."""
    found = []
    for entry in scored:
        if (not isinstance(entry, tuple) or len(entry) != 2 or not isinstance(entry[0], Sample)
                or not isinstance(entry[1], Execution)):
            continue  # prepare_candidates reports malformed entries
        s, e = entry
        if (s.is_greedy and s.problem_id == problem_id and e.problem_id == problem_id
                and e.sample_id == s.sample_id and e.coderl_class in CODERL_RETURN):
            found.append((s, e))
    if not found:
        return None
    s, e = min(found, key=lambda se: se[0].sample_id)
    if e.outcome == Outcome.SANDBOX_ERROR.value or (s.code is not None and e.total == 0):
        return None
    return s, e


def relative_return(coderl_class: int, baseline: Execution | None) -> float | None:
    """CodeRL's relative return: the program's return minus the greedy baseline's (returns -1, -0.6,
    -0.3, +1 for classes 0-3); None without a baseline. Rounded to 6 places (no 0.30000000000000004)."""
    if baseline is None:
        return None
    return round(CODERL_RETURN[coderl_class] - CODERL_RETURN[baseline.coderl_class], 6)


def reference_passes(oracle_result: Any, kept_test_ids: Sequence[str]) -> bool:
    """Whether a reference solution is known to pass a problem's kept training tests: its sandbox result
    (``oracle_result``: anything with ``test_results`` of ``test_id``/``status``, as validation's
    oracle run returns) holds a ``passed`` status for every one of ``kept_test_ids``, and there is at
    least one. A test it never ran, or a kept test it fails (a dataset's given tests are not dropped by
    the oracle), makes it unknown: no reference row. The caller passes the tests kept after every
    validation step (oracle, agreement), so a test dropped later does not count against it."""
    if not kept_test_ids:
        return False
    statuses = {r.test_id: status_value(r.status)
                for r in getattr(oracle_result, "test_results", ()) or ()}
    return all(statuses.get(t) == TestStatus.PASSED.value for t in kept_test_ids)


def make_critic_rows(problem_id: str, prompt: PromptArg, scored: Scored, cfg: CriticRowsConfig, round: int, *,
                     seed: int = 0, reference: str | None = None) -> list[CriticRow]:
    """CodeRL critic rows of one problem: program -> outcome class, with the greedy baseline.

    One row per executed program (per distinct program with ``cfg.dedupe``): samples without code are
    skipped (the critic classifies programs); sandbox errors are dropped; with dedupe, a program whose
    copies disagree (flaky) is left out. Every row carries the problem's greedy baseline
    (``greedy_baseline``: its class and sample id) and the relative return (``relative_return``), both
    None when the problem has none. The greedy program has a row like any other (relative return 0).

    ``reference``: the problem's reference solution when it is known to pass every kept training test
    (the caller decides, see ``reference_passes``); with ``cfg.include_references`` it joins as a row
    with ``source`` "reference", outcome passed (class 3, pass ratio 1.0) and the prompt the policy saw
    (the problem's samples' stored prompt: it needs at least one executed sample of the problem)."""
    candidates = PairingConfig(dedupe=cfg.dedupe, no_code="skip", include_greedy=True)
    prep = prepare_candidates(problem_id, scored, candidates, seed)
    baseline = greedy_baseline(problem_id, scored)
    base_exec = baseline[1] if baseline is not None else None
    greedy = {"greedy_class": base_exec.coderl_class if base_exec is not None else None,
              "greedy_sample_id": baseline[0].sample_id if baseline is not None else None}
    rows = []
    for c in sorted(prep.candidates, key=lambda c: c.sample.sample_id):
        e = c.execution
        if not c.has_code or c.flaky or e.coderl_class not in CODERL_RETURN:
            continue
        rows.append(CriticRow(
            prompt=prompt if isinstance(prompt, str) else c.sample.prompt,
            code=c.sample.code or "", outcome=e.outcome, coderl_class=e.coderl_class,
            coderl_return=CODERL_RETURN[e.coderl_class], error_type=e.error_type,
            error_line=e.error_line, pass_ratio=e.pass_ratio, problem_id=problem_id,
            sample_id=c.sample.sample_id, round=round, **greedy,
            relative_return=relative_return(e.coderl_class, base_exec), source="sample"))
    stored = sorted((se[0] for se in scored if isinstance(se, tuple) and len(se) == 2
                     and isinstance(se[0], Sample) and se[0].problem_id == problem_id),
                    key=lambda s: s.sample_id)
    if cfg.include_references and reference and reference.strip() and stored:
        passed = CODERL_CLASS[Outcome.PASSED]
        rows.append(CriticRow(
            prompt=prompt if isinstance(prompt, str) else stored[0].prompt,
            code=reference, outcome=Outcome.PASSED.value, coderl_class=passed,
            coderl_return=CODERL_RETURN[passed], error_type=None, error_line=None, pass_ratio=1.0,
            problem_id=problem_id, sample_id=reference_row_id(problem_id, reference), round=round, **greedy,
            relative_return=relative_return(passed, base_exec), source="reference"))
    return rows


def reference_row_id(problem_id: str, reference: str) -> str:
    """The ``sample_id`` of a reference row: a content id of the problem and its reference solution."""
    return content_id("reference", problem_id, reference)


def problem_pair_stats(problem_id: str, scored: Scored, cfg: PairingConfig | None = None,
                       seed: int = 0) -> PairingStats:
    """Counts for the manifest (summed over problems): samples, dropped ones, distinct programs,
    passing/failing programs, flaky ones, whether all pass / all fail, and pairs made."""
    cfg = cfg or PairingConfig()
    prep = prepare_candidates(problem_id, scored, cfg, seed)
    return _stats(problem_id, prep, len(select_pairs(prep.candidates, cfg)))


def _stats(problem_id: str, prep: Prepared, n_pairs: int) -> PairingStats:
    usable = [c for c in prep.candidates if not c.flaky]
    passing = sum(1 for c in usable if c.pass_ratio >= 1.0)
    failing = sum(1 for c in usable if c.pass_ratio < 1.0)
    return PairingStats(
        problem_id=problem_id, samples=prep.samples, sandbox_errors=prep.sandbox_errors,
        no_tests=prep.no_tests, no_code=prep.no_code, invalid=len(prep.errors),
        distinct_programs=len(prep.candidates), passing=passing, failing=failing,
        flaky=len(prep.candidates) - len(usable), all_pass=passing > 0 and failing == 0,
        all_fail=failing > 0 and passing == 0, pairs=n_pairs)


def export_prompt(problem: Problem, format: ExportFormat, prompt: PromptConfig) -> PromptArg:
    """The prompt column of a problem's rows: exactly what the policy saw.

    standard: None, so each row takes its sample's stored prompt (the text ``render_prompt`` made for
    the policy). conversational: the messages the policy's chat template rendered (``prompt_messages``
    with the same ``prompt`` section)."""
    if format == "conversational":
        return tuple(Message(role=m["role"], content=m["content"])
                     for m in prompt_messages(prompt, problem.prompt, problem.entry_point))
    return None


@dataclasses.dataclass
class PairingResult:
    dpo: list[DpoRow | DpoChatRow]
    kto: list[KtoRow | KtoChatRow]
    critic: list[CriticRow]
    stats: PairingStats
    errors: list[ErrorRecord]


def pair_problem(problem_id: str, prompt: PromptArg, scored: Scored, *, pairs: PairingConfig,
                 kto: KtoRowsConfig, critic: CriticRowsConfig, format: ExportFormat, seed: int,
                 round: int, reference: str | None = None) -> PairingResult:
    """Everything for one problem in one call (what the Beam stage maps over grouped samples).
    Invalid entries come back as ErrorRecords (stage export) instead of raising. KTO and critic rows
    are empty when their section is disabled. ``reference``: see ``make_critic_rows``."""
    prep = prepare_candidates(problem_id, scored, pairs, seed)
    selected = select_pairs(prep.candidates, pairs)
    return PairingResult(
        dpo=_dpo_rows(problem_id, prompt, selected, pairs, round, format),
        kto=_kto_rows(problem_id, prompt, prep, kto, pairs, round, format) if kto.enabled else [],
        critic=(make_critic_rows(problem_id, prompt, scored, critic, round, seed=seed, reference=reference)
                if critic.enabled else []),
        stats=_stats(problem_id, prep, len(selected)),
        errors=prep.errors,
    )


__all__ = [
    "Candidate",
    "CriticRowsConfig",
    "ExportConfig",
    "ExportFormat",
    "KtoRowsConfig",
    "PairingConfig",
    "PairingResult",
    "completion_text",
    "export_prompt",
    "greedy_baseline",
    "make_critic_rows",
    "make_dpo_rows",
    "make_kto_rows",
    "normalize_program",
    "pair_problem",
    "prepare_candidates",
    "problem_pair_stats",
    "reference_passes",
    "reference_row_id",
    "relative_return",
    "select_pairs",
]
