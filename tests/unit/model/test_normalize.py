"""Normalizers: fitted statistics, the scale-free window scope, serialization."""

from __future__ import annotations

import numpy as np
import pytest

from model.normalize import INPUT_STEP, SERIES_CLIP, Normalizer, RunningStats
from model.windows import make_windows


def _windows(rng: np.random.Generator, n: int = 40, w: int = 16) -> np.ndarray:
    return make_windows(np.cumsum(rng.normal(size=n)), w, 1)


def test_global_minmax_maps_training_range_to_unit_interval() -> None:
    train = np.array([[2.0], [4.0], [6.0]])
    norm = Normalizer("minmax", "global").fit(train)
    out = norm.transform(train.reshape(1, 3, 1))
    np.testing.assert_allclose(out.ravel(), [0.0, 0.5, 1.0])


def test_global_zscore_centres_and_scales() -> None:
    rng = np.random.default_rng(0)
    train = rng.normal(5.0, 3.0, size=(500, 1))
    out = Normalizer("zscore", "global").fit(train).transform(train.reshape(1, 500, 1))
    assert abs(out.mean()) < 1e-5 and abs(out.std() - 1) < 1e-4


@pytest.mark.parametrize("kind", ["minmax", "zscore", "robust"])
def test_window_scope_is_invariant_to_affine_rescaling(kind: str) -> None:
    w = _windows(np.random.default_rng(1))
    norm = Normalizer(kind, "window")
    np.testing.assert_allclose(norm.transform(1e4 * w - 3e3), norm.transform(w), atol=1e-4)


def test_global_scope_is_not_scale_free() -> None:
    """The control for the test above: with fitted statistics a rescaled series looks different."""
    w = _windows(np.random.default_rng(1))
    norm = Normalizer("minmax", "global").fit(w.reshape(-1, 1))
    assert np.abs(norm.transform(3 * w + 1) - norm.transform(w)).max() > 0.5


@pytest.mark.parametrize("kind", ["zscore", "robust"])
def test_flat_input_maps_to_zero_not_nan(kind: str) -> None:
    flat = np.full((2, 8, 1), 7.5)
    for scope in ("global", "window"):
        norm = Normalizer(kind, scope).fit(flat.reshape(-1, 1))  # type: ignore[arg-type]
        out = norm.transform(flat)
        assert np.all(np.isfinite(out)) and np.all(out == 0)


def test_robust_window_keeps_the_size_of_a_spike() -> None:
    """z-scoring a window caps one spike near sqrt(W - 1), whatever its size; median and IQR do not,
    up to the clip."""
    from model.normalize import ROBUST_CLIP

    w = np.random.default_rng(2).normal(size=(2, 64, 1))
    w[0, 30, 0] += 10.0
    w[1, 30, 0] += 1000.0
    z = Normalizer("zscore", "window").transform(w)[:, 30, 0]
    r = Normalizer("robust", "window").transform(w)[:, 30, 0]
    assert z[1] < 8.0 and r[0] > 5.0 and r[1] == ROBUST_CLIP
    # Sparse counts (IQR 0) still get a scale-free spread from the standard deviation.
    counts = np.zeros((1, 64, 1))
    counts[0, 5, 0] = 3.0
    np.testing.assert_allclose(Normalizer("robust", "window").transform(counts),
                               Normalizer("robust", "window").transform(5 * counts))


def test_round_trip_through_dict() -> None:
    norm = Normalizer("zscore", "global").fit(np.arange(10.0))
    again = Normalizer.from_dict(norm.to_dict())
    assert again == norm


def test_unfitted_global_and_unknown_kinds_are_refused() -> None:
    with pytest.raises(ValueError, match="before fit"):
        Normalizer().transform(np.zeros((1, 4, 1)))
    with pytest.raises(ValueError, match="kind"):
        Normalizer(kind="median")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="scope"):
        Normalizer(scope="series")  # type: ignore[arg-type]


def test_series_scope_standardizes_by_the_running_history() -> None:
    norm = Normalizer("zscore", "series", halflife=200.0)
    rng = np.random.default_rng(0)
    x = rng.normal(100.0, 5.0, size=3000)
    x[2500] += 80.0  # 16 standard deviations
    z = norm.prepare_series(x)
    assert z.shape == x.shape and z[0] == 0.0 and z[1] == 0.0
    assert abs(z[500:2500].mean()) < 0.1 and 0.9 < z[500:2500].std() < 1.1  # unit scale after warm-up
    assert 14.0 < z[2500] < 18.0  # measured against the history before it
    assert abs(z[2501:2600]).max() < 5.0  # the update is winsorized: one outlier barely moves the scale
    # Scale-free: a*x + b gives the same standardized series.
    np.testing.assert_allclose(norm.prepare_series(3.0 * x - 7.0), z, atol=1e-9)


