"""Windowing and overlapping-window score averaging (numpy only), shared by `detect` and the worker.

Windows end at indices `e = W-1 + k*stride`; with a phase p (0 < p < stride) the first still ends at W-1 and
the others at `W-1 + p + k*stride`, so that the series of a fleet, which often start together, do not all
complete their windows on the same point (the worker staggers them by series id, `series_phase`: at a stride
of 8 every batch then holds about an eighth of the windows instead of every eighth batch all of them). A
point's score is the mean of the scores of the windows that cover it, restricted to the windows that exist
when the point is final: point `i` is final once point `max(i + lag, W-1)` has arrived, so it averages the
windows ending at `e <= i + lag`, and the points before the first full window all take the first window.
`lag = W-1` averages every window that covers a point; `lag = 0` uses the newest window alone.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable

import numpy as np


def check_lag(window_size: int, stride: int, lag: int) -> None:
    """A point must see at least one window by the time it is final, hence `stride - 1 <= lag`."""
    if not 0 <= lag <= window_size - 1:
        raise ValueError(f"score_lag must be in [0, {window_size - 1}] for window {window_size}, got {lag}")
    if lag < stride - 1:
        raise ValueError(f"score_lag ({lag}) must be >= stride - 1 ({stride - 1}) so every point is scored")


def series_stagger(series_id: str) -> int:
    """A number of the series' id alone (its CRC-32: the same on every worker and run) whose remainder by the
    stride is the phase its windows are served at (`series_phase`)."""
    return zlib.crc32(series_id.encode())


def series_phase(series_id: str, stride: int) -> int:
    """Where a series' windows fall at `stride` (the phase of `window_ends`), as the worker serves them: spread
    evenly over 0..stride-1 across a fleet's series."""
    return series_stagger(series_id) % stride


