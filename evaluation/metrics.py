"""Point and range metrics of anomaly scores against labels (numpy and scikit-learn only).

Every function takes `labels` (T,) (non-zero = anomalous) and `scores` (T,) (higher = more anomalous) of
one series and returns a float, NaN where the metric is undefined (no anomaly, or nothing but anomalies).
The NAB score lives in `evaluation.nab`. Threshold-free metrics (AUC-ROC, AUC-PR, VUS-PR) are the fair
comparison; `best_f1` and `point_adjusted_f1` pick the best threshold with the labels (an oracle upper
bound, labelled as such wherever reported), and the latter is only ever returned beside its value for a
random score because point adjustment rewards noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from evaluation.datasets import label_runs

VUS_MAX_BUFFER = 128  # twice the default model window; TSB-AD uses twice its sliding window
VUS_THRESHOLDS = 250  # TSB-AD's `thre`
UCR_TOLERANCE = 100


def _prepare(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    y = np.asarray(labels) > 0
    s = np.asarray(scores, dtype=np.float64)
    if y.shape != s.shape:
        raise ValueError(f"labels {y.shape} and scores {s.shape} differ in shape")
    if np.isnan(s).any():
        raise ValueError("scores contain NaN; fill them before computing metrics")
    if y.all() or not y.any():
        return None
    return y, s


def auc_roc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (ties count half)."""
    from sklearn.metrics import roc_auc_score

    prepared = _prepare(labels, scores)
    return float("nan") if prepared is None else float(roc_auc_score(*prepared))


