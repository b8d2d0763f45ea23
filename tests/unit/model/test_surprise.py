"""The per-series tail sketch: calibrated surprise means the same on series whose raw scores sit at
different levels, is causal, and survives its compact encoding."""

from __future__ import annotations

import numpy as np

from model.surprise import DECADES, TailSketch, surprise_series


def test_the_same_rarity_gives_the_same_surprise_whatever_the_raw_level() -> None:
    rng = np.random.default_rng(0)
    low = rng.uniform(0.0, 0.1, 5000)  # a series whose normal raw scores are low
    high = 0.5 + rng.uniform(0.0, 0.1, 5000)  # one whose normal raw scores are high
    s_low, s_high = surprise_series(low), surprise_series(high)
    # the median point of each is not surprising, on either series
    assert abs(np.median(s_low[1000:]) - np.median(s_high[1000:])) < 0.02 and np.median(s_low[1000:]) < 0.1
    # a raw 0.45 is a big outlier on the low series, an ordinary value below the high series' normal
    a = TailSketch(min_history=10)
    a.surprise(low)
    b = TailSketch(min_history=10)
    b.surprise(high)
    assert a.surprise(np.array([0.45]))[0] > 0.5 and b.surprise(np.array([0.45]))[0] == 0.0


def test_tail_probability_matches_the_empirical_share() -> None:
    rng = np.random.default_rng(1)
    sk = TailSketch(halflife=1e9, min_history=10)  # no decay: the plain empirical tail
    past = rng.uniform(0, 1, 20000)
    sk.surprise(past)
    out = sk.surprise(np.array([0.99]))[0]
    p = 10 ** (-out * DECADES)
    assert abs(p - np.mean(past >= 0.99)) < 0.003


def test_it_is_causal_and_needs_a_history() -> None:
    x = np.random.default_rng(2).uniform(0, 0.2, 600)
    full = surprise_series(x)
    assert np.all(full[:200] == 0.0)
    np.testing.assert_array_equal(surprise_series(x[:400]), full[:400])  # later points change nothing before


def test_encoding_round_trips_within_float32() -> None:
    x = np.random.default_rng(3).uniform(0, 0.3, 3000)
    a = TailSketch()
    a.surprise(x[:2000])
    b = TailSketch.decode(a.encode(), a.halflife, a.min_history)
    assert len(a.encode()) == 8 + 64 * 4
    np.testing.assert_allclose(a.surprise(x[2000:]), b.surprise(x[2000:]), atol=1e-5)
