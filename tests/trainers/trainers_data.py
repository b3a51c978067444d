"""Row builders for the trainer tests: Parquet exports written from real plumline records,
exactly as the pipeline writes them (``to_table`` + ``pyarrow.parquet.write_table``)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pyarrow.parquet as pq
from plumline.data_schemas.base import to_table
from plumline.data_schemas.records import DpoChatRow, DpoRow, KtoChatRow, KtoRow, Message

GOOD = "def add(a, b):\n    return a + b\n"
BAD = "def add(a, b):\n    return a - b\n"


def _prompt(i: int) -> str:
    return f"Write a function add(a, b) that returns the sum of a and b. (variant {i})\n"


def dpo_rows(n: int = 8) -> list[DpoRow]:
    return [DpoRow(prompt=_prompt(i), chosen=GOOD, rejected=BAD, problem_id=f"p{i}",
                   chosen_sample_id=f"c{i}", rejected_sample_id=f"r{i}", chosen_pass_ratio=1.0,
                   rejected_pass_ratio=0.0, margin=1.0, strategy="best_vs_worst", round=0)
            for i in range(n)]


def dpo_chat_rows(n: int = 8) -> list[DpoChatRow]:
    return [DpoChatRow(prompt=(Message("user", _prompt(i)),),
                       chosen=(Message("assistant", GOOD),), rejected=(Message("assistant", BAD),),
                       problem_id=f"p{i}", chosen_sample_id=f"c{i}", rejected_sample_id=f"r{i}",
                       chosen_pass_ratio=1.0, rejected_pass_ratio=0.0, margin=1.0,
                       strategy="best_vs_worst", round=0)
            for i in range(n)]


def kto_rows(n: int = 8) -> list[KtoRow]:
    return [KtoRow(prompt=_prompt(i), completion=GOOD if i % 2 == 0 else BAD, label=i % 2 == 0,
                   problem_id=f"p{i}", sample_id=f"s{i}", pass_ratio=1.0 if i % 2 == 0 else 0.0, round=0)
            for i in range(n)]


def kto_chat_rows(n: int = 8) -> list[KtoChatRow]:
    return [KtoChatRow(prompt=(Message("user", _prompt(i)),),
                       completion=(Message("assistant", GOOD if i % 2 == 0 else BAD),), label=i % 2 == 0,
                       problem_id=f"p{i}", sample_id=f"s{i}", pass_ratio=1.0 if i % 2 == 0 else 0.0,
                       round=0)
            for i in range(n)]


def write_parquet(path: Path, records: list, cls: type) -> Path:
    pq.write_table(to_table(records, cls), path)
    return path


def file_sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


