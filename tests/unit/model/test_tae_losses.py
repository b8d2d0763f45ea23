"""The transformer autoencoder's objective pieces (issue 17, in progress): geometric span masking and InfoNCE."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model.families.tae.losses import geometric_mask, info_nce, span_lengths


def test_masked_spans_are_geometric_with_the_configured_mean_and_share() -> None:
    g = torch.Generator().manual_seed(0)
    mask = geometric_mask(400, 128, ratio=0.2, mean_span=4.0, generator=g)
    assert mask.shape == (400, 128) and mask.dtype == torch.bool
    assert float(mask.float().mean()) == pytest.approx(0.2, abs=0.02)
    spans = np.array(span_lengths(mask, interior=True))  # whole spans, not cut by the window's ends
    assert span_lengths(torch.tensor([[True, False, True, True, False, True]])) == [1, 2, 1]
    assert span_lengths(torch.tensor([[True, False, True, True, False, True]]), interior=True) == [2]
    assert spans.mean() == pytest.approx(4.0, rel=0.1)
    # geometric: P(length = k) = p (1 - p)^(k - 1), p = 1 / 4, up to the cut at the window's edges
    p = 0.25
    for k in (1, 2, 3):
        assert float((spans == k).mean()) == pytest.approx(p * (1 - p) ** (k - 1), abs=0.03)


def test_a_window_is_never_masked_whole() -> None:
    g = torch.Generator().manual_seed(1)
    mask = geometric_mask(2000, 4, ratio=0.9, mean_span=50.0, generator=g)
    assert not bool(mask.all(dim=1).any())
    assert bool(mask[:, :3].all(dim=1).any())  # the draw does mask most of such windows
    with pytest.raises(ValueError, match="ratio"):
        geometric_mask(1, 8, ratio=1.0)
    with pytest.raises(ValueError, match="mean_span"):
        geometric_mask(1, 8, mean_span=0.5)


def test_info_nce_is_lowest_when_the_two_views_coincide() -> None:
    torch.manual_seed(0)
    z = torch.randn(16, 32)
    same = info_nce(z, z)
    assert float(same) < float(info_nce(z, z + 0.5 * torch.randn(16, 32)))
    assert float(same) < float(info_nce(z, z[torch.randperm(16)]))
    # a batch of one has no negatives: the loss is 0
    assert float(info_nce(z[:1], z[:1] + 1.0)) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="shape"):
        info_nce(z, z[:, :8])
