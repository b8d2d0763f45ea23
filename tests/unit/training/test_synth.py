"""Synthetic generator: every scenario, labels where the anomalies are, reproducibility."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from training.synth import (
    SCENARIOS,
    base_signal,
    generate,
    inject_anomalies,
    scenario_rng,
    write_scenarios,
)


def test_there_are_the_eight_scenarios() -> None:
    assert set(SCENARIOS) == {"point_anomaly", "contextual_anomaly", "collective_anomaly",
                              "seasonal_with_anomaly", "trend_shift", "noise_burst",
                              "frequency_change", "flat_signal"}


@pytest.mark.parametrize("scenario", SCENARIOS)
@pytest.mark.parametrize("n", [100, 2000])
def test_every_scenario_has_labelled_anomalies(scenario: str, n: int) -> None:
    for seed in range(5):
        s = generate(scenario, n, scenario_rng(seed, scenario))
        assert len(s.values) == len(s.probability) == len(s.timestamps) == n
        assert np.all(np.isfinite(s.values))
        assert s.probability.min() >= 0 and s.probability.max() <= 1
        assert 0 < s.anomaly_tag.sum() < n / 2
        np.testing.assert_array_equal(s.anomaly_tag, s.probability >= 0.5)


@pytest.mark.parametrize("kind", [k for k in SCENARIOS if k != "trend_shift"])
def test_labels_cover_exactly_the_changed_points(kind: str) -> None:
    for seed in range(5):
        rng = np.random.default_rng(seed)
        base = base_signal(2000, rng, periodic=True)
        values, prob = inject_anomalies(base, rng, kinds=(kind,))
        changed = ~np.isclose(values, base, rtol=0, atol=1e-9 * np.abs(base).max())
        labelled = prob > 0
        assert not np.any(changed & ~labelled), "a changed point is not labelled"
        # A stuck segment keeps its first value; everything else labelled really moved.
        assert changed[labelled].mean() > 0.9


def test_trend_shift_label_starts_at_the_change_and_decays() -> None:
    rng = np.random.default_rng(4)
    base = base_signal(2000, rng)
    values, prob = inject_anomalies(base, rng, kinds=("trend_shift",), n_anomalies=1)
    first = int(np.flatnonzero(values != base)[0])
    assert prob[first] == 1.0 and prob[:first].max() == 0
    assert np.all(np.diff(prob[first:first + 24]) < 0)
    assert np.all(values[first:] != base[first:])


def test_point_anomalies_stand_out_from_their_neighbours() -> None:
    precision = []
    for seed in range(10):
        s = generate("point_anomaly", 2000, scenario_rng(seed, "point_anomaly"))
        local = pd.Series(s.values).rolling(9, center=True, min_periods=1).median().to_numpy()
        dev = np.abs(s.values - local)
        spikes = np.flatnonzero(s.anomaly_tag)
        # Precision at k: a spike may land on a noise dip or beside a normal burst of heavy-tailed
        # telemetry, but nearly all top points must be spikes.
        top = set(np.argsort(-dev)[:len(spikes)].tolist())
        precision.append(len(top & set(spikes.tolist())) / len(spikes))
    assert min(precision) >= 0.5 and np.mean(precision) >= 0.9


def test_injection_works_on_any_scale_and_leaves_the_input_alone() -> None:
    rng = np.random.default_rng(0)
    real = 1e6 + 1e4 * np.cumsum(rng.normal(size=500))
    copy = real.copy()
    values, prob = inject_anomalies(real, rng)
    np.testing.assert_array_equal(real, copy)
    assert prob.max() == 1 and np.all(np.isfinite(values))
    with pytest.raises(ValueError, match="unknown"):
        inject_anomalies(real, rng, kinds=("meteor",))


def test_same_seed_same_series_other_seed_other_series() -> None:
    a = generate("noise_burst", 500, scenario_rng(1, "noise_burst"))
    b = generate("noise_burst", 500, scenario_rng(1, "noise_burst"))
    c = generate("noise_burst", 500, scenario_rng(2, "noise_burst"))
    np.testing.assert_array_equal(a.values, b.values)
    np.testing.assert_array_equal(a.probability, b.probability)
    assert not np.allclose(a.values, c.values)
    assert not np.array_equal(a.probability, c.probability)


def test_written_files_are_reproducible_and_independent_of_other_scenarios(tmp_path: Path) -> None:
    all_files = write_scenarios(tmp_path / "all", 200, seed=5)
    one = write_scenarios(tmp_path / "one", 200, seed=5, scenarios=("flat_signal",))
    again = write_scenarios(tmp_path / "again", 200, seed=5)
    assert [p.name for p in all_files] == [f"{s}.csv" for s in SCENARIOS]
    for a, b in zip(all_files, again, strict=True):
        assert a.read_bytes() == b.read_bytes()
    assert one[0].read_bytes() == (tmp_path / "all" / "flat_signal.csv").read_bytes()
    frame = pd.read_csv(all_files[0])
    assert list(frame.columns) == ["timestamp", "value", "probability", "anomaly_tag"]
    assert set(frame["anomaly_tag"]) <= {0, 1}


def test_several_series_per_scenario_differ(tmp_path: Path) -> None:
    paths = write_scenarios(tmp_path, 100, seed=1, scenarios=("point_anomaly",), n_series=2)
    assert [p.name for p in paths] == ["point_anomaly_000.csv", "point_anomaly_001.csv"]
    assert paths[0].read_bytes() != paths[1].read_bytes()


def test_too_short_or_unknown_is_refused() -> None:
    with pytest.raises(ValueError, match="at least"):
        generate("point_anomaly", 5, np.random.default_rng(0))
    with pytest.raises(ValueError, match="unknown scenario"):
        generate("earthquake", 100, np.random.default_rng(0))
