"""The streaming core against the offline path: same scores as `model.windows.aggregate`, compact state."""

from __future__ import annotations

import copy
import struct
from dataclasses import replace

import numpy as np
import pytest

from model.normalize import RunningStats
from model.serving import Geometry
from model.windows import aggregate, make_windows
from stream import state as st
from stream.errors import CorruptState
from stream.state import SeriesState


def fake_scores(windows: np.ndarray) -> np.ndarray:
    """A deterministic stand-in for the model: (K, W, C) -> (K, W) float32 in (0, 1), position-dependent."""
    w = windows.shape[1]
    z = windows.sum(axis=2) * 0.3 + np.linspace(-1, 1, w)[None, :] * windows.mean(axis=(1, 2))[:, None]
    return (1 / (1 + np.exp(-z))).astype(np.float32)


def stream_through(
    values: np.ndarray, ts: np.ndarray, g: Geometry, chunks: list[int], roundtrip: bool = True, phase: int = 0
) -> dict[int, tuple[float, int]]:
    state = SeriesState(g, phase=phase)
    out: dict[int, tuple[float, int]] = {}
    pos = 0
    for size in chunks:
        step = state.push(ts[pos : pos + size], values[pos : pos + size])
        for p in state.apply(step, fake_scores(step.windows)):
            assert p.index not in out, "a point was finalized twice"
            out[p.index] = (p.score, p.n_windows)
        if roundtrip:
            state = SeriesState.decode(state.encode())
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


@pytest.mark.parametrize(("window", "stride", "lag"), [(8, 3, 2), (16, 4, 5), (16, 8, 7), (16, 16, 15), (5, 2, 4)])
def test_windows_at_a_phase_give_the_offline_aggregate_at_that_phase(window: int, stride: int, lag: int) -> None:
    """The worker staggers a series' windows by its id (`SeriesState.phase`, kept in the state): the scores
    are still `aggregate`'s, at that phase, whatever the chunks and round trips."""
    for phase in range(1, stride):
        rng = np.random.default_rng(window + stride + phase)
        t = 101
        values = rng.normal(size=(t, 2))
        ts = np.arange(t, dtype=np.int64) * 1000 + 5
        chunks = [int(rng.integers(1, 2 * stride + 1)) for _ in range(t)]
        got = stream_through(values, ts, Geometry(window, stride, lag, 2), chunks, phase=phase)
        offline, counts = aggregate(fake_scores(make_windows(values, window, stride, phase)), t, window, stride,
                                    lag, phase)
        assert sorted(got) == list(range(t - lag))
        for i in range(t - lag):
            assert got[i][0] == pytest.approx(offline[i], abs=1e-12) and got[i][1] == counts[i] >= 1


def test_the_phase_is_kept_in_format_9_and_format_8_states_read_as_phase_0() -> None:
    g = Geometry(8, 4, 3, 1)
    state = SeriesState(g, phase=3, stagger=7)
    step = state.push(list(range(20)), np.arange(20.0))
    state.apply(step, fake_scores(step.windows))
    blob = state.encode()
    back = SeriesState.decode(blob)
    assert back.phase == 3 and back.stagger == 0  # the stagger is the worker's to set (from the series id)
    assert blob[st._HEAD.size] == st.FORMAT == 9
    # phase 0 writes no phase: the bytes of format 8 but for the format number, which a format-8 state reads as
    plain = SeriesState(g)
    step0 = plain.push(list(range(20)), np.arange(20.0))
    plain.apply(step0, fake_scores(step0.windows))
    blob0 = plain.encode()
    assert len(blob0) == len(blob) - 2
    eight = blob0[: st._HEAD.size] + bytes([8]) + blob0[st._HEAD.size + 1 :]
    assert SeriesState.decode(eight).phase == 0 and SeriesState.decode(eight).encode() == blob0
    bad = bytearray(blob)
    bad[st._HEAD.size + st._BODY.size] = 4  # the phase's low byte: 4 at stride 4
    with pytest.raises(CorruptState, match="phase"):
        SeriesState.decode(bytes(bad))