def test_series_scope_continues_across_chunks_and_handles_flat_history() -> None:
    norm = Normalizer("zscore", "series", halflife=30.0)
    x = np.r_[np.full(50, 2.0), np.random.default_rng(1).normal(size=100)]
    whole = norm.prepare_series(x)
    stats = RunningStats.empty(1)
    parts = [norm.prepare_series(x[a:b], stats) for a, b in [(0, 7), (7, 60), (60, 150)]]
    np.testing.assert_array_equal(np.concatenate(parts), whole)
    assert stats.count == 150
    assert np.all(whole[:50] == 0.0) and whole[50] in (SERIES_CLIP, -SERIES_CLIP)  # flat, then it moves
    assert np.all(np.abs(whole) <= SERIES_CLIP)
    # (T, C) works channel by channel.
    two = norm.prepare_series(np.stack([x, 2 * x], axis=1))
    np.testing.assert_allclose(two[:, 0], whole) and np.testing.assert_allclose(two[:, 1], whole)


def test_series_scope_settings_and_round_trip() -> None:
    norm = Normalizer("zscore", "series", halflife=123.0)
    assert norm.fitted and norm.pointwise
    assert Normalizer.from_dict(norm.to_dict()) == norm
    w = np.arange(24.0).reshape(2, 12, 1)
    assert norm.transform(w).dtype == np.float32 and np.array_equal(norm.transform(w), w)  # prepared already
    with pytest.raises(ValueError, match="supports kind .zscore. only"):
        Normalizer("minmax", "series")
    with pytest.raises(ValueError, match="halflife"):
        Normalizer("zscore", "series", halflife=0.5)
    first = w[0]
    assert Normalizer("zscore", "window").prepare_series(first) is first  # other scopes: unchanged


def test_deviation_channels_follow_the_plain_history() -> None:
    """With deviation_halflife the series scope adds, after the model channels, each point's z against the
    plain (not winsorized) running statistics: within the first ~1.44 half-lives, the mean and population
    standard deviation of every point before it."""
    rng = np.random.default_rng(3)
    x = rng.normal(10.0, 2.0, size=600)
    x[300:400] += 30.0  # a long level shift: the winsorized model statistics barely follow it
    norm = Normalizer("zscore", "series", halflife=50.0, deviation_halflife=1e6)
    out = norm.prepare_series(x)
    assert out.shape == (600, 2) and norm.input_channels(1) == 2 and norm.input_channels(3) == 6
    np.testing.assert_array_equal(out[:, 0], Normalizer("zscore", "series", halflife=50.0).prepare_series(x))
    expect = np.array([0.0, 0.0] + [(x[t] - x[:t].mean()) / x[:t].std() for t in range(2, 600)])
    # on the INPUT_STEP grid: within half a step of the exact ratio, and a whole multiple of the step
    np.testing.assert_allclose(out[:, 1], np.clip(expect, -SERIES_CLIP, SERIES_CLIP), rtol=0,
                               atol=INPUT_STEP / 2 + 1e-12)
    assert np.array_equal(out, np.rint(out / INPUT_STEP) * INPUT_STEP)
    assert np.array_equal(out.astype(np.float32).astype(np.float64), out)  # exact in float32
    assert out[399, 1] > out[399, 0]  # at the end of the shift the long history still sees it, the short no longer
    # Chunked, with the statistics carried over, as the worker does; (T, C) gives C model then C deviation.
    stats = RunningStats.empty(2)
    np.testing.assert_array_equal(np.concatenate([norm.prepare_series(x[:77], stats),
                                                  norm.prepare_series(x[77:], stats)]), out)
    two = norm.prepare_series(np.stack([x, -x], axis=1))
    np.testing.assert_allclose(two[:, [0, 2]], out) and np.testing.assert_allclose(two[:, [1, 3]], -out)
    assert Normalizer.from_dict(norm.to_dict()) == norm
    assert "deviation_halflife" not in Normalizer("zscore", "series").to_dict()  # older readers unaffected
    with pytest.raises(ValueError, match="deviation_halflife"):
        Normalizer("zscore", "window", deviation_halflife=100.0)
    with pytest.raises(ValueError, match="running statistics of 1 channels"):
        norm.prepare_series(x, RunningStats.empty(1))
