"""Baselines: NAB's windowed Gaussian reproduced exactly, Isolation Forest fitted on the seen part."""

from __future__ import annotations

import math

import numpy as np
import pytest

from evaluation import baselines


def nab_windowed_gaussian(x: np.ndarray, window: int, step: int) -> np.ndarray:
    """NAB's detector written as NAB writes it, one record at a time."""
    data, buffer, mean, std, out = [], [], 0.0, 1.0, []
    for v in x:
        score = 0.0
        if data:
            z = abs(v - mean) / std
            score = 1 - 0.5 * math.erfc(z / math.sqrt(2))
        if len(data) < window:
            data.append(v)
            mean, std = float(np.mean(data)), float(np.std(data)) or 1e-6
        else:
            buffer.append(v)
            if len(buffer) == step:
                data = data[step:] + buffer
                buffer = []
                mean, std = float(np.mean(data)), float(np.std(data)) or 1e-6
        out.append(score)
    return np.array(out)


def test_windowed_gaussian_matches_nab_record_by_record() -> None:
    rng = np.random.default_rng(0)
    x = np.concatenate([np.full(7, 3.0), rng.normal(10, 2, 90), [40.0], rng.normal(10, 2, 40)])
    expected = nab_windowed_gaussian(x, window=20, step=5)
    got = baselines.windowed_gaussian(x, window=20, step=5)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9)
    assert got[97] == got.max()  # the spike


def test_windowed_gaussian_multichannel_reduces() -> None:
    x = np.zeros((50, 2))
    x[:, 0] = np.sin(np.arange(50))
    x[:, 1] = np.cos(np.arange(50))
    both = np.stack([baselines.windowed_gaussian(x[:, c], 10, 2) for c in range(2)], axis=1)
    np.testing.assert_allclose(baselines.windowed_gaussian(x, 10, 2, reduce="max"), both.max(axis=1))
    np.testing.assert_allclose(baselines.windowed_gaussian(x, 10, 2, reduce="mean"), both.mean(axis=1))


def test_random_scores_are_reproducible_uniform() -> None:
    a, b = baselines.random_scores(1000, seed=3), baselines.random_scores(1000, seed=3)
    np.testing.assert_array_equal(a, b)
    assert 0 <= a.min() and a.max() < 1


def test_iforest_flags_a_pattern_absent_from_the_seen_part() -> None:
    t = np.arange(3000)
    x = np.sin(2 * np.pi * t / 50) + np.random.default_rng(1).normal(0, 0.05, len(t))
    x[2500:2520] += 3.0
    s = baselines.iforest_scores(x, seen_end=1500, window=16, seed=0)
    assert s.shape == x.shape
    assert s[2500:2520].mean() > np.quantile(s[1500:2400], 0.99)


def test_iforest_ignores_the_unseen_part_when_fitting() -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(size=1000)
    tail_a, tail_b = x.copy(), x.copy()
    tail_b[600:] = rng.normal(size=400) * 5
    a = baselines.iforest_scores(tail_a, seen_end=500, seed=0)
    b = baselines.iforest_scores(tail_b, seen_end=500, seed=0)
    np.testing.assert_allclose(a[:500], b[:500])  # same fit, same scores on the shared prefix


def test_iforest_without_enough_seen_windows_scores_zero() -> None:
    assert not baselines.iforest_scores(np.arange(100.0), seen_end=20).any()


def test_reduce_channels_rejects_unknown() -> None:
    with pytest.raises(ValueError):
        baselines.reduce_channels(np.zeros((3, 2)), "median")
