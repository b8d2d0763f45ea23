"""The Anomaly Transformer family: associations, the minimax objective, the two score variants."""

from __future__ import annotations

import pytest
import torch

from model import families
from model.families.anomaly_transformer import NAME, AnomalyTransformerConfig
from model.families.anomaly_transformer.modules import AnomalyTransformer, kl, minimax_loss

SMALL = {"window_size": 16, "channels": 2, "d_model": 16, "n_heads": 2, "e_layers": 2, "d_ff": 32}


def model(**changes: object) -> AnomalyTransformer:
    torch.manual_seed(0)
    return families.get(NAME).build(AnomalyTransformerConfig(**{**SMALL, **changes}))  # type: ignore[arg-type]


def test_registered_with_the_reference_defaults() -> None:
    fam = families.get(NAME)
    assert NAME in families.names() and not fam.supervised
    cfg = fam.config()
    assert (cfg.d_model, cfg.n_heads, cfg.e_layers, cfg.d_ff, cfg.window_size, cfg.k) == (256, 8, 3, 512, 100, 3.0)
    with pytest.raises(ValueError, match="score"):
        fam.config(score="max")
    with pytest.raises(ValueError, match="unknown"):
        fam.config(n_layers=2)


def test_associations_are_distributions_and_scores_are_in_range() -> None:
    m = model().eval()
    x = torch.randn(3, 16, 2)
    recon, series, priors = m.associations(x)
    assert recon.shape == (3, 16, 2) and len(series) == len(priors) == 2
    for s, p in zip(series, priors, strict=True):
        assert s.shape == p.shape == (3, 2, 16, 16)
        torch.testing.assert_close(s.sum(-1), torch.ones(3, 2, 16))
        torch.testing.assert_close(p.sum(-1), torch.ones(3, 2, 16))
        assert bool((kl(s, p) >= -1e-4).all())
    scores = m(x)
    assert scores.shape == (3, 16) and bool(((scores >= 0) & (scores < 1)).all())


def test_the_softmax_score_sums_to_one_weighting_the_error_and_the_plain_one_does_not() -> None:
    x = torch.randn(2, 16, 2)
    soft, plain = model().eval(), model(score="plain").eval()
    recon, series, priors = soft.associations(x)
    error = (recon - x).pow(2).mean(-1)
    weights = soft.raw_scores(x) / error
    torch.testing.assert_close(weights.sum(-1), torch.ones(2))  # softmax over the window
    dis = soft.discrepancy(series, priors)
    torch.testing.assert_close(plain.raw_scores(x), error / (1 + dis / 2))


def test_minimax_gradient_is_the_references_two_phases() -> None:
    """The reference calls backward on `rec - k D(S, sg P)` and on `rec + k D(sg S, P)` before one step."""
    x = torch.randn(4, 16, 2)
    m = model()
    minimax_loss(m, x).backward()
    combined = {n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None}
    m.zero_grad()
    recon, series, priors = m.associations(x)
    rec = torch.nn.functional.mse_loss(recon, x)
    away = sum((kl(s, p.detach()) + kl(p.detach(), s)).mean() for s, p in zip(series, priors, strict=True)) / 2
    toward = sum((kl(p, s.detach()) + kl(s.detach(), p)).mean() for s, p in zip(series, priors, strict=True)) / 2
    (rec - 3.0 * away).backward(retain_graph=True)
    (rec + 3.0 * toward).backward()
    for name, p in m.named_parameters():
        if p.grad is not None:
            torch.testing.assert_close(combined[name], p.grad, msg=name)
    # the prior's scale learns only from the maximize phase, the attention's projections from both
    assert combined["layers.0.attn.sigma.weight"].abs().sum() > 0
