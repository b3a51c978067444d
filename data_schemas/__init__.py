"""Every record type, its Arrow schema and validation: the one place where column names live."""

from .base import Json, Record, RecordError, content_id, from_table, to_table
from .records import (
    CODERL_CLASS,
    CODERL_RETURN,
    CriticRow,
    DpoChatRow,
    DpoRow,
    ErrorRecord,
    Execution,
    KtoChatRow,
    KtoRow,
    Message,
    Outcome,
    PrmRow,
    Problem,
    Sample,
    TestCase,
    TestKind,
    TestOrigin,
    TestResult,
    TestSpec,
    TestStatus,
    records_by_name,
    replace,
)

__all__ = [
    "CODERL_CLASS", "CODERL_RETURN", "CriticRow", "DpoChatRow", "DpoRow", "ErrorRecord", "Execution",
    "Json", "KtoChatRow", "KtoRow", "Message", "Outcome", "PrmRow", "Problem", "Record", "RecordError",
    "Sample", "TestCase", "TestKind", "TestOrigin", "TestResult", "TestSpec", "TestStatus",
    "content_id", "from_table", "records_by_name", "replace", "to_table",
]
