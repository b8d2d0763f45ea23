"""One picture of a scored series: the values with true-anomaly and alert spans, the score and its threshold."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stream.alerts import AlertPolicy, AlertState, update


@dataclass(frozen=True)
class Span:
    start: int  # index of the first point
    end: int  # index of the last point (inclusive)


def alert_spans(scores: np.ndarray, policy: AlertPolicy) -> list[Span]:
    """Replay the worker's hysteresis over final scores: one span per alert, open to close (or the end)."""
    st, spans, opened = AlertState(), [], None
    for i, s in enumerate(scores):
        if np.isnan(s):
            continue
        event = update(st, policy, i, float(s))
        if event is not None and event.state == "open":
            opened = event.opened_ts
        elif event is not None and event.state == "closed" and opened is not None:
            spans.append(Span(opened, i))
            opened = None
    if opened is not None:
        spans.append(Span(opened, len(scores) - 1))
    return spans


def label_spans(labels: np.ndarray) -> list[Span]:
    """Runs of label 1 as spans."""
    padded = np.concatenate([[0], (np.asarray(labels) > 0).astype(np.int8), [0]])
    edges = np.flatnonzero(np.diff(padded))
    return [Span(int(a), int(b) - 1) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def plot_series(output: str | Path, values: np.ndarray, scores: np.ndarray, threshold: float,
                alerts: list[Span], truth: list[Span] | None = None, title: str = "",
                x: np.ndarray | None = None) -> Path:
    """Write a two-panel PNG: values (true anomalies shaded grey, alerts shaded red) over the score."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = np.arange(len(values)) if x is None else x
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(12, 5.5), sharex=True,
                                      gridspec_kw={"height_ratios": [3, 2]})
    top.plot(x, values, color="#1f4e79", lw=0.9, label="value")
    for k, span in enumerate(truth or []):
        # Spans one point wide are invisible as shading: mark the labelled points themselves too.
        top.axvspan(x[span.start], x[span.end], color="0.6", alpha=0.35, lw=0)
        idx = np.arange(span.start, span.end + 1)
        top.scatter(x[idx], np.asarray(values)[idx], s=14, color="#ff7f0e", zorder=3,
                    label="labelled anomaly" if k == 0 else None)
    for k, span in enumerate(alerts):
        for ax in (top, bottom):
            ax.axvspan(x[span.start], x[span.end], color="#d62728", alpha=0.18, lw=0,
                       label="alert" if k == 0 and ax is top else None)
    bottom.plot(x, scores, color="#2ca02c", lw=0.9, label="anomaly score")
    bottom.axhline(threshold, color="#d62728", ls="--", lw=1, label=f"threshold {threshold:.3f}")
    bottom.set_ylim(-0.02, 1.02)
    bottom.set_ylabel("score")
    top.set_ylabel("value")
    top.set_title(title or "anomaly scores")
    top.legend(loc="upper left", fontsize=8)
    bottom.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=110)
    plt.close(fig)
    return output
