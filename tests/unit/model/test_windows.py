"""Windows and overlapping-window averaging, checked against a brute-force definition."""

from __future__ import annotations

import numpy as np
import pytest

from model.windows import (
    aggregate,
    check_lag,
    ends_after,
    make_windows,
    point_contributions,
    series_phase,
    window_ends,
)


def _brute(window_scores: np.ndarray, n: int, w: int, stride: int, lag: int, phase: int = 0) -> np.ndarray:
    """Point i averages the windows covering it that end at or before i + lag (the first window always)."""
    ends = window_ends(n, w, stride, phase)
    out = np.full(n, np.nan)
    for i in range(n):
        vals = [window_scores[k, i - (e - w + 1)] for k, e in enumerate(ends)
                if e - w + 1 <= i <= e and (e <= i + lag or k == 0)]
        if vals:
            out[i] = np.mean(vals)
    return out


def test_make_windows_shapes_and_content() -> None:
    v = np.arange(10.0)
    w = make_windows(v, 4, 2)
    assert w.shape == (4, 4, 1)
    np.testing.assert_array_equal(w[1, :, 0], [2, 3, 4, 5])
    np.testing.assert_array_equal(window_ends(10, 4, 2), [3, 5, 7, 9])
    assert make_windows(np.arange(3.0), 4, 1).shape == (0, 4, 1)
    assert make_windows(np.zeros((12, 3)), 5, 1).shape == (8, 5, 3)


@pytest.mark.parametrize(("n", "w", "stride", "lag"), [(30, 8, 1, 7), (30, 8, 1, 0), (30, 8, 1, 3),
                                                        (31, 8, 3, 5), (8, 8, 1, 7)])
def test_aggregate_matches_brute_force(n: int, w: int, stride: int, lag: int) -> None:
    ends = window_ends(n, w, stride)
    ws = np.random.default_rng(n + lag).random((len(ends), w))
    scores, counts = aggregate(ws, n, w, stride, lag)
    np.testing.assert_allclose(scores, _brute(ws, n, w, stride, lag))
    assert counts.max() <= w


@pytest.mark.parametrize(("n", "w", "stride", "lag", "phase"), [(40, 8, 3, 2, 1), (40, 8, 3, 2, 2), (41, 8, 4, 7, 3),
                                                                 (40, 16, 16, 15, 9), (30, 5, 2, 1, 1)])
def test_a_phase_moves_the_windows_after_the_first_and_still_covers_every_point(n: int, w: int, stride: int,
                                                                                 lag: int, phase: int) -> None:
    ends = window_ends(n, w, stride, phase)
    np.testing.assert_array_equal(ends, [w - 1, *range(w - 1 + phase, n, stride)])
    values = np.random.default_rng(n + phase).normal(size=(n, 2))
    windows = make_windows(values, w, stride, phase)
    assert windows.shape == (len(ends), w, 2)
    for k, e in enumerate(ends):
        np.testing.assert_array_equal(windows[k], values[e - w + 1 : e + 1])
    ws = np.random.default_rng(n).random((len(ends), w))
    scores, counts = aggregate(ws, n, w, stride, lag, phase)
    np.testing.assert_allclose(scores, _brute(ws, n, w, stride, lag, phase))
    # every point that is final once all n have arrived (i + lag < n) has a window: the gap after the first
    # window is shorter than the stride, not longer
    assert (counts[: n - lag] >= 1).all()
    contrib = point_contributions(np.ones((len(ends), w, 2)), n, w, stride, lag, phase)
    assert not np.isnan(contrib[: n - lag]).any()


@pytest.mark.parametrize(("stride", "phase"), [(1, 0), (4, 0), (4, 1), (4, 3), (8, 5), (16, 15)])
def test_ends_found_piece_by_piece_are_the_ends_of_the_whole(stride: int, phase: int) -> None:
    """The worker finds the ends a push completes (`ends_after` over [n_old, n_new)): pieces of any sizes
    give the offline ends, in order, each once."""
    rng = np.random.default_rng(stride + phase)
    w, n, got, pos = 8, 120, [], 0
    while pos < n:
        nxt = min(n, pos + int(rng.integers(1, 2 * stride + 2)))
        got += ends_after(w - 1, pos, nxt, stride, phase).tolist()
        pos = nxt
    assert got == window_ends(n, w, stride, phase).tolist()
    with pytest.raises(ValueError, match="phase"):
        window_ends(n, w, stride, stride)


def test_series_phases_are_fixed_by_the_id_and_spread_over_a_fleet() -> None:
    assert series_phase("pump-17", 1) == 0
    assert series_phase("pump-17", 8) == 1  # CRC-32: the same on every machine
    counts = np.bincount([series_phase(f"pump-{i}", 8) for i in range(8000)], minlength=8)
    assert counts.min() > 850 and counts.max() < 1150  # about 1,000 each


def test_full_lag_averages_every_covering_window() -> None:
    ws = np.arange(5 * 4, dtype=float).reshape(5, 4)  # 8 points, window 4, stride 1
    scores, counts = aggregate(ws, 8, 4, 1)
    np.testing.assert_array_equal(counts, [1, 2, 3, 4, 4, 3, 2, 1])
    assert scores[3] == pytest.approx(np.mean([ws[0, 3], ws[1, 2], ws[2, 1], ws[3, 0]]))


def test_lag_must_fit_window_and_stride() -> None:
    with pytest.raises(ValueError):
        check_lag(8, 1, 8)
    with pytest.raises(ValueError):
        check_lag(8, 4, 2)
    check_lag(8, 4, 3)
