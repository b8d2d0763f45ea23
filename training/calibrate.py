"""Validation scores and labels in; metrics and the serving threshold out.

The threshold is fitted on validation data only, never on test labels.
"""

from __future__ import annotations

from typing import Any

import numpy as np

_EPS = 1e-7

# F-beta of the serving threshold that `train` stores: precision weighs 16x recall. Chosen on the NAB dev
# files (README, "The default model"): with the same model, the best-F1 validation threshold flagged about
# 2 % of validation normal points and scored -237 on NAB at that fixed threshold; F0.5 17.0, F0.25 23.4.
DEFAULT_THRESHOLD_BETA = 0.25


def bce(scores: np.ndarray, probability: np.ndarray) -> float:
    """Mean binary cross-entropy between scores in [0, 1] and soft labels."""
    s = np.clip(scores, _EPS, 1 - _EPS)
    return float(-np.mean(probability * np.log(s) + (1 - probability) * np.log(1 - s)))


def roc_auc(scores: np.ndarray, label: np.ndarray) -> float | None:
    """ROC-AUC, or None when only one class is present."""
    from sklearn.metrics import roc_auc_score

    if len(np.unique(label)) < 2:
        return None
    return float(roc_auc_score(label, scores))


def best_f1_threshold(scores: np.ndarray, label: np.ndarray) -> tuple[float, dict[str, Any]]:
    """The score threshold (flag `score >= threshold`) with the best F1 on validation points."""
    return best_fbeta_threshold(scores, label, 1.0)


def best_fbeta_threshold(scores: np.ndarray, label: np.ndarray, beta: float) -> tuple[float, dict[str, Any]]:
    """The score threshold (flag `score >= threshold`) with the best F-beta on validation points.

    beta < 1 weighs precision above recall (beta = 0.25: precision counts 16 times as much in the
    harmonic mean), i.e. fewer, more trustworthy alerts. Returns the threshold and the calibration record
    (method, beta, F-beta, F1, precision, recall at it). Falls back to 0.5 when the validation points do
    not hold both classes.
    """
    from sklearn.metrics import precision_recall_curve

    if not beta > 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    if len(np.unique(label)) < 2:
        return 0.5, {"method": "default", "reason": "validation split lacks normal or anomalous points",
                     "n_points": int(len(label)), "n_anomalous": int(label.sum())}
    precision, recall, thresholds = precision_recall_curve(label, scores)
    b2 = beta * beta
    fb = (1 + b2) * precision * recall / np.maximum(b2 * precision + recall, _EPS)
    f1 = 2 * precision * recall / np.maximum(precision + recall, _EPS)
    best = int(np.argmax(fb[:-1]))  # the last PR point has no threshold
    record: dict[str, Any] = {"method": "best_f1_validation" if beta == 1.0 else "best_fbeta_validation"}
    if beta != 1.0:
        record |= {"beta": float(beta), "f_beta": float(fb[best])}
    return float(thresholds[best]), record | {
        "f1": float(f1[best]), "precision": float(precision[best]),
        "recall": float(recall[best]), "n_points": int(len(label)), "n_anomalous": int(label.sum()),
    }


def normal_rate_threshold(scores: np.ndarray, label: np.ndarray, max_rate: float) -> tuple[float, dict[str, Any]]:
    """The lowest threshold (flag `score >= threshold`) that flags at most `max_rate` of the validation's
    normal points: an alert budget on normal behaviour (0.001: one normal point in a thousand), whatever
    the anomalies look like. Returns the threshold and the calibration record (method, the rate asked for
    and reached, F1, precision and recall at it). Falls back to 0.5 without normal points."""
    if not 0.0 < max_rate < 1.0:
        raise ValueError(f"max_normal_rate must be in (0, 1), got {max_rate}")
    normal = np.sort(np.asarray(scores, dtype=np.float64)[label == 0])[::-1]
    if not len(normal):
        return 0.5, {"method": "default", "reason": "validation split lacks normal points",
                     "n_points": int(len(label)), "n_anomalous": int(label.sum())}
    allowed = int(np.floor(max_rate * len(normal)))  # normal points that may score at or above it
    threshold = min(1.0, float(np.nextafter(normal[allowed], np.inf))) if allowed < len(normal) else 0.0
    flagged = scores >= threshold
    tp = int(np.sum(flagged & (label == 1)))
    precision = tp / max(int(flagged.sum()), 1)
    recall = tp / max(int(label.sum()), 1)
    return threshold, {
        "method": "normal_rate_validation", "max_normal_rate": float(max_rate),
        "normal_rate": float(np.mean(normal >= threshold)), "precision": float(precision),
        "recall": float(recall), "f1": float(2 * precision * recall / max(precision + recall, _EPS)),
        "n_points": int(len(label)), "n_anomalous": int(label.sum()),
    }
