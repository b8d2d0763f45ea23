"""Classical baselines, scored by the same harness as the model: values (T, C) in, point scores (T,) out.

All are causal (the score of point t uses points up to t, plus what was fitted on the seen part) and
higher means more anomalous. Multichannel input is scored per channel and reduced like the model's
scores (`reduce_channels`), except Isolation Forest, which sees all channels of a window at once.
"""

from __future__ import annotations

import numpy as np
from scipy.special import ndtr

from model.windows import make_windows

BASELINES: tuple[str, ...] = ("random", "windowed_gaussian", "iforest")


def reduce_channels(per_channel: np.ndarray, how: str = "max") -> np.ndarray:
    """(T, C) channel scores -> (T,) by `max` (any channel anomalous) or `mean`."""
    if how == "max":
        return per_channel.max(axis=1)
    if how == "mean":
        return per_channel.mean(axis=1)
    raise ValueError(f"unknown channel reduction {how!r}; use max or mean")


def random_scores(n_points: int, seed: int) -> np.ndarray:
    """Uniform noise: the floor every metric should be read against."""
    return np.random.default_rng(seed).random(n_points)


def windowed_gaussian(values: np.ndarray, window: int = 6400, step: int = 100,
                      reduce: str = "max") -> np.ndarray:
    """NAB's windowed Gaussian detector (`nab/detectors/gaussian`), vectorized and per channel.

    The score of point t is 1 - Q(|x_t - mean| / std) over the points seen before t: all of them while
    fewer than `window`, afterwards a window of `window` points that slides forward `step` points at a
    time. The first point scores 0; a zero std counts as 1e-6, as in NAB.
    """
    v = np.asarray(values, dtype=np.float64).reshape(len(values), -1)
    return reduce_channels(np.stack([_windowed_gaussian_1d(v[:, c], window, step)
                                     for c in range(v.shape[1])], axis=1), reduce)


def _windowed_gaussian_1d(x: np.ndarray, window: int, step: int) -> np.ndarray:
    n = len(x)
    mean, std = np.zeros(n), np.ones(n)
    # Growing phase, t = 1..window: statistics of x[0:t] from running sums of values centred on x[0].
    grow = np.arange(1, min(n, window + 1))
    c = x - x[0]
    s1, s2 = np.cumsum(c), np.cumsum(c * c)
    m = s1[grow - 1] / grow
    var = np.maximum(s2[grow - 1] / grow - m * m, 0.0)
    # Round-off leaves tiny variances where NAB's np.std gives exactly 0 (a constant prefix).
    var = np.where(var <= 1e-20 * (1.0 + np.abs(m + x[0])) ** 2, 0.0, var)
    mean[grow], std[grow] = m + x[0], np.sqrt(var)
    # Sliding phase: points window + k*step .. window + (k+1)*step - 1 all see x[k*step : window + k*step].
    for k in range(max(0, -(-(n - window) // step))):
        w = x[k * step: window + k * step]
        block = slice(window + k * step, min(window + (k + 1) * step, n))
        mean[block], std[block] = w.mean(), w.std()
    std = np.where(std == 0.0, 1e-6, std)
    score = 1.0 - ndtr(-np.abs(x - mean) / std)  # 1 - Q(|z|), with Q(z) = ndtr(-z)
    score[0] = 0.0
    return score


def iforest_scores(values: np.ndarray, seen_end: int, window: int = 16, seed: int = 0,
                   n_estimators: int = 100) -> np.ndarray:
    """Isolation Forest on the flattened windows ending at each point, fitted on the seen part only.

    Values are standardized per channel with the seen part's mean and std. Points before the first full
    window get the lowest score of the seen part. Needs at least 32 seen windows, else every score is 0.
    """
    from sklearn.ensemble import IsolationForest

    v = np.asarray(values, dtype=np.float64).reshape(len(values), -1)
    seen = v[:seen_end]
    if seen_end - window + 1 < 32:
        return np.zeros(len(v))
    std = seen.std(axis=0)
    z = (v - seen.mean(axis=0)) / np.where(std > 0, std, 1.0)
    windows = make_windows(z, window, 1).reshape(-1, window * v.shape[1])  # (T-W+1, W*C), ends at W-1..T-1
    forest = IsolationForest(n_estimators=n_estimators, random_state=seed)
    forest.fit(windows[: seen_end - window + 1])
    raw = -forest.score_samples(windows)  # higher = more isolated
    out = np.full(len(v), raw[: seen_end - window + 1].min())
    out[window - 1:] = raw
    return out

