"""DPO forwards that compute each pair's common start once, and an LM head that scores only labelled tokens.

TRL's DPO batch is ``[chosen_1..chosen_B, rejected_1..rejected_B]``, every row padded to the longest.
A pair's chosen and rejected sequences start with the same prompt (and code completions often with the
same first line, e.g. the function's signature), so that start goes through the model twice per forward,
and the policy also runs it backwards twice. Measured on the demo's round-0 pairs (SmolLM2 tokenizer,
batches of 4 pairs): padded tokens are 1.24x the real ones, and packing each pair as one sequence that
holds the common start once is 1.85x fewer tokens than TRL's padded batch.

A packed row is ``S + C' + q + R'``: ``S`` the longest common start (tokens and labels), ``C'`` and
``R'`` the rest of chosen and rejected, and ``q`` a copy of ``S``'s last token at ``S``'s last position.
The attention mask keeps the two sides apart (``R'`` never sees ``C'``) and lets ``q`` and ``R'`` see
``S`` without its last token, which ``q`` replaces: ``q`` has the same input, position and context as
that token, so its hidden states are identical, and it carries the next-token prediction of the
rejected side (``S``'s last token predicts chosen's next token). Every token of the two original
sequences then has exactly one position in the packed row computing the same value, so log-probs,
loss and gradients are those of the padded batch (up to float rounding; tests check both).

The packed rows go through TRL's own fused LM head (``add_fused_lm_head``) with pre-shifted labels, and
the per-token results are gathered back into the ``[2B, L-1]`` layout TRL's loss code expects, so every
DPO loss type, metric and the reference model work unchanged.

TRL's fused head scores only the labelled positions on CUDA/XPU, but every position elsewhere (to keep
tile shapes fixed for compilers such as Neuron's); on a CPU that is all prompt and padding positions
through a 49k-wide projection and softmax for nothing (24% of a DPO step on the demo's model, py-spy).
``compact_lm_head_on_cpu`` makes the CPU score only labelled positions too.
"""

from __future__ import annotations

import logging
import types
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch is imported where used: the run config imports this module's neighbours cheaply
    import torch

logger = logging.getLogger(__name__)

IGNORE = -100  # the label of a position that is not scored (transformers' convention)

# Attention implementations that take a custom 4D mask as it is (transformers returns a 4D mask unchanged);
# flash-attention and flex need other mask forms, so those models train on TRL's padded batch.
MASKED_ATTENTION = ("sdpa", "eager")

# Per-token fields of TRL's FusedCausalLMOutput, gathered back into the unpacked layout.
PER_TOKEN_FIELDS = ("log_probs", "entropy", "log_sum_sq_probs", "mean_logits", "is_top1")

# Keyword arguments the packed forward handles; any other argument with a value (pixel values, token
# type ids, inputs_embeds...) means a batch this packing does not understand, which goes through as it is.
HANDLED_KWARGS = {"input_ids", "attention_mask", "labels", "use_cache", "output_router_logits"}

_WRAPPED = "_plumline_shared_prefix"


@dataclass
class PackedPairs:
    """One packed row per pair, and how to read the rows' results back in TRL's layout.

    ``gather_index[r, t]`` is the flat index (``pair * width + position``) of the packed position that
    computes what row ``r`` of the padded batch computes at position ``t`` (the prediction of its token
    ``t + 1``); ``gather_valid`` is False where row ``r`` has no token ``t + 1``."""

    input_ids: torch.Tensor  # [B, T]
    position_ids: torch.Tensor  # [B, T]
    attend: torch.Tensor  # [B, 1, T, T] bool: query position may attend key position
    shift_labels: torch.Tensor  # [B, T]: the label position t predicts, IGNORE where none
    gather_index: torch.Tensor  # [2B, L-1]
    gather_valid: torch.Tensor  # [2B, L-1] bool
    padded_tokens: int  # tokens of the padded batch (2B x L)
    packed_tokens: int  # tokens of the packed batch (B x T)


