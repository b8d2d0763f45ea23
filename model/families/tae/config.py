"""The transformer autoencoder's configuration, and its named configurations (`train --config NAME`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from model.families.config_base import FamilyConfig

ADVERSARIES = ("none", "pooled", "cnn")


@dataclass(frozen=True)
class TAEConfig(FamilyConfig):
    """Shape and objective of a transformer autoencoder (the defaults are the `robust` configuration).

    Shape: an input projection with sinusoidal positions, `enc_layers` transformer encoder layers, a
    mean-pooled latent of `latent_dim` through a projection MLP, `dec_layers` transformer decoder layers whose
    queries are the positions plus the latent and whose memory is the encoder's output, and an output
    projection back to the channels. With `generator`, a residual correction conditioned on the latent and
    `noise_dim` Gaussian noise is added to the reconstruction (the noise is zero when serving).

    Objective, on a masked and a clean view of each window (geometric spans, `mask_ratio` of the timesteps in
    spans of `mean_span` on average; 0 turns masking off):
    `w_rec * MSE(recon(masked), x) + w_masked * MSE on the masked positions only
    + w_contrastive * InfoNCE(latent(masked), latent(clean)) + w_adversarial * adversarial`.
    `adversary`: `pooled` tells the time-mean of a reconstruction from a real window's (an MLP); `cnn`
    judges whole sequences (three 1-D convolutions); `none` has no adversarial term. The discriminator steps
    every `disc_every` generator steps with its own learning rate `disc_lr`.

    The served score of a timestep is its squared reconstruction error (of the clean window) averaged over
    channels, e, served as e / (1 + e) in [0, 1); each channel's share of it is the `contrib` output."""

    window_size: int = 128
    stride: int = 32
    channels: int = 1
    d_model: int = 128
    n_heads: int = 4
    enc_layers: int = 4
    dec_layers: int = 2
    d_ff: int = 256
    dropout: float = 0.1
    latent_dim: int = 64
    generator: bool = True
    noise_dim: int = 16
    mask_ratio: float = 0.15
    mean_span: float = 3.0
    temperature: float = 0.1
    w_rec: float = 1.0
    w_masked: float = 1.0
    w_contrastive: float = 0.1
    w_adversarial: float = 0.01
    adversary: str = "pooled"
    disc_every: int = 1
    disc_lr: float = 1e-4

    family_name = "tae"

    def __post_init__(self) -> None:
        self.check_shape(("window_size", "stride", "channels", "d_model", "n_heads", "enc_layers", "dec_layers",
                          "d_ff", "latent_dim", "noise_dim", "disc_every"))
        if not 0.0 <= self.mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be in [0, 1), got {self.mask_ratio}")
        if self.mean_span < 1.0 or self.temperature <= 0 or self.disc_lr <= 0:
            raise ValueError("mean_span must be >= 1, temperature and disc_lr > 0")
        for name in ("w_rec", "w_masked", "w_contrastive", "w_adversarial"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.adversary not in ADVERSARIES:
            raise ValueError(f"adversary must be one of {ADVERSARIES}, got {self.adversary!r}")

    @property
    def adversarial(self) -> bool:
        """Whether training has a discriminator (and its second optimizer)."""
        return self.adversary != "none" and self.w_adversarial > 0



# The named configurations: the model's fields, and the training settings each design was published with
# (epochs, batch size, generator learning rate, weight decay); an option given on the command line wins.
CONFIGS: dict[str, dict[str, dict[str, Any]]] = {
    # The first design: a d_model 128 encoder-decoder on sequences of 128 every 32 points, a generator
    # residual, a discriminator on time-pooled reconstructions; AdamW with gradient clipping.
    "robust": {"model": {}, "train": {"epochs": 10, "batch_size": 64, "lr": 1e-4, "weight_decay": 0.01}},
    # The second design: window 100, a 1-D CNN discriminator on whole sequences, 50 * MSE + 0.05 * adversarial,
    # Adam (no weight decay) with 1e-4 for the generator and 1e-5 for the discriminator, 30 epochs of 64.
    "gan-cnn": {"model": {"window_size": 100, "stride": 1, "generator": False, "w_rec": 50.0, "w_masked": 0.0,
                          "w_contrastive": 0.0, "w_adversarial": 0.05, "adversary": "cnn", "disc_lr": 1e-5},
                "train": {"epochs": 30, "batch_size": 64, "lr": 1e-4, "weight_decay": 0.0}},
    # The ablation the contamination study compares against: the robust shape as a plain autoencoder (no
    # masking, no contrastive loss, no generator, no discriminator).
    "plain": {"model": {"generator": False, "mask_ratio": 0.0, "w_masked": 0.0, "w_contrastive": 0.0,
                        "w_adversarial": 0.0, "adversary": "none"},
              "train": {"epochs": 10, "batch_size": 64, "lr": 1e-4, "weight_decay": 0.01}},
}
