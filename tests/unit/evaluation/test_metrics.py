"""Point and range metrics against cases small enough to work out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from evaluation import metrics


def test_auc_roc_and_pr_perfect_reversed_and_undefined() -> None:
    y = np.array([0, 0, 1, 1, 0])
    s = np.array([0.1, 0.2, 0.9, 0.8, 0.3])
    assert metrics.auc_roc(y, s) == 1.0
    assert metrics.auc_pr(y, s) == 1.0
    assert metrics.auc_roc(y, -s) == 0.0
    assert math.isnan(metrics.auc_roc(np.zeros(5), s))
    assert math.isnan(metrics.vus_pr(np.zeros(5), s))


def test_auc_pr_hand_computed() -> None:
    # Ranked: 0.9 (anomaly), 0.8 (normal), 0.7 (anomaly): AP = 1/2 * 1 + 1/2 * 2/3.
    y = np.array([1, 0, 1, 0])
    s = np.array([0.9, 0.8, 0.7, 0.1])
    assert metrics.auc_pr(y, s) == pytest.approx(0.5 + 1 / 3)


def test_best_f1_without_point_adjustment() -> None:
    # Cuts: {0.9} P=1 R=1/2 F1=2/3; {0.9,0.8,0.7} P=2/3 R=1 F1=0.8 (the best); all: P=1/2 R=1 F1=2/3.
    y = np.array([1, 0, 1, 0])
    s = np.array([0.9, 0.8, 0.7, 0.1])
    assert metrics.best_f1(y, s) == pytest.approx(0.8)
    assert metrics.best_f1(np.array([0, 1, 1, 0]), np.array([0.0, 1.0, 1.0, 0.0])) == 1.0


def test_f1_at_fixed_threshold() -> None:
    y = np.array([0, 1, 1, 0])
    assert metrics.f1_at(y, np.array([0.0, 0.9, 0.1, 0.9]), 0.5) == pytest.approx(0.5)  # tp 1, fp 1, fn 1


def test_point_adjusted_f1_rewards_one_hit_per_segment_and_comes_with_random() -> None:
    y = np.zeros(20, dtype=int)
    y[5:10] = 1
    s = np.zeros(20)
    s[7] = 1.0  # one point inside the segment: point adjustment credits all five
    result = metrics.point_adjusted_f1(y, s)
    assert result.value == 1.0
    assert 0.0 <= result.random <= 1.0
    assert result.to_dict().keys() == {"value", "random"}
    # Without adjustment the same score is far from perfect: the best is flagging everything
    # (precision 5/20, recall 1, F1 0.4), better than the lone hit (precision 1, recall 1/5, F1 1/3).
    assert metrics.best_f1(y, s) == pytest.approx(0.4)


def test_point_adjusted_f1_counts_false_positives_pointwise() -> None:
    y = np.array([0, 0, 1, 1, 0, 0])
    s = np.array([0.0, 0.8, 0.9, 0.0, 0.0, 0.0])
    # Threshold 0.9: segment found (tp 2), no fp -> 1.0.
    assert metrics.point_adjusted_f1(y, s).value == 1.0
    s2 = np.array([0.0, 0.9, 0.8, 0.0, 0.0, 0.0])
    # Threshold 0.8: tp 2, fp 1 -> 4/5; threshold 0.9: tp 0 -> 0.
    assert metrics.point_adjusted_f1(y, s2).value == pytest.approx(0.8)


def test_vus_pr_perfect_detector_is_one_at_every_buffer() -> None:
    y = np.zeros(300, dtype=int)
    y[100:110] = 1
    y[200:203] = 1
    assert metrics.vus_pr(y, y.astype(float), max_buffer=40) == pytest.approx(1.0)


def test_vus_pr_hand_computed_with_buffer() -> None:
    # One anomalous point at 5; the detector fires first one point early (index 4), then on time.
    # Buffers 0 and 1 add no margin: AP = 0.5 (the early point is a plain false positive).
    # Buffer 2 gives indices 4 and 6 weight sqrt(1/2), so the early detection earns partial credit:
    # t=0.9: TP=.7071, P'=1.3536, recall .5224 (the widened range holds a prediction), precision .7071;
    # t=0.5: recall 1, precision 1.7071/2.  AP = .5224*.7071 + .4776*.8536 = .77705.
    y = np.zeros(11, dtype=int)
    y[5] = 1
    s = np.full(11, 0.1)
    s[4], s[5] = 0.9, 0.5
    h = math.sqrt(0.5)
    recall = h / (1 + h / 2)
    ap2 = recall * h + (1 - recall) * (1 + h) / 2
    assert metrics.vus_pr(y, s, max_buffer=0) == pytest.approx(0.5)
    assert metrics.vus_pr(y, s, max_buffer=2) == pytest.approx((0.5 + 0.5 + ap2) / 3)
    assert ap2 == pytest.approx(0.777049, abs=1e-6)


def test_vus_pr_prefers_a_detection_near_the_anomaly() -> None:
    y = np.zeros(400, dtype=int)
    y[200:210] = 1
    near, far = np.zeros(400), np.zeros(400)
    near[195], far[50] = 1.0, 1.0
    near[205], far[205] = 0.5, 0.5
    assert metrics.vus_pr(y, near) > metrics.vus_pr(y, far)


def test_ucr_hit_tolerance_and_start() -> None:
    s = np.zeros(1000)
    s[650] = 1.0
    assert metrics.ucr_hit(s, begin=700, end=720)  # 50 before the anomaly: within 100
    assert not metrics.ucr_hit(s, begin=800, end=820)
    s[10] = 5.0  # the top point in the training prefix is ignored
    assert metrics.ucr_hit(s, begin=700, end=720, start=500)


def test_nan_scores_are_refused() -> None:
    with pytest.raises(ValueError, match="NaN"):
        metrics.auc_roc(np.array([0, 1]), np.array([np.nan, 1.0]))


def test_alerts_on_normal_points_follow_the_workers_hysteresis() -> None:
    from evaluation.metrics import alerts_on_normal

    labels = np.zeros(100, int)
    labels[40:45] = 1
    scores = np.zeros(100)
    scores[[10, 11, 12]] = 0.9  # one episode on normal points: one alert (hysteresis), not three
    scores[42] = 0.9  # inside the labelled anomaly: not counted
    scores[80] = 0.9  # a second false alarm, after the cooldown
    assert alerts_on_normal(labels, scores, 0.5) == (2, 95)
    assert alerts_on_normal(labels, scores, 0.95) == (0, 95)


def test_adjusted_at_counts_a_segment_once_any_point_reaches_the_threshold() -> None:
    y = np.array([0, 1, 1, 1, 0, 0, 1, 1, 0, 0])
    s = np.array([0.9, 0.1, 0.8, 0.1, 0.0, 0.0, 0.1, 0.1, 0.0, 0.0])
    m = metrics.adjusted_at(y, s, 0.5)
    # plain: one true positive (index 2), one false positive (index 0), four missed
    assert (m["precision"], m["recall"]) == (0.5, 0.2)
    # adjusted: the first segment is detected whole (3 points), the second not at all
    assert m["pa_precision"] == 0.75 and m["pa_recall"] == 0.6
    assert m["pa_f1"] == pytest.approx(2 * 0.75 * 0.6 / 1.35)
    assert metrics.adjusted_at(y, s, 2.0)["f1"] == 0.0
