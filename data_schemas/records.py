"""Every record plumline reads or writes. Column names live here and nowhere else:
other packages use attributes of these dataclasses and ``Record.to_dict`` / ``from_dict``.

Ids are content hashes (``content_id``) so reruns reproduce them and resumed runs skip done work.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, ClassVar

from .base import Json, Record, RecordError, content_id


class Outcome(str, Enum):
    """Outcome of one program against its tests, decided in the trusted parent."""

    PASSED = "passed"
    FAILED = "failed"
    RUNTIME_ERROR = "runtime_error"
    COMPILE_ERROR = "compile_error"
    TIMEOUT = "timeout"
    MEMORY_LIMIT = "memory_limit"
    OUTPUT_LIMIT = "output_limit"
    SANDBOX_ERROR = "sandbox_error"


class TestStatus(str, Enum):
    """Status of one test of one program."""

    __test__ = False  # not a pytest class

    PASSED = "passed"
    FAILED = "failed"  # an assertion (or output comparison) failed
    ERROR = "error"  # the test raised something other than AssertionError
    TIMEOUT = "timeout"
    NOT_RUN = "not_run"  # the program died (or could not compile) before this test ran


def status_value(value: Any) -> str:
    """The plain string of a status or outcome, given as its enum (``TestStatus.PASSED``,
    ``Outcome.FAILED``: ``str()`` of those is ``"TestStatus.PASSED"``) or already as the string a
    record holds (``"passed"``)."""
    return str(getattr(value, "value", value))


class TestKind(str, Enum):
    __test__ = False
    ASSERT = "assert"  # a snippet of asserts run after the candidate, in its namespace
    IO = "io"  # stdin text in, expected stdout out (APPS style)
    # a call whose expected output is unknown when the tests are written (no reference solution):
    # execute runs the policy's samples on it and turns it into an assert when they agree
    PROBE = "probe"


class TestOrigin(str, Enum):
    __test__ = False
    SYNTHESIZED = "synthesized"  # written by the test-writer model
    GIVEN = "given"  # shipped with the dataset (hidden tests)
    EXAMPLE = "example"  # taken from the problem text (docstring examples)


class Stage(str, Enum):
    """The stages of a round (see plumline.pipeline.stages for the table that runs them).
    ``ErrorRecord.stage`` and the run folder's stage markers use these names."""

    READ = "read"
    TESTS = "tests"
    SAMPLE = "sample"
    EXECUTE = "execute"
    EXPORT = "export"
    TRAIN = "train"
    EVAL = "eval"  # held-out evaluation of the round's policy (pass@k on the eval sources' own tests)
    PRM = "prm"  # process-supervision labels: binary search over line prefixes (arXiv 2410.17621)


class ErrorKind(str, Enum):
    """What went wrong with one input or element (``ErrorRecord.kind``); ``reason`` says it in words."""

    BAD_INPUT = "bad_input"  # a malformed file or row of a problem source
    MISSING_INPUT = "missing_input"  # no file matches a path, or a file holds no rows
    DUPLICATE_ID = "duplicate_id"  # a problem id seen before (the first one is kept)
    CORRUPT_RECORD = "corrupt_record"  # a row of a round file that fails validation when read back
    PROMPT_FAILED = "prompt_failed"  # a prompt could not be rendered, or is longer than the model takes
    ENGINE_FAILED = "engine_failed"  # the generation backend failed for this request
    NO_CODE = "no_code"  # a completion holds no code
    UNKNOWN_PROBLEM = "unknown_problem"  # samples or tests refer to a problem that was not read
    ORACLE_NOT_APPLIED = "oracle_not_applied"  # the reference solution could not judge the tests
    PROBLEM_SKIPPED = "problem_skipped"  # too few tests survived validation: no executions, no pairs
    CONTAMINATED = "contaminated"  # a training problem that overlaps an eval source (id or prompt text)
    NO_EVAL_TESTS = "no_eval_tests"  # an eval problem without tests of its own: not scored
    INVALID_RECORD = "invalid_record"  # a record a stage produced cannot be stored (e.g. a NUL byte)
    NOT_LABELLED = "not_labelled"  # a program the prm stage cannot label (its lines, its length)
    INTERNAL = "internal"  # an unexpected exception in plumline for this element (a bug: report it)