def auc_pr(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the precision-recall curve as average precision (TSB-AD's `AUC-PR`)."""
    from sklearn.metrics import average_precision_score

    prepared = _prepare(labels, scores)
    return float("nan") if prepared is None else float(average_precision_score(*prepared))


def best_f1(labels: np.ndarray, scores: np.ndarray) -> float:
    """Point-wise F1 at the best threshold, without point adjustment (oracle threshold)."""
    from sklearn.metrics import precision_recall_curve

    prepared = _prepare(labels, scores)
    if prepared is None:
        return float("nan")
    precision, recall, _ = precision_recall_curve(*prepared)
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    return float(f1.max())


def f1_at(labels: np.ndarray, scores: np.ndarray, threshold: float) -> float:
    """Point-wise F1 with detections where `score >= threshold` (a threshold fixed without labels)."""
    y = np.asarray(labels) > 0
    if not y.any():
        return float("nan")
    pred = np.asarray(scores) >= threshold
    tp = float(np.sum(pred & y))
    return 2 * tp / (2 * tp + np.sum(pred & ~y) + np.sum(~pred & y))


def alerts_on_normal(labels: np.ndarray, scores: np.ndarray, threshold: float) -> tuple[int, int]:
    """(alerts opened on a normal point, normal points): the alert events an `alerts` subscriber would get
    with the worker's default hysteresis (`stream.settings.AlertSettings`) at `threshold`, counted where
    they open outside every labelled anomaly."""
    from stream.alerts import AlertPolicy, AlertState, update
    from stream.settings import AlertSettings

    a = AlertSettings()
    policy, state, opened = AlertPolicy(threshold, a.min_points, a.cooldown_points, a.close_ratio), AlertState(), 0
    y = np.asarray(labels) > 0
    for i, x in enumerate(np.nan_to_num(np.asarray(scores, dtype=np.float64), nan=-np.inf).tolist()):
        ev = update(state, policy, i, x)
        if ev is not None and ev.state == "open" and not y[i]:
            opened += 1
    return opened, int((~y).sum())


@dataclass(frozen=True)
class VersusRandom:
    """A metric that flatters noise, always carried with its value for a uniform random score."""

    value: float
    random: float

    def to_dict(self) -> dict[str, float]:
        return {"value": self.value, "random": self.random}


def _best_pa_f1(y: np.ndarray, s: np.ndarray) -> float:
    """Best point-adjusted F1 over every threshold: a whole anomaly segment counts as detected once any of
    its points reaches the threshold (Xu et al. 2018); false positives are counted point-wise."""
    runs = label_runs(y)
    seg_max = np.array([s[a:b + 1].max() for a, b in runs])
    seg_len = np.array([b - a + 1 for a, b in runs], dtype=np.float64)
    thresholds = np.unique(s)
    order = np.argsort(seg_max)  # ascending
    seg_sorted, len_cum = seg_max[order], np.concatenate([[0.0], np.cumsum(seg_len[order][::-1])])
    tp = len_cum[len(seg_sorted) - np.searchsorted(seg_sorted, thresholds, side="left")]
    normal = np.sort(s[~y])
    fp = len(normal) - np.searchsorted(normal, thresholds, side="left")
    fn = seg_len.sum() - tp
    return float(np.max(2 * tp / (2 * tp + fp + fn)))


def adjusted_at(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, float]:
    """Precision, recall and F1 at one threshold, plain and point-adjusted (a whole labelled segment counts as
    detected once any of its points reaches the threshold, as the Anomaly Transformer's evaluation does)."""
    y = np.asarray(labels).astype(bool)
    hit = np.nan_to_num(np.asarray(scores, dtype=np.float64), nan=-np.inf) >= threshold
    adjusted = hit.copy()
    for a, b in label_runs(y.astype(np.int8)):
        if hit[a:b + 1].any():
            adjusted[a:b + 1] = True
    out = {}
    for name, pred in (("", hit), ("pa_", adjusted)):
        tp, fp, fn = int((pred & y).sum()), int((pred & ~y).sum()), int((~pred & y).sum())
        p = tp / (tp + fp) if tp + fp else 0.0
        r = tp / (tp + fn) if tp + fn else 0.0
        out |= {f"{name}precision": p, f"{name}recall": r, f"{name}f1": 2 * p * r / (p + r) if p + r else 0.0}
    return out


def point_adjusted_f1(labels: np.ndarray, scores: np.ndarray, seed: int = 0) -> VersusRandom:
    """Best point-adjusted F1 of `scores`, paired with the same for a uniform random score (seeded)."""
    prepared = _prepare(labels, scores)
    if prepared is None:
        return VersusRandom(float("nan"), float("nan"))
    y, s = prepared
    noise = np.random.default_rng(seed).random(len(s))
    return VersusRandom(_best_pa_f1(y, s), _best_pa_f1(y, noise))


# --- VUS-PR -------------------------------------------------------------------------------------------------

def _buffer_labels(runs: list[tuple[int, int]], n: int, buffer: int) -> np.ndarray:
    """TSB-AD's `sequencing`: 1 on anomalies, `sqrt(1 - d / buffer)` at distance d = 1..buffer//2 on
    either side, overlapping ramps summed and clipped at 1."""
    y = np.zeros(n)
    half = buffer // 2
    for a, b in runs:
        y[a:b + 1] = 1.0
        if half:
            after = np.arange(b + 1, min(b + half + 1, n))
            y[after] += np.sqrt(1 - (after - b) / buffer)
            before = np.arange(max(a - half, 0), a)
            y[before] += np.sqrt(1 - (a - before) / buffer)
    return np.minimum(y, 1.0)


def _merged_ranges(runs: list[tuple[int, int]], n: int, half: int) -> list[tuple[int, int]]:
    """TSB-AD's `new_sequence`: anomaly ranges widened by `half` on each side, overlapping ones merged."""
    merged: list[tuple[int, int]] = []
    start = max(runs[0][0] - half, 0)
    for (_, end), (nxt, _) in zip(runs[:-1], runs[1:], strict=True):
        if end + half < nxt - half:
            merged.append((start, end + half))
            start = nxt - half
    merged.append((start, min(runs[-1][1] + half, n - 1)))
    return merged


def vus_pr(labels: np.ndarray, scores: np.ndarray, max_buffer: int = VUS_MAX_BUFFER,
           n_thresholds: int = VUS_THRESHOLDS) -> float:
    """Volume under the range-PR surface (Paparrizos et al., VLDB 2022), as TSB-AD's `VUS-PR` computes it.

    For each buffer length l = 0..max_buffer the labels gain soft margins of l//2 points on each side
    (weight sqrt(1 - d/l) at distance d). At each of `n_thresholds` thresholds (the scores at evenly spaced
    ranks) with predictions p = [score >= t]:
        TP(l) = sum_anomaly p + sum_margin y_l * p,       P'(l) = P + (sum_margin y_l * p) / 2
        recall = min(TP / P', 1) * (share of widened ranges holding a prediction)   (existence reward)
        precision = TP / sum(p)
    AP(l) = sum_k (recall_k - recall_{k-1}) * precision_k from recall_0 = 0, and VUS-PR = mean_l AP(l).
    """
    prepared = _prepare(labels, scores)
    if prepared is None:
        return float("nan")
    y, s = prepared
    n = len(s)
    runs = label_runs(y)
    ascending = np.sort(s)
    thresholds = ascending[::-1][np.linspace(0, n - 1, n_thresholds).astype(int)]  # (K,) descending
    n_pred = n - np.searchsorted(ascending, thresholds, side="left")  # (K,)
    anomalous = np.sort(s[y])
    tp_anomaly = len(anomalous) - np.searchsorted(anomalous, thresholds, side="left")  # (K,)
    # Margin points: normal points within max_buffer//2 of an anomaly, the only ones whose weight varies.
    near = np.zeros(n, dtype=bool)
    for a, b in _merged_ranges(runs, n, max_buffer // 2):
        near[a:b + 1] = True
    margin = np.flatnonzero(near & ~y)
    pred_margin = s[margin][None, :] >= thresholds[:, None]  # (K, M)
    aps = []
    for buffer in range(max_buffer + 1):
        weights = _buffer_labels(runs, n, buffer)[margin] if buffer else np.zeros(len(margin))
        extra = pred_margin @ weights  # (K,)
        tp = tp_anomaly + extra
        recall = np.minimum(tp / (len(anomalous) + extra / 2), 1.0)
        ranges = _merged_ranges(runs, n, buffer // 2)
        range_max = np.array([s[a:b + 1].max() for a, b in ranges])
        existence = (range_max[None, :] >= thresholds[:, None]).mean(axis=1)
        tpr = recall * existence
        precision = tp / n_pred
        aps.append(float(np.sum(np.diff(np.concatenate([[0.0], tpr])) * precision)))
    return float(np.mean(aps))


# --- UCR ----------------------------------------------------------------------------------------------------

def ucr_hit(scores: np.ndarray, begin: int, end: int, start: int = 0, tolerance: int = UCR_TOLERANCE) -> bool:
    """UCR archive accuracy for one series: is the single highest score at or after `start` (the end of the
    training prefix) within `[begin - tolerance, end + tolerance]` (0-based, inclusive)?"""
    s = np.asarray(scores, dtype=np.float64)[start:]
    top = start + int(np.argmax(s))
    return begin - tolerance <= top <= end + tolerance
