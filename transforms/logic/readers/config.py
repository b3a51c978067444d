"""One source of problems (the ``sources`` list of a run config)."""

from __future__ import annotations

import os
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Format = Literal["jsonl", "parquet", "hf_disk", "humaneval", "mbpp", "auto"]


class SourceConfig(BaseModel):
    """One input of problems. Several sources may be combined; problem ids are deduplicated across them."""

    model_config = ConfigDict(extra="forbid")

    path: str = Field(
        default="bundled:easy",
        description="File, glob, or saved HF dataset folder; or a bundled set: bundled:humaneval, "
                    "bundled:easy, bundled:easy-train, bundled:easy-eval.",
    )
    format: Format = Field(
        default="auto",
        description="jsonl, parquet, hf_disk, humaneval, mbpp, or auto (from the extension / bundled name).",
    )
    field_map: dict[str, str] = Field(
        default_factory=dict,
        description="Problem field (or humaneval/mbpp column) -> input column, e.g. {'prompt': 'question'}.",
    )
    source: str = Field(
        default="", description="Name recorded in Problem.source; empty: the row's own, else the file name."
    )
    limit: int | None = Field(
        default=None, ge=0, description="Keep at most this many problems of this source (first by location)."
    )
    split: str | None = Field(
        default=None,
        description="Split to read when an hf_disk path holds a DatasetDict (default: 'test' or the only "
                    "one).",
    )
    extra_columns: Literal["metadata", "ignore", "error"] = Field(
        default="metadata",
        description="Input columns that map to no Problem field: fold into metadata, drop, or reject the "
                    "row.",
    )
    max_line_bytes: int = Field(
        default=64 << 20, ge=1,
        description="Longest JSONL line (bytes, newline excluded) that is parsed; a longer line becomes a "
                    "bad_input error naming it, skipped without being held or parsed. Also bounds a file "
                    "holding one JSON list, which is parsed whole. Default 64 MiB.",
    )
    mbpp_example_in_prompt: bool = Field(
        default=True,
        description="MBPP: append the first test to the prompt (the usual MBPP prompt) and mark it as an "
                    "example test.",
    )


def default_source_name(cfg: SourceConfig, path: str) -> str:
    """The name recorded in ``Problem.source``: the configured one, a bundled set's, else the file name."""
    if cfg.source:
        return cfg.source
    if cfg.path.startswith("bundled:"):
        return {"humaneval": "humaneval", "easy": "plumline-easy", "easy-train": "plumline-easy-train",
                "easy-eval": "plumline-easy-eval"}.get(cfg.path.split(":", 1)[1], cfg.path)
    name = os.path.basename(path.rstrip("/")) or path
    for ext in (".gz", ".jsonl", ".json", ".ndjson", ".parquet", ".pq"):
        if name.lower().endswith(ext):
            name = name[: -len(ext)]
    return name