def test_a_swap_takes_the_new_eras_phase_from_the_stagger() -> None:
    """A fleet that swaps model at once would otherwise put every series' windows on the same points again."""
    state = SeriesState(Geometry(8, 1, 0, 1), version="v1", stagger=13)
    state.apply(state.push(list(range(12)), np.arange(12.0)), np.full((5, 8), 0.5, np.float32))
    state.swap(Geometry(8, 8, 7, 1), "v2", 0.5)
    assert state.phase == 13 % 8 and state.era_end == 12  # nothing pending at lag 0: the next point ends it
    ends = []
    for i in range(12, 40):
        step = state.push([i], [float(i)])
        ends += step.ends.tolist()
        state.apply(step, fake_scores(step.windows))
    assert ends == [12, 17, 25, 33]  # the era's first window, then 12 + 5 + 8k
    assert state.swap(Geometry(8, 1, 0, 1), "v3", 0.5) is not None and state.phase == 0


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
    back = SeriesState.decode(blob)
    assert back.n == 500 and back.last_ts == int(ts[-1])
    np.testing.assert_array_equal(back.ts, state.ts)
    np.testing.assert_array_equal(back.values, state.values)
    np.testing.assert_array_equal(back.sums, state.sums)


@pytest.mark.parametrize("pending", [3, 20])  # a few pending points (plain ints) and many (numpy)
@pytest.mark.parametrize("gap", [1000, 2**40])
def test_timestamp_gaps_round_trip(pending: int, gap: int) -> None:
    g = Geometry(pending + 1, 1, pending, 1)
    state = SeriesState(g)
    ts = [7 + i * gap + (i % 3) for i in range(pending + 1)]
    state.apply(state.push(ts, np.ones(len(ts))), np.full((1, len(ts)), 0.5, np.float32))
    blob = state.encode()
    assert list(SeriesState.decode(blob).ts) == ts[1:]  # the pending points' (lag = pending)
    narrow = st._BODY.unpack_from(blob, st._HEAD.size)[1] & st._FLAG_TS_DELTA32
    assert bool(narrow) == (gap < 2**32)  # u32 deltas whenever the gaps fit


def test_decode_keeps_the_written_geometry_and_refuses_garbage() -> None:
    state = SeriesState(Geometry(4, 1, 3, 1), version="v1", threshold=0.3)
    blob = state.encode()
    back = SeriesState.decode(blob)
    assert back.geometry == Geometry(4, 1, 3, 1) and back.version == "v1" and back.threshold == 0.3
    with pytest.raises(CorruptState):
        SeriesState.decode(blob[:-1] + b"xx")
    with pytest.raises(CorruptState):
        SeriesState.decode(b"\x00\x01")


def _stream_with_swap(values: np.ndarray, ts: np.ndarray, before: Geometry, after: Geometry, swap_at: int,
                      chunk: int = 5) -> tuple[dict[int, tuple[float, int, str]], SeriesState]:
    """Stream points through a state, swapping model v1 -> v2 once `swap_at` points have arrived.
    The v2 "model" scores windows 10x lower, so mixed sums would show."""
    state = SeriesState(before, version="v1", threshold=0.5)
    out: dict[int, tuple[float, int, str]] = {}

    def collect(points, version):
        for p in points:
            assert p.index not in out, "a point was finalized twice"
            out[p.index] = (p.score, p.n_windows, version)

    pos = 0
    while pos < len(values):
        if pos >= swap_at and state.version == "v1":
            collect(state.swap(after, "v2", 0.4), "v1")
            assert state.version == "v2" and state.threshold == 0.4
        size = min(chunk, len(values) - pos)
        step = state.push(ts[pos:pos + size], values[pos:pos + size])
        assert step.windows.shape[1] == state.geometry.window
        scale = 1.0 if state.version == "v1" else 0.1
        collect(state.apply(step, fake_scores(step.windows) * scale), state.version)
        state = SeriesState.decode(state.encode())
        pos += size
    return out, state


@pytest.mark.parametrize("after", [Geometry(8, 1, 7, 1), Geometry(8, 1, 0, 1), Geometry(4, 1, 2, 1),
                                   Geometry(16, 1, 15, 1), Geometry(16, 4, 5, 1)])
