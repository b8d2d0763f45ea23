"""Validation scores and labels in; metrics and the serving threshold out.

The threshold is fitted on validation data only, never on test labels.
"""

from __future__ import annotations

from typing import Any

import numpy as np

_EPS = 1e-7


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
    """The score threshold (flag `score >= threshold`) with the best F1 on validation points.

    Returns the threshold and the calibration record. Falls back to 0.5 when the validation points
    do not hold both classes.
    """
    from sklearn.metrics import precision_recall_curve

    if len(np.unique(label)) < 2:
        return 0.5, {"method": "default", "reason": "validation split lacks normal or anomalous points",
                     "n_points": int(len(label)), "n_anomalous": int(label.sum())}
    precision, recall, thresholds = precision_recall_curve(label, scores)
    f1 = 2 * precision * recall / np.maximum(precision + recall, _EPS)
    best = int(np.argmax(f1[:-1]))  # the last PR point has no threshold
    return float(thresholds[best]), {
        "method": "best_f1_validation", "f1": float(f1[best]), "precision": float(precision[best]),
        "recall": float(recall[best]), "n_points": int(len(label)), "n_anomalous": int(label.sum()),
    }
