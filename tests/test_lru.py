"""The LRU memory rule (ELMUR Algorithm 2, Propositions 1 and 2)."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sb3_elmur.model import lru_update, retention_horizon


def test_first_empty_slot_is_replaced_then_oldest_is_blended():
    memory = torch.zeros(1, 3, 2)
    anchors = torch.full((1, 3), -1)
    for k, step in enumerate([9, 19, 29]):  # empty slots fill in order, alpha = 1
        candidates = torch.full((1, 3, 2), float(k + 1))
        memory, anchors = lru_update(memory, anchors, candidates, torch.tensor([step]), 0.5)
        assert anchors[0].tolist() == [9, 19, 29][: k + 1] + [-1] * (2 - k)
        assert memory[0, k].tolist() == [k + 1.0, k + 1.0]
    # full: the oldest anchor (slot 0, step 9) is blended with lambda = 0.5, anchor -> 39
    memory, anchors = lru_update(memory, anchors, torch.full((1, 3, 2), 5.0), torch.tensor([39]), 0.5)
    assert anchors[0].tolist() == [39, 19, 29]
    assert memory[0].tolist() == [[3.0, 3.0], [2.0, 2.0], [3.0, 3.0]]
    # next write goes to slot 1 (now the oldest)
    memory, anchors = lru_update(memory, anchors, torch.zeros(1, 3, 2), torch.tensor([49]), 0.5)
    assert anchors[0].tolist() == [39, 49, 29]


def test_closed_form_weight_of_old_content():
    """After k blends with a fixed candidate u, m_k = u + (1 - lambda)^k (m_0 - u) (Proposition 1)."""
    lam = 0.3
    m0, u = torch.tensor([[[2.0, -1.0]]], dtype=torch.float64), torch.tensor([[[0.5, 0.25]]], dtype=torch.float64)
    memory, anchors = m0.clone(), torch.tensor([[0]])
    for k in range(1, 30):
        memory, anchors = lru_update(memory, anchors, u, torch.tensor([k]), lam)
        expected = u + (1 - lam) ** k * (m0 - u)
        assert torch.allclose(memory, expected, rtol=0, atol=1e-12)
        assert anchors.item() == k


def test_closed_form_is_exact_for_lambda_one_half():
    """With lambda = 1/2, m0 = 1 and u = 0 every blend is exact in float32: the weight is exactly 2^-k."""
    memory, anchors = torch.ones(1, 1, 4), torch.tensor([[0]])
    for k in range(1, 40):
        memory, anchors = lru_update(memory, anchors, torch.zeros(1, 1, 4), torch.tensor([k]), 0.5)
        assert torch.equal(memory, torch.full((1, 1, 4), 0.5**k))


@settings(max_examples=50, deadline=None)
@given(
    slots=st.integers(1, 6),
    writes=st.integers(1, 40),
    lam=st.floats(0.01, 1.0),
    bound=st.floats(0.1, 10.0),
    seed=st.integers(0, 2**31 - 1),
)
def test_norms_stay_within_the_bound(slots: int, writes: int, lam: float, bound: float, seed: int):
    """If the initial memory and every candidate have norm <= C, every slot keeps norm <= C (Proposition 2)."""
    gen = torch.Generator().manual_seed(seed)

    def within_bound(x: torch.Tensor) -> torch.Tensor:
        scale = bound * torch.rand(x.shape[:-1] + (1,), generator=gen, dtype=x.dtype)
        return x / x.norm(dim=-1, keepdim=True) * scale

    memory = within_bound(torch.randn(2, slots, 8, generator=gen, dtype=torch.float64))
    anchors = torch.full((2, slots), -1)
    for k in range(writes):
        candidates = within_bound(torch.randn(2, slots, 8, generator=gen, dtype=torch.float64))
        memory, anchors = lru_update(memory, anchors, candidates, torch.tensor([k, k]), lam)
        assert memory.norm(dim=-1).max() <= bound * (1 + 1e-12)
        # exactly one slot per write gets the new anchor
        assert ((anchors == k).sum(dim=-1) == 1).all()
    assert (anchors >= 0).sum(dim=-1).tolist() == [min(slots, writes)] * 2
    assert math.isfinite(memory.sum().item())


def test_retention_horizon_matches_the_rule():
    """After H(eps) steps of full-memory writes, the first slot keeps exactly eps of its content under lru_update."""
    M, L, lam, eps = 2, 10, 0.5, 0.25
    H = retention_horizon(M, L, lam, eps)
    assert H == pytest.approx(40.0)
    memory, anchors = torch.zeros(1, M, 1), torch.full((1, M), -1)
    for segment in range(M):  # fill the empty slots with content 1
        memory, anchors = lru_update(memory, anchors, torch.ones(1, M, 1), torch.tensor([L * segment + L - 1]), lam)
    for segment in range(M, M + round(H / L)):  # then H steps of writes with content 0
        memory, anchors = lru_update(memory, anchors, torch.zeros(1, M, 1), torch.tensor([L * segment + L - 1]), lam)
    assert memory[0, 0, 0].item() == pytest.approx(eps)
    assert retention_horizon(4, 16, 0.0) == math.inf and retention_horizon(4, 16, 1.0) == 64.0