def test_a_swap_loses_no_point_and_never_mixes_versions(after: Geometry) -> None:
    before = Geometry(8, 1, 7, 1)
    rng = np.random.default_rng(after.window + after.lag)
    t = 120
    values = rng.normal(size=(t, 1))
    ts = np.arange(t, dtype=np.int64) + 1
    out, state = _stream_with_swap(values, ts, before, after, swap_at=50)
    # every point up to the new lag is final, exactly once, in order
    assert sorted(out) == list(range(t - after.lag))
    versions = [out[i][2] for i in sorted(out)]
    assert versions == sorted(versions), "v1 points all come before v2 points"
    for i in sorted(out):
        score, n_windows, version = out[i]
        assert n_windows >= 1
        # v1 scores are sigmoids in (0, 1); v2 ones are 10x lower: an average mixing both would land between
        assert (score < 0.1) == (version == "v2")
    # before the swap, v1 points are exactly the offline aggregate of the old geometry
    offline, counts = aggregate(fake_scores(make_windows(values[:50], 8, 1)), 50, 8, 1, 7)
    for i in range(50 - 7):
        assert out[i][0] == pytest.approx(offline[i], abs=1e-12) and out[i][1] == counts[i]
    assert state.geometry == after and len(state.ts) == len(state.sums) == after.lag


def test_a_swap_before_the_first_window_is_as_if_the_new_model_had_always_served() -> None:
    values = np.random.default_rng(5).normal(size=(9, 1))
    state = SeriesState(Geometry(8, 1, 7, 1), version="v1")
    state.apply(state.push(list(range(1, 6)), values[:5]), np.empty((0, 8)))
    assert state.swap(Geometry(4, 1, 3, 1), "v2", 0.5) == []  # no window yet: nothing to finalize
    step = state.push([6, 7, 8, 9], values[5:])  # also yields the v2 windows ending at buffered points
    assert list(step.ends) == [3, 4, 5, 6, 7, 8]
    finals = state.apply(step, fake_scores(step.windows))
    offline, counts = aggregate(fake_scores(make_windows(values, 4, 1)), 9, 4, 1, 3)
    assert [p.index for p in finals] == list(range(6))
    for p in finals:
        assert p.score == pytest.approx(offline[p.index], abs=1e-12) and p.n_windows == counts[p.index]


def test_a_swap_refuses_another_channel_count() -> None:
    state = SeriesState(Geometry(4, 1, 3, 1))
    with pytest.raises(ValueError, match="channel count"):
        state.swap(Geometry(4, 1, 3, 2), "v2", 0.5)


# Point-by-point normalization (series scope): the state standardizes each point on arrival.


@pytest.mark.parametrize("deviation_halflife", [0.0, 120.0])
@pytest.mark.parametrize("window,stride,lag,channels", [(8, 1, 7, 1), (8, 1, 0, 1), (16, 4, 5, 1), (8, 3, 2, 3)])
def test_pointwise_stream_equals_offline_prepare_series(window: int, stride: int, lag: int, channels: int,
                                                        deviation_halflife: float) -> None:
    from model.normalize import Normalizer

    rng = np.random.default_rng(window + stride + lag + channels)
    t = 300
    values = rng.normal(3.0, 2.0, size=(t, channels)) + np.linspace(0, 5, t)[:, None]
    values[150] += 40.0  # an outlier: clipped in the update, so both sides must agree on the clipping too
    ts = np.arange(t, dtype=np.int64) * 1000
    chunks = []
    while sum(chunks) < t:
        chunks.append(int(rng.integers(1, 2 * window)))
    g = Geometry(window, stride, lag, channels, halflife=50.0, deviation_halflife=deviation_halflife)
    got = stream_through(values, ts, g, chunks)

    norm = Normalizer(kind="zscore", scope="series", halflife=50.0, deviation_halflife=deviation_halflife)
    prepared = norm.prepare_series(values).astype(np.float32)
    assert prepared.shape[1] == g.input_channels  # fake_scores reads every input channel
    offline, counts = aggregate(fake_scores(make_windows(prepared, window, stride)), t, window, stride, lag)
    assert sorted(got) == list(range(t - lag))
    for i in range(t - lag):
        assert got[i][0] == pytest.approx(offline[i], abs=1e-12)
        assert got[i][1] == counts[i]


