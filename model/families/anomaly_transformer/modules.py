"""The Anomaly Transformer in PyTorch: (B, W, C) windows in, (B, W) scores out, and what its loss needs.

Anomaly-Attention keeps two associations per layer and head: the series-association S = softmax(QK^T/sqrt d)
and a prior-association P, a Gaussian kernel of the distance |i - j| with a learnt scale per position and head,
rows normalized. Normal points attend widely, so their S lies far from the local P (a high association
discrepancy); an anomaly, which can only resemble its neighbours, has S close to P (a low one).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from model.families.anomaly_transformer.config import AnomalyTransformerConfig
from model.families.anomalybert.modules import sinusoidal_positions

EPS = 1e-4  # inside the logarithms of the KL divergences, as the reference


def kl(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """KL(p || q) over the last axis, (B, H, W, W) -> (B, H, W)."""
    return (p * (torch.log(p + EPS) - torch.log(q + EPS))).sum(dim=-1)


class AnomalyAttention(nn.Module):
    """Multi-head attention that also gives its series- and prior-associations, each (B, H, W, W)."""

    def __init__(self, cfg: AnomalyTransformerConfig) -> None:
        super().__init__()
        self.n_heads, self.d_head = cfg.n_heads, cfg.d_model // cfg.n_heads
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.sigma = nn.Linear(cfg.d_model, cfg.n_heads)  # the prior's scale, per position and head
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)
        w = torch.arange(cfg.window_size, dtype=torch.float32)
        self.register_buffer("distance", (w[:, None] - w[None, :]).abs(), persistent=False)  # (W, W)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b, w, d = x.shape
        q, k, v = self.qkv(x).split(d, dim=-1)
        # (B, W, D) -> (B, H, W, Dh)
        q, k, v = (t.view(b, w, self.n_heads, self.d_head).transpose(1, 2) for t in (q, k, v))
        series = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(self.d_head), dim=-1)  # (B, H, W, W)
        # The reference's scale: sigmoid(5 s) + 1e-5, then 3^that - 1, so it lies in (0, 2].
        sigma = torch.pow(3.0, torch.sigmoid(5.0 * self.sigma(x)) + 1e-5) - 1.0  # (B, W, H)
        sigma = sigma.transpose(1, 2).unsqueeze(-1)  # (B, H, W, 1)
        dist = self.distance[:w, :w]
        prior = torch.exp(-dist.pow(2) / (2 * sigma.pow(2))) / (math.sqrt(2 * math.pi) * sigma)
        prior = prior / prior.sum(dim=-1, keepdim=True)  # rows normalized: (B, H, W, W)
        y = (series @ v).transpose(1, 2).reshape(b, w, d)  # (B, W, D)
        return self.proj(y), series, prior


class EncoderLayer(nn.Module):
    """Post-norm residual blocks, as the reference: x + attn(x), norm; x + ff(x), norm."""

    def __init__(self, cfg: AnomalyTransformerConfig) -> None:
        super().__init__()
        self.attn = AnomalyAttention(cfg)
        self.ff = nn.Sequential(nn.Linear(cfg.d_model, cfg.d_ff), nn.GELU(), nn.Dropout(cfg.dropout),
                                nn.Linear(cfg.d_ff, cfg.d_model))
        self.norm1, self.norm2 = nn.LayerNorm(cfg.d_model), nn.LayerNorm(cfg.d_model)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        a, series, prior = self.attn(x)
        x = self.norm1(x + self.drop(a))
        return self.norm2(x + self.drop(self.ff(x))), series, prior


class AnomalyTransformer(nn.Module):
    """Embedding, positions, Anomaly-Attention layers and a reconstruction head. `forward` gives the served
    scores (B, W) in [0, 1); `associations` what the loss needs."""

    def __init__(self, cfg: AnomalyTransformerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Linear(cfg.channels, cfg.d_model)
        self.register_buffer("positions", sinusoidal_positions(cfg.window_size, cfg.d_model), persistent=False)
        self.drop = nn.Dropout(cfg.dropout)
        self.layers = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.e_layers))
        self.norm = nn.LayerNorm(cfg.d_model)
        self.out = nn.Linear(cfg.d_model, cfg.channels)

    def associations(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
        """The reconstruction (B, W, C) of the first `channels` inputs, and each layer's series- and
        prior-associations."""
        x = x[..., : self.cfg.channels]
        h = self.drop(self.embed(x) + self.positions[: x.shape[1]])  # (B, W, D)
        series, priors = [], []
        for layer in self.layers:
            h, s, p = layer(h)
            series.append(s)
            priors.append(p)
        return self.out(self.norm(h)), series, priors

    def discrepancy(self, series: list[torch.Tensor], priors: list[torch.Tensor]) -> torch.Tensor:
        """AssDis per timestep (B, W): the symmetric KL between the two associations, over heads' mean, summed
        over layers."""
        return sum((kl(s, p) + kl(p, s)).mean(dim=1) for s, p in zip(series, priors, strict=True))

    def _parts(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The raw score (B, W) of `cfg.score` and the squared reconstruction error per channel (B, W, C)."""
        recon, series, priors = self.associations(x)
        per_channel = (recon - x[..., : self.cfg.channels]).pow(2)  # (B, W, C)
        error = per_channel.mean(dim=-1)  # (B, W)
        dis = self.discrepancy(series, priors)
        if self.cfg.score == "softmax":
            return torch.softmax(-dis * self.cfg.temperature, dim=-1) * error, per_channel
        return error / (1.0 + dis / self.cfg.e_layers), per_channel

    def raw_scores(self, x: torch.Tensor) -> torch.Tensor:
        """The unbounded anomaly score (B, W) of `cfg.score`."""
        return self._parts(x)[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e = self.raw_scores(x)
        return e / (1.0 + e)

    def forward_with_contrib(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The served scores (B, W) and each channel's share of the point's reconstruction error (B, W, C),
        summing to 1 over channels: the graph's optional `contrib` output (one pass for both)."""
        e, per_channel = self._parts(x)
        share = per_channel / per_channel.sum(dim=-1, keepdim=True).clamp_min(1e-12)
        return e / (1.0 + e), share


def minimax_loss(model: AnomalyTransformer, x: torch.Tensor) -> torch.Tensor:
    """One scalar whose gradient is the reference's two phases summed (two backward passes, one step):
    minimize phase `rec - k * D(S, sg(P))` pushes the series-association away from the (detached) prior;
    maximize phase `rec + k * D(sg(S), P)` pulls the prior towards the (detached) series-association.
    D is the association discrepancy averaged over layers, positions and the batch."""
    recon, series, priors = model.associations(x)
    rec = nn.functional.mse_loss(recon, x[..., : model.cfg.channels])
    n = len(series)
    away = sum((kl(s, p.detach()) + kl(p.detach(), s)).mean() for s, p in zip(series, priors, strict=True)) / n
    toward = sum((kl(p, s.detach()) + kl(s.detach(), p)).mean() for s, p in zip(series, priors, strict=True)) / n
    k = model.cfg.k
    return (rec - k * away) + (rec + k * toward)
