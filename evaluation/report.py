"""Scored series in, the evaluation report out: per-series metrics, dataset means and NAB corpus scores.

Metrics are computed on the unseen part of each series (`values[seen_end:]`) only. Thresholds used here
come from the bundle, from the seen part of the same series, or from other files; never from the labels
of the part being scored, except where a metric is an explicit oracle (best F1, PA-F1, NAB's
corpus-optimized threshold, which is how NAB's scoreboard is defined) and is labelled so.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from evaluation import metrics
from evaluation.likelihood import LIKELIHOOD_THRESHOLD, TAIL_THRESHOLD
from evaluation.nab import CorpusSweep, FileSweep, probationary_length
from evaluation.scoring import Scored, ScoredSeries, series_seed

POINT_METRICS: tuple[str, ...] = ("vus_pr", "auc_pr", "auc_roc", "best_f1", "f1_seen")


def fill_nan(scores: np.ndarray) -> np.ndarray:
    """Points a detector never scored get its lowest score (they cannot rank above anything)."""
    s = np.asarray(scores, dtype=np.float64)
    if not np.isnan(s).any():
        return s
    finite = s[np.isfinite(s)]
    return np.where(np.isnan(s), finite.min() if len(finite) else 0.0, s)


def seen_threshold(scores: np.ndarray, seen_end: int) -> float:
    """The lowest threshold that raises nothing on the seen part: detections are scores above its max."""
    seen = scores[:seen_end]
    seen = seen[np.isfinite(seen)]
    return float(np.nextafter(seen.max(), np.inf)) if len(seen) else float("-inf")


def series_metrics(scored: Scored, s: ScoredSeries, dataset: str, seed: int,
                   vus_max_buffer: int, threshold: float | None = None) -> dict[str, Any]:
    """Every point metric of one detector on one series; with `threshold` (the bundle's, known beforehand)
    also F1 there and the alerts a subscriber would get on normal points."""
    series = s.series
    scores = fill_nan(scored.scores)
    part = slice(series.seen_end, None)
    y, x = series.labels[part], scores[part]
    out: dict[str, Any] = {
        "vus_pr": metrics.vus_pr(y, x, max_buffer=vus_max_buffer),
        "auc_pr": metrics.auc_pr(y, x),
        "auc_roc": metrics.auc_roc(y, x),
        "best_f1": metrics.best_f1(y, x),
        "f1_seen": metrics.f1_at(y, x, seen_threshold(scores, series.seen_end)),
        "pa_f1": metrics.point_adjusted_f1(y, x, seed=series_seed(series.name, seed)).to_dict(),
    }
    if threshold is not None:
        opened, normal = metrics.alerts_on_normal(y, x, threshold)
        out["at_threshold"] = {"threshold": threshold, "f1": metrics.f1_at(y, x, threshold),
                               "alerts_on_normal": opened, "normal_points": normal}
    if dataset == "ucr":  # the anomaly's positions in the file, moved by what `crop_seen` cut off the front
        cut = int(series.meta.get("seen_cropped_from", series.seen_end)) - series.seen_end
        begin, end = int(series.meta["anomaly_begin"]) - cut, int(series.meta["anomaly_end"]) - cut
        out["ucr_hit"] = metrics.ucr_hit(scores, begin, end, start=series.seen_end)
    return out


def _mean(values: list[float]) -> float | None:
    finite = [v for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(finite)) if finite else None


def summarize(per_series: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Means over the series where a metric is defined (series without anomalies drop out)."""
    rows = list(per_series.values())
    out: dict[str, Any] = {k: _mean([r[k] for r in rows]) for k in POINT_METRICS}
    out["pa_f1"] = {"value": _mean([r["pa_f1"]["value"] for r in rows]),
                    "random": _mean([r["pa_f1"]["random"] for r in rows])}
    out["n_series_with_anomalies"] = sum(1 for r in rows if np.isfinite(r["auc_roc"]))
    if rows and "ucr_hit" in rows[0]:
        out["ucr_hit_rate"] = float(np.mean([r["ucr_hit"] for r in rows]))
    if rows and "at_threshold" in rows[0]:
        at = [r["at_threshold"] for r in rows]
        normal = sum(a["normal_points"] for a in at)
        out["f1_at_threshold"] = _mean([a["f1"] for a in at])
        # pooled over every series: alerts on normal points per 10,000 normal points
        out["alerts_per_10k_normal"] = 1e4 * sum(a["alerts_on_normal"] for a in at) / normal if normal else None
    return out


def fixed_threshold(detector: str, bundle_threshold: float, served: str = "none") -> float | None:
    """The threshold known before seeing any data: the bundle's for the scores it is served with (`served`:
    its calibration), the calibration scale's for the others; baselines have none, nor raw scores of a
    bundle served calibrated (its threshold is on the calibrated scale)."""
    if not detector.startswith("anomalybert"):
        return None
    cal = detector.rsplit("cal=", 1)[-1]
    if cal == served:
        return bundle_threshold
    return {"likelihood": LIKELIHOOD_THRESHOLD, "tail": TAIL_THRESHOLD}.get(cal)


def _window_detections(s: ScoredSeries, det: np.ndarray, threshold: float) -> dict[str, Any]:
    """Where a threshold raises alerts in one NAB file: first detection per window, false positives."""
    series = s.series
    hits = np.flatnonzero(np.nan_to_num(det, nan=-np.inf) >= threshold)
    hits = hits[hits >= probationary_length(series.n_points)]
    ts = series.timestamps

    def stamp(i: int) -> str | int:
        return str(ts[i]) if ts is not None else int(i)

    windows, inside = [], np.zeros(series.n_points, dtype=bool)
    for a, b in series.windows:
        inside[a:b + 1] = True
        first = hits[(hits >= a) & (hits <= b)]
        windows.append({"start": stamp(a), "end": stamp(b),
                        "first_detection": stamp(int(first[0])) if len(first) else None})
    fps = hits[~inside[hits]]
    return {"windows": windows, "false_positives": len(fps),
            "first_false_positives": [stamp(int(i)) for i in fps[:5]]}


def nab_report(scored: list[ScoredSeries], detector: str, profiles: dict[str, dict[str, float]],
               bundle_threshold: float, served: str = "none") -> dict[str, Any]:
    """NAB scores of one detector under each profile, four ways of fixing the threshold."""
    n_windows = sum(len(s.series.windows) for s in scored)
    fixed = fixed_threshold(detector, bundle_threshold, served)
    out: dict[str, Any] = {}
    for name, profile in profiles.items():
        files = [FileSweep.build(s.series.name, s.detectors[detector].detections, s.series.windows, profile)
                 for s in scored]
        corpus = CorpusSweep(files, n_windows, profile)
        lofo, lofo_thresholds = corpus.leave_one_file_out()
        seen = [seen_threshold(s.detectors[detector].detections, s.series.seen_end) for s in scored]
        optimal = corpus.optimal()
        out[name] = {
            "corpus_optimized": optimal.to_dict(),
            "leave_one_file_out": {**lofo.to_dict(), "thresholds": lofo_thresholds},
            "seen_part": corpus.per_file(seen).to_dict(),
            "fixed": corpus.at_threshold(fixed).to_dict() if fixed is not None else None,
        }
        if name == "standard" and optimal.threshold is not None:
            out[name]["detections_at_corpus_optimized"] = {
                s.series.name: _window_detections(s, s.detectors[detector].detections, optimal.threshold)
                for s in scored}
    return out


def build_report(scored: list[ScoredSeries], dataset: str, profiles: dict[str, dict[str, float]] | None,
                 bundle_threshold: float, seed: int, vus_max_buffer: int, served: str = "none") -> dict[str, Any]:
    """Per detector: per-series metrics, their means (overall and per group), and NAB scores if asked."""
    detectors = list(scored[0].detectors) if scored else []
    report: dict[str, Any] = {}
    for det in detectors:
        thr = fixed_threshold(det, bundle_threshold, served)
        per_series = {s.series.name: series_metrics(s.detectors[det], s, dataset, seed, vus_max_buffer, thr)
                      for s in scored}
        entry: dict[str, Any] = {"summary": summarize(per_series), "series": per_series}
        groups = sorted({str(s.series.meta["spacecraft"]) for s in scored if "spacecraft" in s.series.meta})
        if groups:
            entry["by_group"] = {g: summarize({s.series.name: per_series[s.series.name] for s in scored
                                               if s.series.meta.get("spacecraft") == g}) for g in groups}
        if profiles is not None:
            entry["nab"] = nab_report(scored, det, profiles, bundle_threshold, served)
        report[det] = entry
    return report