class TestDropReason(str, Enum):
    """Why a test is not kept (``TestCase.drop_reason``; ``TestCase.drop_detail`` says more)."""

    __test__ = False
    # decided by the reply parser and its static checks
    EMPTY_REPLY = "empty_reply"
    NO_TESTS = "no_tests_in_reply"
    SYNTAX_ERROR = "syntax_error"
    TOO_LONG = "too_long"
    NO_ENTRY_CALL = "no_entry_point_call"
    CALLS_OTHER = "calls_other_function"
    UNDEFINED_NAME = "undefined_name"
    NOT_SELF_CONTAINED = "not_self_contained"
    REDEFINES_ENTRY = "redefines_entry_point"
    DUPLICATE = "duplicate"
    OVER_LIMIT = "over_limit"
    NO_ASSERT = "no_assert"
    GENERATION_FAILED = "generation_failed"
    WRONG_ARITY = "wrong_arity"  # an input with a number of arguments the signature does not take
    # decided when expected outputs are computed (input-first synthesis)
    UNREPRESENTABLE_OUTPUT = "unrepresentable_output"  # the output has no Python literal (or is too long)
    REDUNDANT = "redundant"  # suite reduction: kills no mutant the kept tests do not kill
    # decided by validation
    ORACLE_FAILED = "oracle_failed"
    ORACLE_TIMEOUT = "oracle_timeout"
    ORACLE_ERROR = "oracle_error"
    ORACLE_NOT_RUN = "oracle_not_run"
    AGREEMENT_FAILED = "codet_disagreement"
    NO_AGREEMENT = "no_agreement"  # a probe on which too few of the policy's samples agree


# CodeRL's outcome classes (arXiv 2207.01780): 0 compile error, 1 runtime error, 2 failed tests,
# 3 passed; with their returns.
CODERL_CLASS: dict[Outcome, int] = {
    Outcome.COMPILE_ERROR: 0,
    Outcome.RUNTIME_ERROR: 1,
    Outcome.TIMEOUT: 1,
    Outcome.MEMORY_LIMIT: 1,
    Outcome.OUTPUT_LIMIT: 1,
    Outcome.SANDBOX_ERROR: 1,
    Outcome.FAILED: 2,
    Outcome.PASSED: 3,
}
CODERL_RETURN: dict[int, float] = {0: -1.0, 1: -0.6, 2: -0.3, 3: 1.0}


def _check_enum(record: str, name: str, value: str, enum: type[Enum]) -> None:
    allowed = [e.value for e in enum]
    if value not in allowed:
        raise RecordError(record, name, f"{value!r} is not one of {allowed}")


@dataclass(frozen=True)
class Message(Record):
    """One chat message (TRL's conversational format)."""

    role: str
    content: str


@dataclass(frozen=True)
class TestSpec(Record):
    """The executable part of a test: what the sandbox needs to run it."""

    __test__: ClassVar[bool] = False
    kind: str = TestKind.ASSERT.value
    code: str = ""  # assert snippet (kind=assert)
    stdin: str = ""  # kind=io
    expected_stdout: str = ""  # kind=io
    test_id: str = ""

    def validate(self) -> None:
        _check_enum("TestSpec", "kind", self.kind, TestKind)
        if self.kind == TestKind.ASSERT.value and not self.code.strip():
            raise RecordError("TestSpec", "code", "an assert test needs code")


@dataclass(frozen=True)
class Problem(Record):
    REQUIRED_TEXT: ClassVar[tuple[str, ...]] = ("problem_id", "prompt")

    problem_id: str
    source: str
    prompt: str  # the natural-language problem (with signature/docstring for function problems)
    entry_point: str = ""  # function name; empty for stdin/stdout programs
    starter_code: str = ""
    reference_solution: str | None = None
    given_tests: tuple[TestSpec, ...] = ()  # hidden tests shipped with the dataset
    example_tests: tuple[TestSpec, ...] = ()  # tests shown in the prompt
    metadata: Json = field(default_factory=dict)

    @staticmethod
    def make_id(source: str, prompt: str, entry_point: str = "") -> str:
        return content_id("problem", source, prompt, entry_point)