def ends_after(first_end: int, n_from: int, n_to: int, stride: int, phase: int = 0) -> np.ndarray:
    """The window ends in [n_from, n_to) of a run of windows whose first ends at `first_end` and the others at
    `first_end + phase + k*stride` (phase 0: `first_end + k*stride`)."""
    if n_from <= first_end:
        if first_end >= n_to:
            return np.empty(0, dtype=np.int64)
        if phase == 0:
            return np.arange(first_end, n_to, stride, dtype=np.int64)
        return np.concatenate([np.array([first_end], np.int64),
                               np.arange(first_end + phase, n_to, stride, dtype=np.int64)])
    first = first_end + (phase or stride)
    if n_from > first:
        first += -(-(n_from - first) // stride) * stride
    if first >= n_to:  # at a stride above 1, most pushes end no window
        return np.empty(0, dtype=np.int64)
    return np.arange(first, n_to, stride, dtype=np.int64)


def window_ends(n_points: int, window_size: int, stride: int, phase: int = 0) -> np.ndarray:
    """Inclusive end index of every full window in a series of `n_points` (the phase: see the module)."""
    if not 0 <= phase < max(stride, 1):
        raise ValueError(f"phase must be in [0, {stride - 1}] at stride {stride}, got {phase}")
    if n_points < window_size:
        return np.empty(0, dtype=np.int64)
    return ends_after(window_size - 1, 0, n_points, stride, phase)


def make_windows(values: np.ndarray, window_size: int, stride: int, phase: int = 0) -> np.ndarray:
    """(T, C) or (T,) values -> (N, W, C) windows ending at `window_ends`."""
    v = np.asarray(values)
    v = v.reshape(len(v), -1)  # (T, C)
    if len(v) < window_size:
        return np.empty((0, window_size, v.shape[1]), dtype=v.dtype)
    view = np.lib.stride_tricks.sliding_window_view(v, window_size, axis=0)  # (T-W+1, C, W)
    if phase:
        return view[window_ends(len(v), window_size, stride, phase) - (window_size - 1)].transpose(0, 2, 1)
    return view[::stride].transpose(0, 2, 1)  # (N, W, C)


def in_batches(score: Callable[[np.ndarray], np.ndarray], windows: np.ndarray, batch: int,
               window_size: int) -> np.ndarray:
    """Window scores (N, W) of windows (N, W, C), `batch` windows per call of `score` (bounds memory: attention
    is (B, H, W, W)); the scores do not depend on the batch size. Used by the worker and every offline path."""
    if len(windows) == 0:
        return np.empty((0, window_size), np.float32)
    if len(windows) <= batch:
        return score(windows)
    return np.concatenate([score(windows[i:i + batch]) for i in range(0, len(windows), batch)])


def included_offsets(window_size: int, lag: int, first: bool) -> slice:
    """Offsets within a window whose points still take this window's score: the first window counts for
    all of its points, later ones only for the points at most `lag` steps older than the window end."""
    return slice(0, window_size) if first else slice(window_size - 1 - lag, window_size)


def aggregate(window_scores: np.ndarray, n_points: int, window_size: int, stride: int,
              lag: int | None = None, phase: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Per-point mean of covering window scores. Returns (scores (T,), counts (T,)); NaN where count is 0."""
    lag = window_size - 1 if lag is None else lag
    check_lag(window_size, stride, lag)
    ends = window_ends(n_points, window_size, stride, phase)
    if len(window_scores) != len(ends):
        raise ValueError(f"{len(window_scores)} window scores for {len(ends)} windows")
    sums = np.zeros(n_points, dtype=np.float64)
    counts = np.zeros(n_points, dtype=np.int64)
    for k, e in enumerate(ends):
        sl = included_offsets(window_size, lag, first=(k == 0))
        start = e - window_size + 1
        sums[start + sl.start:start + sl.stop] += window_scores[k, sl]
        counts[start + sl.start:start + sl.stop] += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        scores = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    return scores, counts


def finalizing_windows(ends: np.ndarray, window_size: int, lag: int, points: np.ndarray) -> np.ndarray:
    """For each point index, the position in `ends` (ascending window ends) of the window that finalizes it:
    the first that ends at or after `point + lag` and still covers the point, else the newest that covers it;
    -1 when none covers it. The per-channel contributions of a point are read from that window, online (the
    windows of the batch that finalized it) and offline (`point_contributions`) alike."""
    ends = np.asarray(ends, dtype=np.int64)
    points = np.asarray(points, dtype=np.int64)
    out = np.full(len(points), -1, dtype=np.int64)
    if len(ends) == 0:
        return out
    first = np.searchsorted(ends, points + lag, side="left")
    newest = np.searchsorted(ends, points + window_size - 1, side="right") - 1  # the last window starting <= point
    for j, (i, a, b) in enumerate(zip(points, first, newest, strict=True)):
        if a < len(ends) and ends[a] - window_size + 1 <= i:
            out[j] = a
        elif b >= 0 and ends[b] >= i:
            out[j] = b
    return out


def point_contributions(window_contrib: np.ndarray, n_points: int, window_size: int, stride: int,
                        lag: int, phase: int = 0) -> np.ndarray:
    """Per-point contributions (T, C) from per-window ones (N, W, C), each point's from the window that
    finalizes it (`finalizing_windows`), as the worker publishes them; NaN where no window covers a point."""
    ends = window_ends(n_points, window_size, stride, phase)
    if len(window_contrib) != len(ends):
        raise ValueError(f"{len(window_contrib)} window contributions for {len(ends)} windows")
    out = np.full((n_points, window_contrib.shape[-1] if window_contrib.ndim == 3 else 0), np.nan)
    points = np.arange(n_points)  # the first window finalizes every point before it ends
    for i, k in zip(points, finalizing_windows(ends, window_size, lag, points), strict=True):
        if k >= 0:
            out[i] = window_contrib[k, i - (ends[k] - window_size + 1)]
    return out
