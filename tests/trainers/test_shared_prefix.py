"""Shared-prefix DPO forwards and the CPU-compact LM head (``trainers/shared_prefix.py``).

The packing must be invisible: every per-token result TRL's loss reads, and every gradient, equal to
those of TRL's padded batch. The tiny models here are random Llamas built in memory."""

from __future__ import annotations

import copy
import types

import pytest

torch = pytest.importorskip("torch")
trl_utils = pytest.importorskip("trl.trainer.utils")

from plumline.trainers.shared_prefix import (
    IGNORE,
    PackingStats,
    compact_lm_head_on_cpu,
    pack_pairs,
    share_prefix_in_forward,
)

FIELDS = ("log_probs", "entropy", "mean_logits", "is_top1")


def _batch(pairs: list[tuple[list[int], list[int], list[int]]], pad: int = 0):
    """TRL's DPO layout from (prompt, chosen completion, rejected completion) token lists: rows
    ``[chosen...; rejected...]``, right-padded, labels -100 on prompt and padding."""
    seqs, masks = [], []
    for side in (1, 2):
        for pair in pairs:
            seqs.append(pair[0] + pair[side])
            masks.append([0] * len(pair[0]) + [1] * len(pair[side]))
    width = max(map(len, seqs))
    ids = torch.tensor([s + [pad] * (width - len(s)) for s in seqs])
    attention = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs])
    completion = torch.tensor([m + [0] * (width - len(m)) for m in masks])
    return ids, attention, ids.masked_fill(completion == 0, IGNORE)


def test_a_pair_packs_as_shared_start_chosen_rest_copy_and_rejected_rest():
    # prompt [5, 6]; chosen 7 8 9, rejected 7 1: the common start is 5 6 7 (7 is a labelled token of both)
    ids, attention, labels = _batch([([5, 6], [7, 8, 9], [7, 1])])
    plan = pack_pairs(ids, attention, labels)
    assert plan is not None
    assert plan.input_ids.tolist() == [[5, 6, 7, 8, 9, 7, 1]]
    assert plan.position_ids.tolist() == [[0, 1, 2, 3, 4, 2, 3]]
    # position -> label it predicts: 5->6 (prompt, unscored), 6->7, 7->8 (chosen), 8->9, 9->none,
    # copy of 7 -> 1 (rejected), 1 -> none
    assert plan.shift_labels.tolist() == [[IGNORE, 7, 8, 9, IGNORE, 1, IGNORE]]
    attend = plan.attend[0, 0]
    # the copy (5) sees the start without its last token, and itself; not chosen's rest
    assert attend[5].tolist() == [True, True, False, False, False, True, False]
    # rejected's rest (6) sees what the copy sees, the copy and itself
    assert attend[6].tolist() == [True, True, False, False, False, True, True]
    # chosen's rest sees the whole start and is causal
    assert attend[4].tolist() == [True, True, True, True, True, False, False]
    assert plan.padded_tokens == 2 * 5 and plan.packed_tokens == 7


