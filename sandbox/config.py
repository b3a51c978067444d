"""``SandboxConfig``: the sandbox part of the run config (the ``sandbox`` section)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from .core import SandboxLimits


class SandboxConfig(BaseModel):
    """How many sandbox slots run at once and the limits of every execution."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    workers: int | None = Field(None, ge=1, description="Sandbox slots per worker process "
                                                        "(default: cores / Beam workers).")
    limits: SandboxLimits = Field(
        default_factory=SandboxLimits,
        description="Limits of one program execution (plumline.sandbox.SandboxLimits).")
