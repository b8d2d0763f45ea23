"""The AnomalyBERT encoder in PyTorch: (B, W, C) values in, (B, W) anomaly scores in [0, 1] out.

Value embedding, sinusoidal positions, pre-norm encoder layers with hand-written multi-head
self-attention, and an MLP-sigmoid head giving one score per timestep (a high score is an anomaly).
"""

from __future__ import annotations

import math
from dataclasses import replace

import torch
from torch import nn

from model.families.anomalybert.config import ModelConfig


def sinusoidal_positions(length: int, d_model: int) -> torch.Tensor:
    """Vaswani et al. positional encoding, (length, d_model); no learned parameters."""
    position = torch.arange(length, dtype=torch.float32).unsqueeze(1)  # (W, 1)
    div = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32) * (-math.log(10000.0) / d_model))
    pe = torch.zeros(length, d_model)
    pe[:, 0::2] = torch.sin(position * div)
    pe[:, 1::2] = torch.cos(position * div[: d_model // 2])  # odd d_model: one fewer cosine column
    return pe


class Attention(nn.Module):
    """Multi-head self-attention written out: one fused QKV projection, scaled dot product, merge."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.n_heads = cfg.n_heads
        self.d_head = cfg.d_model // cfg.n_heads
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)
        self.attn_drop = nn.Dropout(cfg.dropout)
        self.resid_drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, w, d = x.shape
        q, k, v = self.qkv(x).split(d, dim=-1)  # 3 x (B, W, D)
        # (B, W, D) -> (B, H, W, Dh)
        q = q.view(b, w, self.n_heads, self.d_head).transpose(1, 2)
        k = k.view(b, w, self.n_heads, self.d_head).transpose(1, 2)
        v = v.view(b, w, self.n_heads, self.d_head).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) / math.sqrt(self.d_head)  # (B, H, W, W)
        att = self.attn_drop(torch.softmax(att, dim=-1))
        y = (att @ v).transpose(1, 2).reshape(b, w, d)  # (B, W, D)
        return self.resid_drop(self.proj(y))


class FeedForward(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(cfg.d_model, cfg.d_ff),
            nn.GELU(),
            nn.Linear(cfg.d_ff, cfg.d_model),
            nn.Dropout(cfg.dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class EncoderLayer(nn.Module):
    """Pre-norm residual block: x + attn(ln(x)), then x + ff(ln(x)); trains stably without warm-up."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.d_model)
        self.attn = Attention(cfg)
        self.ln2 = nn.LayerNorm(cfg.d_model)
        self.ff = FeedForward(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.ff(self.ln2(x))


# Variance floor of the in-graph window standardization: a window flatter than 0.1 (in the units of its
# input) keeps its small wiggles small instead of blowing them up to unit spread.
WINDOW_FEATURE_EPS = 1e-2


def window_standardize(x: torch.Tensor) -> torch.Tensor:
    """Each window (B, W, C) minus its mean, over its standard deviation (floored)."""
    centred = x - x.mean(dim=1, keepdim=True)
    return centred / torch.sqrt(centred.pow(2).mean(dim=1, keepdim=True) + WINDOW_FEATURE_EPS)


class Encoder(nn.Module):
    """Embedding, positions and the layer stack: (B, W, C) -> (B, W / P, D), P = `patch_size`. Frozen when
    finetuning.

    With `window_features` the embedding sees `[x, window_standardize(x)]` (2C inputs per timestep, the
    standardization over the whole window). With P > 1 each token embeds P consecutive timesteps' inputs
    (P * 2C or P * C values, timestep-major) and the positions count tokens."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.window_features = cfg.window_features
        self.patch_size = cfg.patch_size
        features = cfg.channels * (2 if cfg.window_features else 1)
        self.embed = nn.Linear(features * cfg.patch_size, cfg.d_model)
        self.register_buffer("positions", sinusoidal_positions(cfg.tokens, cfg.d_model), persistent=False)
        self.drop = nn.Dropout(cfg.dropout)
        self.layers = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.n_layers))
        self.ln_f = nn.LayerNorm(cfg.d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = x.shape[1]
        if self.window_features:
            x = torch.cat([x, window_standardize(x)], dim=-1)
        if self.patch_size > 1:  # (B, W, F) -> (B, W / P, P * F): P consecutive timesteps per token
            w //= self.patch_size
            x = x.reshape(x.shape[0], w, self.patch_size * x.shape[-1])
        h = self.drop(self.embed(x) + self.positions[:w])  # (B, W, D)
        for layer in self.layers:
            h = layer(h)
        return self.ln_f(h)


class ScoreHead(nn.Module):
    """MLP then sigmoid: one anomaly score in [0, 1] per timestep, (B, W, D) -> (B, W). With patches each
    token gives its P timesteps' scores: (B, W / P, D) -> (B, W / P, P) -> (B, W)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.patch_size = cfg.patch_size
        self.mlp = nn.Sequential(nn.Linear(cfg.d_model, cfg.d_ff), nn.GELU(), nn.Linear(cfg.d_ff, cfg.patch_size))

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        if self.patch_size > 1:
            return self.mlp(h).flatten(1)  # (B, W / P, P) -> (B, W), token-major as the points are
        return self.mlp(h).squeeze(-1)  # (B, W)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(h))


def deviation_score(x: torch.Tensor, scale: float) -> torch.Tensor:
    """(B, W, C) standardized inputs -> (B, W) in [0, 1): erf(|x| / (scale * sqrt 2)) averaged over channels,
    the two-sided normal probability of a deviation smaller than |x| / scale."""
    return torch.erf(x.abs() / (scale * math.sqrt(2.0))).mean(dim=-1)


class AnomalyBERT(nn.Module):
    """Encoder plus head. `forward` gives scores; `logits` feeds BCE-with-logits during training.

    With `cfg.deviation_blend` > 0, `forward` blends the head's scores with `deviation_score` of the input;
    `logits` (what training fits) is the encoder and head alone. An input wider than `cfg.channels` carries
    deviation channels after the model channels (`Normalizer.deviation_halflife`): the encoder reads the
    first `cfg.channels`, the blend the rest."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.head = ScoreHead(cfg)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.head.logits(self.encoder(x[..., : self.cfg.channels]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scores = torch.sigmoid(self.logits(x))
        blend = self.cfg.deviation_blend
        if blend == 0.0:
            return scores
        c = self.cfg.channels
        deviation = x[..., c:] if x.shape[-1] > c else x
        return (1.0 - blend) * scores + blend * deviation_score(deviation, self.cfg.deviation_scale)

    def with_config(self, **changes: float) -> AnomalyBERT:
        """The same weights under a config that differs only in how scores are blended (no new parameters)."""
        allowed = {"deviation_blend", "deviation_scale"}
        if other := sorted(set(changes) - allowed):
            raise ValueError(f"only {sorted(allowed)} can change on a trained model, not {other}")
        model = AnomalyBERT(replace(self.cfg, **changes))
        model.load_state_dict(self.state_dict())
        return model.train(self.training)

    def freeze_encoder(self) -> None:
        """Finetuning: keep the encoder's weights, train a fresh head only."""
        for p in self.encoder.parameters():
            p.requires_grad_(False)
        self.encoder.eval()
        self.head = ScoreHead(self.cfg)