def as_format(blob: bytes, fmt: int, body: struct.Struct) -> bytes:
    """A current state re-encoded as an older format whose header `body` holds the leading fields of format 7's
    header. Formats before 7 kept a ts and a raw value for every buffered point (the window source's rows): the
    ones format 7 drops are made up (they are final, and nothing reads them). Formats before 8 kept the alert's
    and the novelty's fields in every header, the model inputs as float32 and every bin of the sketches."""
    from stream import state as st

    state = SeriesState.decode(blob)
    g, a = state.geometry, state.alert
    c, k, p = g.channels, len(state._source), len(state.sums)
    flags = st._BODY.unpack_from(blob, st._HEAD.size)[1] & ~(st._FLAG_ALERT | st._FLAG_TS_DELTA32)
    version = state.version.encode()
    fields = [fmt, flags, g.window, g.stride, g.lag, c, k, p, state.last_ts or 0, state.era_end, a.run, a.start_ts,
              a.peak_ts, a.peak_score, state.threshold, len(version), g.halflife,
              state.stats.count if state.stats is not None else 0, g.deviation_halflife, g.surprise_halflife,
              g.surprise_min_history, g.novelty_length, g.novelty_history,
              len(state.shape) if state.shape is not None else 0, g.novelty_rarity]
    n_fields = len(body.format.lstrip("<>=!@")) - body.format.count("x")
    ts, values = state.ts, state.values
    if fmt < 7:
        n_values = p if g.pointwise else k
        first = int(state.ts[0]) if p else (state.last_ts or 0) + 1
        ts = np.concatenate([first - np.arange(k - p, 0, -1), state.ts])
        values = np.concatenate([np.zeros((k - n_values, c)), state.values])
    return b"".join([blob[: st._HEAD.size], body.pack(*fields[:n_fields]), version, ts.astype("<i8").tobytes(),
                     values.astype("<f8").tobytes(), _rest_before_8(state)])


def _rest_before_8(state: SeriesState) -> bytes:
    """What followed the raw values before format 8: statistics, float32 inputs, sums, counts, dense sketches."""
    parts = []
    if state.stats is not None and state.inputs is not None:
        parts += [state.stats.mean.astype("<f8").tobytes(), state.stats.var.astype("<f8").tobytes(),
                  state.inputs.astype("<f4").tobytes()]
    parts += [state.sums.astype("<f8").tobytes(), state.counts.astype("<u2").tobytes()]
    if state.sketch is not None:
        parts.append(state.sketch.encode())
    if state.shape is not None and state.shape_sketch is not None and state.novelty is not None:
        parts += [state.shape_sketch.encode(), state.shape.astype("<f2").tobytes(),
                  state.novelty.astype("<f4").tobytes()]
    return b"".join(parts)


def test_pointwise_state_roundtrips_and_reads_format_2() -> None:
    g = Geometry(8, 1, 3, 1, halflife=100.0)
    state = SeriesState(g, version="v1")
    state.apply(state.push(list(range(20)), np.arange(20.0)), np.full((13, 8), 0.5, np.float32))
    back = SeriesState.decode(state.encode())
    assert back.geometry == g and back.stats is not None and back.inputs is not None
    assert back.stats.count == 20 and back.stats.mean == pytest.approx(state.stats.mean)
    assert np.array_equal(back.inputs, state.inputs) and np.array_equal(back.values, state.values)
    # A state written before point-by-point normalization existed (format 2) is still read.
    from stream import state as st

    plain = SeriesState(Geometry(4, 1, 3, 1), version="v0")
    plain.apply(plain.push([1, 2, 3, 4, 5], np.arange(5.0)), np.full((2, 4), 0.5, np.float32))
    back = SeriesState.decode(as_format(plain.encode(), 2, st._BODY2))
    assert back.geometry == Geometry(4, 1, 3, 1) and back.version == "v0" and back.stats is None
    assert np.array_equal(back.values, plain.values) and np.array_equal(back.sums, plain.sums)


