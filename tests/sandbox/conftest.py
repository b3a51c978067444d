"""Shared sandboxes for the sandbox tests (started once per session: slots are warm interpreters)."""

import pytest
from plumline.sandbox import Sandbox, SandboxLimits

HOSTILE_LIMITS = SandboxLimits(timeout_s=8.0, test_timeout_s=2.0, cpu_s=6, memory_mb=512, max_pids=48,
                               output_bytes=256 * 1024, tmpfs_mb=32)


@pytest.fixture(scope="session")
def sb():
    with Sandbox(limits=HOSTILE_LIMITS, workers=2) as box:
        yield box


@pytest.fixture(scope="session")
def sb1():
    """One slot, so consecutive runs land in the same sandbox (persistence tests)."""
    with Sandbox(limits=HOSTILE_LIMITS, workers=1) as box:
        yield box