def _right_padded_lengths(attention_mask: torch.Tensor) -> torch.Tensor | None:
    """Row lengths when every row is ones then zeros (TRL's DPO collator pads on the right); None if not."""
    import torch

    lengths = attention_mask.sum(dim=1)
    positions = torch.arange(attention_mask.size(1), device=attention_mask.device)
    if not torch.equal(attention_mask.bool(), positions.unsqueeze(0) < lengths.unsqueeze(1)):
        return None
    return lengths


def pack_pairs(input_ids: torch.Tensor, attention_mask: torch.Tensor,
               labels: torch.Tensor) -> PackedPairs | None:
    """Plan the packed batch for a DPO batch ``[chosen; rejected]`` (``2B`` rows, right-padded).

    Returns None when the batch is not in that form (odd row count, left padding), so the caller runs
    it as it is."""
    import torch

    rows, width = input_ids.shape
    if rows == 0 or rows % 2 or attention_mask is None or attention_mask.dim() != 2:
        return None
    lengths = _right_padded_lengths(attention_mask)
    if lengths is None:
        return None
    pairs = rows // 2
    ids_cpu, labels_cpu, lengths_cpu = input_ids.cpu(), labels.cpu(), lengths.cpu().tolist()

    # per pair: (tokens, positions, segment of each position, shared length, chosen's rest length, has q)
    plans = []
    for i in range(pairs):
        len_c, len_r = lengths_cpu[i], lengths_cpu[pairs + i]
        c_ids, r_ids = ids_cpu[i, :len_c], ids_cpu[pairs + i, :len_r]
        c_lab, r_lab = labels_cpu[i, :len_c], labels_cpu[pairs + i, :len_r]
        m = min(len_c, len_r)
        same = (c_ids[:m] == r_ids[:m]) & (c_lab[:m] == r_lab[:m])
        shared = int(same.long().cumprod(0).sum()) if m else 0
        rest_c, rest_r = len_c - shared, len_r - shared
        has_q = shared >= 1 and rest_r >= 1
        tokens = [c_ids]  # S + C' is the chosen sequence itself
        positions = [torch.arange(len_c)]
        # segments: 0 shared start, 1 chosen's rest, 2 q, 3 rejected's rest
        segments = [torch.zeros(shared, dtype=torch.long), torch.ones(rest_c, dtype=torch.long)]
        if has_q:
            tokens.append(c_ids[shared - 1:shared])
            positions.append(torch.tensor([shared - 1]))
            segments.append(torch.full((1,), 2, dtype=torch.long))
        tokens.append(r_ids[shared:])
        positions.append(torch.arange(shared, len_r))
        segments.append(torch.full((rest_r,), 3, dtype=torch.long))
        plans.append((torch.cat(tokens), torch.cat(positions), torch.cat(segments), shared, rest_c, has_q))

    packed_width = max(len(p[0]) for p in plans)
    # Padding positions are masked and unscored; any valid token id will do.
    packed_ids = torch.full((pairs, packed_width), int(ids_cpu[0, 0]), dtype=input_ids.dtype)
    position_ids = torch.zeros((pairs, packed_width), dtype=torch.long)
    segment = torch.full((pairs, packed_width), -1, dtype=torch.long)  # -1: padding
    last_shared = torch.full((pairs,), -1, dtype=torch.long)
    gather_index = torch.zeros((rows, max(width - 1, 0)), dtype=torch.long)
    t = torch.arange(max(width - 1, 0))
    for i, (tokens, positions, segments, shared, rest_c, has_q) in enumerate(plans):
        n = len(tokens)
        packed_ids[i, :n], position_ids[i, :n], segment[i, :n] = tokens, positions, segments
        if has_q:
            last_shared[i] = shared - 1
        base = i * packed_width
        gather_index[i] = base + t  # chosen: S + C' are packed positions 0..len_c-1, as in its own row
        r_start = shared + rest_c + (1 if has_q else 0)  # packed position of R'[0]
        rejected = torch.where(t < shared - 1, t, r_start + (t - shared))
        if has_q:
            rejected = torch.where(t == shared - 1, torch.full_like(t, shared + rest_c), rejected)
        gather_index[pairs + i] = base + rejected.clamp(0, packed_width - 1)
    gather_valid = t.unsqueeze(0) < (torch.tensor(lengths_cpu) - 1).unsqueeze(1)
    gather_index = torch.where(gather_valid, gather_index, torch.zeros_like(gather_index))

    # Attention: causal in packed order between real positions, except that the rejected side (q, R')
    # sees neither chosen's rest nor the last shared token (q stands in for it); padding sees itself
    # only, so no softmax row is empty.
    order = torch.arange(packed_width)
    causal = order.view(1, -1, 1) >= order.view(1, 1, -1)
    real = segment >= 0
    rejected_side = (segment == 2) | (segment == 3)
    hidden_from_rejected = (segment == 1) | (order.unsqueeze(0) == last_shared.unsqueeze(1))
    attend = causal & real.unsqueeze(2) & real.unsqueeze(1)
    attend &= ~(rejected_side.unsqueeze(2) & hidden_from_rejected.unsqueeze(1))
    attend |= torch.eye(packed_width, dtype=torch.bool).unsqueeze(0) & ~real.unsqueeze(2)

    # The label each packed position predicts: scatter each row's next-token labels to their positions
    # (a shared position receives the same label from both rows).
    shift_labels = torch.full((pairs * packed_width,), IGNORE, dtype=labels.dtype)
    next_labels = labels_cpu[:, 1:]
    shift_labels[gather_index[gather_valid]] = next_labels[gather_valid]

    device = input_ids.device
    return PackedPairs(
        input_ids=packed_ids.to(device), position_ids=position_ids.to(device),
        attend=attend.unsqueeze(1).to(device),
        shift_labels=shift_labels.view(pairs, packed_width).to(device),
        gather_index=gather_index.to(device), gather_valid=gather_valid.to(device),
        padded_tokens=rows * width, packed_tokens=pairs * packed_width)


