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


class TestKind(str, Enum):
    __test__ = False
    ASSERT = "assert"  # a snippet of asserts run after the candidate, in its namespace
    IO = "io"  # stdin text in, expected stdout out (APPS style)


class TestOrigin(str, Enum):
    __test__ = False
    SYNTHESIZED = "synthesized"  # written by the test-writer model
    GIVEN = "given"  # shipped with the dataset (hidden tests)
    EXAMPLE = "example"  # taken from the problem text (docstring examples)


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
    drop_reason: str | None = None
    # Reserved tests (e.g. a dataset's own) are for evaluation only, never training signal.
    for_training: bool = True
    writer: str = ""  # the model that wrote it (synthesized) or the dataset name

    def validate(self) -> None:
        super().validate()
        _check_enum("TestCase", "kind", self.kind, TestKind)
        _check_enum("TestCase", "origin", self.origin, TestOrigin)

    @staticmethod
    def make_id(problem_id: str, kind: str, code: str, stdin: str = "", expected_stdout: str = "") -> str:
        return content_id("test", problem_id, kind, code, stdin, expected_stdout)

    @property
    def spec(self) -> TestSpec:
        return TestSpec(kind=self.kind, code=self.code, stdin=self.stdin,
                        expected_stdout=self.expected_stdout, test_id=self.test_id)


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
    """CodeRL critic training row: program -> outcome class."""

    prompt: str
    code: str
    outcome: str
    coderl_class: int
    coderl_return: float
    error_type: str | None
    error_line: int | None
    pass_ratio: float
    problem_id: str
    sample_id: str
    round: int


@dataclass(frozen=True)
class PrmRow(Record):
    """Process reward row, TRL's stepwise-supervision format (arXiv 2410.17621 labels)."""

    prompt: str
    completions: tuple[str, ...]  # the program's steps (lines)
    labels: tuple[bool, ...]  # one per step: can this prefix still be completed into a pass?
    first_bad_step: int | None  # None when every step is good
    k: int  # completions sampled per probe
    problem_id: str
    sample_id: str
    round: int

    def validate(self) -> None:
        if len(self.completions) != len(self.labels):
            raise RecordError("PrmRow", "labels", "must have one label per step")


@dataclass(frozen=True)
class ErrorRecord(Record):
    """One line of errors.jsonl: an input or element that could not be processed."""

    stage: str  # read, synthesize_tests, sample, extract, execute, pair, export...
    reason: str
    input: str = ""  # file:line, or an id
    problem_id: str | None = None
    sample_id: str | None = None
    detail: str = ""  # e.g. the offending text, truncated


def records_by_name() -> dict[str, type[Record]]:
    return {cls.__name__: cls for cls in (Message, TestSpec, Problem, TestCase, Sample, TestResult,
                                          Execution, DpoRow, DpoChatRow, KtoRow, KtoChatRow, CriticRow,
                                          PrmRow, ErrorRecord)}


def replace(record: Any, **changes: Any) -> Any:
    return dataclasses.replace(record, **changes)
