"""`evaluate --report DIR`: one detector's scores as files a person can read at a glance, for every family.

- `metrics.json`: ROC-AUC, PR-AUC, and precision, recall and F1 at a percentile threshold (default the 95th)
  of the scores of the seen parts (train splits, NAB's probationary period), with the true and predicted
  anomaly ratios; pooled over the unseen parts of every series.
- With `sweep`: precision, recall and F1 at each percentile 80-99.9 of the unseen scores
  (`threshold_sweep.csv`), the best (`metrics_best.json`) and `f1_vs_threshold.png`. The sweep reads the test
  labels to pick its best row, so it is an oracle and says so in every file.
- `scores.png` (the scores of the series with anomalies over time, labelled anomalies shaded, the threshold and
  the points above it), `score_distribution.png` (normal against anomalous points), `roc.png` and
  `precision_recall.png`.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from evaluation.report import fill_nan
from evaluation.scoring import ScoredSeries

DEFAULT_PERCENTILE = 95.0
SWEEP_PERCENTILES = tuple(float(p) for p in np.round(np.concatenate([np.arange(80.0, 99.0, 0.5),
                                                                     np.arange(99.0, 99.95, 0.1)]), 2))
MAX_PANELS = 6
ORACLE = "oracle: the sweep's best row is chosen with the test labels; not a deployable threshold"


@dataclass
class Pooled:
    """One detector's scores pooled over every series: the unseen parts (scored), the seen parts (threshold)."""

    scores: np.ndarray
    labels: np.ndarray
    seen: np.ndarray


def pool(scored: list[ScoredSeries], detector: str) -> Pooled:
    scores, labels, seen = [], [], []
    for s in scored:
        x = fill_nan(s.detectors[detector].scores)
        cut = s.series.seen_end
        scores.append(x[cut:])
        labels.append(np.asarray(s.series.labels[cut:]) > 0)
        seen.append(x[:cut])
    return Pooled(np.concatenate(scores), np.concatenate(labels), np.concatenate(seen))


def at_threshold(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, float]:
    """Point-wise precision, recall and F1 of `scores >= threshold`, and the predicted anomaly ratio."""
    pred = scores >= threshold
    tp = float(np.sum(pred & labels))
    fp, fn = float(np.sum(pred & ~labels)), float(np.sum(~pred & labels))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"threshold": float(threshold), "precision": precision, "recall": recall, "f1": f1,
            "predicted_anomaly_ratio": float(pred.mean()) if len(pred) else 0.0}


def headline(p: Pooled, percentile: float, fallback: float) -> dict[str, Any]:
    """The metrics of `metrics.json`: the threshold is the `percentile` of the seen parts' scores (no test
    label read), else `fallback` (the bundle's) where no series has a seen part."""
    from evaluation import metrics

    seen = p.seen[np.isfinite(p.seen)]
    if len(seen):
        threshold, source = float(np.percentile(seen, percentile)), f"percentile {percentile:g} of the seen parts"
    else:
        threshold, source = fallback, "the bundle's threshold (no seen part to take a percentile of)"
    return {"roc_auc": metrics.auc_roc(p.labels, p.scores), "pr_auc": metrics.auc_pr(p.labels, p.scores),
            **at_threshold(p.labels, p.scores, threshold), "threshold_source": source,
            "true_anomaly_ratio": float(p.labels.mean()) if len(p.labels) else 0.0,
            "n_points": int(len(p.labels)), "n_seen_points": int(len(seen))}


def sweep(p: Pooled) -> list[dict[str, float]]:
    """Precision, recall and F1 at each percentile of the unseen scores (an oracle scan)."""
    return [{"percentile": q, **at_threshold(p.labels, p.scores, float(np.percentile(p.scores, q)))}
            for q in SWEEP_PERCENTILES]


def write_report(scored: list[ScoredSeries], detector: str, directory: Path, percentile: float = DEFAULT_PERCENTILE,
                 with_sweep: bool = False, fallback_threshold: float = 0.5,
                 context: dict[str, Any] | None = None) -> list[Path]:
    """Write the files of `evaluate --report` for `detector` into `directory` (created); returns their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    p = pool(scored, detector)
    head = headline(p, percentile, fallback_threshold)
    written = [_json(directory / "metrics.json", {"detector": detector, **(context or {}), **head})]
    if with_sweep:
        rows = sweep(p)
        path = directory / "threshold_sweep.csv"
        with path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        best = max(rows, key=lambda r: r["f1"])
        written += [path, _json(directory / "metrics_best.json", {"detector": detector, "note": ORACLE, **best})]
        written.append(_plot_sweep(rows, best, directory / "f1_vs_threshold.png"))
    written.append(_plot_scores(scored, detector, head["threshold"], directory / "scores.png"))
    written.append(_plot_distribution(p, head["threshold"], directory / "score_distribution.png"))
    written += _plot_curves(p, directory)
    return written


def _json(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(json.dumps(data, indent=1) + "\n")
    return path


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """Half-open [start, end) runs of True."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True))


