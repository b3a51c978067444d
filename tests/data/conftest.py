"""Shared fixtures of tests/data (the builders live in data_builders.py so test modules can import them)."""

from data_builders import write_jsonl  # noqa: F401  (fixture re-export)
