"""A process holding a shared engine ends even when something hangs at its exit (the registry's exit
deadline): the hang here is native code holding the GIL, so no Python-level handler could ever run."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

SCRIPT = """
import atexit, ctypes, sys
from plumline.llm import BackendConfig, get_shared_backend, registry

registry.EXIT_DEADLINE_S = 2
def hang_holding_the_gil():
    print("HANGING", flush=True)
    ctypes.PyDLL(None).sleep(600)  # libc sleep(); a PyDLL call keeps the GIL
# registered before the engine is made, as a library imported by the engine would: it still runs later
atexit.register(hang_holding_the_gil)
get_shared_backend(BackendConfig(kind="openai", model="m", base_url="http://127.0.0.1:9/v1"))
print("READY", flush=True)
if sys.argv[1] == "raise":
    raise KeyboardInterrupt
"""


@pytest.mark.parametrize("how", ["raise", "return"])
def test_an_exit_that_hangs_ends_at_the_deadline(tmp_path: Path, how: str):
    script = tmp_path / "hangs_at_exit.py"
    script.write_text(SCRIPT)
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, str(script), how], check=False, capture_output=True, text=True,
                          timeout=60)
    took = time.monotonic() - t0
    assert "READY" in proc.stdout and "HANGING" in proc.stdout, proc.stdout + proc.stderr
    assert proc.returncode == 1, (proc.returncode, proc.stderr[-2000:])
    assert took < 30, took
    # the stacks say where it hung
    assert "Timeout (0:00:02)!" in proc.stderr and "hang_holding_the_gil" in proc.stderr, proc.stderr[-2000:]


def test_a_clean_exit_is_not_delayed(tmp_path: Path):
    script = tmp_path / "exits.py"
    script.write_text(SCRIPT.replace("atexit.register(hang_holding_the_gil)", ""))
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, str(script), "return"], check=False, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0 and "Timeout" not in proc.stderr, proc.stderr[-2000:]
    assert time.monotonic() - t0 < 20