@dataclass(frozen=True)
class TestCase(Record):
    """One test of a problem's suite, with where it came from and whether validation kept it."""

    __test__: ClassVar[bool] = False
    REQUIRED_TEXT: ClassVar[tuple[str, ...]] = ("test_id", "problem_id")

    test_id: str
    problem_id: str
    kind: str
    code: str
    origin: str
    stdin: str = ""
    expected_stdout: str = ""
    kept: bool = True
    drop_reason: str | None = None  # a TestDropReason value when not kept
    drop_detail: str = ""  # the drop reason in words (e.g. which name is undefined)
    # Reserved tests (e.g. a dataset's own) are for evaluation only, never training signal.
    for_training: bool = True
    writer: str = ""  # the model that wrote it (synthesized) or the dataset name

    def validate(self) -> None:
        super().validate()
        _check_enum("TestCase", "kind", self.kind, TestKind)
        _check_enum("TestCase", "origin", self.origin, TestOrigin)
        if self.drop_reason is not None:
            _check_enum("TestCase", "drop_reason", self.drop_reason, TestDropReason)

    @staticmethod
    def make_id(problem_id: str, origin: str, kind: str, code: str, stdin: str = "",
                expected_stdout: str = "") -> str:
        """The id of a test of one origin: a dataset's hidden test and a docstring example with the
        same code are two tests (one for evaluation, one for training), so the origin is part of it."""
        return content_id("test", problem_id, TestOrigin(origin).value, kind, code, stdin, expected_stdout)

    @staticmethod
    def content_key(problem_id: str, kind: str, code: str, stdin: str = "", expected_stdout: str = "") -> str:
        """What a test checks, whatever its origin (to skip a synthesized copy of an example test)."""
        return content_id("test-content", problem_id, kind, code, stdin, expected_stdout)

    @property
    def spec(self) -> TestSpec:
        return TestSpec(kind=self.kind, code=self.code, stdin=self.stdin,
                        expected_stdout=self.expected_stdout, test_id=self.test_id)


@dataclass(frozen=True)
class TestSynthesisStats(Record):
    """What test synthesis did for one problem (tests.stats.jsonl; the manifest sums the counts).

    ``written``: synthesized candidate tests found in the replies (duplicates included);
    ``parsed``: those that passed the static checks (duplicates and over_limit included);
    ``kept``/``kept_training``: tests of every origin kept after synthesis (for training);
    ``<origin>_total``/``<origin>_kept``: rows per TestOrigin (duplicates have no row);
    ``dropped_by_reason``: {TestDropReason value: count}, with the reply-level drops (empty reply,
    no tests in reply, generation failed), which are not tests and so not in ``written``."""

    __test__: ClassVar[bool] = False
    REQUIRED_TEXT: ClassVar[tuple[str, ...]] = ("problem_id",)

    problem_id: str
    replies: int = 0
    written: int = 0
    parsed: int = 0
    kept: int = 0
    kept_training: int = 0
    duplicates: int = 0
    given_total: int = 0
    given_kept: int = 0
    example_total: int = 0
    example_kept: int = 0
    synthesized_total: int = 0
    synthesized_kept: int = 0
    dropped_by_reason: Json = field(default_factory=dict)

    def validate(self) -> None:
        super().validate()
        if not isinstance(self.dropped_by_reason, dict):
            raise RecordError("TestSynthesisStats", "dropped_by_reason", "expected an object of counts")
        for reason, n in self.dropped_by_reason.items():
            _check_enum("TestSynthesisStats", "dropped_by_reason", reason, TestDropReason)
            if not isinstance(n, int) or isinstance(n, bool) or n < 0:
                raise RecordError("TestSynthesisStats", "dropped_by_reason",
                                  f"{reason}: {n!r} is not a count")


