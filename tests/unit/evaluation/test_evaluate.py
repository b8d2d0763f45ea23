"""The harness: the worker's aggregation, detection time, channel handling, baselines in the same run."""

from __future__ import annotations

import numpy as np
import pytest

from evaluation.datasets import Series
from evaluation.nab import PUBLISHED_PROFILES
from evaluation.report import build_report, fill_nan, seen_threshold
from evaluation.scoring import EvalConfig, ModelVariant, detection_time, effective_lag, evaluate_series
from model.bundle import load_bundle
from model.windows import aggregate, make_windows
from tests.bundles import tiny_bundle


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory):
    return load_bundle(tiny_bundle(tmp_path_factory.mktemp("bundle") / "b"))


def make_series(n: int = 400, channels: int = 1, seed: int = 0) -> Series:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    values = np.stack([np.sin(t / (5 + c)) + rng.normal(0, 0.1, n) for c in range(channels)], axis=1)
    values[300:310] += 4
    labels = np.zeros(n, dtype=np.int8)
    labels[300:310] = 1
    return Series("s", values, labels, seen_end=100, windows=[(300, 309)])


def test_detection_time_moves_scores_to_when_they_are_final() -> None:
    s = np.arange(10, dtype=float)
    d = detection_time(s, lag=3, window_size=5)
    # Points 0 and 1 become final with the first window (row 4); point i >= 2 at row i + 3.
    assert np.isnan(d[:4]).all()
    assert d[4] == 1.0 and list(d[5:]) == [2, 3, 4, 5, 6]
    np.testing.assert_array_equal(detection_time(s, 0, 1), s)


def test_effective_lag_covers_the_stride() -> None:
    assert effective_lag(0, 1) == 0 and effective_lag(0, 8) == 7 and effective_lag(20, 8) == 20


def test_model_scores_are_the_workers_aggregation(bundle) -> None:
    series = make_series()
    lag = 5
    out = evaluate_series(bundle, series, EvalConfig((ModelVariant(lag),), baselines=False))
    w = bundle.window_size
    window_scores = bundle.score_windows(make_windows(series.values, w, 1))
    expected, _ = aggregate(window_scores, series.n_points, w, 1, lag)
    got = out.detectors[ModelVariant(lag).name]
    np.testing.assert_allclose(got.scores, expected, rtol=1e-6)
    np.testing.assert_allclose(got.detections[w - 1 + 10:], expected[w - 1 + 10 - lag:-lag], rtol=1e-6)


def test_univariate_bundle_on_multichannel_data_takes_the_max(bundle) -> None:
    series = make_series(channels=3)
    series.values[:, 2] = 7.0  # constant channel: skipped
    variant = ModelVariant(15)
    cfg = EvalConfig((variant,), baselines=False)
    multi = evaluate_series(bundle, series, cfg).detectors[variant.name].scores
    singles = [evaluate_series(bundle, Series("c", series.values[:, c], series.labels, 100), cfg)
               .detectors[variant.name].scores for c in (0, 1)]
    np.testing.assert_allclose(multi, np.maximum(*singles), rtol=1e-6)


def test_baselines_and_calibration_in_the_same_run(bundle) -> None:
    variants = (ModelVariant(15, "none"), ModelVariant(15, "likelihood"))
    out = evaluate_series(bundle, make_series(), EvalConfig(variants))
    assert set(out.detectors) == {v.name for v in variants} | {"random", "windowed_gaussian", "iforest"}
    assert out.detectors["anomalybert lag=15 cal=likelihood"].scores.max() <= 1.0


