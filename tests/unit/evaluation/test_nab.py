"""The NAB scorer on constructed files whose scores can be worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from evaluation.nab import PUBLISHED_PROFILES, CorpusSweep, FileSweep, row_weights, scaled_sigmoid

STANDARD = PUBLISHED_PROFILES["standard"]
N, WINDOW = 100, (40, 49)  # probationary period: floor(0.15 * 100) = 15 rows


def detections_at(*rows: int, n: int = N) -> np.ndarray:
    s = np.zeros(n)
    s[list(rows)] = 1.0
    return s


def file_score(scores: np.ndarray, windows=(WINDOW,), profile=STANDARD, threshold: float = 1.0) -> float:
    return float(FileSweep.build("f", scores, list(windows), profile).score_at(threshold)[0])


def corpus(scores_by_file: list[np.ndarray], windows_by_file: list[list[tuple[int, int]]], profile=STANDARD):
    pairs = enumerate(zip(scores_by_file, windows_by_file, strict=True))
    files = [FileSweep.build(str(i), s, w, profile) for i, (s, w) in pairs]
    return CorpusSweep(files, sum(len(w) for w in windows_by_file), profile)


def test_scaled_sigmoid_published_values() -> None:
    assert scaled_sigmoid(-1.0) == pytest.approx(0.98661, abs=1e-5)
    assert scaled_sigmoid(-0.5) == pytest.approx(0.84828, abs=1e-5)
    assert scaled_sigmoid(0.0) == pytest.approx(0.0)
    assert scaled_sigmoid(1.0) == pytest.approx(-0.98661, abs=1e-5)
    assert scaled_sigmoid(3.0) == -1.0


def test_perfect_detector_scores_100_and_null_detector_0() -> None:
    c = corpus([detections_at(40)], [[WINDOW]])
    assert c.at_threshold(1.0).score == pytest.approx(100.0)
    assert c.at_threshold(1.0).raw == pytest.approx(1.0)
    null = corpus([np.zeros(N)], [[WINDOW]])
    assert null.at_threshold(1.0).score == pytest.approx(0.0)
    assert null.null == pytest.approx(-1.0)


def test_earlier_detection_in_a_window_scores_more() -> None:
    start, middle, end = (file_score(detections_at(r)) for r in (40, 45, 49))
    assert start > middle > end > -1.0
    # Row 45: position -(49 - 45 + 1) / 10 = -0.5 -> sigma = 0.84828, divided by sigma(-1) = 0.98661.
    assert middle == pytest.approx((2 / (1 + math.exp(-2.5)) - 1) / (2 / (1 + math.exp(-5)) - 1))
    # Normalized: 100 * (0.8598 - (-1)) / (1 - (-1)) = 92.99.
    assert corpus([detections_at(45)], [[WINDOW]]).at_threshold(1.0).score == pytest.approx(92.99, abs=0.01)


def test_only_the_first_detection_in_a_window_counts() -> None:
    assert file_score(detections_at(40, 45, 49)) == pytest.approx(file_score(detections_at(40)))


def test_false_positives_before_and_after_a_window() -> None:
    fp_weight = STANDARD["fpWeight"]
    # Before any window: the full -fpWeight, on top of the missed window (-fnWeight).
    assert file_score(detections_at(30)) == pytest.approx(-1.0 - fp_weight)
    # Just after the window: position |49 - 50| / (10 - 1), a small penalty.
    just_after = file_score(detections_at(50))
    assert just_after == pytest.approx(-1.0 + fp_weight * float(scaled_sigmoid(1 / 9)))
    # Far after the window the penalty approaches the full weight.
    assert file_score(detections_at(99)) < just_after


def test_probationary_detections_are_ignored() -> None:
    assert file_score(detections_at(5)) == pytest.approx(-1.0)  # row 5 < 15: as if nothing happened
    assert file_score(detections_at(5, 40)) == pytest.approx(1.0)


def test_profiles_change_the_costs() -> None:
    low_fn = PUBLISHED_PROFILES["reward_low_FN_rate"]
    assert file_score(np.zeros(N), profile=low_fn) == pytest.approx(-2.0)
    low_fp = PUBLISHED_PROFILES["reward_low_FP_rate"]
    assert file_score(detections_at(30, 40), profile=low_fp) == pytest.approx(1.0 - 0.22)


def test_row_weights_mark_probation_and_windows() -> None:
    weight, window_id = row_weights(N, [WINDOW], STANDARD, probation=15)
    assert (window_id[:15] == -2).all()
    assert (window_id[40:50] == 0).all() and window_id[39] == -1 and window_id[50] == -1
    assert weight[40] == pytest.approx(1.0)


def test_corpus_optimal_threshold_is_the_best_single_threshold() -> None:
    # File a: its window starts at row 40 (score 0.9); a false positive at row 70 scores 0.6.
    # File b: its window's best detection scores 0.7 (row 45); nothing else above 0.
    a = np.zeros(N)
    a[40], a[70] = 0.9, 0.6
    b = np.zeros(N)
    b[45] = 0.7
    c = corpus([a, b], [[WINDOW], [WINDOW]])
    best = c.optimal()
    thresholds = [0.95, 0.9, 0.7, 0.6, 0.0]
    brute = {t: c.at_threshold(t).raw for t in thresholds}
    assert best.raw == pytest.approx(max(brute.values()))
    assert best.threshold == 0.7  # catches both windows without the false positive
    assert best.null == pytest.approx(-2.0) and best.perfect == pytest.approx(2.0)


def test_leave_one_file_out_uses_only_the_other_files() -> None:
    # On file a alone the best threshold is 0.9; on file b alone it is 0.7 (0.9 would miss b's window).
    a = np.zeros(N)
    a[40] = 0.9
    a[60:90] = 0.7  # many false positives at 0.7
    b = np.zeros(N)
    b[45] = 0.7
    c = corpus([a, b], [[WINDOW], [WINDOW]])
    lofo, thresholds = c.leave_one_file_out()
    assert thresholds == [0.7, 0.9]  # a gets b's optimum and vice versa
    expected = c.files[0].score_at(0.7)[0] + c.files[1].score_at(0.9)[0]
    assert lofo.raw == pytest.approx(expected)
    assert lofo.score < c.optimal().score


def test_per_file_thresholds_and_missing_scores() -> None:
    s = detections_at(40)
    s[:20] = np.nan  # nothing emitted yet: never a detection
    c = corpus([s, np.zeros(N)], [[WINDOW], [WINDOW]])
    assert c.per_file([1.0, np.inf]).raw == pytest.approx(1.0 - 1.0)
    assert c.per_file([np.inf, np.inf]).score == pytest.approx(0.0)
