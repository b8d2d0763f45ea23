"""Model configuration: the seed's defaults, carried by every checkpoint and bundle."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any


@dataclass(frozen=True)
class ModelConfig:
    """Shape of an AnomalyBERT encoder. `channels` is part of it so multivariate models can follow."""

    n_layers: int = 3
    d_model: int = 128
    n_heads: int = 4
    d_ff: int = 256
    window_size: int = 64
    stride: int = 1
    dropout: float = 0.1
    channels: int = 1
    # Also feed each window standardized by its own mean and spread (computed inside the graph): the shape
    # of a window next to its level. Made for the `series` normalization scope.
    window_features: bool = False
    # Scores blended with a deviation score of the input (series scope: the point's z against its series'
    # history): score = (1 - b) * sigmoid(logit) + b * erf(|x| / (k * sqrt 2)), b = deviation_blend,
    # k = deviation_scale (|x| = k gives 0.68), averaged over channels. x is the model input, or, when the
    # normalizer adds deviation channels (`Normalizer.deviation_halflife`), those: z against long plain
    # statistics. In the graph, so the worker and every offline command score the same; training's loss
    # sees the encoder's logits only.
    deviation_blend: float = 0.0
    deviation_scale: float = 4.0
    # Points per token: the encoder reads window_size / patch_size tokens, each a linear embedding of
    # patch_size consecutive points (all their input features), and the head gives patch_size point scores
    # per token, so a window patch_size times longer costs about the same. 1: one token per point (the seed's
    # model; its config dict then leaves the key out, so existing checkpoints and bundles are unchanged).
    patch_size: int = 1

    def __post_init__(self) -> None:
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})")
        for name in ("n_layers", "d_model", "n_heads", "d_ff", "window_size", "stride", "channels", "patch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.window_size % self.patch_size:
            raise ValueError(f"window_size ({self.window_size}) must be divisible by patch_size ({self.patch_size})")
        if self.stride > self.window_size:
            raise ValueError(f"stride ({self.stride}) must not exceed window_size ({self.window_size})")
        if not 0.0 <= self.deviation_blend <= 1.0:
            raise ValueError(f"deviation_blend must be in [0, 1], got {self.deviation_blend}")
        if not self.deviation_scale > 0.0:
            raise ValueError(f"deviation_scale must be > 0, got {self.deviation_scale}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    @property
    def tokens(self) -> int:
        """Encoder sequence length: window_size / patch_size."""
        return self.window_size // self.patch_size

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if self.patch_size == 1:  # the seed's shape: the dict of every config written before patches
            del data["patch_size"]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown model config keys: {sorted(unknown)}")
        return cls(**data)
