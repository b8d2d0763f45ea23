"""Novelty against a series' own recent past: a causal left discord, model inputs in, point scores in [0, 1] out.

The score of point t is how far the shape of the last `length` points (the subsequence ending at t,
z-normalized) lies from its nearest neighbour among the earlier, non-overlapping subsequences inside the
last `history` points of the same series: `sqrt(2 (1 - r)) / 2`, with r the best correlation (0: the
shape was seen before, 1: it is the opposite of anything seen). It is the left matrix profile of
stumpy's STAMPI restricted to a sliding history, so it is causal and needs only the last `history`
points, which is what a stream worker could keep per series.

This is what a 64-point window and a z-score cannot see: a heartbeat with one odd beat, a daily cycle
that skips a peak, whose values all stay within the usual range. Its weakness is the opposite one: on
noisy series every shape is a little new, so it is served beside the model's score, each turned into a
per-series surprise (`model.surprise`) and the larger one kept (`combine_surprise`), never alone.

Served when a bundle's `calibration.per_series.novelty` says so (`model.serving.Geometry.novel`): its input is
the model's standardized input channels, kept per series as float16 (`as_history`, 2 bytes a point and
channel; the last `history - 1` points in the worker's state), several channels taking their largest
discord. The worker and the offline commands call the same functions on the same float16 values.
Numpy only: the worker ships `model/*.py`.

A variance floor (`eps`, in the units of the input: the model's standardized inputs) keeps flat
stretches from blowing their small wiggles up to unit spread, as `window_standardize` does in the model.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from model.surprise import DECADES, TailSketch, calibrate_series

FLOAT16_MAX = 60000.0  # inputs are clipped to this before float16 (whose largest finite value is 65504)
DEFAULT_LENGTH = 128
DEFAULT_HISTORY = 2048
EPS = 1e-2
_BLOCK = 512  # queries per matrix product: bounds memory to _BLOCK x (_BLOCK + history) floats
_FEW = 16  # up to this many new points (a worker's usual batch for one series), one correlation each


def parse_novelty(text: str) -> tuple[int, int, float]:
    """`LENGTH/HISTORY[/RARITY]` (e.g. `128/2048` or `128/2048/4`) -> (length, history, rarity), or ValueError
    saying what is wrong. RARITY (default 1): how many times rarer than the threshold's tail probability
    the novelty must be to count (`discount`)."""
    parts = text.split("/")
    try:
        length, history = int(parts[0]), int(parts[1])
        rarity = float(parts[2]) if len(parts) == 3 else 1.0
        if len(parts) not in (2, 3):
            raise ValueError
    except (ValueError, IndexError):
        raise ValueError(f"expected LENGTH/HISTORY[/RARITY] such as 128/2048 or 128/2048/4, got {text!r}") from None
    if length < 4 or history < 2 * length or not rarity >= 1.0:
        raise ValueError(f"need LENGTH >= 4, HISTORY >= 2 * LENGTH and RARITY >= 1, got {text}")
    return length, history, rarity


def discount(rarity: float) -> float:
    """What is taken off the novelty's surprise so that it counts as `rarity` times less rare:
    log10(rarity) / DECADES (0.1003 for 4)."""
    return math.log10(rarity) / DECADES


def as_history(inputs: np.ndarray, channels: int) -> np.ndarray:
    """What the novelty sees of model inputs (T, input_channels): the first `channels` columns as float16."""
    x = np.asarray(inputs, dtype=np.float32).reshape(len(inputs), -1)[:, :channels]
    return np.clip(x, -FLOAT16_MAX, FLOAT16_MAX).astype(np.float16)


def novelty(history: np.ndarray, length: int, span: int, start: int = 0, stride: int = 1) -> np.ndarray:
    """Novelty of points start..T-1 of `history` (T, C) float16 (`as_history`), the largest over channels;
    `span` is the HISTORY of the module docstring. `start` > 0: the points before it are only the past (a
    worker's kept history); they must reach back `span - 1` points or to the series' first point."""
    x = np.asarray(history, dtype=np.float64).reshape(len(history), -1)
    per_channel = [left_discord(x[:, c], length, span, stride, start=start) for c in range(x.shape[1])]
    return np.fmax.reduce(per_channel, axis=0) if per_channel else np.full(len(x) - start, np.nan)


def left_discord(x: np.ndarray, length: int = DEFAULT_LENGTH, history: int = DEFAULT_HISTORY,
                 stride: int = 1, eps: float = EPS, start: int = 0) -> np.ndarray:
    """Novelty (T - start,) of points start..T-1 of a univariate series `x` (T,), see the module docstring.

    Points before the first subsequence with a neighbour (t < 2 * length - 1) are NaN: nothing to compare
    with yet, so a calibration learns nothing from them (a 0 there would make the first real novelty of
    every series look rare). With `stride` > 1
    only every stride-th point is computed and the points in between take the next computed score (a
    point's score is final up to stride - 1 points later, as the model's scores are at that eval stride).
    """
    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    out = np.full(n, np.nan)
    if n < 2 * length or n <= start:
        return out[start:]
    if stride == 1 and 0 < n - start <= _FEW:
        return _few(x, length, history, eps, start)
    lo_sub = max(0, start - length + 1 - (history - length))  # the oldest subsequence any query can reach
    sub = sliding_window_view(x[lo_sub:], length)  # (N, L): subsequence i ends at point lo_sub + i + L - 1
    centred = sub - sub.mean(axis=1, keepdims=True)
    unit = centred / np.sqrt((centred * centred).mean(axis=1, keepdims=True) + eps)  # (N, L)
    first = max(length, start - length + 1) - lo_sub  # the first query: has a neighbour and ends at >= start
    queries = np.arange(first, len(sub))
    if stride > 1:  # the computed subsequences end at points stride-1, 2*stride-1, ... (and the last)
        ends = queries + length - 1 + lo_sub
        queries = np.union1d(queries[ends % stride == stride - 1], queries[-1:])
    best = np.full(len(queries), -np.inf)
    for k0 in range(0, len(queries), _BLOCK):
        q = queries[k0:k0 + _BLOCK]
        lo, hi = max(0, q[0] - (history - length)), q[-1] - length + 1  # candidates j in [i-(H-L), i-L]
        corr = unit[q] @ unit[lo:hi].T / length  # (Q, J)
        j = np.arange(lo, hi)[None, :]
        i = q[:, None]
        corr = np.where((j <= i - length) & (j >= i - (history - length)), corr, -np.inf)
        best[k0:k0 + len(q)] = corr.max(axis=1)
    score = np.sqrt(np.clip(2.0 * (1.0 - best), 0.0, 4.0)) / 2.0
    ends = queries + length - 1 + lo_sub
    if stride == 1:
        out[ends] = score
        return out[start:]
    # every point from the previous computed end (exclusive) to this one takes this one's score
    at = np.searchsorted(ends, np.arange(n))
    take = at < len(ends)
    out[take] = score[at[take]]
    out[: ends[0] - stride + 1] = np.nan  # before the first computed window's reach nothing is known
    return out[start:]


def _few(x: np.ndarray, length: int, history: int, eps: float, start: int) -> np.ndarray:
    """`left_discord` of the last few points, one sliding correlation each (what a worker computes per series
    and batch): the same values as the matrix products, within float rounding."""
    out = np.full(len(x) - start, np.nan)
    for t in range(max(start, 2 * length - 1), len(x)):
        q = x[t - length + 1 : t + 1]
        q = q - q.mean()
        q = q / np.sqrt((q * q).mean() + eps)  # the query, unit as in the matrix path
        seg = x[max(0, t - history + 1) : t - length + 1]  # every neighbour lies in it: ends <= t - length
        c1 = np.concatenate([[0.0], np.cumsum(seg)])
        c2 = np.concatenate([[0.0], np.cumsum(seg * seg)])
        mean = (c1[length:] - c1[:-length]) / length
        var = np.maximum((c2[length:] - c2[:-length]) / length - mean * mean, 0.0)
        # sum((s - mean) q) = sum(s q), as q sums to 0
        corr = np.correlate(seg, q, "valid") / (length * np.sqrt(var + eps))
        out[t - start] = np.sqrt(np.clip(2.0 * (1.0 - corr.max()), 0.0, 4.0)) / 2.0
    return out


def combine_surprise(raw: np.ndarray, novelty: np.ndarray, tail: tuple[float, int], rarity: float = 1.0
                     ) -> np.ndarray:
    """The larger of the two per-series surprises (each its own `TailSketch(*tail)`, in arrival order), the
    novelty's lowered by `discount(rarity)`: a point alerts when its model score is rarer than the
    threshold's share of the series' own past, or its shape `rarity` times rarer than that. NaN raw scores
    stay NaN; a NaN novelty (no shape to compare with yet) leaves the model's surprise alone."""
    a = calibrate_series(raw, TailSketch(*tail))
    b = calibrate_series(novelty, TailSketch(*tail))
    return np.where(np.isnan(a), np.nan, np.fmax(a, lowered(b, rarity)))


def lowered(surprise: np.ndarray, rarity: float) -> np.ndarray:
    """A novelty surprise counted `rarity` times less rare (never below 0; NaN stays NaN)."""
    return surprise if rarity == 1.0 else np.maximum(surprise - discount(rarity), 0.0)
