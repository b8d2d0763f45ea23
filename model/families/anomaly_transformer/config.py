"""The Anomaly Transformer's configuration (Xu et al., ICLR 2022): the reference defaults, carried by every
checkpoint and bundle of the family."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

SCORES = ("softmax", "plain")


@dataclass(frozen=True)
class AnomalyTransformerConfig:
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

    def __post_init__(self) -> None:
        for name in ("window_size", "stride", "channels", "d_model", "n_heads", "e_layers", "d_ff"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})")
        if self.stride > self.window_size:
            raise ValueError(f"stride ({self.stride}) must not exceed window_size ({self.window_size})")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.k < 0 or self.temperature <= 0:
            raise ValueError(f"k must be >= 0 and temperature > 0, got {self.k} and {self.temperature}")
        if self.score not in SCORES:
            raise ValueError(f"score must be one of {SCORES}, got {self.score!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AnomalyTransformerConfig:
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown anomaly-transformer config keys: {sorted(unknown)}")
        return cls(**data)
