"""Operators' verdicts on alerts as training labels (`anomalybert retrain`).

A verdict names an alert (`<series_id>:<opened_ts>`); its span is from `opened_ts` to the alert's `closed_ts`
(read from the alerts topic), or to the end of the series while it is still open. The points of an alert
marked true become labelled anomalies; those of one marked false are confirmed normal, the most useful normal
example there is. Retraining then adds each fed-back span, with a window of context on both sides, as labelled
segments of their own (`feedback_segments`), and marks true spans anomalous in the injected copies of their
series (`label_true_spans`). Spans are matched on the series' integer timestamps (epoch milliseconds, as the
worker reads them).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from evaluation.series import Series

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Verdict:
    """One alert's latest verdict and its span."""

    alert_id: str
    series_id: str
    opened_ts: int
    closed_ts: int | None  # None: still open (the span runs to the end of the series)
    true: bool

    def mask(self, ts: np.ndarray) -> np.ndarray:
        """The points of a series (its integer timestamps) inside this alert."""
        end = np.inf if self.closed_ts is None else self.closed_ts
        return (ts >= self.opened_ts) & (ts <= end)


async def read_verdicts(kafka: Any) -> list[Verdict]:
    """Every alert's latest verdict on the feedback topic, with its span from the alerts topic."""
    from stream.feedback import read_feedback

    latest, unreadable = await read_feedback(kafka)
    if unreadable:
        log.warning("%d feedback message(s) could not be read and were left out", unreadable)
    closed = await _closed_ts(kafka, set(latest)) if latest else {}
    return [Verdict(a, fb.series_id, fb.opened_ts, closed.get(a), fb.is_true) for a, fb in sorted(latest.items())]


async def _closed_ts(kafka: Any, alert_ids: set[str]) -> dict[str, int]:
    """`closed_ts` of the given alerts, from a bounded read of the alerts topic (no consumer group)."""
    import json

    from stream.kafka import read_to_end

    out: dict[str, int] = {}
    async for msg in read_to_end(kafka, kafka.topics.alerts):
        try:
            body = json.loads(msg.value or b"")
        except ValueError:
            continue
        if (isinstance(body, dict) and body.get("alert_id") in alert_ids
                and body.get("state") == "closed" and isinstance(body.get("closed_ts"), int)):
            out[body["alert_id"]] = body["closed_ts"]
    return out


def integer_ts(s: Series) -> np.ndarray | None:
    """The series' timestamps as int64 when they are all integers (what feedback spans are matched on)."""
    if s.timestamps is None:
        return None
    try:
        ts = np.asarray(s.timestamps)
        return ts.astype(np.int64) if np.issubdtype(ts.dtype, np.integer) else None
    except (TypeError, ValueError):
        return None


def matched(series: list[Series], verdicts: list[Verdict]) -> dict[str, list[Verdict]]:
    """The verdicts whose alert lies in one of `series` (by series id and timestamp), per series name; the
    others are logged and left out."""
    by_name = {s.name: s for s in series}
    out: dict[str, list[Verdict]] = {}
    missed = []
    for v in verdicts:
        s = by_name.get(v.series_id)
        ts = integer_ts(s) if s is not None else None
        if ts is None or not v.mask(ts).any():
            missed.append(v.alert_id)
            continue
        out.setdefault(v.series_id, []).append(v)
    if missed:
        log.warning("%d verdict(s) name alerts outside the training data and are left out: %s%s", len(missed),
                    ", ".join(missed[:5]), " ..." if len(missed) > 5 else "")
    return out


def feedback_segments(series: list[Series], verdicts: dict[str, list[Verdict]], context: int,
                      copies: int) -> list[Series]:
    """Each fed-back alert as a labelled series of its own, `copies` times: its span with `context` points on
    each side, probability 1 inside a span marked true and 0 elsewhere (a false alarm: every point normal)."""
    out = []
    for s in series:
        ts = integer_ts(s)
        for v in verdicts.get(s.name, []):
            assert ts is not None
            inside = np.flatnonzero(v.mask(ts))
            a, b = max(0, int(inside[0]) - context), min(len(s), int(inside[-1]) + 1 + context)
            prob = np.zeros(b - a)
            if v.true:
                prob[inside - a] = 1.0
            for k in range(copies):
                out.append(Series(f"{s.name}#{'true' if v.true else 'false'}-alarm-{v.opened_ts}#{k}",
                                  s.values[a:b], labels=(prob >= 0.5).astype(np.int8), probability=prob.copy(),
                                  timestamps=None if s.timestamps is None else s.timestamps[a:b]))
    return out


def label_true_spans(s: Series, verdicts: list[Verdict]) -> np.ndarray | None:
    """The (T,) 0/1 mask of `s`'s points inside alerts marked true, or None when there are none."""
    ts = integer_ts(s)
    true = [v for v in verdicts if v.true]
    if ts is None or not true:
        return None
    return np.any([v.mask(ts) for v in true], axis=0)


@dataclass
class FeedbackPrecision:
    """How a model does on the fed-back alerts: of the spans where it would alert (a served score at or above
    its threshold), how many were marked true."""

    raised_true: int
    raised_false: int
    n_true: int
    n_false: int

    @property
    def precision(self) -> float | None:
        raised = self.raised_true + self.raised_false
        return self.raised_true / raised if raised else None


def feedback_precision(model: str | Path, series: list[Series],
                       verdicts: dict[str, list[Verdict]]) -> FeedbackPrecision:
    """`FeedbackPrecision` of the model at `model` (a bundle or a checkpoint, served as `detect` serves it)."""
    from evaluation.detect import Detector

    detector = Detector(model)
    r = FeedbackPrecision(0, 0, 0, 0)
    for s in series:
        if s.name not in verdicts or len(s) < detector.window_size:
            continue
        scores = np.nan_to_num(detector.score(s.values, s.name), nan=-np.inf)  # as the worker served it
        ts = integer_ts(s)
        assert ts is not None
        for v in verdicts[s.name]:
            raised = bool((scores[v.mask(ts)] >= detector.threshold).any())
            if v.true:
                r.n_true += 1
                r.raised_true += raised
            else:
                r.n_false += 1
                r.raised_false += raised
    return r
