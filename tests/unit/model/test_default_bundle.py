"""The default bundle shipped as package data: loads, verifies, and finds obvious anomalies."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from evaluation.detect import Detector
from evaluation.series import Series
from model.bundle import DEFAULT_BUNDLE_DIR, load_bundle
from training.synth import generate, scenario_rng


def test_default_bundle_loads_and_is_scale_free() -> None:
    bundle = load_bundle()  # hash, schema and a smoke inference
    assert bundle.directory == DEFAULT_BUNDLE_DIR
    assert bundle.manifest.normalization["scope"] == "series"
    # served through the per-series tail sketch: alerts on points rarer than 1 in 500 of their own series'
    cal = bundle.manifest.calibration
    assert cal.method == "tail_probability" and cal.details["tail_probability"] == 0.002
    assert cal.per_series is not None and (cal.per_series.halflife, cal.per_series.min_history) == (5000.0, 200)
    assert bundle.threshold == pytest.approx(-np.log10(0.002) / 6)
    assert cal.details["score_lag"] == 0
    assert bundle.manifest.model["deviation_blend"] == 0.7  # the graph blends in the points' deviation scores,
    assert bundle.normalizer.deviation_halflife == 6400.0 and bundle.input_channels == 2  # from long statistics
    assert (DEFAULT_BUNDLE_DIR / "model.onnx").stat().st_size < 5_000_000
    # Scale-free: a*x + b scores like x (to float32 rounding), so one model serves every series.
    x = generate("collective_anomaly", 600, scenario_rng(7, "collective_anomaly", 0)).values
    detector = Detector()
    np.testing.assert_allclose(detector.raw_score(1e4 * x - 300.0), detector.raw_score(x), atol=1e-4)


def test_default_model_ranks_spikes_first_on_unseen_data() -> None:
    found = []
    for k in range(10):  # the generator's normal signals hold harmless bursts too: judge on several series
        s = generate("point_anomaly", 1000, scenario_rng(4242, "point_anomaly", k))
        series = Series("s", s.values, timestamps=np.arange(1000))
        spikes = set(np.flatnonzero(s.anomaly_tag).tolist())
        # the model's own ranking (raw scores, before the per-series calibration, which reports nothing for the
        # first 200 points), judged with every covering window averaged (the served lag is shorter)
        raw = Detector(score_lag=63).raw_score(series.values)
        top = set(np.argsort(-raw, kind="stable")[: len(spikes)].tolist())
        found.append(len(top & spikes) / len(spikes))
    assert np.mean(found) >= 0.8


def test_default_bundle_scores_are_those_it_gave_before_the_family_seam(tmp_path: Path) -> None:
    """Every 10th score of three synthetic series (generated with seed 7), as `detect` gave them at commit
    b2e86dc, before AnomalyBERT moved behind `model.families` and serving behind `model.serving.serve`."""
    import json

    from evaluation.series import load_series
    from training.synth import write_scenarios

    reference = json.loads((Path(__file__).parent / "data" / "default_bundle_scores.json").read_text())
    write_scenarios(tmp_path, 1500, 7, ("point_anomaly", "collective_anomaly", "contextual_anomaly"))
    detector = Detector()
    for s in load_series(tmp_path, labels=True):
        want = reference[Path(s.name).name]
        assert detector.score_lag == want["lag"]
        # the raw scores (the mean window scores): the served ones are these through the per-series sketch
        np.testing.assert_allclose(detector.raw_score(s.values)[::10], want["scores"], atol=1e-5, rtol=0)
