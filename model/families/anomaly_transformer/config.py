"""The Anomaly Transformer's configuration (Xu et al., ICLR 2022): the reference defaults, carried by every
checkpoint and bundle of the family."""

from __future__ import annotations

from dataclasses import dataclass

from model.families.config_base import FamilyConfig

SCORES = ("softmax", "plain")


@dataclass(frozen=True)
class AnomalyTransformerConfig(FamilyConfig):
    """Shape and objective of an Anomaly Transformer. The defaults are the reference's (d_model 256, 8 heads,
    3 layers, d_ff 512, window 100); `k` weighs the association discrepancy in the minimax loss (reference 3)
    and `temperature` scales it in the score (reference 50).

    `score`: `softmax`, the paper's, softmax(-AssDis) over the window times the reconstruction error (the
    softmax makes one point of every window stand out, which point adjustment rewards); `plain`, the
    reconstruction error over (1 + AssDis / layers), without the softmax. Either raw score e is served as
    e / (1 + e), in [0, 1)."""

    window_size: int = 100
    stride: int = 1
    channels: int = 1
    d_model: int = 256
    n_heads: int = 8
    e_layers: int = 3
    d_ff: int = 512
    dropout: float = 0.0
    k: float = 3.0
    temperature: float = 50.0
    score: str = "softmax"

    family_name = "anomaly-transformer"

    def __post_init__(self) -> None:
        self.check_shape(("window_size", "stride", "channels", "d_model", "n_heads", "e_layers", "d_ff"))
        if self.k < 0 or self.temperature <= 0:
            raise ValueError(f"k must be >= 0 and temperature > 0, got {self.k} and {self.temperature}")
        if self.score not in SCORES:
            raise ValueError(f"score must be one of {SCORES}, got {self.score!r}")
