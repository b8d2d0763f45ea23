"""`evaluate --report`: the metrics at a percentile threshold of the seen parts, the oracle sweep, the plots."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from evaluation.artifacts import SWEEP_PERCENTILES, at_threshold, pool, write_report
from evaluation.scoring import Scored, ScoredSeries
from evaluation.series import Series


def scored_series(name: str, seen: np.ndarray, unseen: np.ndarray, labels: np.ndarray) -> ScoredSeries:
    scores = np.concatenate([seen, unseen])
    series = Series(name, np.zeros(len(scores)), labels=np.concatenate([np.zeros(len(seen)), labels]),
                    seen_end=len(seen))
    return ScoredSeries(series, {"model": Scored(scores, scores.copy(), 0)})


def two_series() -> list[ScoredSeries]:
    rng = np.random.default_rng(0)
    out = []
    for k in range(2):
        labels = np.zeros(500)
        labels[200 + 50 * k:230 + 50 * k] = 1
        unseen = rng.uniform(0, 1, 500) + 2.0 * labels  # the anomalies score high
        out.append(scored_series(f"s{k}", rng.uniform(0, 1, 300), unseen, labels))
    return out


def test_the_threshold_is_a_percentile_of_the_seen_parts_and_the_metrics_are_pooled(tmp_path: Path) -> None:
    scored = two_series()
    files = write_report(scored, "model", tmp_path, percentile=90.0)
    assert {f.name for f in files} == {"metrics.json", "scores.png", "score_distribution.png", "roc.png",
                                       "precision_recall.png"}
    m = json.loads((tmp_path / "metrics.json").read_text())
    seen = np.concatenate([s.detectors["model"].scores[:300] for s in scored])
    assert m["threshold"] == pytest.approx(float(np.percentile(seen, 90)))
    p = pool(scored, "model")
    assert len(p.scores) == m["n_points"] == 1000 and m["n_seen_points"] == 600
    assert m["true_anomaly_ratio"] == pytest.approx(60 / 1000)
    assert m["predicted_anomaly_ratio"] == pytest.approx(float(np.mean(p.scores >= m["threshold"])))
    assert m["recall"] == 1.0 and 0 < m["precision"] < 1 and m["roc_auc"] > 0.95
    for name in ("scores.png", "roc.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"


def test_the_sweep_is_labelled_an_oracle_and_its_best_row_is_the_best_f1(tmp_path: Path) -> None:
    write_report(two_series(), "model", tmp_path, with_sweep=True)
    with (tmp_path / "threshold_sweep.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [float(r["percentile"]) for r in rows] == list(SWEEP_PERCENTILES)
    assert SWEEP_PERCENTILES[0] == 80.0 and SWEEP_PERCENTILES[-1] == 99.9
    best = json.loads((tmp_path / "metrics_best.json").read_text())
    assert "oracle" in best["note"] and best["f1"] == pytest.approx(max(float(r["f1"]) for r in rows))
    assert (tmp_path / "f1_vs_threshold.png").is_file()


def test_at_threshold_counts_points_at_or_above() -> None:
    labels = np.array([0, 0, 1, 1], bool)
    got = at_threshold(labels, np.array([0.1, 0.5, 0.5, 0.9]), 0.5)
    assert (got["precision"], got["recall"], got["predicted_anomaly_ratio"]) == (pytest.approx(2 / 3), 1.0, 0.75)
    assert at_threshold(labels, np.zeros(4), 1.0)["f1"] == 0.0
