"""Alert hysteresis, pure: (alert state, a final point's ts and score) in -> `open`/`closed` event or None.

An alert opens once the score reaches the threshold for `min_points` points in a row; its `opened_ts` is
the first point of that run, so `alert_id = f"{series_id}:{opened_ts}"` names the start of the anomaly.
It closes once the score has stayed below `threshold * close_ratio` for `cooldown_points` in a row.
One alert per series is open at a time; the peak is tracked from the run's first hot point.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class AlertPolicy:
    """The thresholds in force for one series."""

    threshold: float
    min_points: int = 1
    cooldown_points: int = 10
    close_ratio: float = 0.8

    @property
    def close_threshold(self) -> float:
        return self.threshold * self.close_ratio


@dataclass
class AlertState:
    """Per-series hysteresis state. `run` counts hot points (closed) or cool points (open) in a row."""

    is_open: bool = False
    run: int = 0
    start_ts: int = 0
    peak_ts: int = 0
    peak_score: float = 0.0


@dataclass(frozen=True)
class AlertEvent:
    """What to publish: the alert's identity, its state and its peak so far."""

    state: Literal["open", "closed"]
    opened_ts: int
    peak_ts: int
    peak_score: float
    closed_ts: int | None = None


def update(st: AlertState, policy: AlertPolicy, ts: int, score: float) -> AlertEvent | None:
    """Advance the state by one final point (mutates `st`)."""
    if st.is_open:
        return _update_open(st, policy, ts, score)
    if score < policy.threshold:
        st.run = 0
        return None
    if st.run == 0:
        st.start_ts, st.peak_ts, st.peak_score = ts, ts, score
    elif score > st.peak_score:
        st.peak_ts, st.peak_score = ts, score
    st.run += 1
    if st.run < policy.min_points:
        return None
    st.is_open, st.run = True, 0
    return AlertEvent("open", st.start_ts, st.peak_ts, st.peak_score)


def _update_open(st: AlertState, policy: AlertPolicy, ts: int, score: float) -> AlertEvent | None:
    if score > st.peak_score:
        st.peak_ts, st.peak_score = ts, score
    if score >= policy.close_threshold:
        st.run = 0
        return None
    st.run += 1
    if st.run < policy.cooldown_points:
        return None
    event = AlertEvent("closed", st.start_ts, st.peak_ts, st.peak_score, closed_ts=ts)
    st.is_open, st.run = False, 0
    return event