@pytest.mark.parametrize("pair", [
    ([5, 6], [7, 8], [9, 1, 2]),  # share the prompt only
    ([], [7, 8], [9, 1]),  # nothing in common: two independent blocks
    ([5, 6], [7, 8], [7, 8, 9]),  # chosen is a start of rejected
    ([5, 6], [7, 8, 9], [7, 8]),  # rejected is a start of chosen
    ([5, 6], [7, 8], [7, 8]),  # identical
    ([5], [7], [3]),  # one-token sides
], ids=["prompt", "none", "chosen-prefix", "rejected-prefix", "identical", "tiny"])
def test_every_token_of_both_rows_maps_to_a_position_with_its_token_and_context(pair):
    ids, attention, labels = _batch([pair, ([4, 4, 4], [1, 2, 3, 4, 5, 6], [1])])
    plan = pack_pairs(ids, attention, labels)
    assert plan is not None
    flat_ids = plan.input_ids.reshape(-1)
    flat_positions = plan.position_ids.reshape(-1)
    flat_labels = plan.shift_labels.reshape(-1)
    width = plan.input_ids.size(1)
    rows = ids.size(0)
    for r in range(rows):
        length = int(attention[r].sum())
        for t in range(length - 1):
            assert plan.gather_valid[r, t]
            at = int(plan.gather_index[r, t])
            pair_row, position = divmod(at, width)
            assert pair_row == r % (rows // 2)
            assert int(flat_ids[at]) == int(ids[r, t])  # the same token ...
            assert int(flat_positions[at]) == t  # ... at the same position ...
            assert int(flat_labels[at]) == int(labels[r, t + 1])  # ... predicting the same label
            # ... with the same context: the keys it attends hold exactly the row's tokens 0..t
            seen = plan.attend[pair_row, 0, position].nonzero().flatten().tolist()
            context = sorted((int(plan.position_ids[pair_row, k]), int(plan.input_ids[pair_row, k]))
                             for k in seen)
            assert context == [(k, int(ids[r, k])) for k in range(t + 1)]
        assert not plan.gather_valid[r, max(length - 1, 0):].any()


def test_batches_not_in_dpo_layout_are_left_alone():
    ids, attention, labels = _batch([([5, 6], [7, 8], [9])])
    assert pack_pairs(ids[:1], attention[:1], labels[:1]) is None  # odd row count
    left = attention.flip(1)  # left padding
    assert pack_pairs(ids, left, labels) is None
    empty = torch.zeros((0, 3), dtype=torch.long)
    assert pack_pairs(empty, empty, empty) is None


def _tiny_llama(attention: str, kv_heads: int = 2):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=64, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=kv_heads, max_position_embeddings=128,
                         tie_word_embeddings=True, attn_implementation=attention)
    return LlamaForCausalLM(config).to(torch.float32)


def _random_pairs(seed: int, n: int) -> list[tuple[list[int], list[int], list[int]]]:
    g = torch.Generator().manual_seed(seed)

    def tokens(k: int) -> list[int]:
        return torch.randint(1, 64, (k,), generator=g).tolist()

    pairs = []
    for i in range(n):
        prompt = tokens(int(torch.randint(1, 20, (1,), generator=g)))
        common = tokens(i % 4)  # completions that start alike, as code with the same signature does
        pairs.append((prompt, common + tokens(int(torch.randint(0, 12, (1,), generator=g)) + 1),
                      common + tokens(int(torch.randint(0, 12, (1,), generator=g)) + 1)))
    pairs.append(([3, 4], [5, 6], [5, 6, 7]))  # chosen is a start of rejected
    pairs.append(([3, 4], [5, 6, 7], [5, 6]))  # and the other way round
    return pairs


@pytest.mark.parametrize("attention,kv_heads", [("sdpa", 2), ("eager", 4), ("sdpa", 1)],
                         ids=["sdpa-gqa", "eager", "sdpa-mqa"])