def test_swap_into_and_out_of_pointwise_normalization() -> None:
    from model.normalize import Normalizer

    plain, pointwise = Geometry(8, 1, 7, 1), Geometry(8, 1, 7, 1, halflife=20.0)
    values = np.arange(12.0) ** 1.5
    state = SeriesState(plain, version="v1")
    state.apply(state.push(list(range(12)), values), np.full((5, 8), 0.5, np.float32))
    assert state.stats is None and state.inputs is None
    state.swap(pointwise, "v2", 0.5)
    # Statistics start from the buffered points (the last W), as for a series that began there.
    expect = Normalizer(kind="zscore", scope="series", halflife=20.0).prepare_series(values[-8:, None])
    assert state.stats is not None and state.stats.count == 8
    assert np.array_equal(state.inputs, expect.astype(np.float32))
    step = state.push([12], [20.0])
    assert step.windows.dtype == np.float32 and step.windows[-1, -1, 0] == state.inputs[-1, 0]
    state.apply(step, np.full((len(step.ends), 8), 0.5, np.float32))
    state.swap(plain, "v3", 0.5)
    assert state.stats is None and state.inputs is None
    assert SeriesState.decode(state.encode()).geometry == plain


def test_deviation_channels_roundtrip_read_format_3_and_carry_the_statistics_over_a_swap() -> None:

    g = Geometry(8, 1, 0, 1, halflife=100.0, deviation_halflife=900.0)
    state = SeriesState(g, version="v1")
    state.apply(state.push(list(range(20)), np.arange(20.0) ** 1.3), np.full((13, 8), 0.5, np.float32))
    back = SeriesState.decode(state.encode())
    assert back.geometry == g and back.inputs is not None and back.inputs.shape == (8, 2)
    assert back.stats is not None and len(back.stats.var) == 2 and back.stats.var == pytest.approx(state.stats.var)
    # A state written before deviation channels existed (format 3) is read with none.
    from stream import state as st

    old = SeriesState(Geometry(4, 1, 3, 1, halflife=50.0), version="v0")
    old.apply(old.push([1, 2, 3, 4, 5], np.arange(5.0)), np.full((2, 4), 0.5, np.float32))
    back3 = SeriesState.decode(as_format(old.encode(), 3, st._BODY3))
    assert back3.geometry == Geometry(4, 1, 3, 1, halflife=50.0) and np.array_equal(back3.inputs, old.inputs)
    # Swapping to a model with deviation channels keeps the model statistics (an upgrade does not restart
    # every series' history) and seeds the deviation statistics and inputs from them.
    model_stats = (back3.stats.count, back3.stats.mean.copy(), back3.stats.var.copy())
    model_inputs = back3.inputs.copy()
    back3.swap(Geometry(4, 1, 3, 1, halflife=50.0, deviation_halflife=300.0), "v1", 0.5)
    assert back3.stats is not None and back3.stats.count == model_stats[0] == 5
    np.testing.assert_array_equal(back3.stats.mean, np.tile(model_stats[1], 2))
    np.testing.assert_array_equal(back3.stats.var, np.tile(model_stats[2], 2))
    np.testing.assert_array_equal(back3.inputs, np.tile(model_inputs, (1, 2)))
    step = back3.push([6], [9.0])
    assert step.windows.shape == (1, 4, 2)
    # From here the two channels follow their own statistics, exactly as `standardize` continues them.
    seeded = RunningStats(5, np.tile(model_stats[1], 2), np.tile(model_stats[2], 2))
    z = seeded.standardize(np.array([[9.0]]), 50.0, 300.0).astype(np.float32)
    np.testing.assert_array_equal(step.windows[0, -1], z[0])
    back3.apply(step, np.full((1, 4), 0.5, np.float32))
    assert SeriesState.decode(back3.encode()).stats.count == 6
    # Dropping them again keeps the model channel.
    back3.swap(Geometry(4, 1, 3, 1, halflife=50.0), "v2", 0.5)
    assert back3.inputs.shape == (4, 1) and len(back3.stats.mean) == 1 and back3.stats.count == 6
    with pytest.raises(ValueError, match="deviation_halflife"):
        Geometry(4, 1, 3, 1, deviation_halflife=300.0)


