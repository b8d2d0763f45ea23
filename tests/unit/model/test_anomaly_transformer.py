"""The Anomaly Transformer family: associations, the minimax objective, the two score variants."""

from __future__ import annotations

from pathlib import Path

import numpy as np
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


def test_the_discrepancy_is_zero_when_the_associations_agree_and_positive_otherwise() -> None:
    m = model().eval()
    _, series, priors = m.associations(torch.randn(2, 16, 2))
    torch.testing.assert_close(m.discrepancy(priors, priors), torch.zeros(2, 16), atol=1e-6, rtol=0)
    dis = m.discrepancy(series, priors)
    assert dis.shape == (2, 16) and bool((dis > 0).all())


def test_each_minimax_phase_moves_only_its_side() -> None:
    """Minimize phase: the discrepancy term reaches the series-association (queries and keys), not the prior's
    scale; maximize phase: the prior's scale, not the series-association."""
    x = torch.randn(4, 16, 2)
    m = model()

    def grads(term: str) -> dict[str, torch.Tensor]:
        m.zero_grad()
        _, series, priors = m.associations(x)
        pairs = zip(series, priors, strict=True)
        if term == "away":
            loss = -sum((kl(s, p.detach()) + kl(p.detach(), s)).mean() for s, p in pairs)
        else:
            loss = sum((kl(p, s.detach()) + kl(s.detach(), p)).mean() for s, p in pairs)
        loss.backward()
        return {n: torch.zeros_like(p) if p.grad is None else p.grad.clone() for n, p in m.named_parameters()}

    away, toward = grads("away"), grads("toward")
    for layer in range(2):
        sigma, qkv = f"layers.{layer}.attn.sigma.weight", f"layers.{layer}.attn.qkv.weight"
        assert away[sigma].abs().sum() == 0 and away[qkv].abs().sum() > 0
        assert toward[sigma].abs().sum() > 0
    # The prior's scale is computed from the layer's input, so the maximize phase reaches the layers below it,
    # never the top layer's own attention, feed-forward or the reconstruction head.
    top = [n for n in toward if n.startswith(("layers.1.attn.qkv", "layers.1.attn.proj", "layers.1.ff", "out.",
                                              "norm."))]
    assert top and all(toward[n].abs().sum() == 0 for n in top)


def test_contributions_are_per_channel_shares_of_the_reconstruction_error() -> None:
    m = model().eval()
    x = torch.randn(3, 16, 2)
    score, share = m.forward_with_contrib(x)
    torch.testing.assert_close(score, m(x))
    assert share.shape == (3, 16, 2) and bool((share >= 0).all())
    torch.testing.assert_close(share.sum(-1), torch.ones(3, 16))
    recon, _, _ = m.associations(x)
    err = (recon - x).pow(2)
    torch.testing.assert_close(share, err / err.sum(-1, keepdim=True))


@pytest.mark.parametrize("score", ["softmax", "plain"])
def test_the_bundle_matches_pytorch_and_the_checkpoint_round_trips(tmp_path: Path, score: str) -> None:
    from model.bundle import CONTRIB_NAME, load_bundle
    from model.families.checkpoint import Checkpoint, load_checkpoint
    from model.families.export import export_bundle
    from model.normalize import Normalizer

    m = model(score=score).eval()
    norm = Normalizer("zscore", "global").fit(np.random.default_rng(0).normal(size=(200, 2)))
    ckpt = Checkpoint(m, norm, threshold=0.3, family=NAME)
    ckpt.save(tmp_path / "at.pt")
    again = load_checkpoint(tmp_path / "at.pt")
    assert again.family == NAME and again.config == m.cfg and again.normalizer == norm
    windows = np.random.default_rng(1).normal(size=(5, 16, 2))
    x = torch.from_numpy(norm.transform(windows))
    with torch.no_grad():
        torch.testing.assert_close(again.model(x), m(x), rtol=0, atol=0)
        want_score, want_share = m.forward_with_contrib(x)
    directory, manifest = export_bundle(again, tmp_path / "bundle")
    assert manifest.onnx["contrib"] == CONTRIB_NAME and manifest.family == NAME
    bundle = load_bundle(directory)
    assert bundle.has_contrib
    np.testing.assert_allclose(bundle.score_windows(windows), want_score.numpy(), atol=1e-5, rtol=1e-4)
    packed = bundle.score_windows_packed(windows)
    np.testing.assert_allclose(packed[..., 0], want_score.numpy(), atol=1e-5, rtol=1e-4)
    np.testing.assert_allclose(packed[..., 1:], want_share.numpy(), atol=1e-4, rtol=1e-3)
