"""Every record type, its Arrow schema and validation: the one place where column names live."""

from .base import Json, Record, RecordError, content_id, derive_seed, from_table, to_table
from .records import (
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
    "Execution", "Json", "KtoChatRow", "KtoRow", "Message", "Outcome", "PairingStats", "Problem",
    "Record", "RecordError", "Sample", "Stage", "TestCase", "TestDropReason", "TestKind", "TestOrigin",
    "TestResult", "TestSpec", "TestStatus", "TestSynthesisStats",
    "content_id", "derive_seed", "from_table", "replace", "to_table",
]
