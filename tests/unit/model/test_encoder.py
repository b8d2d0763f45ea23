"""Encoder: shapes, hand-written attention, parameter-free positions, freezing."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from model.families.anomalybert.config import ModelConfig
from model.families.anomalybert.modules import AnomalyBERT, Attention, sinusoidal_positions
from tests.bundles import TINY


@pytest.fixture
def model() -> AnomalyBERT:
    torch.manual_seed(0)
    return AnomalyBERT(TINY).eval()


def test_scores_have_one_value_per_timestep_in_unit_interval(model: AnomalyBERT) -> None:
    x = torch.randn(5, TINY.window_size, TINY.channels)
    scores = model(x)
    assert scores.shape == (5, TINY.window_size)
    assert scores.min() >= 0 and scores.max() <= 1
    assert torch.allclose(torch.sigmoid(model.logits(x)), scores)


def test_deviation_blend_mixes_the_head_score_with_the_input_deviation(model: AnomalyBERT) -> None:
    blended = model.with_config(deviation_blend=0.25, deviation_scale=2.0)
    x = torch.randn(4, TINY.window_size, TINY.channels) * 5
    assert torch.equal(blended.logits(x), model.logits(x))  # training's view is unchanged
    deviation = torch.erf(x.abs() / (2.0 * math.sqrt(2.0))).mean(dim=-1)
    torch.testing.assert_close(blended(x), 0.75 * model(x) + 0.25 * deviation)
    assert blended(x).min() >= 0 and blended(x).max() <= 1
    # A point twice the scale away from its history scores at least b * erf(sqrt 2) = 0.24 whatever the head.
    far = torch.zeros(1, TINY.window_size, TINY.channels)
    far[0, -1] = 4.0
    assert float(blended(far)[0, -1].detach()) >= 0.25 * math.erf(math.sqrt(2.0)) - 1e-6
    with pytest.raises(ValueError, match="only"):
        model.with_config(d_model=8)
    with pytest.raises(ValueError, match="deviation_blend"):
        ModelConfig(deviation_blend=1.5)


def test_deviation_channels_feed_the_blend_and_not_the_encoder(model: AnomalyBERT) -> None:
    """An input with deviation channels after the model channels (`Normalizer.deviation_halflife`): the
    encoder reads the model channels only, the blend reads the deviation channels only."""
    blended = model.with_config(deviation_blend=0.7, deviation_scale=8.0)
    x = torch.randn(3, TINY.window_size, TINY.channels)
    dev = torch.randn(3, TINY.window_size, TINY.channels) * 20
    both = torch.cat([x, dev], dim=-1)
    # Not bit for bit: the sliced input has another memory layout, and some CPUs take another kernel path.
    torch.testing.assert_close(blended.logits(both), model.logits(x), rtol=1e-5, atol=1e-6)
    deviation = torch.erf(dev.abs() / (8.0 * math.sqrt(2.0))).mean(dim=-1)
    torch.testing.assert_close(blended(both), 0.3 * model(x) + 0.7 * deviation)


def test_multichannel_config_takes_channels_on_the_last_axis() -> None:
    cfg = ModelConfig(n_layers=1, d_model=16, n_heads=4, d_ff=32, window_size=8, channels=3)
    assert AnomalyBERT(cfg)(torch.randn(2, 8, 3)).shape == (2, 8)


def test_attention_is_written_out_and_keeps_shape() -> None:
    torch.manual_seed(0)
    attn = Attention(TINY).eval()
    h = torch.randn(3, TINY.window_size, TINY.d_model)
    assert attn(h).shape == h.shape
    assert not any(isinstance(m, nn.MultiheadAttention) for m in AnomalyBERT(TINY).modules())


def test_attention_mixes_timesteps(model: AnomalyBERT) -> None:
    """Changing one input point moves the scores of other points too (self-attention, not pointwise)."""
    x = torch.randn(1, TINY.window_size, 1)
    y = x.clone()
    y[0, 0, 0] += 5.0
    assert not torch.allclose(model(x)[0, 5:], model(y)[0, 5:])


def test_positional_encoding_is_sinusoidal_and_has_no_parameters(model: AnomalyBERT) -> None:
    pe = sinusoidal_positions(10, 8)
    assert pe.shape == (10, 8)
    assert pe[3, 0] == pytest.approx(math.sin(3.0))
    assert pe[3, 1] == pytest.approx(math.cos(3.0))
    assert pe[3, 2] == pytest.approx(math.sin(3.0 / 10000 ** (2 / 8)))
    names = [n for n, _ in model.named_parameters()] + list(model.state_dict())
    assert not any("position" in n for n in names)


def test_freeze_encoder_stops_its_gradients_and_replaces_the_head(model: AnomalyBERT) -> None:
    old_head = model.head
    model.freeze_encoder()
    assert model.head is not old_head
    assert all(not p.requires_grad for p in model.encoder.parameters())
    assert all(p.requires_grad for p in model.head.parameters())


def test_config_rejects_inconsistent_shapes() -> None:
    with pytest.raises(ValueError, match="divisible"):
        ModelConfig(d_model=10, n_heads=4)
    with pytest.raises(ValueError, match="stride"):
        ModelConfig(window_size=8, stride=9)