@pytest.mark.parametrize("pointwise", [True, False])
def test_final_points_carry_their_own_ts_and_values_through_round_trips(pointwise: bool) -> None:
    # Format 7 keeps ts (and, for a pointwise geometry, raw values) only for the pending points: every final
    # point must still be published with its own ts and value, batch after batch, through Redis's bytes.
    g = Geometry(8, 2, 3, 2, halflife=50.0 if pointwise else 0.0)
    rng = np.random.default_rng(3)
    t = 61
    values, ts = rng.normal(size=(t, 2)), 1_700_000_000_000 + np.cumsum(rng.integers(1, 5000, t))
    state, seen, pos = SeriesState(g), {}, 0
    for size in [1, 5, 2, 9, 1, 1, 13, 4, 25]:
        step = state.push(ts[pos : pos + size], values[pos : pos + size])
        for p in state.apply(step, fake_scores(step.windows)):
            seen[p.index] = (p.ts, p.values)
        state = SeriesState.decode(state.encode())
        pos += size
    assert sorted(seen) == list(range(t - g.lag))
    for i, (t_i, v_i) in seen.items():
        assert t_i == ts[i] and v_i == tuple(values[i])
    assert len(state.ts) == len(state.sums) == g.lag
    assert len(state.values) == (g.lag if pointwise else g.window)


def test_the_shipped_geometry_keeps_its_inputs_sketch_and_header_only() -> None:
    # The shipped single-channel bundle: window 64, lag 0, point-by-point normalization with deviation inputs,
    # the per-series tail sketch; a version string as long as the registry's.
    g = Geometry(64, 1, 0, 1, halflife=1000.0, deviation_halflife=6400.0, surprise_halflife=5000.0,
                 surprise_min_history=200)
    state = SeriesState(g, version="2026-12-04T19-19-31Z-c2502a")
    rng = np.random.default_rng(0)
    step = state.push(1_700_000_000_000 + 1000 * np.arange(300), rng.normal(size=300))
    state.apply(step, fake_scores(step.windows))
    blob = state.encode()
    # with every bin of the sketch visited it still fits jemalloc's 896-byte slot; with up to 54 the 768-byte one
    # (about 912 bytes of Redis memory with the key: docs/benchmark.md)
    from stream import state as st

    head = 8 + st._BODY.size + len(state.version) + 2 * 2 * 8  # token, header, version, running mean and variance
    visited = int(np.count_nonzero(state.sketch.counts))
    assert len(blob) == head + 3 * 64 * 2 + 16 + 4 * visited and head + 384 + 16 + 4 * 64 <= 890
    back = SeriesState.decode(blob)
    assert np.array_equal(back.inputs, state.inputs) and back.stats.count == 300 and back.last_ts == state.last_ts
    assert len(back.ts) == len(back.values) == 0  # nothing pending at lag 0
    # the next point's window is the same one either way
    a, b = state.push([state.last_ts + 1000], [0.5]), back.push([state.last_ts + 1000], [0.5])
    np.testing.assert_array_equal(a.windows, b.windows)


def test_a_swap_out_of_pointwise_normalization_refills_the_raw_window() -> None:
    # The raw values of final points are not kept under a pointwise model, so a model without point-by-point
    # normalization starts its first window from the oldest pending point, as for a new series.
    pointwise, plain = Geometry(8, 1, 2, 1, halflife=20.0), Geometry(8, 1, 7, 1)
    state = SeriesState(pointwise, version="v1")
    state.apply(state.push(list(range(20)), np.arange(20.0)), np.full((13, 8), 0.5))
    assert state.first_pending == 18
    finals = state.swap(plain, "v2", 0.5)
    assert [p.index for p in finals] == [18, 19]  # covered by v1's windows: finalized with its scores
    assert state.era_end == 20 + 7
    seen = []
    for i in range(20, 40):
        step = state.push([i], [float(i)])
        assert len(step.ends) == (1 if i >= 27 else 0)
        seen += [p.index for p in state.apply(step, np.full((len(step.ends), 8), 0.25))]
        state = SeriesState.decode(state.encode())
    assert seen == list(range(20, 40 - 7))


