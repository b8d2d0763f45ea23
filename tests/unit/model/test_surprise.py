"""The per-series tail sketch: calibrated surprise means the same on series whose raw scores sit at
different levels, is causal, and survives its compact encoding."""

from __future__ import annotations

import numpy as np
import pytest

from model.surprise import DECADES, TailSketch, calibrate_series


def test_the_same_rarity_gives_the_same_surprise_whatever_the_raw_level() -> None:
    rng = np.random.default_rng(0)
    low = rng.uniform(0.0, 0.1, 5000)  # a series whose normal raw scores are low
    high = 0.5 + rng.uniform(0.0, 0.1, 5000)  # one whose normal raw scores are high
    s_low, s_high = calibrate_series(low, TailSketch()), calibrate_series(high, TailSketch())
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
    full = calibrate_series(x, TailSketch())
    assert np.all(full[:200] == 0.0)
    # later points change nothing before them
    np.testing.assert_array_equal(calibrate_series(x[:400], TailSketch()), full[:400])


def test_encoding_round_trips_within_float32() -> None:
    x = np.random.default_rng(3).uniform(0, 0.3, 3000)
    a = TailSketch()
    a.surprise(x[:2000])
    b = TailSketch.decode(a.encode(), a.halflife, a.min_history)
    assert len(a.encode()) == 8 + 64 * 4
    np.testing.assert_allclose(a.surprise(x[2000:]), b.surprise(x[2000:]), atol=1e-5)


def _plain(scores: np.ndarray, halflife: float, min_history: int) -> np.ndarray:
    """The sketch's definition, written out: decay every count by one step, then add the new score."""
    from model.surprise import BINS

    keep, counts, out = 0.5 ** (1 / halflife), np.zeros(BINS), np.zeros(len(scores))
    for t, x in enumerate(scores):
        k = min(int(x * BINS), BINS - 1)
        if t >= min_history:
            above = counts[k + 1:].sum() + counts[k] * (1 - (x * BINS - k))
            p = max(above, 0.5) / counts.sum()
            out[t] = 0.0 if p >= 1 - 1e-12 else min(1.0, -np.log10(p) / DECADES)
        counts = counts * keep
        counts[k] += 1
    return out


def test_the_running_weights_equal_the_plain_decayed_counts_through_a_rescale() -> None:
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.uniform(0, 0.3, 6000), rng.uniform(0, 1, 50)])
    # half-life 10: the new-score weight passes 1e150 (and is rescaled) after about 5,000 points
    got = TailSketch(halflife=10.0, min_history=20).surprise(x)
    np.testing.assert_allclose(got, _plain(x, 10.0, 20), atol=1e-9)
    sk = TailSketch(halflife=10.0, min_history=20)
    sk.surprise(x)
    assert np.isfinite(sk.counts).all() and sk.counts.sum() == pytest.approx(1 / (1 - 0.5 ** 0.1), rel=1e-6)