def test_packed_forward_gives_the_padded_batchs_log_probs_metrics_and_gradients(attention, kv_heads):
    padded = _tiny_llama(attention, kv_heads)
    packed = copy.deepcopy(padded)
    trl_utils.add_fused_lm_head(padded, outputs=FIELDS)
    trl_utils.add_fused_lm_head(packed, outputs=FIELDS)
    stats = PackingStats()
    assert share_prefix_in_forward(packed, stats)
    assert share_prefix_in_forward(packed, stats)  # idempotent: wrapped once
    ids, attention_mask, labels = _batch(_random_pairs(1, 8))
    call = {"input_ids": ids, "attention_mask": attention_mask, "labels": labels, "fused_lm_head": True,
            "use_cache": False}
    expected, got = padded(**call), packed(**call)
    assert stats.forwards == 1 and stats.packed_tokens < stats.padded_tokens
    for name in FIELDS:
        a, b = getattr(expected, name), getattr(got, name)
        assert a.shape == b.shape, name
        assert torch.allclose(a.float(), b.float(), atol=2e-5), (name, (a.float() - b.float()).abs().max())
    assert torch.equal(expected.label_mask, got.label_mask)
    assert torch.allclose(expected.loss, got.loss, atol=1e-6)
    # The DPO loss shape: a function of each row's summed log-prob, chosen against rejected.
    for out in (expected, got):
        chosen, rejected = out.log_probs.sum(1).chunk(2)
        dpo = -torch.nn.functional.logsigmoid(0.1 * (chosen - rejected)).mean()
        (dpo + 0.01 * out.entropy.sum()).backward()
    for (name, a), b in zip(padded.named_parameters(), packed.parameters(), strict=True):
        assert torch.allclose(a.grad, b.grad, atol=1e-6, rtol=1e-4), name
    # Without the fused head (generation, a plain forward) the model is untouched.
    plain = {"input_ids": ids[:1, :5]}
    assert torch.equal(padded(**plain).logits, packed(**plain).logits)


def test_a_batch_that_packing_would_not_shorten_runs_as_it_is():
    padded = _tiny_llama("sdpa")
    trl_utils.add_fused_lm_head(padded, outputs=FIELDS)
    packed = copy.deepcopy(padded)
    stats = PackingStats()
    share_prefix_in_forward(packed, stats)
    # nothing in common, equal lengths: a packed row would be as long as both rows together
    pairs = [([1, 2, 3], [4, 5, 6], [7, 8, 9]), ([9, 8, 7], [6, 5, 4], [3, 2, 1])]
    ids, attention_mask, labels = _batch(pairs)
    ids[2:, 0] = 11  # the rejected rows start differently from the chosen ones
    call = {"input_ids": ids, "attention_mask": attention_mask, "labels": labels, "fused_lm_head": True}
    with torch.no_grad():
        assert torch.equal(padded(**call).log_probs, packed(**call).log_probs)
    assert (stats.forwards, stats.kept_padded) == (0, 1)


def test_models_whose_attention_takes_no_4d_mask_are_not_wrapped():
    def forward(**kwargs):
        return kwargs

    model = types.SimpleNamespace(forward=forward,
                                  config=types.SimpleNamespace(_attn_implementation="flash_attention_2"))
    assert not share_prefix_in_forward(model)
    assert model.forward is forward


def test_the_cpu_lm_head_scores_only_labelled_positions(monkeypatch):
    from trl.kernels.chunked_logprob import _use_triton as trl_decides

    # TRL's own decision for this test (a trainer test may have compacted already), restored after it
    monkeypatch.setattr(trl_utils, "_use_triton", trl_decides)
    model = _tiny_llama("sdpa")
    trl_utils.add_fused_lm_head(model, outputs=FIELDS)
    ids, attention_mask, labels = _batch(_random_pairs(2, 4))
    call = {"input_ids": ids, "attention_mask": attention_mask, "labels": labels, "fused_lm_head": True}
    scored_rows = []
    real_apply = trl_utils._ChunkedLogProbFunction.apply

    def counting_apply(hidden, *args):
        scored_rows.append(hidden.shape[0])
        return real_apply(hidden, *args)

    monkeypatch.setattr(trl_utils._ChunkedLogProbFunction, "apply", counting_apply)
    with torch.no_grad():
        every = model(**call)
        assert compact_lm_head_on_cpu() and compact_lm_head_on_cpu()
        compact = model(**call)
    labelled = int((labels[:, 1:] != IGNORE).sum())
    assert scored_rows == [ids.size(0) * (ids.size(1) - 1), labelled]
    for name in FIELDS:
        assert torch.allclose(getattr(every, name).float(), getattr(compact, name).float(), atol=1e-5), name