@dataclass(frozen=True)
class Sample(Record):
    """One completion sampled from the policy for one problem."""

    REQUIRED_TEXT: ClassVar[tuple[str, ...]] = ("sample_id", "problem_id")

    sample_id: str
    problem_id: str
    round: int
    policy: str  # model path or name
    policy_revision: str  # hash of the weights/config, so rounds are traceable
    prompt: str  # the rendered prompt text sent to the model
    completion: str  # raw model output
    code: str | None  # extracted program; None when the completion holds no code
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    temperature: float
    top_p: float
    max_tokens: int
    seed: int | None
    sample_index: int  # index among the n samples of this problem in this round
    is_greedy: bool = False
    backend: str = ""
    # critic-guided sampling: "sampled" (plain), "refined" (a prefix of a passing program continued) or
    # "repaired" (a failing program fixed given its error); the sample it derives from
    origin: str = "sampled"
    parent_sample_id: str | None = None

    @staticmethod
    def make_id(problem_id: str, round: int, policy_revision: str, sample_index: int,
                is_greedy: bool, completion: str) -> str:
        return content_id("sample", problem_id, round, policy_revision, sample_index, is_greedy, completion)


@dataclass(frozen=True)
class TestResult(Record):
    __test__: ClassVar[bool] = False

    test_id: str
    status: str
    duration_s: float = 0.0
    error_type: str | None = None
    error_message: str | None = None
    error_line: int | None = None  # line in the candidate's code where the error was raised


@dataclass(frozen=True)
class Execution(Record):
    """A sample run against its problem's tests in the sandbox."""

    sample_id: str
    problem_id: str
    round: int
    outcome: str
    coderl_class: int
    passed: int  # kept tests passed
    total: int  # kept tests run
    pass_ratio: float  # passed / total over kept tests (0.0 when total is 0)
    test_results: tuple[TestResult, ...]
    isolation_tier: str
    duration_s: float
    error_type: str | None = None  # program-level error (compile error, crash)
    error_line: int | None = None
    stderr_tail: str = ""
    # Evaluation-only tests (e.g. a dataset's own, reserved from training), run in the same job.
    eval_passed: int = 0
    eval_total: int = 0

    def validate(self) -> None:
        _check_enum("Execution", "outcome", self.outcome, Outcome)


@dataclass(frozen=True)
class DpoRow(Record):
    """TRL's standard (string) preference format plus provenance columns."""

    prompt: str
    chosen: str
    rejected: str
    problem_id: str
    chosen_sample_id: str
    rejected_sample_id: str
    chosen_pass_ratio: float
    rejected_pass_ratio: float
    margin: float
    strategy: str
    round: int


@dataclass(frozen=True)
class DpoChatRow(Record):
    """TRL's conversational preference format plus provenance columns."""

    prompt: tuple[Message, ...]
    chosen: tuple[Message, ...]
    rejected: tuple[Message, ...]
    problem_id: str
    chosen_sample_id: str
    rejected_sample_id: str
    chosen_pass_ratio: float
    rejected_pass_ratio: float
    margin: float
    strategy: str
    round: int


@dataclass(frozen=True)
class KtoRow(Record):
    """TRL's unpaired preference format (standard strings)."""

    prompt: str
    completion: str
    label: bool
    problem_id: str
    sample_id: str
    pass_ratio: float
    round: int


@dataclass(frozen=True)
class KtoChatRow(Record):
    prompt: tuple[Message, ...]
    completion: tuple[Message, ...]
    label: bool
    problem_id: str
    sample_id: str
    pass_ratio: float
    round: int


@dataclass(frozen=True)
class CriticRow(Record):
    """CodeRL critic training row: program -> outcome class, with the greedy baseline (CodeRL's
    relative return: this program's return minus the greedy sample's, for the same problem)."""

    SOURCES: ClassVar[tuple[str, ...]] = ("sample", "reference")

    prompt: str
    code: str
    outcome: str  # an Outcome value
    coderl_class: int  # 0 compile error, 1 runtime error, 2 failed tests, 3 passed (CODERL_CLASS)
    coderl_return: float  # CODERL_RETURN of the class: -1, -0.6, -0.3, +1
    error_type: str | None
    error_line: int | None  # line of the program where the error was raised
    pass_ratio: float  # kept tests passed / run
    problem_id: str
    sample_id: str  # the sample's id; for a reference row, a content id of the reference solution
    round: int
    greedy_class: int | None = None  # the problem's greedy sample's class; None: no greedy baseline
    greedy_sample_id: str | None = None
    relative_return: float | None = None  # coderl_return - the greedy's return; None: no greedy baseline
    source: str = "sample"  # "sample" (sampled from the policy) or "reference" (the reference solution)

    def validate(self) -> None:
        super().validate()
        if self.source not in self.SOURCES:
            raise RecordError("CriticRow", "source", f"{self.source!r} is not one of {list(self.SOURCES)}")
        for name in ("coderl_class", "greedy_class"):
            value = getattr(self, name)
            if value is not None and value not in CODERL_RETURN:
                raise RecordError("CriticRow", name, f"{value!r} is not a CodeRL class (0-3)")
        _check_enum("CriticRow", "outcome", self.outcome, Outcome)


