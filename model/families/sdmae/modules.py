"""The self-distilled masked autoencoder in PyTorch: (B, W, C) windows in, (B, W) scores out, and its loss."""

from __future__ import annotations

import torch
from torch import nn

from model.families.anomalybert.modules import sinusoidal_positions
from model.families.sdmae.config import SDMAEConfig


def _stack(cfg: SDMAEConfig, layers: int) -> nn.TransformerEncoder:
    return nn.TransformerEncoder(
        nn.TransformerEncoderLayer(cfg.d_model, cfg.n_heads, cfg.d_ff, cfg.dropout, batch_first=True, norm_first=True),
        layers, enable_nested_tensor=False)


class Decoder(nn.Module):
    """Transformer layers over the encoder's output, then a projection back to the channels."""

    def __init__(self, cfg: SDMAEConfig, layers: int) -> None:
        super().__init__()
        self.layers = _stack(cfg, layers)
        self.norm = nn.LayerNorm(cfg.d_model)
        self.out = nn.Linear(cfg.d_model, cfg.channels)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.out(self.norm(self.layers(h)))


class SelfDistilledMAE(nn.Module):
    """Encoder with a mask token, a deep teacher and a shallow student decoder. `forward` scores the window's
    last `score_last` timesteps, hidden, by the teacher-student discrepancy."""

    def __init__(self, cfg: SDMAEConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Linear(cfg.channels, cfg.d_model)
        self.mask_token = nn.Parameter(torch.zeros(cfg.d_model))
        nn.init.normal_(self.mask_token, std=0.02)
        self.register_buffer("positions", sinusoidal_positions(cfg.window_size, cfg.d_model), persistent=False)
        last = torch.zeros(cfg.window_size, dtype=torch.bool)
        last[-cfg.score_last:] = True
        self.register_buffer("last", last, persistent=False)
        self.encoder = _stack(cfg, cfg.enc_layers)
        self.enc_norm = nn.LayerNorm(cfg.d_model)
        self.teacher = Decoder(cfg, cfg.teacher_layers)
        self.student = Decoder(cfg, cfg.student_layers)
        self.ramp = 1.0  # weight of the anomaly term, set per epoch by the family (not saved)

    def reconstruct(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The teacher's and the student's reconstructions (B, W, C) of `x` with the timesteps where `mask`
        ((B, W) or (W,), True = hidden) replaced by the mask token."""
        x = x[..., : self.cfg.channels]
        h = self.embed(x)
        m = mask.unsqueeze(-1).to(h.dtype)
        if m.dim() == 2:
            m = m.unsqueeze(0)
        h = h * (1 - m) + self.mask_token * m
        h = self.enc_norm(self.encoder(h + self.positions[: x.shape[1]]))
        return self.teacher(h), self.student(h)

    def _discrepancy(self, x: torch.Tensor) -> torch.Tensor:
        """(B, W, C) the served score's per-channel terms (`cfg.score`) on the hidden last `score_last`
        timesteps, zero elsewhere."""
        teacher, student = self.reconstruct(x, self.last)
        terms = (teacher - student).pow(2)
        if self.cfg.score != "discrepancy":
            error = (teacher - x[..., : self.cfg.channels]).pow(2)
            terms = error if self.cfg.score == "error" else terms + error
        return terms * self.last.unsqueeze(-1).to(teacher.dtype)

    def raw_scores(self, x: torch.Tensor) -> torch.Tensor:
        return self._discrepancy(x).mean(dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = self.raw_scores(x)
        return d / (1.0 + d)

    def forward_with_contrib(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        per_channel = self._discrepancy(x)
        d = per_channel.mean(dim=-1)
        total = per_channel.sum(dim=-1, keepdim=True)
        # Outside the scored timesteps there is no discrepancy to share: even shares there.
        share = torch.where(total > 1e-12, per_channel / total.clamp_min(1e-12),
                            torch.full_like(per_channel, 1.0 / self.cfg.channels))
        return d / (1.0 + d), share


def random_mask(batch: int, window: int, ratio: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """(batch, window) bool, True at round(ratio * window) random timesteps of each row (at least one, never
    all)."""
    k = min(window - 1, max(1, round(ratio * window)))
    order = torch.rand(batch, window, generator=generator).argsort(dim=1)
    return order < k


def margin_loss(d: torch.Tensor, margin: float) -> torch.Tensor:
    """max(0, margin - d): zero beyond the margin, linear below it."""
    return torch.clamp(margin - d, min=0.0)


def sdmae_loss(model: SelfDistilledMAE, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
    """`L_rec + lam * L_disc` on a batch, and its parts. `y` (B, W) are soft labels; points with y >= 0.5 are
    labelled anomalies (unlabelled data comes as zeros: normal). Only the hidden timesteps count: the teacher's
    error over all of them, the discrepancy's mean over the normal ones plus the ramped margin term's mean over
    the anomalous ones."""
    cfg = model.cfg
    x = x[..., : cfg.channels]
    b, w, _ = x.shape
    mask = random_mask(b, w, cfg.mask_ratio).to(x.device)
    teacher, student = model.reconstruct(x, mask)
    hidden = mask.to(x.dtype)
    n_hidden = hidden.sum().clamp_min(1.0)
    rec = ((teacher - x).pow(2).mean(dim=-1) * hidden).sum() / n_hidden
    d = (teacher - student).pow(2).mean(dim=-1)  # (B, W)
    anomalous = (y >= 0.5).to(x.dtype) * hidden
    normal = hidden - anomalous
    # Each group's mean over its own hidden timesteps: a handful of labelled anomalies weigh as much as the rest.
    on_normal = (d * normal).sum() / normal.sum().clamp_min(1.0)
    on_anomalies = (margin_loss(d, cfg.margin) * anomalous).sum() / anomalous.sum().clamp_min(1.0)
    disc = on_normal + model.ramp * on_anomalies
    total = rec + cfg.lam * disc
    parts = {"reconstruction": float(rec.detach()), "discrepancy_normal": float(on_normal.detach()),
             "discrepancy_anomalies": float(on_anomalies.detach()), "ramp": float(model.ramp)}
    return total, parts


def ramp(epoch: int, epochs: int, warmup: float) -> float:
    """The anomaly term's weight in `epoch` (1-based) of `epochs`: 0 in the first, rising linearly to 1 at the
    end of the first `warmup` share of the epochs, 1 after."""
    span = warmup * epochs
    if span <= 0:
        return 1.0
    return float(min(1.0, (epoch - 1) / span))
