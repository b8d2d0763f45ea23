"""A calibrated model in the streaming core: each final point's raw score becomes its surprise for the
series (`model.surprise`), exactly as `Geometry.calibrate` computes it offline, with the sketch kept in the
series' encoded state."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from model.serving import Geometry
from model.surprise import SIZE as SKETCH_SIZE
from model.windows import aggregate, make_windows
from stream.errors import CorruptState
from stream.state import SeriesState
from tests.unit.stream.test_state import as_format, fake_scores


def _stream(values: np.ndarray, g: Geometry, rng: np.random.Generator, fail_every: int = 0
            ) -> tuple[dict[int, tuple[float, float | None, int]], SeriesState]:
    """Points in random chunks, the state encoded and decoded between chunks; returns index -> (score,
    raw_score, n_windows). `fail_every`: every k-th window is a model failure (a NaN row)."""
    state, out, pos, k = SeriesState(g, version="v1"), {}, 0, 0
    ts = np.arange(len(values), dtype=np.int64) * 1000
    while pos < len(values):
        size = int(rng.integers(1, 3 * g.window))
        step = state.push(ts[pos:pos + size], values[pos:pos + size])
        scores = fake_scores(step.windows).astype(np.float64)
        for r in range(len(scores)):
            k += 1
            if fail_every and k % fail_every == 0:
                scores[r] = np.nan
        for p in state.apply(step, scores):
            assert p.index not in out
            out[p.index] = (p.score, p.raw_score, p.n_windows)
        state = SeriesState.decode(state.encode())
        pos += size
    return out, state


@pytest.mark.parametrize("window,stride,lag", [(8, 1, 0), (8, 1, 7), (8, 3, 4)])
def test_streamed_surprise_equals_the_offline_calibration_of_the_offline_scores(window: int, stride: int,
                                                                               lag: int) -> None:
    rng = np.random.default_rng(window + stride + lag)
    g = Geometry(window, stride, lag, 1, surprise_halflife=300.0, surprise_min_history=50)
    values = rng.normal(size=(900, 1))
    values[700] += 9.0  # one point far out, so some surprise is high
    out, _ = _stream(values, g, rng)
    raw, counts = aggregate(fake_scores(make_windows(values, window, stride)), len(values), window, stride, lag)
    offline = g.calibrate(raw)
    final = len(values) - lag
    assert sorted(out) == list(range(final))
    got = np.array([out[i][0] for i in range(final)])
    got_raw = np.array([out[i][1] for i in range(final)])
    np.testing.assert_allclose(got_raw, raw[:final], atol=1e-12)
    # the sketch travels as float32 relative counts between chunks: equal within float32 rounding
    np.testing.assert_allclose(got, offline[:final], atol=1e-5)
    assert (got[:50] == 0).all(), "nothing is surprising before min_history raw scores were seen"
    assert got.max() > 0.3 and np.all((got >= 0) & (got <= 1))


def test_points_no_window_scored_teach_the_sketch_nothing() -> None:
    rng = np.random.default_rng(3)
    g = Geometry(4, 1, 0, 1, surprise_halflife=100.0, surprise_min_history=20)
    values = rng.normal(size=(300, 1))
    out, _ = _stream(values, g, rng, fail_every=7)  # lag 0: a failed window leaves its newest point unscored
    unscored = [i for i, (_, _, n) in out.items() if n == 0]
    assert unscored, "some points lost their only window"
    assert all(out[i][1] is None for i in unscored)
    raw = np.array([out[i][1] if out[i][2] else np.nan for i in range(len(out))])
    expected = g.calibrate(raw)
    for i, (score, _, n) in out.items():
        if n:
            assert score == pytest.approx(expected[i], abs=1e-5)


def test_the_sketch_costs_its_bytes_and_a_damaged_one_is_refused() -> None:
    rng = np.random.default_rng(4)
    plain = Geometry(64, 1, 0, 1)
    calibrated = Geometry(64, 1, 0, 1, surprise_halflife=5000.0, surprise_min_history=200)
    values = rng.normal(size=(400, 1))
    sizes = {}
    for g in (plain, calibrated):
        state = SeriesState(g, version="v1")
        step = state.push(list(range(400)), values)
        state.apply(step, fake_scores(step.windows))
        sizes[g] = len(state.encode())
        assert SeriesState.decode(state.encode()).geometry == g
    # the sketch's visited bins only: 16 bytes and 4 a bin (format 8); never more than every bin and the mask
    assert state.sketch is not None
    visited = int(np.count_nonzero(state.sketch.counts))
    assert 0 < visited < 64 and sizes[calibrated] - sizes[plain] == 16 + 4 * visited <= SKETCH_SIZE + 8
    blob = state.encode()
    with pytest.raises(CorruptState):
        SeriesState.decode(blob[:-1])  # the sketch cut short
    bad = bytearray(blob)
    bad[-4:] = struct.pack("<f", float("nan"))
    with pytest.raises(CorruptState):
        SeriesState.decode(bytes(bad))


def test_a_swap_starts_the_sketch_anew_and_old_states_are_read_as_uncalibrated() -> None:
    g = Geometry(8, 1, 0, 1, surprise_halflife=100.0, surprise_min_history=30)
    state = SeriesState(g, version="v1")
    step = state.push(list(range(100)), np.random.default_rng(5).normal(size=(100, 1)))
    state.apply(step, fake_scores(step.windows))
    assert state.sketch is not None and state.sketch.seen == 100
    state.swap(g, "v2", 0.5)
    assert state.sketch is not None and state.sketch.seen == 0
    step = state.push([100], np.zeros((1, 1)))
    assert [p.score for p in state.apply(step, fake_scores(step.windows))] == [0.0]
    # A format 4 state (before calibration) of the same series is read uncalibrated; serving a calibrated
    # model then swaps it (the geometry differs), which gives it a sketch.
    from stream import state as st

    plain = SeriesState(Geometry(8, 1, 0, 1), version="v0")
    plain.apply(plain.push(list(range(10)), np.zeros((10, 1))), np.full((3, 8), 0.5))
    old = SeriesState.decode(as_format(plain.encode(), 4, st._BODY4))
    assert old.geometry == Geometry(8, 1, 0, 1) and old.sketch is None
    old.swap(g, "v1", 0.5)
    assert old.sketch is not None and old.geometry.calibrated