@dataclass(frozen=True)
class DenseRewardRow(Record):
    """Per-line rewards of one sample from a trained PRM (``plumline train rewards``): ``rewards[i]``
    is given at the end of ``lines[i]`` (a step as ``data_schemas.steps.split_steps`` makes it)."""

    REQUIRED_TEXT: ClassVar[tuple[str, ...]] = ("sample_id", "problem_id")

    sample_id: str
    problem_id: str
    round: int
    prm_model: str  # the PRM folder that scored the lines
    lines: tuple[str, ...]
    scores: tuple[float, ...]  # the PRM's P(good) at each line's end
    rewards: tuple[float, ...]  # (score - baseline) / number of lines
    baseline: float = 0.0

    def validate(self) -> None:
        super().validate()
        if not len(self.lines) == len(self.scores) == len(self.rewards):
            raise RecordError("DenseRewardRow", "rewards", f"{len(self.lines)} lines, {len(self.scores)} "
                              f"scores and {len(self.rewards)} rewards: one each per line")


@dataclass(frozen=True)
class PrmRow(Record):
    """Step labels of one program (arXiv 2410.17621): a row of ``prm.parquet`` in TRL's stepwise-supervision
    format (``prompt``, ``completions`` = the program's steps as ``data_schemas.steps.split_steps`` makes
    them, ``labels`` = one bool per step) plus provenance. ``labels[i]`` is True while a passing program
    can still be completed from the prefix ending with step i; ``first_bad_step`` is the first False
    (None: the program passes, every label True). ``probed[j]`` is the prefix length (steps) of the
    j-th probe and ``probe_passes[j]`` how many of its ``k`` completions passed every kept test."""

    REQUIRED_TEXT: ClassVar[tuple[str, ...]] = ("sample_id", "problem_id")

    prompt: str  # the sample's prompt: exactly the text the policy saw
    completions: tuple[str, ...]
    labels: tuple[bool, ...]
    problem_id: str
    sample_id: str
    round: int
    first_bad_step: int | None
    k: int  # completions per probed prefix
    probed: tuple[int, ...] = ()
    probe_passes: tuple[int, ...] = ()
    outcome: str = Outcome.FAILED.value  # the program's own outcome (execute stage)

    def validate(self) -> None:
        super().validate()
        _check_enum("PrmRow", "outcome", self.outcome, Outcome)
        if not self.completions or len(self.labels) != len(self.completions):
            raise RecordError("PrmRow", "labels", f"{len(self.labels)} labels for {len(self.completions)} "
                                                  "steps: one per step, at least one step")
        if len(self.probed) != len(self.probe_passes):
            raise RecordError("PrmRow", "probe_passes", f"{len(self.probe_passes)} values for "
                                                        f"{len(self.probed)} probes")
        first = self.labels.index(False) if False in self.labels else None
        if self.first_bad_step != first or (first is not None and any(self.labels[first:])):
            raise RecordError("PrmRow", "first_bad_step", f"{self.first_bad_step!r} does not fit the labels "
                                                          "(True up to the first bad step, False from it on)")


