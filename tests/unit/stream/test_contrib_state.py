"""Per-channel contributions: each final point carries those of the window that finalized it, online (any
batching, no state kept for them) as offline (`model.windows.point_contributions`)."""

from __future__ import annotations

import numpy as np
import pytest

from model.serving import Geometry
from model.windows import finalizing_windows, make_windows, point_contributions, window_ends
from stream.records import Contribution, top_contributors
from stream.state import SeriesState


def fake_contrib(windows: np.ndarray) -> np.ndarray:
    """A stand-in for a graph's `contrib` output: (K, W, C) -> (K, W, C) shares summing to 1 per point."""
    e = np.exp(windows + np.linspace(0, 1, windows.shape[1])[None, :, None])
    return (e / e.sum(axis=2, keepdims=True)).astype(np.float32)


def test_the_finalizing_window_is_the_one_that_makes_the_point_final() -> None:
    ends = window_ends(20, 8, 1)  # 7..19
    rows = finalizing_windows(ends, 8, 2, np.array([0, 5, 7, 10, 18, 19]))
    # points before the first window's end take the first window; later ones the window ending lag points on;
    # the newest points (not final yet at lag 2) the newest window that covers them
    assert [int(ends[k]) for k in rows] == [7, 7, 9, 12, 19, 19]
    assert list(finalizing_windows(np.array([7]), 8, 0, np.array([9]))) == [-1]  # no window covers it


@pytest.mark.parametrize("window,lag", [(8, 0), (8, 3), (8, 7), (5, 2)])
def test_stream_contributions_equal_offline(window: int, lag: int) -> None:
    rng = np.random.default_rng(window + lag)
    t, channels = 83, 3
    values = rng.normal(size=(t, channels))
    ts = np.arange(t, dtype=np.int64) * 1000
    state = SeriesState(Geometry(window, 1, lag, channels))
    got: dict[int, tuple[float, ...] | None] = {}
    pos = 0
    while pos < t:
        size = int(rng.integers(1, 2 * window))
        step = state.push(ts[pos : pos + size], values[pos : pos + size])
        scores = np.full((len(step.windows), window), 0.5, np.float32)
        for p in state.apply(step, scores, fake_contrib(step.windows)):
            got[p.index] = p.contrib
        state = SeriesState.decode(state.encode())
        pos += size
    offline = point_contributions(fake_contrib(make_windows(values, window, 1)), t, window, 1, lag)
    assert sorted(got) == list(range(t - lag))
    for i, c in got.items():
        assert c is not None
        np.testing.assert_allclose(c, offline[i], rtol=1e-6)
        assert sum(c) == pytest.approx(1.0, abs=1e-5)


def test_points_of_a_failed_window_and_models_without_contributions_carry_none() -> None:
    state = SeriesState(Geometry(4, 1, 0, 2))
    step = state.push(list(range(6)), np.ones((6, 2)))
    scores = np.full((len(step.windows), 4), 0.5, np.float32)
    scores[-1] = np.nan  # the model failed on the newest window
    finals = state.apply(step, scores, fake_contrib(step.windows))
    assert finals[-1].contrib is None and all(p.contrib is not None for p in finals[:-1])
    step = state.push([6], np.ones((1, 2)))
    (p,) = state.apply(step, np.full((1, 4), 0.5, np.float32))
    assert p.contrib is None


def test_top_contributors_names_the_largest_shares_first() -> None:
    assert top_contributors((0.1, 0.5, 0.1, 0.3), 3) == [
        Contribution(channel=1, share=0.5), Contribution(channel=3, share=0.3), Contribution(channel=0, share=0.1)]
    assert top_contributors((0.2, 0.8), 5) == [Contribution(channel=1, share=0.8), Contribution(channel=0, share=0.2)]
    # a family's stray values are clipped, never an invalid message
    assert top_contributors((1.2, -0.1), 2) == [Contribution(channel=0, share=1.0), Contribution(channel=1, share=0.0)]
