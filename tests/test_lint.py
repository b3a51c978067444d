"""The code base stays clean under the project's pinned ruff (default rules plus line length, see
pyproject.toml), so CI catches what a reviewer would otherwise have to."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_check_is_clean():
    ruff = Path(sys.executable).with_name("ruff")
    if not ruff.exists():
        pytest.skip("ruff is not installed in this environment (it comes with the dev extra)")
    res = subprocess.run([str(ruff), "check", "--output-format", "concise", str(ROOT)],
                         capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
