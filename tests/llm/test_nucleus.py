"""Top-p without a full sort (llm/nucleus.py) keeps exactly the tokens vLLM's sort-based filter keeps."""

import pytest
import torch
from plumline.llm.nucleus import apply_top_p_

vllm_topk_topp = pytest.importorskip("vllm.v1.sample.ops.topk_topp_sampler")


def vllm_kept(logits: torch.Tensor, top_p: torch.Tensor) -> torch.Tensor:
    out = vllm_topk_topp.apply_top_k_top_p_pytorch(logits.clone(), None, top_p, allow_cpu_sync=True)
    return torch.isfinite(out)


def ours_kept(logits: torch.Tensor, top_p: torch.Tensor, candidates: int = 256) -> torch.Tensor:
    return torch.isfinite(apply_top_p_(logits.clone(), top_p, candidates=candidates))


@pytest.mark.parametrize("scale", [0.5, 3.0, 12.0])  # flat rows (huge nucleus) to peaked ones (one token)
@pytest.mark.parametrize("candidates", [4, 64, 256])
def test_the_same_tokens_as_vllms_sort_based_top_p(scale: float, candidates: int) -> None:
    gen = torch.Generator().manual_seed(int(scale * 100) + candidates)
    logits = torch.randn(48, 3000, generator=gen) * scale
    top_p = torch.rand(48, generator=gen) * 0.98 + 0.01
    expected, got = vllm_kept(logits, top_p), ours_kept(logits, top_p, candidates)
    # Float sums can differ in the last bit where a token's mass-above lands on p itself: allow none
    # here (continuous random logits), so any difference is a real disagreement.
    assert torch.equal(expected, got), (expected.sum(-1) - got.sum(-1)).tolist()
    assert got.any(dim=-1).all()


def test_rows_whose_nucleus_is_wider_than_the_candidates_are_sorted_in_full() -> None:
    logits = torch.stack([torch.linspace(1.0, 0.0, 1000),  # nearly flat: p=0.9 keeps ~900 tokens
                          torch.cat([torch.full((3,), 20.0) + torch.arange(3.0), torch.zeros(997)])])
    top_p = torch.tensor([0.9, 0.9])
    got = ours_kept(logits, top_p, candidates=8)
    assert torch.equal(got, vllm_kept(logits, top_p))
    assert got[0].sum() > 800 and got[1].sum() <= 3


def test_top_p_one_keeps_every_token_and_already_masked_tokens_stay_masked() -> None:
    logits = torch.randn(3, 50)
    logits[2, 10:] = -float("inf")  # e.g. masked by another processor
    got = apply_top_p_(logits.clone(), torch.tensor([1.0, 0.5, 0.999999]))
    assert torch.isfinite(got[0]).all()
    assert 1 <= torch.isfinite(got[1]).sum() < 50
    assert torch.isfinite(got[2, 10:]).sum() == 0 and torch.isfinite(got[2, :10]).any()


def test_the_most_likely_token_always_stays() -> None:
    logits = torch.randn(64, 500) * 5
    got = apply_top_p_(logits.clone(), torch.full((64,), 1e-6))
    assert torch.equal(torch.isfinite(got).sum(-1), torch.ones(64, dtype=torch.long))
    assert torch.equal(got.argmax(-1), logits.argmax(-1))


def test_shapes_are_checked() -> None:
    with pytest.raises(ValueError, match="rows"):
        apply_top_p_(torch.zeros(2, 5), torch.tensor([0.9]))
