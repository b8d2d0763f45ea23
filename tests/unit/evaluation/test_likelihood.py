"""The causal anomaly likelihood of raw scores."""

from __future__ import annotations

import numpy as np
import pytest

from evaluation.likelihood import LIKELIHOOD_THRESHOLD, anomaly_likelihood, calibrate


def test_likelihood_is_high_after_a_jump_and_low_before() -> None:
    rng = np.random.default_rng(0)
    s = np.clip(0.2 + rng.normal(0, 0.05, 2000), 0, 1)
    s[1500:1520] = 0.9
    out = anomaly_likelihood(s)
    assert out.min() >= 0 and out.max() <= 1
    assert out[1505:1520].max() > LIKELIHOOD_THRESHOLD
    assert np.quantile(out[300:1500], 0.99) < LIKELIHOOD_THRESHOLD


def test_likelihood_is_causal_and_silent_while_learning() -> None:
    rng = np.random.default_rng(1)
    s = rng.random(1000)
    changed = s.copy()
    changed[700:] = 1.0
    a, b = anomaly_likelihood(s), anomaly_likelihood(changed)
    np.testing.assert_array_equal(a[:700], b[:700])
    assert not a[:300].any()  # min_history


def test_calibrate_by_name() -> None:
    s = np.linspace(0, 1, 10)
    np.testing.assert_array_equal(calibrate(s, "none"), s)
    with pytest.raises(ValueError):
        calibrate(s, "isotonic")
