"""Fixtures of the pipeline tests: a test double for a remote model, the canned OpenAI-compatible
server of bench/canned_openai.py (known right and wrong answers for the bundled easy problems)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location(
    "canned_openai", Path(__file__).resolve().parents[2] / "bench" / "canned_openai.py")
canned_openai = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(canned_openai)
CannedModel, serve, load_easy, wrong_test = (canned_openai.CannedModel, canned_openai.serve,
                                             canned_openai.load_easy, canned_openai.wrong_test)


@pytest.fixture(scope="module")
def canned():
    """(CannedModel, base_url) of a canned OpenAI-compatible server on 127.0.0.1."""
    model = CannedModel()
    server, url = serve(model)
    yield model, url
    server.shutdown()