def test_report_has_every_metric_and_nab_four_ways(bundle) -> None:
    scored = [evaluate_series(bundle, make_series(seed=k), EvalConfig((ModelVariant(15),))) for k in range(2)]
    for k, s in enumerate(scored):
        s.series.name = f"s{k}"
    report = build_report(scored, "seed", PUBLISHED_PROFILES, bundle.threshold, seed=0, vus_max_buffer=16)
    summary = report["windowed_gaussian"]["summary"]
    assert {"vus_pr", "auc_pr", "auc_roc", "best_f1", "f1_seen", "pa_f1"} <= set(summary)
    assert set(summary["pa_f1"]) == {"value", "random"}
    nab = report["anomalybert lag=15 cal=none"]["nab"]["standard"]
    assert {"corpus_optimized", "leave_one_file_out", "seen_part", "fixed"} <= set(nab)
    assert nab["corpus_optimized"]["score"] >= nab["leave_one_file_out"]["score"]
    assert report["random"]["nab"]["standard"]["fixed"] is None
    # The spike is obvious: the windowed Gaussian ranks it well above chance.
    assert summary["auc_roc"] > 0.8


def test_ucr_hit_follows_the_anomaly_when_the_seen_part_is_cropped() -> None:
    from evaluation.report import series_metrics
    from evaluation.scoring import Scored, ScoredSeries

    n, begin, end = 3000, 2500, 2520
    labels = np.zeros(n, dtype=np.int8)
    labels[begin:end + 1] = 1
    full = Series("u", np.zeros(n), labels, seen_end=2000, meta={"anomaly_begin": begin, "anomaly_end": end})
    cropped = full.crop_seen(500)  # 1500 points cut off the front
    scores = cropped.labels.astype(np.float64)  # the top score is on the anomaly
    m = series_metrics(Scored(scores, scores, 0), ScoredSeries(cropped), "ucr", seed=0, vus_max_buffer=4)
    assert m["ucr_hit"]


def test_fill_nan_and_seen_threshold() -> None:
    s = np.array([np.nan, 0.2, 0.5, 0.1])
    np.testing.assert_array_equal(fill_nan(s), [0.1, 0.2, 0.5, 0.1])
    assert seen_threshold(s, 3) > 0.5 and seen_threshold(s, 3) < 0.5001


def test_tiny_series_is_refused(bundle) -> None:
    from model.errors import DataError

    with pytest.raises(DataError, match="fewer than the model window"):
        evaluate_series(bundle, Series("x", np.zeros(5), np.zeros(5), 1), EvalConfig((ModelVariant(0),)))


def test_series_scope_bundle_is_evaluated_on_point_by_point_standardized_values(tmp_path) -> None:
    from model.normalize import Normalizer

    bundle = load_bundle(tiny_bundle(tmp_path / "series", normalizer=Normalizer("zscore", "series", halflife=50.0)))
    series = make_series(channels=2)
    lag = 4
    out = evaluate_series(bundle, series, EvalConfig((ModelVariant(lag),), baselines=False, channel_reduce="max"))
    per_channel = []
    for c in range(2):
        prepared = bundle.normalizer.prepare_series(series.values[:, c])  # each channel its own statistics
        ws = bundle.score_windows(make_windows(prepared, 16, 1))
        per_channel.append(aggregate(ws, series.n_points, 16, 1, lag)[0])
    np.testing.assert_allclose(out.detectors[ModelVariant(lag).name].scores, np.max(per_channel, axis=0),
                               rtol=1e-6)


def test_evaluate_adds_the_novelty_variant(bundle) -> None:
    from tests.unit.model.test_novelty import heartbeat

    x = heartbeat(1200)
    labels = np.zeros(1200, dtype=np.int8)
    labels[900:940] = 1
    series = Series("hb", x, labels, seen_end=300, windows=[(900, 939)])
    lag = bundle.window_size - 1
    plain, novel = ModelVariant(lag, "tail"), ModelVariant(lag, "tail", (40, 400, 1.0))
    out = evaluate_series(bundle, series, EvalConfig((plain, novel), baselines=False)).detectors
    assert novel.name == f"anomalybert lag={lag} novelty=40/400 cal=tail"
    assert (out[novel.name].scores >= out[plain.name].scores - 1e-12).all()  # the larger of two surprises
    assert out[novel.name].scores[900:980].max() > out[plain.name].scores[900:980].max()
