"""plumline's executor for untrusted Python: bubblewrap + cgroups + seccomp + rlimits, a warm
supervisor per slot that forks a test process and a candidate process per execution (the tests file runs
in the first, calls reach the second by message passing), verdicts decided outside the candidate's reach.
No Beam import. See sandbox/README.md for the threat model and the guarantees per test shape."""

from .config import SandboxConfig
from .core import ProgramResult, Sandbox, SandboxLimits, run_program
from .isolation import IsolationReport, probe_isolation
from .verdict import PreparedTest, prepare_test

__all__ = ["IsolationReport", "PreparedTest", "ProgramResult", "Sandbox", "SandboxConfig", "SandboxLimits",
           "prepare_test", "probe_isolation", "run_program"]
