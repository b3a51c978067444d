"""The rows of one problem's tests: the dataset's own (``given``), the examples (``example``) and the
synthesized ones (kept and dropped, each with its ``TestDropReason``), deduplicated across origins,
and the per-problem ``TestSynthesisStats``."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from plumline.data_schemas import (
    Problem,
    TestCase,
    TestDropReason,
    TestKind,
    TestOrigin,
    TestSynthesisStats,
)
from plumline.transforms.logic.synthesis.checks import normalize_test
from plumline.transforms.logic.synthesis.config import TestSynthesisConfig
from plumline.transforms.logic.synthesis.examples import extract_example_tests
from plumline.transforms.logic.synthesis.parser import (
    REPLY_DROPS,
    STATIC_DROPS,
    DroppedTest,
    ParsedTests,
    parse_replies,
)

_DETAIL_MAX = 300


def make_test_cases(problem: Problem, parsed: ParsedTests, writer: str = "", *,
                    exclude_ids: Iterable[str] = ()) -> list[TestCase]:
    """Rows (origin ``synthesized``) for the parsed tests of one problem: kept ones and dropped ones
    with their reason (a reply without tests gets one row too, so it can be looked at).

    Duplicates are counted (see ``problem_test_stats``) but get no row: their id (a content hash)
    would be the id of the test they duplicate. Tests whose ``TestCase.content_key`` is in
    ``exclude_ids`` (tests of another origin) are skipped the same way."""
    pid, kind, origin = problem.problem_id, TestKind.ASSERT.value, TestOrigin.SYNTHESIZED.value
    rows: dict[str, TestCase] = {}
    excluded = set(exclude_ids)
    for code in parsed.kept:
        tid = TestCase.make_id(pid, origin, kind, code)
        if TestCase.content_key(pid, kind, code) not in excluded and tid not in rows:
            rows[tid] = TestCase(test_id=tid, problem_id=pid, kind=kind, code=code, origin=origin,
                                 kept=True, drop_reason=None, for_training=True, writer=writer)
    for d in parsed.dropped:
        if d.reason == TestDropReason.DUPLICATE:
            continue
        code = d.code if d.code.strip() else f"# {d.reason.value}"
        tid = TestCase.make_id(pid, origin, kind, code)
        if TestCase.content_key(pid, kind, code) in excluded or tid in rows:
            continue
        rows[tid] = TestCase(test_id=tid, problem_id=pid, kind=kind, code=code, origin=origin, kept=False,
                             drop_reason=d.reason, drop_detail=d.detail[:_DETAIL_MAX], for_training=True,
                             writer=writer)
    return list(rows.values())


def given_test_cases(problem: Problem, role: str = "eval") -> list[TestCase]:
    """The dataset's own tests as rows of origin ``given``. With role ``eval`` they are reserved
    (for_training False: evaluation only, never training signal); ``train``/``both`` use them for
    training too (the record has one flag, so both mean "also training")."""
    if role not in ("train", "eval", "both"):
        raise ValueError(f"given_tests_role must be train, eval or both, got {role!r}")
    out: dict[str, TestCase] = {}
    for spec in problem.given_tests:
        tid = TestCase.make_id(problem.problem_id, TestOrigin.GIVEN.value, spec.kind, spec.code, spec.stdin,
                               spec.expected_stdout)
        out.setdefault(tid, TestCase(
            test_id=tid, problem_id=problem.problem_id, kind=spec.kind, code=spec.code,
            origin=TestOrigin.GIVEN.value, stdin=spec.stdin, expected_stdout=spec.expected_stdout,
            kept=True, for_training=role != "eval", writer=problem.source))
    return list(out.values())


def example_test_cases(problem: Problem, use_text: bool = True) -> list[TestCase]:
    """Example tests: those the dataset lists as shown in the prompt, plus (``use_text``) those
    extracted from the problem text; origin ``example``, usable for training."""
    out: dict[str, TestCase] = {}
    seen: set[str] = set()
    for spec in problem.example_tests:
        tid = TestCase.make_id(problem.problem_id, TestOrigin.EXAMPLE.value, spec.kind, spec.code, spec.stdin,
                               spec.expected_stdout)
        seen.add(normalize_test(spec.code))
        out.setdefault(tid, TestCase(
            test_id=tid, problem_id=problem.problem_id, kind=spec.kind, code=spec.code,
            origin=TestOrigin.EXAMPLE.value, stdin=spec.stdin, expected_stdout=spec.expected_stdout,
            kept=True, writer=problem.source))
    if use_text:
        for code in extract_example_tests(problem):
            if code in seen:
                continue
            seen.add(code)
            tid = TestCase.make_id(problem.problem_id, TestOrigin.EXAMPLE.value, TestKind.ASSERT.value, code)
            out.setdefault(tid, TestCase(test_id=tid, problem_id=problem.problem_id,
                                         kind=TestKind.ASSERT.value, code=code,
                                         origin=TestOrigin.EXAMPLE.value, kept=True, writer="problem_text"))
    return list(out.values())


@dataclass
class ProblemTests:
    """All tests of one problem after synthesis, and its statistics (which also count what has no row)."""

    tests: list[TestCase]
    stats: TestSynthesisStats


def assemble_problem_tests(problem: Problem, replies: Sequence[str] | None, cfg: TestSynthesisConfig,
                           writer: str = "", generation_error: str | None = None) -> ProblemTests:
    """Given, example and synthesized tests of one problem, deduplicated across origins (a synthesized
    test equal to a given or example one is a duplicate: given tests stay reserved, examples keep their
    origin). ``replies`` None means synthesis was off or impossible (no entry point); each reply is
    the full text to parse (a plain-text prompt's prefix already prepended, see ``reply_prefix``)."""
    given = given_test_cases(problem, cfg.given_tests_role)
    examples = example_test_cases(problem, cfg.use_examples and bool(problem.entry_point))
    seen = {normalize_test(t.code) for t in given + examples if t.kind == TestKind.ASSERT.value}
    synthesized: list[TestCase] = []
    parsed = ParsedTests()
    if generation_error is not None:
        parsed.dropped.append(DroppedTest("", TestDropReason.GENERATION_FAILED,
                                          generation_error[:_DETAIL_MAX]))
    elif replies is not None:
        parsed = parse_replies(list(replies), problem.entry_point, cfg.max_test_chars,
                               cfg.max_tests_per_problem, seen=seen)
        synthesized = make_test_cases(problem, parsed, writer,
                                      exclude_ids=[TestCase.content_key(t.problem_id, t.kind, t.code, t.stdin,
                                                                        t.expected_stdout)
                                                   for t in given + examples])
    tests = given + examples + synthesized
    # identical snippets collapse into one row (same content id): count the extra ones as duplicates
    rows_wanted = len(parsed.kept) + sum(d.reason != TestDropReason.DUPLICATE and d.reason not in REPLY_DROPS
                                         for d in parsed.dropped)
    collapsed = rows_wanted - sum(t.drop_reason not in REPLY_DROPS for t in synthesized)
    duplicates = sum(d.reason == TestDropReason.DUPLICATE for d in parsed.dropped) + max(0, collapsed)
    reply_drops = Counter(d.reason.value for d in parsed.dropped if d.reason in REPLY_DROPS)
    stats = problem_test_stats(problem.problem_id, tests, duplicates=duplicates,
                               replies=len(replies) if replies is not None else 0, reply_drops=reply_drops)
    return ProblemTests(tests=tests, stats=stats)


def problem_test_stats(problem_id: str, tests: Sequence[TestCase], *, duplicates: int = 0, replies: int = 0,
                       reply_drops: Mapping[str, int] | None = None) -> TestSynthesisStats:
    """Per-problem counts for the manifest (see ``TestSynthesisStats`` for what each one means).

    ``duplicates`` and ``reply_drops`` (by TestDropReason value) are the drops that have no row of
    their own; the rows of replies without tests are counted through ``reply_drops``."""
    dropped: Counter[str] = Counter({r: n for r, n in (reply_drops or {}).items() if n})
    if duplicates:
        dropped[TestDropReason.DUPLICATE.value] += duplicates
    totals: Counter[str] = Counter()
    kept: Counter[str] = Counter()
    written = parsed = duplicates  # a duplicate passed the static checks
    for t in tests:
        if t.origin == TestOrigin.SYNTHESIZED.value and t.drop_reason in REPLY_DROPS:
            continue  # a reply, not a test: counted through reply_drops
        totals[t.origin] += 1
        kept[t.origin] += t.kept
        if not t.kept and t.drop_reason is not None:
            dropped[t.drop_reason] += 1
        if t.origin == TestOrigin.SYNTHESIZED.value:
            written += 1
            parsed += t.kept or t.drop_reason not in STATIC_DROPS
    return TestSynthesisStats(
        problem_id=problem_id, replies=replies, written=written, parsed=parsed,
        kept=sum(t.kept for t in tests), kept_training=sum(t.kept and t.for_training for t in tests),
        duplicates=duplicates,
        given_total=totals[TestOrigin.GIVEN.value], given_kept=kept[TestOrigin.GIVEN.value],
        example_total=totals[TestOrigin.EXAMPLE.value], example_kept=kept[TestOrigin.EXAMPLE.value],
        synthesized_total=totals[TestOrigin.SYNTHESIZED.value],
        synthesized_kept=kept[TestOrigin.SYNTHESIZED.value],
        dropped_by_reason=dict(sorted(dropped.items())))
