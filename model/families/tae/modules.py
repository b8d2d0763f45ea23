"""The transformer autoencoder in PyTorch: (B, W, C) windows in, (B, W) scores out; its discriminators and
the two sides of its adversarial objective."""

from __future__ import annotations

import torch
from torch import nn

from model.families.anomalybert.modules import sinusoidal_positions
from model.families.tae.config import TAEConfig
from model.families.tae.losses import geometric_mask, info_nce


class PooledDiscriminator(nn.Module):
    """The robust design's discriminator: real or reconstructed, from a window's time-mean (B, C) -> logit."""

    def __init__(self, cfg: TAEConfig) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(cfg.channels, cfg.d_model), nn.LeakyReLU(0.2),
                                 nn.Linear(cfg.d_model, cfg.d_model // 2), nn.LeakyReLU(0.2),
                                 nn.Linear(cfg.d_model // 2, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.mean(dim=1)).squeeze(-1)  # (B,)


class CNNDiscriminator(nn.Module):
    """The second design's discriminator: three 1-D convolutions over the whole sequence (B, W, C) -> logit."""

    def __init__(self, cfg: TAEConfig) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv1d(cfg.channels, 64, 5, padding=2), nn.LeakyReLU(0.2),
                                 nn.Conv1d(64, 128, 5, padding=2, stride=2), nn.LeakyReLU(0.2),
                                 nn.Conv1d(128, 1, 5, padding=2, stride=2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.transpose(1, 2)).mean(dim=(1, 2))  # (B,)


class TransformerAutoencoder(nn.Module):
    """Encoder, pooled latent, decoder and output projection (the served graph), plus the generator residual
    and the discriminator that training alone uses."""

    def __init__(self, cfg: TAEConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        self.embed = nn.Linear(cfg.channels, d)
        self.register_buffer("positions", sinusoidal_positions(cfg.window_size, d), persistent=False)
        self.encoder = nn.TransformerEncoder(
            nn.TransformerEncoderLayer(d, cfg.n_heads, cfg.d_ff, cfg.dropout, batch_first=True, norm_first=True),
            cfg.enc_layers, enable_nested_tensor=False)
        self.enc_norm = nn.LayerNorm(d)
        self.latent = nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.Linear(d, cfg.latent_dim))
        self.from_latent = nn.Linear(cfg.latent_dim, d)
        self.decoder = nn.TransformerDecoder(
            nn.TransformerDecoderLayer(d, cfg.n_heads, cfg.d_ff, cfg.dropout, batch_first=True, norm_first=True),
            cfg.dec_layers)
        self.dec_norm = nn.LayerNorm(d)
        self.out = nn.Linear(d, cfg.channels)
        self.generator = (nn.Sequential(nn.Linear(d + cfg.latent_dim + cfg.noise_dim, d), nn.GELU(),
                                        nn.Linear(d, cfg.channels)) if cfg.generator else None)
        self.discriminator: nn.Module | None = None
        if cfg.adversarial:
            self.discriminator = PooledDiscriminator(cfg) if cfg.adversary == "pooled" else CNNDiscriminator(cfg)

    def reconstruct(self, x: torch.Tensor, noise: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """The reconstruction (B, W, C) of the first `channels` inputs and the latent (B, latent_dim). With
        `noise`, the generator's residual sees Gaussian noise (training); else zeros (serving)."""
        x = x[..., : self.cfg.channels]
        w = x.shape[1]
        pos = self.positions[:w]
        h = self.enc_norm(self.encoder(self.embed(x) + pos))  # (B, W, D)
        z = self.latent(h.mean(dim=1))  # (B, L)
        queries = pos.unsqueeze(0) + self.from_latent(z).unsqueeze(1)  # (B, W, D)
        g = self.dec_norm(self.decoder(queries, h))
        recon = self.out(g)
        if self.generator is not None:
            b = x.shape[0]
            eps = (torch.randn(b, w, self.cfg.noise_dim, device=x.device) if noise
                   else torch.zeros(b, w, self.cfg.noise_dim, device=x.device, dtype=x.dtype))
            recon = recon + self.generator(torch.cat([g, z.unsqueeze(1).expand(-1, w, -1), eps], dim=-1))
        return recon, z

    def _errors(self, x: torch.Tensor) -> torch.Tensor:
        recon, _ = self.reconstruct(x)
        return (recon - x[..., : self.cfg.channels]).pow(2)  # (B, W, C)

    def raw_scores(self, x: torch.Tensor) -> torch.Tensor:
        """The squared reconstruction error averaged over channels (B, W)."""
        return self._errors(x).mean(dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e = self.raw_scores(x)
        return e / (1.0 + e)

    def forward_with_contrib(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The served scores (B, W) and each channel's share of the point's error (B, W, C), summing to 1."""
        per_channel = self._errors(x)
        e = per_channel.mean(dim=-1)
        share = per_channel / per_channel.sum(dim=-1, keepdim=True).clamp_min(1e-12)
        return e / (1.0 + e), share

    def generator_parameters(self) -> list[nn.Parameter]:
        """Everything but the discriminator: what the generator's (the main) optimizer steps."""
        disc = {id(p) for p in self.discriminator.parameters()} if self.discriminator is not None else set()
        return [p for p in self.parameters() if id(p) not in disc]


def _real_fake_loss(logits: torch.Tensor, real: bool) -> torch.Tensor:
    target = torch.ones_like(logits) if real else torch.zeros_like(logits)
    return nn.functional.binary_cross_entropy_with_logits(logits, target)


def generator_loss(model: TransformerAutoencoder, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
    """The autoencoder's loss on a batch of normalized windows, and its weighted-before parts (for the
    training history): reconstruction of the clean window from the masked view, the masked positions alone,
    InfoNCE between the masked and the clean view's latents, and the adversarial term (fool the
    discriminator). Terms whose weight is 0 are not computed."""
    cfg = model.cfg
    x = x[..., : cfg.channels]
    b, w, _ = x.shape
    if cfg.mask_ratio > 0:
        mask = geometric_mask(b, w, cfg.mask_ratio, cfg.mean_span).to(x.device)
        masked_view = x.masked_fill(mask.unsqueeze(-1), 0.0)
    else:
        mask, masked_view = None, x
    recon, z_masked = model.reconstruct(masked_view, noise=True)
    err = (recon - x).pow(2)  # (B, W, C)
    parts: dict[str, torch.Tensor] = {"reconstruction": err.mean()}
    if cfg.w_masked > 0 and mask is not None:
        m = mask.unsqueeze(-1).to(err.dtype)
        parts["masked"] = (err * m).sum() / (m.sum() * err.shape[-1]).clamp_min(1.0)
    if cfg.w_contrastive > 0:
        _, z_clean = model.reconstruct(x, noise=True)
        parts["contrastive"] = info_nce(z_masked, z_clean, cfg.temperature)
    if cfg.adversarial:
        assert model.discriminator is not None
        parts["adversarial"] = _real_fake_loss(model.discriminator(recon), real=True)
    weights = {"reconstruction": cfg.w_rec, "masked": cfg.w_masked, "contrastive": cfg.w_contrastive,
               "adversarial": cfg.w_adversarial}
    total = sum(weights[k] * v for k, v in parts.items())
    return total, {k: float(v.detach()) for k, v in parts.items()}  # type: ignore[return-value]


def discriminator_loss(model: TransformerAutoencoder, x: torch.Tensor) -> torch.Tensor:
    """The discriminator's loss on a batch: real windows against the reconstructions of their masked views
    (detached: this step moves the discriminator alone)."""
    cfg = model.cfg
    assert model.discriminator is not None
    x = x[..., : cfg.channels]
    with torch.no_grad():
        view = x
        if cfg.mask_ratio > 0:
            view = x.masked_fill(geometric_mask(*x.shape[:2], cfg.mask_ratio, cfg.mean_span)
                                 .to(x.device).unsqueeze(-1), 0.0)
        fake, _ = model.reconstruct(view, noise=True)
    return 0.5 * (_real_fake_loss(model.discriminator(x), real=True)
                  + _real_fake_loss(model.discriminator(fake), real=False))
