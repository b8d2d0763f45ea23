"""The streaming core against the offline path: same scores as `model.windows.aggregate`, compact state."""

from __future__ import annotations

import numpy as np
import pytest

from model.windows import aggregate, make_windows
from stream.errors import CorruptState
from stream.state import Geometry, SeriesState


def fake_scores(windows: np.ndarray) -> np.ndarray:
    """A deterministic stand-in for the model: (K, W, C) -> (K, W) float32 in (0, 1), position-dependent."""
    w = windows.shape[1]
    z = windows.sum(axis=2) * 0.3 + np.linspace(-1, 1, w)[None, :] * windows.mean(axis=(1, 2))[:, None]
    return (1 / (1 + np.exp(-z))).astype(np.float32)


def stream_through(
    values: np.ndarray, ts: np.ndarray, g: Geometry, chunks: list[int], roundtrip: bool = True
) -> dict[int, tuple[float, int]]:
    state = SeriesState(g)
    out: dict[int, tuple[float, int]] = {}
    pos = 0
    for size in chunks:
        step = state.push(ts[pos : pos + size], values[pos : pos + size])
        for p in state.apply(step, fake_scores(step.windows)):
            assert p.index not in out, "a point was finalized twice"
            out[p.index] = (p.score, p.n_windows)
        if roundtrip:
            state = SeriesState.decode(state.encode(), g)
        pos += size
    return out


@pytest.mark.parametrize(
    "window,stride,lag",
    [(8, 1, 7), (8, 1, 0), (8, 1, 3), (8, 3, 2), (8, 3, 7), (16, 4, 5), (16, 16, 15), (5, 2, 4)],
)
@pytest.mark.parametrize("channels", [1, 3])
def test_stream_equals_offline_aggregate(window: int, stride: int, lag: int, channels: int) -> None:
    rng = np.random.default_rng(window * 100 + stride * 10 + lag + channels)
    t = 97
    values = rng.normal(size=(t, channels))
    ts = np.arange(t, dtype=np.int64) * 1000 + 5
    chunks = []
    while sum(chunks) < t:
        chunks.append(int(rng.integers(1, 2 * window)))
    got = stream_through(values, ts, Geometry(window, stride, lag, channels), chunks)

    offline, counts = aggregate(fake_scores(make_windows(values, window, stride)), t, window, stride, lag)
    final = t - lag  # points whose score is final once all t points have arrived
    assert sorted(got) == list(range(final))
    for i in range(final):
        assert got[i][0] == pytest.approx(offline[i], abs=1e-12)
        assert got[i][1] == counts[i]


def test_nothing_is_final_before_the_first_window() -> None:
    g = Geometry(8, 1, 2, 1)
    state = SeriesState(g)
    step = state.push(list(range(7)), np.zeros(7))
    assert len(step.windows) == 0 and state.apply(step, fake_scores(step.windows)) == []
    step = state.push([7], np.zeros(1))
    finals = state.apply(step, fake_scores(step.windows))
    assert [p.index for p in finals] == list(range(6))  # 0..W-1-lag; the last `lag` wait for later windows


def test_duplicates_and_late_points_are_counted_not_applied() -> None:
    g = Geometry(4, 1, 3, 1)
    state = SeriesState(g)
    step = state.push([10, 20, 20, 15, 30], np.arange(5.0))
    assert (step.accepted, step.duplicates) == (3, 2)
    state.apply(step, fake_scores(step.windows))
    step = state.push([30, 5, 29], np.arange(3.0))
    assert (step.accepted, step.duplicates) == (0, 3)
    state.apply(step, fake_scores(step.windows))
    assert state.n == 3 and state.last_ts == 30


def test_encoded_state_is_compact_for_single_channel_w64() -> None:
    g = Geometry(64, 1, 63, 1)
    state = SeriesState(g)
    ts = 1_732_600_000_000 + np.arange(500) * 1000
    step = state.push(ts, np.random.default_rng(0).normal(size=500))
    state.apply(step, fake_scores(step.windows))
    blob = state.encode()
    assert len(blob) < 1600
    back = SeriesState.decode(blob, g)
    assert back.n == 500 and back.last_ts == int(ts[-1])
    np.testing.assert_array_equal(back.ts, state.ts)
    np.testing.assert_array_equal(back.values, state.values)
    np.testing.assert_array_equal(back.sums, state.sums)


def test_wide_timestamp_gaps_round_trip() -> None:
    g = Geometry(4, 1, 3, 1)
    state = SeriesState(g)
    ts = [0, 2**40, 2**41, 2**62]
    state.apply(state.push(ts, np.ones(4)), np.full((1, 4), 0.5, np.float32))
    assert list(SeriesState.decode(state.encode(), g).ts) == ts


def test_decode_refuses_other_geometry_and_garbage() -> None:
    state = SeriesState(Geometry(4, 1, 3, 1))
    blob = state.encode()
    with pytest.raises(CorruptState):
        SeriesState.decode(blob, Geometry(4, 1, 2, 1))
    with pytest.raises(CorruptState):
        SeriesState.decode(blob[:-1] + b"xx", Geometry(4, 1, 3, 1))
    with pytest.raises(CorruptState):
        SeriesState.decode(b"\x00\x01", Geometry(4, 1, 3, 1))
