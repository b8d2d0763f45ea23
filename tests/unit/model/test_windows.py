"""Windows and overlapping-window averaging, checked against a brute-force definition."""

from __future__ import annotations

import numpy as np
import pytest

from model.windows import aggregate, check_lag, make_windows, window_ends


def _brute(window_scores: np.ndarray, n: int, w: int, stride: int, lag: int) -> np.ndarray:
    """Point i averages the windows covering it that end at or before i + lag (the first window always)."""
    ends = window_ends(n, w, stride)
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