@pytest.mark.parametrize("lag", [0, 5])
def test_format_8_keeps_inputs_in_3_bytes_and_reads_format_7(lag: int) -> None:
    """Format 8 stores the model inputs as 24-bit multiples of INPUT_STEP (where standardize puts them: no
    loss) and the sketch's visited bins; the states a format-7 worker left in Redis are read as they were."""
    from model.normalize import INPUT_STEP
    from stream import state as st

    g = Geometry(64, 1, lag, 1, halflife=100.0, deviation_halflife=900.0, surprise_halflife=500.0,
                 surprise_min_history=20)
    state = SeriesState(g, version="v1")
    values = np.random.default_rng(7).normal(size=(300, 1)) * 3.0
    values[280] = 1e6  # clipped to +-SERIES_CLIP: the grid's ends
    for lo in range(0, 300, 37):
        step = state.push(list(range(lo, min(lo + 37, 300))), values[lo : lo + 37])
        state.apply(step, fake_scores(step.windows))
    assert state.inputs is not None and state.sketch is not None
    blob = state.encode()
    back = SeriesState.decode(blob)
    assert np.array_equal(back.inputs, state.inputs) and np.abs(state.inputs).max() == 20.0
    assert np.allclose(back.sketch.counts, state.sketch.counts, rtol=1e-6, atol=0)  # float32, as format 7
    assert np.array_equal(back.sums, state.sums) and np.array_equal(back.ts, state.ts)
    old = as_format(blob, 7, st._BODY7)
    visited = int(np.count_nonzero(state.sketch.counts))
    # per input 3 bytes instead of 4; per empty bin 4 bytes fewer, and 8 for the mask; 38 bytes of header
    # (no alert under way, no novelty); the pending points' ts as i8 in the format-7 copy (u32 deltas here)
    ts_extra = 4 * (lag - 1) if lag else 0
    assert state.alert.run == 0 and not state.alert.is_open
    assert len(old) - len(blob) == 64 * 2 - 8 + 4 * (64 - visited) + 38 + ts_extra
    seven = SeriesState.decode(old)
    assert np.array_equal(seven.inputs, state.inputs) and np.allclose(seven.sketch.counts, back.sketch.counts)
    assert seven.encode() == blob
    # Inputs a format-7 worker computed before the grid existed land on it when next written (within half a step).
    seven.inputs = seven.inputs + np.float32(INPUT_STEP / 3)
    again = SeriesState.decode(seven.encode())
    assert np.abs(again.inputs - seven.inputs).max() <= INPUT_STEP / 2 + 1e-7
    # The next points are served alike from either.
    s1, s2 = back.push([300, 301], values[:2]), again.push([300, 301], values[:2])
    f1, f2 = back.apply(s1, fake_scores(s1.windows)), again.apply(s2, fake_scores(s2.windows))
    assert [p.score for p in f1] == pytest.approx([p.score for p in f2], abs=1e-5)


def test_the_alert_is_kept_while_one_is_open_or_under_way() -> None:
    """Format 8 writes the alert's start, peak ts and peak only while they mean something; they round-trip then."""
    from stream.alerts import AlertState

    g = Geometry(8, 1, 0, 1, halflife=50.0)
    state = SeriesState(g, version="v1")
    state.apply(state.push(list(range(20)), np.arange(20.0)), np.full((13, 8), 0.5))
    quiet = len(state.encode())
    for alert in (AlertState(True, 3, 5_000, 7_000, 0.93), AlertState(False, 2, 6_000, 6_000, 0.7)):
        state.alert = alert
        blob = state.encode()
        assert len(blob) == quiet + 24 and SeriesState.decode(blob).alert == alert
    state.alert = AlertState()
    assert SeriesState.decode(state.encode()).alert == AlertState()


