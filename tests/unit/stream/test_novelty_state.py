"""Shape novelty in the streaming core: each final point serves the larger of its model surprise and its
shape-novelty surprise, exactly as `Geometry.calibrate` computes them offline from the same inputs, with
the kept history, the second sketch and the pending surprises in the series' encoded state."""

from __future__ import annotations

import numpy as np
import pytest

from model.serving import Geometry
from model.surprise import SIZE as SKETCH_SIZE
from model.windows import aggregate, make_windows
from stream.errors import CorruptState
from stream.state import SeriesState
from tests.unit.model.test_novelty import heartbeat
from tests.unit.stream.test_state import as_format, fake_scores


def novel(window: int = 8, stride: int = 1, lag: int = 0, length: int = 10, history: int = 120,
          rarity: float = 1.0) -> Geometry:
    return Geometry(window, stride, lag, 1, halflife=200.0, surprise_halflife=300.0, surprise_min_history=40,
                    novelty_length=length, novelty_history=history, novelty_rarity=rarity)


def offline(values: np.ndarray, g: Geometry) -> tuple[np.ndarray, np.ndarray]:
    """(served, raw) scores of a whole series, offline: the worker's inputs, windows, aggregation, calibration."""
    inputs = g.standardize(g.new_stats(), values)
    raw, _ = aggregate(fake_scores(make_windows(inputs, g.window, g.stride)), len(values), g.window, g.stride,
                       g.lag)
    return g.calibrate(raw, inputs), raw


def stream(values: np.ndarray, g: Geometry, rng: np.random.Generator) -> dict[int, float]:
    """Points in random chunks, the state encoded and decoded between chunks: index -> served score."""
    state, out, pos = SeriesState(g, version="v1"), {}, 0
    ts = np.arange(len(values), dtype=np.int64)
    while pos < len(values):
        size = int(rng.integers(1, 3 * g.window))
        step = state.push(ts[pos:pos + size], values[pos:pos + size])
        for p in state.apply(step, fake_scores(step.windows)):
            assert p.index not in out
            out[p.index] = p.score
        state = SeriesState.decode(state.encode())
        pos += size
    return out


@pytest.mark.parametrize("window,stride,lag,rarity", [(8, 1, 0, 1.0), (8, 1, 7, 1.0), (8, 3, 4, 1.0), (8, 1, 0, 4.0)])
def test_streamed_scores_equal_the_offline_calibration_with_novelty(window: int, stride: int, lag: int,
                                                                    rarity: float) -> None:
    rng = np.random.default_rng(window + stride + lag)
    g = novel(window, stride, lag, rarity=rarity)
    values = heartbeat(900, period=20, odd_at=700)[:, None] * 3.0 + 10.0
    out = stream(values, g, rng)
    served, raw = offline(values, g)
    final = len(values) - lag
    assert sorted(out) == list(range(final))
    got = np.array([out[i] for i in range(final)])
    np.testing.assert_allclose(got, served[:final], atol=1e-5)
    # the odd beat is served through its shape: higher than the model's surprise alone gives it there
    plain = Geometry(window, stride, lag, 1, halflife=200.0, surprise_halflife=300.0, surprise_min_history=40)
    alone = plain.calibrate(raw)
    assert got[700:740].mean() > alone[700:740].mean() + 0.02
    assert np.all((got >= 0) & (got <= 1))


def test_the_history_is_bounded_and_costs_its_bytes() -> None:
    g = novel(length=10, history=120)
    without = Geometry(8, 1, 0, 1, halflife=200.0, surprise_halflife=300.0, surprise_min_history=40)
    values = np.random.default_rng(1).normal(size=(400, 1))
    sizes = {}
    for geometry in (without, g):
        state = SeriesState(geometry, version="v1")
        step = state.push(list(range(400)), values)
        state.apply(step, fake_scores(step.windows))
        sizes[geometry] = len(state.encode())
    assert state.shape is not None and len(state.shape) == 119
    # the novelty's header fields, the second sketch (its visited bins), 119 float16 inputs, no pending point
    from stream import state as st

    assert state.shape_sketch is not None
    sketch = 16 + 4 * int(np.count_nonzero(state.shape_sketch.counts))
    assert sizes[g] - sizes[without] == st._NOVEL.size + sketch + 2 * 119 and sketch <= SKETCH_SIZE + 8
    back = SeriesState.decode(state.encode())
    assert back.geometry == g and np.array_equal(back.shape, state.shape)
    strict = novel(length=10, history=120, rarity=4.0)
    assert SeriesState.decode(SeriesState(strict, version="v1").encode()).geometry == strict
    with pytest.raises(CorruptState):
        SeriesState.decode(state.encode()[:-1])


def test_a_state_without_its_novelty_is_refused_and_format_5_reads_as_without() -> None:
    from stream import state as st

    g = novel()
    state = SeriesState(g, version="v1")
    step = state.push(list(range(50)), np.zeros((50, 1)))
    state.apply(step, fake_scores(step.windows))
    blob = bytearray(as_format(state.encode(), 7, st._BODY7))  # format 7 names the novelty in every header
    flags_at = st._HEAD.size + 1
    blob[flags_at] &= ~st._FLAG_NOVELTY
    with pytest.raises(CorruptState, match="novelty"):
        SeriesState.decode(bytes(blob))
    calibrated = Geometry(8, 1, 0, 1, halflife=200.0, surprise_halflife=300.0, surprise_min_history=40)
    old = SeriesState(calibrated, version="v0")
    old.apply(old.push(list(range(20)), np.zeros((20, 1))), np.full((13, 8), 0.5))
    back = SeriesState.decode(as_format(old.encode(), 5, st._BODY5))
    assert back.geometry == calibrated and back.shape is None


def test_a_swap_starts_the_novelty_anew() -> None:
    g = novel()
    state = SeriesState(g, version="v1")
    step = state.push(list(range(300)), np.random.default_rng(2).normal(size=(300, 1)))
    state.apply(step, fake_scores(step.windows))
    assert state.shape_sketch is not None and state.shape_sketch.seen == 300 - (2 * 10 - 1)  # from the first shape on
    state.swap(g, "v2", 0.5)
    assert state.shape is not None and len(state.shape) == 0 and state.shape_sketch.seen == 0
    step = state.push([300], np.zeros((1, 1)))
    assert [p.score for p in state.apply(step, fake_scores(step.windows))] == [0.0]


def test_novelty_needs_a_calibrated_pointwise_geometry() -> None:
    with pytest.raises(ValueError, match="novelty needs"):
        Geometry(8, 1, 0, 1, surprise_halflife=300.0, novelty_length=10, novelty_history=120)
    with pytest.raises(ValueError, match="history"):
        novel(length=10, history=15)
    with pytest.raises(ValueError, match="model inputs"):
        novel().calibrate(np.zeros(10))
