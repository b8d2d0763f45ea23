"""AnomalyBERT patch tokens (`ModelConfig.patch_size`): a window P times longer through the same number of tokens,
one score per point out; patch_size 1 is the seed's model, unchanged."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from evaluation.detect import TorchScorer
from model.bundle import DEFAULT_BUNDLE_DIR, load_bundle
from model.families.anomalybert.config import ModelConfig
from model.families.anomalybert.modules import AnomalyBERT
from model.families.checkpoint import Checkpoint, load_checkpoint
from model.families.export import export_bundle
from model.normalize import Normalizer

PATCHED = ModelConfig(n_layers=2, d_model=32, n_heads=4, d_ff=64, window_size=64, patch_size=8,
                      window_features=True, deviation_blend=0.7, deviation_scale=8.0)


@pytest.fixture(scope="module")
def model() -> AnomalyBERT:
    torch.manual_seed(0)
    return AnomalyBERT(PATCHED).eval()


def test_patched_model_reads_tokens_and_scores_every_point(model: AnomalyBERT) -> None:
    x = torch.randn(3, 64, 2)  # a model channel and its deviation channel
    assert model.encoder(x[..., :1]).shape == (3, 8, 32)  # 64 points, 8 tokens
    assert model.logits(x).shape == (3, 64)
    scores = model(x)
    assert scores.shape == (3, 64) and bool(((scores >= 0) & (scores <= 1)).all())
    assert model.encoder.embed.in_features == 8 * 2  # 8 points x (value, window-standardized value)
    assert model.encoder.positions.shape == (8, 32)
    assert model.head.mlp[-1].out_features == 8


def test_token_t_scores_points_t_p_to_t_p_plus_p(model: AnomalyBERT) -> None:
    x = torch.randn(2, 64, 1)
    per_token = model.head.mlp(model.encoder(x))  # (B, 8 tokens, 8 points)
    logits = model.logits(x)
    for t in range(8):
        torch.testing.assert_close(logits[:, t * 8:(t + 1) * 8], per_token[:, t])


def test_a_token_embeds_its_own_consecutive_points() -> None:
    """With no attention mixing (one token per window), a point changes only its own token's scores."""
    torch.manual_seed(1)
    cfg = ModelConfig(n_layers=1, d_model=16, n_heads=2, d_ff=32, window_size=32, patch_size=4, dropout=0.0)
    m = AnomalyBERT(cfg).eval()
    for layer in m.encoder.layers:  # cut attention: each token sees itself only
        torch.nn.init.zeros_(layer.attn.proj.weight)
        torch.nn.init.zeros_(layer.attn.proj.bias)
    x = torch.randn(1, 32, 1)
    y = x.clone()
    y[0, 13] += 5.0  # point 13 lies in token 3 (points 12-15)
    changed = (m.logits(x) - m.logits(y)).abs()[0] > 1e-6
    assert changed[12:16].all() and not changed[:12].any() and not changed[16:].any()


def test_deviation_blend_stays_per_point(model: AnomalyBERT) -> None:
    x = torch.randn(2, 64, 2)
    head = torch.sigmoid(model.logits(x))
    deviation = torch.erf(x[..., 1].abs() / (8.0 * np.sqrt(2.0)))
    torch.testing.assert_close(model(x), 0.3 * head + 0.7 * deviation)


def test_bad_patch_size_is_a_clear_value_error() -> None:
    with pytest.raises(ValueError, match=r"window_size \(100\) must be divisible by patch_size \(8\)"):
        ModelConfig(window_size=100, patch_size=8)
    with pytest.raises(ValueError, match="patch_size must be >= 1"):
        ModelConfig(patch_size=0)


def test_config_dict_round_trips_and_patch_1_leaves_the_key_out() -> None:
    assert ModelConfig.from_dict(PATCHED.to_dict()) == PATCHED and PATCHED.to_dict()["patch_size"] == 8
    seed = ModelConfig()
    assert "patch_size" not in seed.to_dict()  # the dict every bundle and checkpoint before patches holds
    assert ModelConfig.from_dict(seed.to_dict()).patch_size == 1


def test_patch_size_1_is_the_shipped_model_unchanged(tmp_path: Path) -> None:
    """The shipped checkpoint loads strictly (same keys and shapes) and exports to a graph that scores as the
    shipped bundle does, with the same model dict in its manifest."""
    ckpt = load_checkpoint(DEFAULT_BUNDLE_DIR / "checkpoint.pt")
    assert ckpt.config.patch_size == 1
    fresh = AnomalyBERT(ckpt.config)
    assert {k: v.shape for k, v in fresh.state_dict().items()} == \
        {k: v.shape for k, v in ckpt.model.state_dict().items()}
    directory, _ = export_bundle(ckpt, tmp_path / "bundle")
    shipped, again = load_bundle(DEFAULT_BUNDLE_DIR), load_bundle(directory)
    assert again.manifest.model == shipped.manifest.model
    windows = np.random.default_rng(5).normal(size=(16, 64, shipped.input_channels)).astype(np.float32)
    # a fresh export may fuse or order float ops differently from the shipped graph (and CPUs differ): 1e-6
    np.testing.assert_allclose(again.score_windows(windows), shipped.score_windows(windows), rtol=0, atol=1e-6)


@pytest.mark.parametrize("batch", [1, 16])
def test_patched_onnx_export_matches_torch(tmp_path: Path, model: AnomalyBERT, batch: int) -> None:
    ckpt = Checkpoint(model, Normalizer("zscore", "series", deviation_halflife=6400.0), threshold=0.5,
                      calibration={"method": "best_f1_validation"})
    directory, _ = export_bundle(ckpt, tmp_path / "bundle")
    bundle = load_bundle(directory)
    assert bundle.manifest.model["patch_size"] == 8 and bundle.manifest.window_size == 64
    windows = np.random.default_rng(batch).normal(size=(batch, 64, bundle.input_channels)).astype(np.float32)
    scores = bundle.score_windows(windows)
    assert scores.shape == (batch, 64)
    np.testing.assert_allclose(scores, TorchScorer(ckpt)(windows), rtol=0, atol=1e-5)