@dataclass(frozen=True)
class PrmStats(Record):
    """What the prm stage did for one problem (selection) or one batch of programs (labelling); the
    manifest's ``prm`` section sums them. ``probe_levels``: engine calls (one per probe level of a
    batch); ``completions``: continuations asked for; ``executions``: those that held code and ran."""

    scope: str  # "problem <id>", "selection" or "batch <first sample id>"
    failing: int = 0  # failing programs (with code and a verdict) in selected problems
    passing: int = 0  # passing programs in selected problems
    duplicates: int = 0  # programs with the same code as another of their problem: labelled once
    candidates: int = 0  # programs selected for labelling (before max_programs)
    over_budget: int = 0  # candidates left out by prm.max_programs
    programs: int = 0  # programs handed to labelling
    not_labelled: int = 0  # no row: lines not in the completion, too long, engine or sandbox failure
    rows: int = 0
    probe_levels: int = 0
    probes: int = 0
    completions: int = 0
    executions: int = 0
    passed_completions: int = 0
    duration_s: float = 0.0  # labelling wall time (generation and execution)


@dataclass(frozen=True)
class ReferenceVerdict(Record):
    """Whether a problem's reference solution passed every kept training test when the execute stage
    ran it as the oracle (``reference_verdicts.parquet``, internal): the export stage adds the reference
    to the critic rows as a "passed" program only when it did (``critic.rows.include_references``)."""

    REQUIRED_TEXT: ClassVar[tuple[str, ...]] = ("problem_id",)

    problem_id: str
    round: int
    passed: bool
    kept_tests: int  # kept training tests the verdict is over
    detail: str = ""  # why not, in words


@dataclass(frozen=True)
class PairingStats(Record):
    """Per-problem counts of the export stage (summed into the manifest's ``pairs`` section)."""

    problem_id: str
    samples: int = 0
    sandbox_errors: int = 0
    no_tests: int = 0
    no_code: int = 0
    invalid: int = 0
    distinct_programs: int = 0
    passing: int = 0
    failing: int = 0
    flaky: int = 0
    all_pass: bool = False  # every usable program passes: no pair possible
    all_fail: bool = False  # every usable program fails: no pair possible
    pairs: int = 0


@dataclass(frozen=True)
class EvalSample(Record):
    """One completion of the evaluated policy for one held-out problem, run against the problem's own
    (given) tests: a row of ``eval_samples.parquet`` (``plumline eval`` and the round's eval stage)."""

    REQUIRED_TEXT: ClassVar[tuple[str, ...]] = ("sample_id", "problem_id")

    sample_id: str
    problem_id: str
    source: str  # Problem.source: pass@k is reported per source
    round: int
    policy: str  # model path or name
    policy_revision: str
    is_greedy: bool
    sample_index: int
    code: str | None  # the extracted program; None when the completion holds no code
    passed: bool  # every given test passed
    outcome: str  # an Outcome value
    tests_passed: int
    tests_total: int
    completion: str = ""
    finish_reason: str = ""
    completion_tokens: int = 0
    error_type: str | None = None
    duration_s: float = 0.0
    prompt: str = ""  # the rendered prompt the policy saw (what a critic or PRM scores the code after)
    origin: str = "sampled"  # Sample.origin: sampled, refined or repaired (critic-guided sampling)

    def validate(self) -> None:
        super().validate()
        _check_enum("EvalSample", "outcome", self.outcome, Outcome)


@dataclass(frozen=True)
class ErrorRecord(Record):
    """One line of errors.jsonl: an input or element that could not be processed."""

    stage: str  # a Stage value: the stage that met the error
    kind: str  # an ErrorKind value: what went wrong, for counting
    reason: str  # the same in words, for a person
    input: str = ""  # file:line, or an id
    problem_id: str | None = None
    sample_id: str | None = None
    detail: str = ""  # e.g. the offending text, truncated

    def __post_init__(self) -> None:
        super().__post_init__()
        # An error line quotes bad input for a person: NUL bytes and lone surrogates are escaped so
        # that the line itself can always be written and read back.
        for name in ("reason", "input", "detail"):
            value = getattr(self, name)
            if isinstance(value, str) and ("\x00" in value or _has_surrogate(value)):
                safe = value.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")
                object.__setattr__(self, name, safe)

    def validate(self) -> None:
        super().validate()
        _check_enum("ErrorRecord", "stage", self.stage, Stage)
        _check_enum("ErrorRecord", "kind", self.kind, ErrorKind)


def _has_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def replace(record: Any, **changes: Any) -> Any:
    return dataclasses.replace(record, **changes)