@pytest.mark.parametrize("geometry", [
    Geometry(8, 1, 0, 1, halflife=50.0, deviation_halflife=300.0, surprise_halflife=100.0, surprise_min_history=5),
    Geometry(8, 3, 4, 2),
    Geometry(6, 2, 1, 1, halflife=40.0, surprise_halflife=100.0, surprise_min_history=5, novelty_length=4,
             novelty_history=30),
])
def test_peek_gives_the_windows_the_next_push_will(geometry: Geometry) -> None:
    """The pipeline queues batch N+1's windows from batch N's state before N's scores are in (`peek`): they must
    be exactly the windows N+1's push gives once N has applied, whatever the chunks, duplicates and swaps."""
    rng = np.random.default_rng(11)
    c = geometry.channels
    state = SeriesState(geometry, version="v1")
    t, ts, swapped = 0, 1_000, False
    while t < 120:
        k = int(rng.integers(1, 7))
        batch_ts = [ts + 1000 * j for j in range(k)]
        if rng.random() < 0.2:
            batch_ts = [batch_ts[0] - 5000, *batch_ts]  # a late point: dropped by both
        values = rng.normal(size=(len(batch_ts), c))
        step = state.push(batch_ts, values)
        # the next batch's points, peeked while this one is still being scored
        nxt_ts = [batch_ts[-1] + 1000 * (j + 1) for j in range(int(rng.integers(1, 5)))]
        nxt = rng.normal(size=(len(nxt_ts), c))
        before = state.n, state.last_ts
        peeked = state.peek(nxt_ts, nxt)
        assert (state.n, state.last_ts) == before  # peek changes nothing
        state.apply(step, fake_scores(step.windows))
        if t >= 60 and not swapped:
            state.swap(replace(geometry, lag=geometry.window - 1), "v2", 0.5)  # a swap: peek after it, as push
            peeked, swapped = state.peek(nxt_ts, nxt), True
        # the push reuses the peek's work (or, after the swap, does it again): the same as a push without it
        plain = copy.deepcopy(state)
        real, alone = state.push(nxt_ts, nxt, peeked), plain.push(nxt_ts, nxt)
        for got in (real, alone):
            assert np.array_equal(got.ends, peeked.ends) and np.array_equal(got.windows, peeked.windows)
            assert (got.accepted, got.duplicates) == (peeked.accepted, peeked.duplicates)
        state.apply(real, fake_scores(real.windows))
        plain.apply(alone, fake_scores(alone.windows))
        assert state.encode() == plain.encode()
        t += len(batch_ts) + len(nxt_ts)
        ts = nxt_ts[-1] + 1000


@pytest.mark.parametrize("g", [Geometry(16, 1, 0, 1, 50.0, 200.0, 100.0, 10), Geometry(8, 2, 3, 3, 50.0),
                               Geometry(16, 1, 0, 1, 50.0, 0.0, 100.0, 10, 4, 16, 2.0)], ids=["shipped-like",
                                                                                             "three-channels",
                                                                                             "novelty"])
def test_inputs_packed_row_by_row_encode_as_packing_them_all_at_once(g: Geometry) -> None:
    """`encode` packs only the rows that arrived since (`SeriesState._packed`): the bytes must be those of packing
    every buffered row anew, through pushes of one or many points, trims, a swap and a decode."""
    rng = np.random.default_rng(3)
    state, t = SeriesState(g, version="v1"), 0
    for step in range(120):
        k = int(rng.choice([1, 1, 1, 2, 5, 20]))
        ts = list(range(t, t + k))
        t += k
        st_ = state.push(ts, rng.normal(size=(k, g.channels)) * (1 + 30 * (step == 60)))
        state.apply(st_, rng.random((len(st_.ends), state.geometry.window)))
        blob = state.encode()
        assert state._packed is not None and state._packed[0] is state.inputs
        assert state._packed[1] == st._pack_inputs(state.inputs) and state._packed[1] in blob
        if step == 40:
            state.swap(replace(g, window=g.window + 4), "v2", 0.5)
        if step == 80:
            state = SeriesState.decode(blob)
