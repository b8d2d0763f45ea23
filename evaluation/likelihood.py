"""Per-series calibration of raw scores: raw point scores (T,) in, calibrated scores (T,) in [0, 1] out.

`anomaly_likelihood` follows Numenta's anomaly likelihood (Ahmad et al. 2017, used by their NAB
detector): how unusual is the recent mean score compared with the long-run distribution of past
scores of the same series? It is causal (the value at t uses scores up to t only), so the worker can
compute it online, and it needs no labels. It turns a detector whose raw scores sit at different levels
on different series into one whose threshold means the same thing everywhere.
"""

from __future__ import annotations

import numpy as np
from scipy.special import log_ndtr

CALIBRATIONS: tuple[str, ...] = ("none", "likelihood", "tail")
# The tail sketch's scale (`model.surprise`): 0.5 is a tail probability of 1e-3 among the series' own scores.
TAIL_THRESHOLD = 0.5
# Numenta's log scale: a tail probability of 1e-10 maps to 1.0, so 0.5 is a tail probability of 1e-5.
_LOG_TAIL_FLOOR = np.log(1e-10)
# A threshold on the log-likelihood scale means the same on every series; 0.5 is a tail probability 1e-5.
LIKELIHOOD_THRESHOLD = 0.5


def _rolling_mean(x: np.ndarray, window: int) -> np.ndarray:
    """Mean of x[max(0, t-window+1) .. t] for every t."""
    c = np.concatenate([[0.0], np.cumsum(x)])
    t = np.arange(1, len(x) + 1)
    lo = np.maximum(t - window, 0)
    return (c[t] - c[lo]) / (t - lo)


def anomaly_likelihood(scores: np.ndarray, short_window: int = 10, long_window: int = 5000,
                       min_history: int = 300, min_std: float = 0.0173) -> np.ndarray:
    """Log-scaled tail probability of the short-term mean score under a Gaussian of the past ones.

    m_t = mean of the last `short_window` raw scores; mu_t, sd_t = mean and standard deviation of
    m_{t-long_window} .. m_{t-1} (at least `min_history` of them, else the output is 0); sd is floored at
    `min_std` (Numenta's variance floor 3e-4) so that a near-constant score history does not turn noise
    into certainty. The tail probability q_t = Q((m_t - mu_t) / sd_t) is reported as
    log(q_t) / log(1e-10) clipped to [0, 1], Numenta's log scale, so 0.5 means q = 1e-5.
    """
    s = np.asarray(scores, dtype=np.float64)
    n = len(s)
    out = np.zeros(n)
    if n == 0:
        return out
    s = np.where(np.isnan(s), np.nanmin(s) if np.isfinite(s).any() else 0.0, s)
    m = _rolling_mean(s, short_window)
    # Statistics of m over the `long_window` previous values (m_t itself excluded), centred on m_0 so the
    # running sums lose no precision.
    c = m - m[0]
    c1 = np.concatenate([[0.0], np.cumsum(c)])
    c2 = np.concatenate([[0.0], np.cumsum(c * c)])
    t = np.arange(n)
    lo = np.maximum(t - long_window, 0)
    count = t - lo
    ok = count >= max(min_history, 2)
    mean = (c1[t] - c1[lo]) / np.maximum(count, 1)
    var = (c2[t] - c2[lo]) / np.maximum(count, 1) - mean ** 2
    sd = np.maximum(np.sqrt(np.maximum(var, 0.0)), min_std)
    log_tail = log_ndtr(-(c - mean) / sd)  # log Q(z), accurate far into the tail
    out[ok] = np.clip(log_tail[ok] / _LOG_TAIL_FLOOR, 0.0, 1.0)
    return out


def calibrate(scores: np.ndarray, method: str, tail: tuple[float, int] | None = None) -> np.ndarray:
    """Apply a calibration by name (`none` returns the scores unchanged). `tail`: the sketch's (halflife,
    min_history), as a bundle declares them (default: `model.surprise`'s)."""
    if method == "none":
        return np.asarray(scores, dtype=np.float64)
    if method == "likelihood":
        return anomaly_likelihood(scores)
    if method == "tail":
        from model.surprise import TailSketch, calibrate_series

        return calibrate_series(scores, TailSketch(*tail) if tail is not None else TailSketch())
    raise ValueError(f"unknown calibration {method!r}; choose one of {CALIBRATIONS}")
