"""The left discord: equal to a brute-force definition, causal, finds an odd shape a z-score cannot see."""

from __future__ import annotations

import numpy as np
import pytest

from model.novelty import EPS, combine_surprise, left_discord, parse_novelty
from model.surprise import TailSketch, calibrate_series


def brute_force(x: np.ndarray, length: int, history: int) -> np.ndarray:
    """The definition, one point at a time."""
    def unit(s: np.ndarray) -> np.ndarray:
        c = s - s.mean()
        return c / np.sqrt((c * c).mean() + EPS)

    out = np.full(len(x), np.nan)
    for t in range(2 * length - 1, len(x)):
        q = unit(x[t - length + 1:t + 1])
        best = -np.inf
        for e in range(max(length - 1, t - history + length), t - length + 1):  # neighbour ends at e
            best = max(best, float(q @ unit(x[e - length + 1:e + 1])) / length)
        out[t] = np.sqrt(np.clip(2 * (1 - best), 0, 4)) / 2
    return out


def heartbeat(n: int = 1200, period: int = 40, odd_at: int = 900, seed: int = 0) -> np.ndarray:
    """A periodic signal with one period whose peak comes early: every value stays within the usual range."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    x = np.sin(2 * np.pi * t / period) ** 9 + rng.normal(0, 0.02, n)
    odd = slice(odd_at, odd_at + period)
    x[odd] = np.sin(2 * np.pi * (t[odd] - 12) / period) ** 9 * 0.9 + rng.normal(0, 0.02, period)
    return x


def test_equals_the_brute_force_definition() -> None:
    x = np.random.default_rng(1).normal(size=300).cumsum()
    np.testing.assert_allclose(left_discord(x, 8, 64), brute_force(x, 8, 64), atol=1e-9)
    np.testing.assert_allclose(left_discord(x, 16, 40), brute_force(x, 16, 40), atol=1e-9)


def test_the_last_few_points_alone_equal_the_whole_series() -> None:
    """A worker computes only its batch's new points (one correlation each, `start`): the same values."""
    x = np.random.default_rng(2).normal(size=400).cumsum()
    whole = brute_force(x, 8, 64)
    for start in (398, 390, 300, 20):  # 2, 10 (one correlation each), 100 (matrix products), before any shape
        np.testing.assert_allclose(left_discord(x, 8, 64, start=start), whole[start:], atol=1e-9)


def test_causal_and_in_range() -> None:
    x = heartbeat()
    changed = x.copy()
    changed[700:] = 5.0
    a, b = left_discord(x, 32, 256), left_discord(changed, 32, 256)
    np.testing.assert_array_equal(a[:700], b[:700])
    assert np.nanmin(a) >= 0.0 and np.nanmax(a) <= 1.0
    assert np.isnan(a[: 2 * 32 - 1]).all() and not np.isnan(a[2 * 32 - 1:]).any()


def test_finds_the_odd_shape_a_zscore_misses() -> None:
    x = heartbeat()
    d = left_discord(x, 40, 400)
    assert 900 <= int(np.nanargmax(d)) < 900 + 2 * 40
    assert d[900:980].max() > 2 * np.percentile(d[200:880], 99)
    z = np.abs(x - x[:800].mean()) / x[:800].std()
    assert z[900:940].max() < z[:880].max()  # the values alone look ordinary


def test_stride_keeps_the_computed_points_and_fills_towards_them() -> None:
    x = heartbeat(600, odd_at=450)
    full = left_discord(x, 16, 128)
    sparse = left_discord(x, 16, 128, stride=8)
    ends = np.arange(2 * 16 - 1, 600)
    computed = ends[ends % 8 == 7]
    np.testing.assert_allclose(sparse[computed], full[computed], atol=1e-12)
    np.testing.assert_allclose(sparse[computed - 3], full[computed], atol=1e-12)  # takes the next computed


def test_parse_novelty() -> None:
    assert parse_novelty("128/2048") == (128, 2048, 1.0)
    assert parse_novelty("128/2048/4") == (128, 2048, 4.0)
    for bad in ("128", "a/b", "128/200", "2/64", "128/2048/0.5", "128/2048/4/1", "128/2048/x"):
        with pytest.raises(ValueError, match="LENGTH"):
            parse_novelty(bad)


def test_combine_takes_the_larger_surprise() -> None:
    rng = np.random.default_rng(0)
    raw, nov = rng.random(600), rng.random(600)
    raw[-1] = np.nan
    nov[:30] = np.nan  # no shape to compare with yet: the model's surprise alone
    got = combine_surprise(raw, nov, (500.0, 50))
    a = calibrate_series(raw, TailSketch(500.0, 50))
    b = calibrate_series(nov, TailSketch(500.0, 50))
    np.testing.assert_allclose(got[30:-1], np.maximum(a, b)[30:-1])
    np.testing.assert_allclose(got[:30], a[:30])
    assert np.isnan(got[-1])
    # rarity 4: the novelty counts as 4 times less rare, log10(4) / 6 lower on the surprise scale
    strict = combine_surprise(raw, nov, (500.0, 50), rarity=4.0)
    np.testing.assert_allclose(strict[30:-1], np.maximum(a, np.maximum(b - np.log10(4) / 6, 0))[30:-1])
