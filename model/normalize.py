"""Normalizers (numpy only): fitted offline, saved in checkpoints and bundles, applied identically online.

Three kinds (`minmax`, the default, `zscore`, and `robust`: median and interquartile range, so that one
extreme point does not set the scale it is measured in) and two scopes:
- `global`: statistics fitted once on the training data, per channel. Right when training and serving
  data share a scale.
- `window`: statistics of each window on its own, per channel. Scale-free: `a * x + b` (a > 0) gives
  the same normalized window as `x`, so one model serves series of any scale.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

Kind = Literal["minmax", "zscore", "robust"]
Scope = Literal["global", "window"]
KINDS: tuple[str, ...] = ("minmax", "zscore", "robust")
SCOPES: tuple[str, ...] = ("global", "window")

# Robust kind: spread = IQR / 1.349 (the standard deviation for Gaussian data), at least this share of the
# standard deviation (windows whose IQR is 0, e.g. sparse counts), and outputs clipped to +-ROBUST_CLIP.
_IQR_TO_STD = 1.349
_ROBUST_MIN_STD_SHARE = 0.1
ROBUST_CLIP = 20.0
# Below this spread (relative to the values' magnitude) a channel counts as flat: it maps to 0.
_FLAT_RTOL = 1e-9


def _safe_spread(spread: np.ndarray, magnitude: np.ndarray) -> np.ndarray:
    flat = spread <= _FLAT_RTOL * (magnitude + 1.0)
    return np.where(flat, 1.0, spread)


@dataclass
class Normalizer:
    """Maps raw values to model input. `offset` and `scale` hold fitted per-channel statistics."""

    kind: Kind = "minmax"
    scope: Scope = "global"
    offset: list[float] = field(default_factory=list)
    scale: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"normalization kind must be one of {KINDS}, got {self.kind!r}")
        if self.scope not in SCOPES:
            raise ValueError(f"normalization scope must be one of {SCOPES}, got {self.scope!r}")

    @property
    def fitted(self) -> bool:
        return self.scope == "window" or bool(self.scale)

    def fit(self, values: np.ndarray) -> Normalizer:
        """Fit global statistics on training values (T, C) or (T,). A no-op for the window scope."""
        if self.scope == "window":
            return self
        v = np.asarray(values, dtype=np.float64)
        v = v.reshape(len(v), -1)  # (T, C)
        offset, spread = self._stats(v, axis=0)
        self.offset = offset.tolist()
        self.scale = _safe_spread(spread, np.abs(offset)).tolist()
        return self

    def _stats(self, v: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
        if self.kind == "minmax":
            lo = v.min(axis=axis)
            return lo, v.max(axis=axis) - lo
        if self.kind == "robust":
            q25, median, q75 = np.quantile(v, [0.25, 0.5, 0.75], axis=axis)
            return median, np.maximum((q75 - q25) / _IQR_TO_STD, _ROBUST_MIN_STD_SHARE * v.std(axis=axis))
        return v.mean(axis=axis), v.std(axis=axis)

    def transform(self, windows: np.ndarray) -> np.ndarray:
        """Normalize windows (B, W, C) -> float32 (B, W, C)."""
        x = np.asarray(windows, dtype=np.float64)
        if x.ndim != 3:
            raise ValueError(f"expected windows of shape (batch, window, channels), got {x.shape}")
        if self.scope == "window":
            offset, spread = self._stats(x, axis=1)  # (B, C) each
            magnitude = np.abs(x).max(axis=1)
            scale = _safe_spread(spread, magnitude)
            out = (x - offset[:, None, :]) / scale[:, None, :]
        else:
            if not self.scale:
                raise ValueError("global normalizer used before fit()")
            out = (x - np.asarray(self.offset)) / np.asarray(self.scale)
        if self.kind == "robust":
            out = np.clip(out, -ROBUST_CLIP, ROBUST_CLIP)
        return out.astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "scope": self.scope, "offset": self.offset, "scale": self.scale}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Normalizer:
        return cls(
            kind=data["kind"],
            scope=data.get("scope", "global"),
            offset=[float(x) for x in data.get("offset", [])],
            scale=[float(x) for x in data.get("scale", [])],
        )
