"""vLLM logits processor that applies top-p with ``nucleus.apply_top_p_`` instead of a full sort.

Installed by ``VLLMBackend`` on CPU: a request then carries ``top_p=1.0`` for vLLM and its real top-p in
``SamplingParams.extra_args[EXTRA_ARG]``. vLLM runs argmax-invariant processors after the temperature and
before its own top-k/top-p, which is where top-p belongs, and only for requests that sample (greedy
requests never carry the argument). Loaded in the engine process by name (``FQCN``), so it imports vLLM.
"""

from __future__ import annotations

from typing import Any

import torch
from vllm import SamplingParams
from vllm.v1.sample.logits_processor import BatchUpdate, LogitsProcessor
from vllm.v1.sample.logits_processor.builtin import process_dict_updates

from .nucleus import apply_top_p_

EXTRA_ARG = "plumline_top_p"
FQCN = "plumline.llm.vllm_nucleus:NucleusTopP"


def requested_top_p(params: SamplingParams) -> float | None:
    """The top-p a request asks this processor for, or None (absent, or 1: no filtering)."""
    value = (params.extra_args or {}).get(EXTRA_ARG)
    if value is None or float(value) >= 1.0:
        return None
    return float(value)


class NucleusTopP(LogitsProcessor):
    def __init__(self, vllm_config: Any, device: torch.device, is_pin_memory: bool) -> None:
        self.top_p_by_row: dict[int, float] = {}
        self._rows: torch.Tensor | None = None
        self._top_p: torch.Tensor | None = None
        self.device = device

    @classmethod
    def validate_params(cls, sampling_params: SamplingParams) -> None:
        value = (sampling_params.extra_args or {}).get(EXTRA_ARG)
        if value is not None and not 0.0 < float(value) <= 1.0:
            raise ValueError(f"{EXTRA_ARG} must be in (0, 1], got {value!r}")

    def is_argmax_invariant(self) -> bool:
        return True  # the most likely token is always inside the nucleus

    def update_state(self, batch_update: BatchUpdate | None) -> None:
        changed = process_dict_updates(self.top_p_by_row, batch_update,
                                       lambda params, _, __: requested_top_p(params))
        if changed:
            rows = sorted(self.top_p_by_row)
            self._rows = torch.tensor(rows, dtype=torch.long, device=self.device)
            self._top_p = torch.tensor([self.top_p_by_row[r] for r in rows], dtype=torch.float32,
                                       device=self.device)

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        if not self.top_p_by_row or self._rows is None or self._top_p is None:
            return logits
        rows, top_p = self._rows, self._top_p
        if rows.numel() == logits.shape[0]:  # every row samples with top-p (the usual batch)
            return apply_top_p_(logits, top_p)
        inside = rows < logits.shape[0]
        rows, top_p = rows[inside], top_p[inside]
        logits[rows] = apply_top_p_(logits[rows], top_p)
        return logits
