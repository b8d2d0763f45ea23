"""The self-distilled masked autoencoder's configuration."""

from __future__ import annotations

from dataclasses import dataclass

from model.families.config_base import FamilyConfig

SCORES = ("discrepancy", "error", "both")


@dataclass(frozen=True)
class SDMAEConfig(FamilyConfig):
    """Shape and objective of a self-distilled masked autoencoder.

    Shape: an input projection, a learnable mask token put in place of the hidden timesteps, sinusoidal
    positions, an `enc_layers` transformer encoder (d_model 64, 4 heads), then two decoders over the encoder's
    output: a deep teacher (`teacher_layers`) and a shallow student (`student_layers`), each projecting back to
    the channels.

    Training hides `mask_ratio` of each window's timesteps at random (0.4-0.75). The loss is the teacher's MSE
    on the hidden timesteps plus `lam` x the discrepancy term. The discrepancy d = ||teacher - student||^2 (mean
    over channels) at the hidden timesteps is minimized on normal and unlabelled points and pushed above
    `margin` on labelled anomalies, max(0, margin - d). The anomaly part is ramped in linearly over the first
    `warmup` share of the epochs.

    Serving hides the last `score_last` timesteps of each window and scores them by `score`, e, as e / (1 + e):
    `discrepancy` (the reference's) is d there; `error` is the teacher's error in predicting their actual
    values, ||teacher - x||^2 (mean over channels); `both` is the sum. The discrepancy never sees the hidden
    points' own values (they are masked), so it judges how uncertain the newest points are from what came
    before, not whether they are odd; the error does. The other timesteps of a window score 0, so a bundle of
    this family is served with a score lag below `score_last` (its default: stride - 1)."""

    window_size: int = 64
    stride: int = 1
    channels: int = 1
    d_model: int = 64
    n_heads: int = 4
    enc_layers: int = 3
    teacher_layers: int = 4
    student_layers: int = 1
    d_ff: int = 128
    dropout: float = 0.1
    mask_ratio: float = 0.6
    score_last: int = 8
    margin: float = 1.0
    lam: float = 0.5
    warmup: float = 0.2
    score: str = "discrepancy"

    family_name = "sdmae"

    def __post_init__(self) -> None:
        self.check_shape(("window_size", "stride", "channels", "d_model", "n_heads", "enc_layers", "teacher_layers",
                          "student_layers", "d_ff", "score_last"))
        if self.score_last >= self.window_size:
            raise ValueError(f"score_last ({self.score_last}) must be below window_size ({self.window_size})")
        if self.stride > self.score_last:
            raise ValueError(f"stride ({self.stride}) must not exceed score_last ({self.score_last}): every point "
                             "must be among some window's newest")
        if not 0.0 < self.mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be in (0, 1), got {self.mask_ratio}")
        if self.score not in SCORES:
            raise ValueError(f"score must be one of {SCORES}, got {self.score!r}")
        if self.margin <= 0 or self.lam < 0 or not 0.0 <= self.warmup <= 1.0:
            raise ValueError("margin must be > 0, lam >= 0 and warmup in [0, 1]")
