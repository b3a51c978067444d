"""Every record type, its Arrow schema and validation: the one place where column names live."""

from .base import (
    Json,
    Record,
    RecordError,
    canonical_order,
    comparable_rows,
    content_id,
    derive_seed,
    from_table,
    to_table,
)
from .records import (
    CODERL_CLASS,
    CODERL_RETURN,
    CriticRow,
    DpoChatRow,
    DpoRow,
    ErrorKind,
    ErrorRecord,
    EvalSample,
    Execution,
    KtoChatRow,
    KtoRow,
    Message,
    Outcome,
    PairingStats,
    Problem,
    Sample,
    Stage,
    TestCase,
    TestDropReason,
    TestKind,
    TestOrigin,
    TestResult,
    TestSpec,
    TestStatus,
    TestSynthesisStats,
    replace,
)

__all__ = [
    "CODERL_CLASS", "CODERL_RETURN", "CriticRow", "DpoChatRow", "DpoRow", "ErrorKind", "ErrorRecord",
    "EvalSample", "Execution", "Json", "KtoChatRow", "KtoRow", "Message", "Outcome", "PairingStats",
    "Problem", "Record", "RecordError", "Sample", "Stage", "TestCase", "TestDropReason", "TestKind",
    "TestOrigin", "TestResult", "TestSpec", "TestStatus", "TestSynthesisStats",
    "canonical_order", "comparable_rows", "content_id", "derive_seed", "from_table", "replace", "to_table",
]
