"""Normalizers (numpy only): fitted offline, saved in checkpoints and bundles, applied identically online.

Three kinds (`minmax`, the default, `zscore`, and `robust`: median and interquartile range, so that one
extreme point does not set the scale it is measured in) and three scopes:
- `global`: statistics fitted once on the training data, per channel. Right when training and serving
  data share a scale.
- `window`: statistics of each window on its own, per channel. Scale-free: `a * x + b` (a > 0) gives
  the same normalized window as `x`, so one model serves series of any scale.
- `series` (kind `zscore` only): each point is standardized, when it arrives, by the running mean and
  standard deviation of its own series' history (exponentially weighted, `halflife` points; see
  `RunningStats`). Scale-free like `window`, but a window keeps its level and spread relative to the
  series' long history, which a per-window normalization removes. The normalization happens point by
  point before windowing (`prepare_series`; the worker keeps the statistics in the series state), so
  `transform` of an already prepared window only casts it.

  With `deviation_halflife` > 0 the series scope also gives, after the C model channels, C *deviation*
  channels: each point's z against long plain statistics of its series (half-life `deviation_halflife`,
  no winsorizing), which the graph's deviation blend reads instead of the model input (see
  `model.families.anomalybert.ModelConfig.deviation_blend`). The encoder reads only the first C channels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

Kind = Literal["minmax", "zscore", "robust"]
Scope = Literal["global", "window", "series"]
KINDS: tuple[str, ...] = ("minmax", "zscore", "robust")
SCOPES: tuple[str, ...] = ("global", "window", "series")

# Series scope: defaults of the running statistics.
DEFAULT_HALFLIFE = 1000.0
# Points before deviations are winsorized in the running update (the spread is not yet reliable).
RUNNING_WARMUP = 32
# A deviation enters the running update clipped to +-RUNNING_CLIP_K running standard deviations, so one
# extreme point (or an anomaly) barely moves the statistics it is measured against.
RUNNING_CLIP_K = 5.0
# Standardized values are clipped to +-SERIES_CLIP (a flat series that starts to move would give +-inf).
SERIES_CLIP = 20.0
# ... and rounded to multiples of INPUT_STEP (2**-18, within 1.9e-6 of the exact ratio): every value on this grid
# within +-SERIES_CLIP is exact in float32 and is a 24-bit integer times the step, which is how the worker keeps
# a series' model inputs in Redis (3 bytes each instead of 4; `stream.state`). Offline and online apply the
# same rounding, so they still agree exactly.
INPUT_STEP = 2.0**-18

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
    halflife: float = DEFAULT_HALFLIFE  # series scope only
    deviation_halflife: float = 0.0  # series scope only; 0: no deviation channels

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"normalization kind must be one of {KINDS}, got {self.kind!r}")
        if self.scope not in SCOPES:
            raise ValueError(f"normalization scope must be one of {SCOPES}, got {self.scope!r}")
        if self.scope == "series" and self.kind != "zscore":
            raise ValueError(f"the series scope supports kind 'zscore' only, got {self.kind!r}")
        if not self.halflife >= 1.0:
            raise ValueError(f"halflife must be >= 1 point, got {self.halflife}")
        if self.deviation_halflife and (self.scope != "series" or not self.deviation_halflife >= 1.0):
            raise ValueError(f"deviation_halflife must be 0, or >= 1 point with the series scope; got "
                             f"{self.deviation_halflife} with scope {self.scope!r}")

    @property
    def fitted(self) -> bool:
        return self.scope != "global" or bool(self.scale)

    @property
    def pointwise(self) -> bool:
        """True when values are normalized point by point, with series state, before windowing."""
        return self.scope == "series"

    def input_channels(self, channels: int) -> int:
        """Width of the model input for `channels` raw channels: doubled by the deviation channels."""
        return 2 * channels if self.deviation_halflife else channels

    def prepare_series(self, values: np.ndarray, stats: RunningStats | None = None) -> np.ndarray:
        """Values (T, C) or (T,) of one series -> what windows are cut from. Standardized by the running
        statistics for the series scope (continuing `stats` when given, which is updated in place);
        unchanged for the other scopes, whose normalization is per window (`transform`)."""
        if not self.pointwise:
            return values
        v = np.asarray(values, dtype=np.float64)
        v2 = v.reshape(len(v), -1)
        stats = stats if stats is not None else RunningStats.empty(self.input_channels(v2.shape[1]))
        out = stats.standardize(v2, self.halflife, self.deviation_halflife)
        return out.reshape(v.shape) if out.shape == v2.shape else out

    def fit(self, values: np.ndarray) -> Normalizer:
        """Fit global statistics on training values (T, C) or (T,). A no-op for the window and series scopes."""
        if self.scope != "global":
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
        if self.scope == "series":
            return x.astype(np.float32)  # standardized point by point already (prepare_series)
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
        out: dict[str, Any] = {"kind": self.kind, "scope": self.scope, "offset": self.offset, "scale": self.scale}
        if self.scope == "series":
            out["halflife"] = self.halflife
            if self.deviation_halflife:
                out["deviation_halflife"] = self.deviation_halflife
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Normalizer:
        return cls(
            kind=data["kind"],
            scope=data.get("scope", "global"),
            offset=[float(x) for x in data.get("offset", [])],
            scale=[float(x) for x in data.get("scale", [])],
            halflife=float(data.get("halflife", DEFAULT_HALFLIFE)),
            deviation_halflife=float(data.get("deviation_halflife", 0.0)),
        )


@dataclass
class RunningStats:
    """Running mean and variance of one series, per channel: the state of the series scope.

    Point `x` is standardized by the statistics of the points before it, `z = (x - mean) / std` (clipped
    to +-SERIES_CLIP; 0 for the first two points), and then added with weight `a = max(1 / n, alpha)`,
    `alpha = 1 - 0.5 ** (1 / halflife)`: a plain running mean for the first ~1.44 halflife points, then an
    exponentially weighted one. After RUNNING_WARMUP points a deviation enters the update clipped to
    +-RUNNING_CLIP_K std (not in the deviation channels: they follow the series' plain history). The
    standardized values are rounded to the INPUT_STEP grid. The worker applies the same `standardize` to each
    point as it arrives, so offline and online values agree exactly.
    """

    count: int
    mean: np.ndarray  # (C,) float64
    var: np.ndarray  # (C,) float64

    @classmethod
    def empty(cls, channels: int) -> RunningStats:
        return cls(0, np.zeros(channels), np.zeros(channels))

    def standardize(self, values: np.ndarray, halflife: float, deviation_halflife: float = 0.0) -> np.ndarray:
        """Standardize values (T, C) in order and absorb them; returns float64 (T, C), or (T, 2C) with
        `deviation_halflife` > 0: then these statistics hold 2C channels, the last C being the deviation
        statistics of the same values (half-life `deviation_halflife`, no winsorizing)."""
        v = np.asarray(values, dtype=np.float64)
        width = len(self.mean)
        if width != (2 if deviation_halflife else 1) * v.shape[1]:
            raise ValueError(f"running statistics of {width} channels for {v.shape[1]} value channels "
                             f"(deviation_halflife {deviation_halflife})")
        # Channel by channel, in plain floats (much faster than numpy scalars, and the worker standardizes a
        # point or a few at a time): `round` rounds half to even, as np.rint does, and z / INPUT_STEP is exact.
        columns, mean, var = [], self.mean.tolist(), self.var.tolist()
        for c in range(width):
            deviation = c >= v.shape[1]
            alpha = 1.0 - 0.5 ** (1.0 / (deviation_halflife if deviation else halflife))
            clip_k = None if deviation else RUNNING_CLIP_K
            n, m, s2, column = self.count, mean[c], var[c], []
            for x in v[:, c % v.shape[1]].tolist():
                n, m, s2, z = _step(n, m, s2, x, alpha, clip_k)
                column.append(round(z / INPUT_STEP) * INPUT_STEP)  # z is finite: _step clips it
            mean[c], var[c] = m, s2
            columns.append(column)
        self.mean[:], self.var[:] = mean, var
        self.count += len(v)
        return np.ascontiguousarray(np.array(columns, dtype=np.float64).reshape(width, len(v)).T)


    def resized(self, channels: int, deviation: bool, inputs: np.ndarray) -> tuple[RunningStats, np.ndarray]:
        """These statistics and the model inputs (T, width) they gave, for `channels` value channels with or
        without deviation channels: added ones start as copies of the model channels' (statistics and
        inputs), so that an upgrade does not start a series' history anew; dropped ones are removed; the
        model channels go on."""
        mean, var, kept = self.mean[:channels], self.var[:channels], inputs[:, :channels]
        if deviation:
            mean, var, kept = np.tile(mean, 2), np.tile(var, 2), np.tile(kept, (1, 2))
        return RunningStats(self.count, mean.copy(), var.copy()), np.ascontiguousarray(kept)


def _step(n: int, mean: float, var: float, x: float, alpha: float,
          clip_k: float | None = RUNNING_CLIP_K) -> tuple[int, float, float, float]:
    """One point of `RunningStats.standardize`: (count, mean, var, z) after point `x`; deviations enter the
    update clipped to +-clip_k std (None: as they are)."""
    if n == 0:
        return 1, x, 0.0, 0.0
    std = math.sqrt(var)
    d = x - mean
    if n == 1 or d == 0.0:
        z = 0.0  # a single point has no spread yet
    elif std <= _FLAT_RTOL * (abs(mean) + 1.0):
        z = math.copysign(SERIES_CLIP, d)  # a flat history that moves
    else:
        z = max(-SERIES_CLIP, min(SERIES_CLIP, d / std))
        if clip_k is not None and n >= RUNNING_WARMUP:
            d = max(-clip_k * std, min(clip_k * std, d))
    a = max(1.0 / (n + 1), alpha)
    return n + 1, mean + a * d, (1.0 - a) * (var + a * d * d), z