def _plot_scores(scored: list[ScoredSeries], detector: str, threshold: float, path: Path) -> Path:
    """One panel per series (those with anomalies first, at most MAX_PANELS): the score over time, the seen part
    greyed, labelled anomalies shaded red, the threshold dashed and the points above it marked."""
    plt = _plt()
    ranked = sorted(scored, key=lambda s: -int(np.any(s.series.labels[s.series.seen_end:] > 0)))[:MAX_PANELS]
    fig, axes = plt.subplots(len(ranked), 1, figsize=(12, 2.2 * len(ranked)), squeeze=False)
    for ax, s in zip(axes[:, 0], ranked, strict=True):
        x = fill_nan(s.detectors[detector].scores)
        t = np.arange(len(x))
        cut = s.series.seen_end
        ax.plot(t[:cut], x[:cut], color="0.6", lw=0.7, label="seen part" if cut else None)
        ax.plot(t[cut:], x[cut:], color="tab:blue", lw=0.7, label="score")
        for a, b in _runs(np.asarray(s.series.labels) > 0):
            ax.axvspan(a, b, color="tab:red", alpha=0.25, lw=0)
        ax.axhline(threshold, color="k", ls="--", lw=0.8, label="threshold")
        above = np.flatnonzero(x[cut:] >= threshold) + cut
        ax.plot(above, x[above], "o", color="tab:orange", ms=2, label="above threshold")
        ax.set_title(s.series.name, fontsize=9, loc="left")
        ax.set_xlim(0, len(x))
    axes[0, 0].legend(loc="upper right", fontsize=7, ncol=4)
    axes[-1, 0].set_xlabel("point (labelled anomalies shaded red)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _plot_distribution(p: Pooled, threshold: float, path: Path) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4))
    finite = p.scores[np.isfinite(p.scores)]
    bins = np.linspace(finite.min(), finite.max(), 60) if len(finite) and finite.max() > finite.min() else 30
    ax.hist(p.scores[~p.labels], bins=bins, density=True, alpha=0.6, label=f"normal ({(~p.labels).sum()})")
    if p.labels.any():
        ax.hist(p.scores[p.labels], bins=bins, density=True, alpha=0.6, color="tab:red",
                label=f"anomalous ({p.labels.sum()})")
    ax.axvline(threshold, color="k", ls="--", lw=0.8, label="threshold")
    ax.set_yscale("log")
    ax.set_xlabel("score")
    ax.set_ylabel("density")
    ax.set_title("score distribution, unseen parts")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _plot_curves(p: Pooled, directory: Path) -> list[Path]:
    from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score, roc_curve

    plt = _plt()
    out = []
    two = p.labels.any() and not p.labels.all()
    fig, ax = plt.subplots(figsize=(5, 5))
    if two:
        fpr, tpr, _ = roc_curve(p.labels, p.scores)
        ax.plot(fpr, tpr, label=f"ROC-AUC {roc_auc_score(p.labels, p.scores):.3f}")
    ax.plot([0, 1], [0, 1], color="0.6", ls="--", label="random")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC, unseen parts")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(directory / "roc.png", dpi=100)
    plt.close(fig)
    out.append(directory / "roc.png")
    fig, ax = plt.subplots(figsize=(5, 5))
    if two:
        precision, recall, _ = precision_recall_curve(p.labels, p.scores)
        ax.plot(recall, precision, label=f"PR-AUC {average_precision_score(p.labels, p.scores):.3f}")
    ax.axhline(float(p.labels.mean()) if len(p.labels) else 0.0, color="0.6", ls="--", label="random")
    ax.set(xlabel="recall", ylabel="precision", title="precision-recall, unseen parts", ylim=(0, 1.02))
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(directory / "precision_recall.png", dpi=100)
    plt.close(fig)
    out.append(directory / "precision_recall.png")
    return out


def _plot_sweep(rows: list[dict[str, float]], best: dict[str, float], path: Path) -> Path:
    plt = _plt()
    q = [r["percentile"] for r in rows]
    fig, ax = plt.subplots(figsize=(7, 4))
    for key in ("f1", "precision", "recall"):
        ax.plot(q, [r[key] for r in rows], label=key)
    ax.axvline(best["percentile"], color="k", ls=":", lw=0.8, label=f"best F1 {best['f1']:.3f}")
    ax.set(xlabel="threshold: percentile of the unseen scores", ylim=(0, 1.02),
           title="threshold sweep (ORACLE: chosen with the test labels)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