def attention_mask_for(attend: torch.Tensor, implementation: str, dtype: torch.dtype) -> torch.Tensor:
    """``attend`` as the implementation takes a 4D mask: boolean for SDPA, additive float for eager."""
    import torch

    if implementation == "sdpa":
        return attend
    blocked = torch.finfo(dtype).min
    return torch.zeros(attend.shape, dtype=dtype, device=attend.device).masked_fill(~attend, blocked)


def unpack_outputs(outputs: Any, packed: PackedPairs, labels: torch.Tensor) -> Any:
    """TRL's fused-head output for the packed rows, re-laid as the padded batch's (``[2B, L-1]`` fields,
    zero where the label is ignored). Gathering is differentiable: a shared position's gradient is the
    sum of both rows' gradients, as it would be with two copies."""
    import torch

    label_mask = labels[:, 1:] != IGNORE
    keep = label_mask & packed.gather_valid
    fields = {}
    for name in PER_TOKEN_FIELDS:
        value = getattr(outputs, name, None)
        if value is None:
            fields[name] = None
            continue
        gathered = value.reshape(-1)[packed.gather_index]
        fields[name] = torch.where(keep, gathered, torch.zeros_like(gathered))
    # The loss as TRL's head defines it (mean negative log-likelihood of the scored tokens), over the
    # unpacked rows; an MoE router loss the head added to the packed loss is carried over unchanged.
    loss = -fields["log_probs"].sum() / keep.sum().clamp(min=1)
    aux = getattr(outputs, "aux_loss", None)
    if aux is not None:
        packed_nll = -outputs.log_probs.sum() / (packed.shift_labels != IGNORE).sum().clamp(min=1)
        loss = loss + (outputs.loss - packed_nll)
    return type(outputs)(loss=loss, label_mask=keep, aux_loss=aux, **fields)


