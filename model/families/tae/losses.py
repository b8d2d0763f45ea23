"""Pieces of the transformer autoencoder's objective that need no model: which timesteps a masked view hides
(geometric span masking) and the contrastive loss between the masked and the clean view of each window."""

from __future__ import annotations

import torch
from torch import nn


def geometric_mask(batch: int, window: int, ratio: float = 0.15, mean_span: float = 3.0,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """A (batch, window) bool mask, True where a timestep is hidden. Each row alternates unmasked and masked
    spans whose lengths are geometric: masked spans average `mean_span` timesteps, unmasked ones
    `mean_span * (1 - ratio) / ratio`, so about `ratio` of the timesteps are hidden (Zerveas et al., KDD 2021).
    A row never hides every timestep: a row the draw masked whole keeps its last timestep visible."""
    if not 0.0 < ratio < 1.0:
        raise ValueError(f"ratio must be in (0, 1), got {ratio}")
    if mean_span < 1.0:
        raise ValueError(f"mean_span must be >= 1, got {mean_span}")
    p_end_masked = 1.0 / mean_span  # a masked span ends after each step with this probability
    p_end_unmasked = p_end_masked * ratio / (1.0 - ratio)
    u = torch.rand(batch, window, generator=generator)
    # The first timestep is masked with the stationary probability, `ratio`.
    masked = torch.empty(batch, window, dtype=torch.bool)
    state = u[:, 0] < ratio
    masked[:, 0] = state
    for t in range(1, window):
        switch = u[:, t] < torch.where(state, torch.tensor(p_end_masked), torch.tensor(p_end_unmasked))
        state = state ^ switch
        masked[:, t] = state
    whole = masked.all(dim=1)
    masked[whole, -1] = False
    return masked


def span_lengths(mask: torch.Tensor, value: bool = True, interior: bool = False) -> list[int]:
    """The lengths of the runs of `value` in each row of a (batch, window) mask, all rows together; with
    `interior`, only the runs that touch neither end of their row (whole, not cut by the window)."""
    out = []
    for row in mask.tolist():
        start = None
        for t, m in enumerate([*row, not value]):
            if m == value and start is None:
                start = t
            elif m != value and start is not None:
                if not interior or (start > 0 and t < len(row)):
                    out.append(t - start)
                start = None
    return out


def info_nce(a: torch.Tensor, b: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """InfoNCE between two views (batch, dim) of the same windows: row i of `a` should be closest to row i of
    `b` among all rows of `b` (the batch's other windows are the negatives), and the other way round.
    Cosine similarity over `temperature`; the mean of both directions' cross-entropy."""
    if a.shape != b.shape or a.dim() != 2:
        raise ValueError(f"expected two (batch, dim) tensors of one shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    a, b = nn.functional.normalize(a, dim=-1), nn.functional.normalize(b, dim=-1)
    logits = a @ b.T / temperature
    target = torch.arange(len(a), device=a.device)
    return 0.5 * (nn.functional.cross_entropy(logits, target) + nn.functional.cross_entropy(logits.T, target))
