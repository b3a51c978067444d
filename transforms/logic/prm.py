"""Process-supervision labels for code (arXiv 2410.17621): the ``prm`` config section, which programs
are labelled, how a program is cut into steps and its steps into completion prefixes, the binary
search over prefixes, and the driver that probes every program of a batch with one engine call per
probe level.

Pure apart from the injected ``generate`` (``GenerationBackend.generate``) and ``run_many`` (the
sandbox's); the Beam stage (``transforms/prm.py``) only groups, batches and opens the engines.

Semantics (documented because they shape the labels):

- **Steps** are the lines of the program the execute stage ran (``Sample.code``), split by
  ``plumline.data_schemas.steps.split_steps``, the one splitter the PRM trainer and scorer use too.
  Blank and comment-only lines join the *next* code line: a comment usually announces the code
  below it and a blank line opens a block, so every step but the last ends with a code line and no
  probe ever ends on a comment (a continuation then starts where the model would write code).
  Trailing blank/comment lines join the last step.
- **Prefix k** is the first k steps. The continuation prompt of prefix k is ``sample.prompt`` plus the
  raw completion up to the end of step k's last line (the prose and fence the model wrote before the
  code included; the newline left for the model to write, see ``ProgramSteps``), so the policy
  continues its own text. Code lines are mapped back to completion
  lines by content (indentation aside); lines the sampler added (the prompt's imports, the problem
  prompt before a bare body) are not in the completion: a prefix ending in them holds no model text
  yet, so it is the empty prefix and shares its verdict unprobed. A program whose code does not
  come back from its completion cut at its last line is skipped with a reason (``not_labelled``).
- **Oracle**: a prefix is *good* when at least one of its ``k`` continuations, extracted the way
  sampling extracts (``assemble_program``), passes every kept training test of the problem. The full
  failing program is bad (its execution says so); the empty prefix is assumed good, because the
  default selection takes only problems with a passing sample. Problems without one (``select:
  failing`` or ``all``) get prefix 0 probed first: when even it is bad, every step is labelled bad
  after one probe instead of a whole search (the labels are the same either way, only cheaper).
- **Search**: the first bad step is found by binary search for the smallest bad prefix b (assuming
  that a bad prefix never becomes good when extended): steps before step b-1 are True, step b-1 and
  every later step False (``first_bad_step = b - 1``, 0-based). With a non-monotone oracle the search
  still ends on an observed good/bad boundary and the labels keep that shape. A program needs
  ``ceil(log2(steps))`` probes (one more with prefix 0); programs needing more than ``max_probes``
  are skipped up front, so no search is cut short.
- Passing programs (``select: all``) are labelled all True without probes.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from plumline.data_schemas import (
    ErrorKind,
    ErrorRecord,
    Execution,
    Outcome,
    Problem,
    Sample,
    Stage,
    TestCase,
    TestSpec,
    derive_seed,
)
from plumline.data_schemas.records import PrmRow, PrmStats
from plumline.data_schemas.steps import split_steps
from plumline.llm import BackendConfig, GenerationRequest, GenerationResult
from plumline.transforms.logic.sampling import SamplingConfig, assemble_program
from pydantic import BaseModel, ConfigDict, Field

Select = Literal["failing_with_passing", "failing", "all"]


class PrmConfig(BaseModel):
    """Process-supervision labels (the run config's ``prm`` section; arXiv 2410.17621): for selected
    programs, a binary search over line prefixes, each probed prefix continued ``k`` times by the policy
    and run against the kept tests. Writes ``prm.parquet`` (TRL's stepwise format). Off by default."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    enabled: bool = Field(False, description="Run the prm stage (after export): step labels in prm.parquet.")
    select: Select = Field(
        "failing_with_passing",
        description="Programs to label: failing_with_passing (failing programs of problems that also have a "
                    "passing sample: the paper's best subset), failing (every failing program; problems "
                    "without a passing sample get prefix 0 probed too), all (plus passing programs, "
                    "labelled all good without probes).")
    k: int = Field(20, ge=1, description="Continuations per probed prefix; a prefix is good if any passes "
                                         "(paper: 20). Each probe costs k completions of up to max_tokens: "
                                         "on a small CPU (2 cores) use 2-4.")
    max_programs: int | None = Field(100, ge=1, description="Most programs labelled per round (taken round "
                                                            "robin over problems, in id order); None: all.")
    max_probes: int = Field(8, ge=1, description="Most probes per program: programs with more than "
                                                 "2**max_probes steps are skipped (not_labelled).")
    max_tokens: int | None = Field(None, ge=1, description="Maximum new tokens per continuation; None: "
                                                           "sampling.max_tokens.")
    temperature: float | None = Field(None, ge=0.0, description="Continuation temperature; None: "
                                                                "sampling.temperature.")
    top_p: float | None = Field(None, gt=0.0, le=1.0, description="Continuation nucleus threshold; None: "
                                                                  "sampling.top_p.")
    batch_size: int = Field(256, ge=1, description="Programs searched together: one engine call and one "
                                                   "sandbox batch per probe level across them.")

    def continuation(self, sampling: SamplingConfig) -> Continuation:
        """The generation settings of the continuations: this section's where set, else sampling's."""
        return Continuation(
            k=self.k, max_probes=self.max_probes,
            temperature=sampling.temperature if self.temperature is None else self.temperature,
            top_p=sampling.top_p if self.top_p is None else self.top_p,
            max_tokens=sampling.max_tokens if self.max_tokens is None else self.max_tokens,
            stop=tuple(sampling.stop))


@dataclass(frozen=True)
class Continuation:
    k: int
    max_probes: int
    temperature: float
    top_p: float
    max_tokens: int
    stop: tuple[str, ...] = ()


def chat_endpoint(policy: BackendConfig) -> bool:
    """Whether ``policy`` is served over an OpenAI chat endpoint, which cannot continue a partial answer
    (the server opens a new assistant turn): prefix continuation needs a text prompt."""
    if policy.kind != "openai":
        return False
    return policy.endpoint == "chat" or (policy.endpoint == "auto" and policy.tokenizer is None
                                         and policy.chat is not False)


def prm_problems(cfg: PrmConfig, policy: BackendConfig) -> list[tuple[str, str]]:
    """(field, why) for every setting that cannot work with ``policy`` (empty: fine)."""
    if cfg.enabled and chat_endpoint(policy):
        why = ("true with an openai policy on the chat endpoint: a chat server cannot continue a partial "
               "answer; set policy.endpoint: completions (with policy.tokenizer for a chat model)")
        return [("prm.enabled", why)]
    return []


# --- steps and prefixes ---------------------------------------------------------------------------


class NotLabelled(ValueError):
    """A program the stage cannot label; the message says why."""


@dataclass(frozen=True)
class ProgramSteps:
    """A program's steps and, for each prefix length k (0..len(steps)), where that prefix ends in the
    raw completion: the continuation of prefix k is prompted with ``completion[:offsets[k]]``.

    A prefix ends at the end of its last line, *before* the newline: the model writes the newline
    itself. Tokenizers merge a newline with the next line's indentation (one token in SmolLM2's), so a
    prompt ending in a bare newline puts the model on a token boundary it rarely saw; with SmolLM2-135M
    on vLLM, continuations of such prefixes closed the code fence at once (0 of 60 passed)."""

    steps: tuple[str, ...]
    offsets: tuple[int, ...]


def _line_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of every ``\\n``-separated line of ``text``, the newline excluded."""
    spans, start = [], 0
    for line in text.split("\n"):
        spans.append((start, start + len(line)))
        start += len(line) + 1
    return spans


def program_steps(problem: Problem, sample: Sample, *, chat: bool) -> ProgramSteps:
    """Steps of ``sample.code`` and the completion offset of every prefix. Raises ``NotLabelled``.

    Code lines are matched to completion lines from the end (the program is usually the last code
    block), by stripped content; the unmatched leading code lines are the sampler's additions. The
    mapping is checked: the completion cut after the last code line must give back the same code."""
    code, completion = sample.code or "", sample.completion
    steps = tuple(split_steps(code))
    if not steps:
        raise NotLabelled("the program has no lines")
    code_lines = code.rstrip().split("\n")
    comp_lines = completion.split("\n")
    spans = _line_spans(completion)
    where: list[int | None] = [None] * len(code_lines)
    j = len(comp_lines) - 1
    for i in range(len(code_lines) - 1, -1, -1):
        want = code_lines[i].strip()
        while j >= 0 and comp_lines[j].strip() != want:
            j -= 1
        if j < 0:
            break
        where[i], j = j, j - 1
    mapped = [w for w in where if w is not None]
    if not mapped:
        raise NotLabelled("no line of the program is in the completion")
    start = max(spans[mapped[0]][0] - 1, 0)  # the empty prefix stops before a newline too
    offsets, last = [start], -1
    for step in steps:
        last += step.count("\n") + 1
        w = where[last]
        offsets.append(start if w is None else spans[w][1])
    if assemble_program(problem, completion[:offsets[-1]], chat=chat) != code:
        raise NotLabelled("the program does not come back from its completion cut after its last line, "
                          "so its lines cannot be mapped to completion prefixes")
    return ProgramSteps(steps=steps, offsets=tuple(offsets))


def probes_needed(n_steps: int, check_empty: bool = False) -> int:
    """Probes a binary search over ``n_steps`` steps needs at most (prefixes 1..n-1; plus prefix 0)."""
    return math.ceil(math.log2(n_steps)) + int(check_empty) if n_steps > 1 else 0


# --- the search -----------------------------------------------------------------------------------


class PrefixSearch:
    """Binary search for the first bad prefix of one program, as a state machine a driver steps.

    ``next_probe()`` is the prefix length (number of steps) to probe next, or None when done;
    ``record(k, ok)`` gives that probe's result. Prefix ``n`` (the whole failing program) is bad;
    prefix 0 is good unless ``check_empty`` (then it is probed first). Invariant: prefix ``lo`` is
    good (or lo is -1: unknown) and prefix ``hi`` bad, each observed or assumed.

    ``same_as_empty``: prefixes 1..same_as_empty hold no text of the model (lines the sampler added,
    such as the problem's own signature), so they are the empty prefix and share its verdict."""

    def __init__(self, n_steps: int, max_probes: int, *, check_empty: bool = False, same_as_empty: int = 0):
        if n_steps < 1:
            raise ValueError("a program needs at least one step")
        if not 0 <= same_as_empty < n_steps:
            raise ValueError(f"same_as_empty must be in [0, {n_steps}), got {same_as_empty}")
        self.n = n_steps
        self.max_probes = max_probes
        self.same_as_empty = same_as_empty
        # a single step left: it is bad whatever prefix 0 gives, so there is nothing to probe
        check_empty = check_empty and n_steps - same_as_empty > 1
        self.lo, self.hi = (-1 if check_empty else same_as_empty), n_steps
        self.probed: list[int] = []
        self.passes: list[int] = []
        self._pending: int | None = None

    def next_probe(self) -> int | None:
        if self._pending is not None:
            return self._pending
        if self.resolved or len(self.probed) >= self.max_probes:
            return None
        self._pending = 0 if self.lo < 0 else (self.lo + self.hi) // 2
        return self._pending

    def record(self, k: int, ok: bool, passes: int | None = None) -> None:
        """The result of probing prefix ``k``: ``ok`` when a continuation passed (``passes`` of them)."""
        if k != self._pending:
            raise ValueError(f"recorded prefix {k}, but the probe asked for is {self._pending}")
        self._pending = None
        self.probed.append(k)
        self.passes.append(int(ok) if passes is None else int(passes))
        if ok:
            self.lo = self.same_as_empty if k == 0 else k
        else:
            self.hi = k
            if k == 0:
                self.lo = 0  # nothing can be completed: every step is bad

    @property
    def resolved(self) -> bool:
        return self.lo >= 0 and (self.hi - self.lo <= 1 or self.hi == 0)

    @property
    def first_bad_step(self) -> int:
        """0-based index of the first bad step: the step that ends the smallest bad prefix."""
        if not self.resolved:
            raise ValueError("the search is not finished")
        return max(self.hi - 1, 0)

    def labels(self) -> list[bool]:
        first = self.first_bad_step
        return [i < first for i in range(self.n)]


def linear_first_bad_step(n_steps: int, good: Callable[[int], bool]) -> int:
    """The reference the search is tested against: probe every prefix 1..n-1 in order."""
    return next((k - 1 for k in range(1, n_steps) if not good(k)), n_steps - 1)


# --- selection ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    """One program to label, with what labelling it needs."""

    problem: Problem
    sample: Sample
    outcome: str
    tests: tuple[TestSpec, ...]  # the problem's kept training tests
    check_empty: bool = False  # the problem has no passing sample: probe prefix 0 too
    passing: bool = False


def _error(kind: ErrorKind, reason: str, sample: Sample | None, problem_id: str) -> ErrorRecord:
    sid = sample.sample_id if sample is not None else None
    return ErrorRecord(stage=Stage.PRM, kind=kind, reason=reason, input=sid or problem_id,
                       problem_id=problem_id, sample_id=sid)


def select_candidates(problem: Problem, tests: Sequence[TestCase], samples: Sequence[Sample],
                      executions: Sequence[Execution], select: Select) -> tuple[list[Candidate], PrmStats]:
    """The programs of one problem to label. Usable programs have code and a verdict on at least one
    kept test that is not our own fault (sandbox_error); identical programs are labelled once."""
    pid = problem.problem_id
    specs = tuple(t.spec for t in sorted(tests, key=lambda t: t.test_id) if t.kept and t.for_training)
    by_id = {e.sample_id: e for e in executions}
    usable: list[tuple[Sample, Execution]] = []
    for s in sorted(samples, key=lambda s: s.sample_id):
        e = by_id.get(s.sample_id)
        if s.code and e is not None and e.total > 0 and e.outcome != Outcome.SANDBOX_ERROR.value:
            usable.append((s, e))
    passing = [(s, e) for s, e in usable if e.outcome == Outcome.PASSED.value]
    failing = [(s, e) for s, e in usable if e.outcome != Outcome.PASSED.value]
    stats = PrmStats(scope=f"problem {pid}", failing=len(failing), passing=len(passing))
    if not specs or (select == "failing_with_passing" and not passing):
        return [], stats
    chosen = failing + (passing if select == "all" else [])
    seen: set[str] = set()
    out: list[Candidate] = []
    for s, e in sorted(chosen, key=lambda se: se[0].sample_id):
        if s.code in seen:
            continue
        seen.add(s.code)
        ok = e.outcome == Outcome.PASSED.value
        out.append(Candidate(problem=problem, sample=s, outcome=e.outcome, tests=specs,
                             check_empty=not passing and not ok, passing=ok))
    return out, PrmStats(scope=stats.scope, failing=stats.failing, passing=stats.passing,
                         duplicates=len(chosen) - len(out), candidates=len(out))


def plan_batches(candidates: Sequence[Candidate], max_programs: int | None,
                 batch_size: int) -> tuple[list[list[Candidate]], PrmStats]:
    """Cap the candidates at ``max_programs`` (round robin over problems in id order, each problem's
    programs in sample-id order, so every problem gets its share) and cut them into batches."""
    by_problem: dict[str, list[Candidate]] = {}
    for c in sorted(candidates, key=lambda c: (c.problem.problem_id, c.sample.sample_id)):
        by_problem.setdefault(c.problem.problem_id, []).append(c)
    order: list[Candidate] = []
    depth = 0
    while len(order) < len(candidates):
        order += [cs[depth] for _, cs in sorted(by_problem.items()) if depth < len(cs)]
        depth += 1
    kept = order if max_programs is None else order[:max_programs]
    batches = [kept[i:i + batch_size] for i in range(0, len(kept), batch_size)]
    return batches, PrmStats(scope="selection", over_budget=len(order) - len(kept))


# --- the driver -----------------------------------------------------------------------------------

Generate = Callable[[Sequence[GenerationRequest]], list[GenerationResult]]
RunMany = Callable[[Sequence[tuple[str, Sequence[TestSpec], str | None]]], list[Any]]


@dataclass
class _Job:
    cand: Candidate
    prog: ProgramSteps
    search: PrefixSearch
    failed: bool = False


@dataclass
class Labelled:
    rows: list[PrmRow] = field(default_factory=list)
    errors: list[ErrorRecord] = field(default_factory=list)
    stats: PrmStats = field(default_factory=lambda: PrmStats(scope="batch"))


def passes_all(result: Any) -> bool:
    """A sandbox ProgramResult that passed every test it ran (and ran at least one)."""
    return (result is not None and result.outcome == Outcome.PASSED.value and result.total > 0
            and result.passed == result.total)


def _row(job: _Job, k: int, labels: list[bool], first: int | None) -> PrmRow:
    s = job.cand.sample
    return PrmRow(prompt=s.prompt, completions=job.prog.steps, labels=tuple(labels), problem_id=s.problem_id,
                  sample_id=s.sample_id, round=s.round, first_bad_step=first, k=k,
                  probed=tuple(job.search.probed), probe_passes=tuple(job.search.passes),
                  outcome=job.cand.outcome)


def label_programs(candidates: Sequence[Candidate], *, generate: Generate, run_many: RunMany,
                   params: Continuation, base_seed: int, chat: bool,
                   clock: Callable[[], float] = time.monotonic) -> Labelled:
    """Label a batch of programs. Per probe level: every unfinished program's current probe, all
    ``k`` continuations of all of them in ONE ``generate`` call, all continuations with code in ONE
    ``run_many`` call, results fed back. Returns rows, error lines and the batch's counts."""
    t0 = clock()
    out = Labelled()
    counts = {"programs": len(candidates), "not_labelled": 0, "rows": 0, "probe_levels": 0, "probes": 0,
              "completions": 0, "executions": 0, "passed_completions": 0}
    jobs: list[_Job] = []
    for c in candidates:
        pid = c.problem.problem_id
        try:
            prog = program_steps(c.problem, c.sample, chat=chat)
        except NotLabelled as exc:
            out.errors.append(_error(ErrorKind.NOT_LABELLED, str(exc), c.sample, pid))
            continue
        n = len(prog.steps)
        free = max(k for k, o in enumerate(prog.offsets) if o == prog.offsets[0])
        search = PrefixSearch(n, params.max_probes, check_empty=c.check_empty, same_as_empty=free)
        if c.passing:
            out.rows.append(_row(_Job(c, prog, search), params.k, [True] * n, None))
            continue
        need = probes_needed(n - free, c.check_empty)
        if need > params.max_probes:
            out.errors.append(_error(ErrorKind.NOT_LABELLED, (
                f"{n - free} steps of the model need {need} probes, more than prm.max_probes "
                f"({params.max_probes})"), c.sample, pid))
            continue
        jobs.append(_Job(c, prog, search))

    while True:
        level = [(job, job.search.next_probe()) for job in jobs if not job.failed]
        level = [(job, k) for job, k in level if k is not None]
        if not level:
            break
        counts["probe_levels"] += 1
        counts["probes"] += len(level)
        requests = []
        for job, k in level:
            s = job.cand.sample
            requests.append(GenerationRequest(
                request_id=f"prm:{s.sample_id}:{k}", prompt=s.prompt + s.completion[:job.prog.offsets[k]],
                n=params.k, temperature=params.temperature, top_p=params.top_p, max_tokens=params.max_tokens,
                seed=derive_seed(base_seed, Stage.PRM.value, s.sample_id, k), stop=params.stop))
        counts["completions"] += params.k * len(requests)
        try:
            results = {r.request_id: r for r in generate(requests)}
        except Exception as exc:  # noqa: BLE001 - the engine failed for this level: these programs only
            reason = f"engine failed: {type(exc).__name__}: {exc}"
            for job, _ in level:
                job.failed = True
                out.errors.append(_error(ErrorKind.ENGINE_FAILED, reason, job.cand.sample,
                                         job.cand.problem.problem_id))
            continue
        exec_jobs: list[tuple[str, Sequence[TestSpec], str | None]] = []
        owners: list[tuple[_Job, int, list[int]]] = []
        for (job, k), req in zip(level, requests, strict=True):
            res = results.get(req.request_id)
            if res is None or res.error:
                job.failed = True
                reason = res.error if res is not None else "no result from engine"
                kind = (ErrorKind.PROMPT_FAILED if reason.startswith(("prompt too long", "invalid request",
                                                                       "tokenization failed"))
                        else ErrorKind.ENGINE_FAILED)
                out.errors.append(_error(kind, f"continuation of prefix {k}: {reason}", job.cand.sample,
                                         job.cand.problem.problem_id))
                continue
            prefix = job.cand.sample.completion[:job.prog.offsets[k]]
            mine: list[int] = []
            for comp in res.completions:
                code = assemble_program(job.cand.problem, prefix + comp.text, chat=chat)
                if code is None:
                    continue
                mine.append(len(exec_jobs))
                exec_jobs.append((code, job.cand.tests, job.cand.problem.entry_point or None))
            owners.append((job, k, mine))
        try:
            results_run = run_many(exec_jobs) if exec_jobs else []
        except Exception as exc:  # noqa: BLE001 - the sandbox failed for this level: these programs only
            for job, _, _ in owners:
                job.failed = True
                out.errors.append(_error(ErrorKind.INTERNAL, f"sandbox failed: {type(exc).__name__}: {exc}",
                                         job.cand.sample, job.cand.problem.problem_id))
            continue
        counts["executions"] += len(exec_jobs)
        for job, k, mine in owners:
            passed = sum(passes_all(results_run[i]) for i in mine)
            counts["passed_completions"] += passed
            job.search.record(k, passed > 0, passed)

    for job in jobs:
        if job.failed:
            continue
        if not job.search.resolved:  # not reached: probes_needed is checked up front
            out.errors.append(_error(ErrorKind.NOT_LABELLED, "probe budget spent before the search ended",
                                     job.cand.sample, job.cand.problem.problem_id))
            continue
        out.rows.append(_row(job, params.k, job.search.labels(), job.search.first_bad_step))
    counts["rows"] = len(out.rows)
    counts["not_labelled"] = len(candidates) - len(out.rows)
    first = min((c.sample.sample_id for c in candidates), default="")
    out.stats = PrmStats(scope=f"batch {first}", duration_s=round(clock() - t0, 3), **counts)
    return out


def summarize(rows: Sequence[PrmRow], stats: Sequence[PrmStats], stage_seconds: float | None = None
              ) -> dict[str, Any]:
    """The manifest's ``prm`` section: what was labelled and what it cost (counts summed over the
    stage's PrmStats; seconds: labelling wall time, and the whole stage's when given)."""
    total = {f: sum(getattr(s, f) for s in stats) for f in PrmStats.field_names() if f != "scope"}
    searched = [r for r in rows if r.first_bad_step is not None]
    programs = total["programs"]
    return {
        "rows": len(rows),
        "steps": sum(len(r.completions) for r in rows),
        "all_good_rows": len(rows) - len(searched),  # passing programs (select: all)
        "mean_first_bad_fraction": round(sum((r.first_bad_step + 1) / len(r.labels) for r in searched)
                                         / len(searched), 4) if searched else None,
        **{k: v for k, v in total.items() if k != "duration_s"},
        "labelling_seconds": round(total["duration_s"], 2),
        "stage_seconds": None if stage_seconds is None else round(stage_seconds, 2),
        "seconds_per_program": round(total["duration_s"] / programs, 2) if programs else None,
    }


__all__ = ["Candidate", "Continuation", "Labelled", "NotLabelled", "PrefixSearch", "PrmConfig",
           "ProgramSteps", "chat_endpoint", "label_programs", "linear_first_bad_step", "plan_batches",
           "prm_problems", "probes_needed", "program_steps", "select_candidates", "summarize"]
