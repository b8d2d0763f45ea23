"""The sine benchmark with five anomaly kinds (the self-distilled masked autoencoder's reference benchmark)."""

from __future__ import annotations

import numpy as np
import pytest

from training.benchmark import KINDS, benchmark_series, sine_series


@pytest.mark.parametrize("share", [0.03, 0.25])
def test_the_labelled_share_reaches_the_target(share: float) -> None:
    values, labels = benchmark_series(4000, share, np.random.default_rng(0))
    assert values.shape == labels.shape == (4000,)
    assert share <= labels.mean() < share + 0.03


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_changes_only_its_labelled_points(kind: str) -> None:
    clean = sine_series(2000, np.random.default_rng(3))
    values, labels = benchmark_series(2000, 0.05, np.random.default_rng(3), kinds=(kind,))
    changed = ~np.isclose(values, clean)
    assert changed.any() and labels.any()
    assert not changed[labels == 0].any()


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="kinds"):
        benchmark_series(500, 0.1, np.random.default_rng(0), kinds=("wobble",))
    with pytest.raises(ValueError, match="anomaly_share"):
        benchmark_series(500, 0.9, np.random.default_rng(0))