@dataclass
class PackingStats:
    """Tokens the model ran, against what TRL's padded batches would have run (for the training report)."""

    forwards: int = 0  # forwards run packed
    kept_padded: int = 0  # DPO batches run as they were, packing would not have saved tokens
    packed_tokens: int = 0
    padded_tokens: int = 0

    def add(self, packed: PackedPairs) -> None:
        self.forwards += 1
        self.packed_tokens += packed.packed_tokens
        self.padded_tokens += packed.padded_tokens

    def as_dict(self) -> dict[str, Any]:
        ratio = self.padded_tokens / self.packed_tokens if self.packed_tokens else None
        return {"forwards": self.forwards, "kept_padded": self.kept_padded,
                "packed_tokens": self.packed_tokens, "padded_tokens": self.padded_tokens,
                "padded_over_packed": round(ratio, 3) if ratio else None}


def share_prefix_in_forward(model: Any, stats: PackingStats | None = None) -> bool:
    """Wrap ``model.forward`` (already given TRL's fused head) so that fused-head calls on a DPO batch run
    packed. Idempotent; returns False (and changes nothing) for a model without ``forward`` or with an
    attention implementation that does not take custom 4D masks."""
    forward = getattr(model, "forward", None)
    if forward is None or getattr(forward, _WRAPPED, False):
        return forward is not None
    implementation = getattr(getattr(model, "config", None), "_attn_implementation", None)
    if implementation not in MASKED_ATTENTION:
        logger.info("shared-prefix DPO is off: attention %r takes no custom 4D mask; training on padded "
                    "batches", implementation)
        return False
    fused_forward = forward

    def packed_forward(self: Any, *args: Any, fused_lm_head: bool = False, labels: Any = None,
                       **kwargs: Any) -> Any:
        unhandled = [k for k, v in kwargs.items() if v is not None and k not in HANDLED_KWARGS]
        input_ids = kwargs.get("input_ids")
        plan = None
        if fused_lm_head and labels is not None and not args and not unhandled and input_ids is not None:
            plan = pack_pairs(input_ids, kwargs.get("attention_mask"), labels)
        # Pairs that share little make packed rows longer than padded ones (attention grows with the
        # square of the row): such a batch runs as it is.
        if plan is not None and plan.packed_tokens >= plan.padded_tokens:
            if stats is not None:
                stats.kept_padded += 1
            plan = None
        if plan is None:
            return fused_forward(*args, fused_lm_head=fused_lm_head, labels=labels, **kwargs)
        if stats is not None:
            stats.add(plan)
        passed = {k: v for k, v in kwargs.items() if k not in ("input_ids", "attention_mask")}
        mask_dtype = self.get_input_embeddings().weight.dtype
        outputs = fused_forward(input_ids=plan.input_ids, position_ids=plan.position_ids,
                                attention_mask=attention_mask_for(plan.attend, implementation, mask_dtype),
                                fused_lm_head=True, shift_labels=plan.shift_labels, **passed)
        return unpack_outputs(outputs, plan, labels)

    wrapped = types.MethodType(packed_forward, model)
    setattr(packed_forward, _WRAPPED, True)
    model.forward = wrapped
    return True


def compact_lm_head_on_cpu() -> bool:
    """Make TRL's fused LM head score only labelled positions on a CPU as it does on CUDA (see the module
    docstring). TRL 1.16 decides this with ``trl.trainer.utils._use_triton(device)``, used there for that
    decision only; the kernels keep their own copy of the function, so they still take the torch path on
    a CPU. Returns False, changing nothing, if TRL no longer has that function."""
    try:
        import trl.trainer.utils as trl_utils
    except ImportError:
        return False
    decide = getattr(trl_utils, "_use_triton", None)
    if decide is None:
        logger.info("trl.trainer.utils._use_triton is gone: TRL's LM head scores every position on CPU")
        return False
    if getattr(decide, _WRAPPED, False):
        return True

    def compact(device: torch.device) -> bool:
        return device.type == "cpu" or decide(device)

    setattr(compact, _WRAPPED, True)
    trl_utils._use_triton = compact
    return True
