"""The NAB score (Lavin & Ahmad 2015; NAB v1.1 `nab/sweeper.py`, `runner.normalize`), numpy only.

Per row of a file, after the probationary period (the first 15 %, at most 750 rows):
- inside an anomaly window [L, R] (width w = R - L + 1) a detection at row i is worth
  `tpWeight * sigma(-(R - i + 1) / w) / sigma(-1)`, where `sigma(x) = 2 / (1 + exp(5x)) - 1` is NAB's
  scaled sigmoid (x >= 3 gives -1): the window's first row earns the full `tpWeight`, its last row little;
  only the best (i.e. the earliest) detection of a window counts; a window without one costs `fnWeight`;
- outside windows a detection costs `fpWeight * sigma(|i - R_prev| / (w_prev - 1))` after a window that
  ended at R_prev (a late detection just after a window costs little), and `fpWeight` before any window.
A file's raw score is the sum; a corpus's is the sum over files. The reported score is normalized per
profile: `100 * (raw - null) / (perfect - null)`, the null detector (no detections) giving 0 and the
perfect one (one detection at the start of every window) 100. A row is a detection when its score is
at least the threshold. NAB's scoreboard uses, per detector and profile, the one threshold that
maximizes the corpus score; `CorpusSweep` finds it exactly by sweeping every distinct score.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# NAB's probationary period: the first 15 % of a file (`_getProbationaryLength`).
PROBATION_PERCENT = 0.15


def probationary_length(n_points: int, percent: float = PROBATION_PERCENT) -> int:
    """NAB's probationary period: the first 15 % of a file, at most 750 rows (`_getProbationaryLength`)."""
    return int(min(math.floor(percent * n_points), percent * 5000))

# NAB's `config/profiles.json`.
PUBLISHED_PROFILES: dict[str, dict[str, float]] = {
    "standard": {"tpWeight": 1.0, "fnWeight": 1.0, "fpWeight": 0.11, "tnWeight": 1.0},
    "reward_low_FP_rate": {"tpWeight": 1.0, "fnWeight": 1.0, "fpWeight": 0.22, "tnWeight": 1.0},
    "reward_low_FN_rate": {"tpWeight": 1.0, "fnWeight": 2.0, "fpWeight": 0.11, "tnWeight": 1.0},
}


def scaled_sigmoid(position: np.ndarray | float) -> np.ndarray:
    """NAB's `scaledSigmoid`: 2 * sigmoid(-5 x) - 1, and -1 from x >= 3 on."""
    x = np.asarray(position, dtype=np.float64)
    return np.where(x >= 3.0, -1.0, 2.0 / (1.0 + np.exp(5.0 * x)) - 1.0)


def row_weights(n_rows: int, windows: Sequence[tuple[int, int]], profile: dict[str, float],
                probation: int) -> tuple[np.ndarray, np.ndarray]:
    """What a detection at each row is worth (NAB's `sweepScore`) and the window each row belongs to.

    Returns `(weight (n,), window_id (n,))`; `window_id` is -1 outside windows and -2 in the probationary
    period (those rows are never scored).
    """
    weight = np.empty(n_rows, dtype=np.float64)
    window_id = np.full(n_rows, -1, dtype=np.int64)
    max_tp = float(scaled_sigmoid(-1.0))
    rows = np.arange(n_rows)
    prev_end, prev_width, cursor = None, None, 0
    for k, (left, right) in enumerate(sorted(windows)):
        _fp_weights(weight, rows, cursor, left, prev_end, prev_width, profile)
        width = right - left + 1
        inside = rows[left:right + 1]
        weight[left:right + 1] = scaled_sigmoid(-(right - inside + 1) / width) * profile["tpWeight"] / max_tp
        window_id[left:right + 1] = k
        prev_end, prev_width, cursor = right, width, right + 1
    _fp_weights(weight, rows, cursor, n_rows, prev_end, prev_width, profile)
    window_id[:probation] = -2
    return weight, window_id


def _fp_weights(weight: np.ndarray, rows: np.ndarray, start: int, stop: int, prev_end: int | None,
                prev_width: int | None, profile: dict[str, float]) -> None:
    if start >= stop:
        return
    if prev_end is None or prev_width is None:
        weight[start:stop] = -1.0 * profile["fpWeight"]
        return
    # NAB divides by (width - 1); a one-row window would divide by zero there, so it counts as far away.
    if prev_width > 1:
        position = np.abs(rows[start:stop] - prev_end) / (prev_width - 1)
    else:
        position = np.full(stop - start, 3.0)
    weight[start:stop] = scaled_sigmoid(position) * profile["fpWeight"]


@dataclass
class FileSweep:
    """A file's raw NAB score as a function of the threshold (exact, from one sort of its scores)."""

    name: str
    scores_desc: np.ndarray  # scorable rows' detection scores, highest first
    cumulative: np.ndarray  # (m + 1,): raw score when the first k rows of `scores_desc` are detections
    n_windows: int  # windows with at least one scorable row (each costs fnWeight when missed)

    @classmethod
    def build(cls, name: str, scores: np.ndarray, windows: Sequence[tuple[int, int]],
              profile: dict[str, float], probation_percent: float = PROBATION_PERCENT) -> FileSweep:
        """`scores` are detection-time scores, one per row; NaN or -inf means no output at that row."""
        s = np.asarray(scores, dtype=np.float64)
        s = np.where(np.isnan(s), -np.inf, s)
        probation = probationary_length(len(s), probation_percent)
        weight, window_id = row_weights(len(s), windows, profile, probation)
        keep = window_id != -2
        s, weight, window_id = s[keep], weight[keep], window_id[keep]
        order = np.argsort(-s, kind="stable")
        s, weight, window_id = s[order], weight[order], window_id[order]
        delta = np.where(window_id == -1, weight, 0.0)
        fn = profile["fnWeight"]
        ids = np.unique(window_id[window_id >= 0])
        for k in ids:
            # A window is worth its best detection so far; each new detection adds only the improvement.
            idx = np.flatnonzero(window_id == k)
            best = np.maximum.accumulate(np.concatenate([[-fn], weight[idx]]))
            delta[idx] = np.diff(best)
        cumulative = -fn * len(ids) + np.concatenate([[0.0], np.cumsum(delta)])
        return cls(name, s, cumulative, len(ids))

    @property
    def null_score(self) -> float:
        return float(self.cumulative[0])

    def score_at(self, thresholds: np.ndarray | float) -> np.ndarray:
        """Raw score with detections where `score >= threshold`, for each threshold."""
        t = np.atleast_1d(np.asarray(thresholds, dtype=np.float64))
        # Number of rows at or above each threshold, counted on the ascending copy of the scores.
        ascending = self.scores_desc[::-1]
        k = len(ascending) - np.searchsorted(ascending, t, side="left")
        return self.cumulative[k]


@dataclass(frozen=True)
class NabResult:
    """A corpus score under one profile: normalized (0 null .. 100 perfect) and raw."""

    score: float
    raw: float
    null: float
    perfect: float
    threshold: float | None  # the single threshold used, None when it differs per file

    def to_dict(self) -> dict[str, float | None]:
        return {"score": self.score, "raw": self.raw, "null": self.null, "perfect": self.perfect,
                "threshold": self.threshold}


class CorpusSweep:
    """All files of a corpus under one profile: fixed, per-file, leave-one-file-out and optimal thresholds."""

    def __init__(self, files: Sequence[FileSweep], n_windows_total: int, profile: dict[str, float]) -> None:
        self.files = list(files)
        self.null = sum(f.null_score for f in self.files)
        # NAB's perfect score counts every labelled window of the corpus (`runner.normalize`).
        self.perfect = n_windows_total * profile["tpWeight"]
        finite = [f.scores_desc[np.isfinite(f.scores_desc)] for f in self.files]
        # Candidate thresholds: every distinct score, plus +inf (no detection at all).
        self.candidates = np.unique(np.concatenate([*finite, [np.inf]]))
        self._per_file = np.stack([f.score_at(self.candidates) for f in self.files]) if self.files else \
            np.zeros((0, len(self.candidates)))

    def normalize(self, raw: float) -> float:
        if self.perfect == self.null:
            return float("nan")
        return 100.0 * (raw - self.null) / (self.perfect - self.null)

    def _result(self, raw: float, threshold: float | None) -> NabResult:
        return NabResult(self.normalize(raw), float(raw), float(self.null), float(self.perfect), threshold)

    def at_threshold(self, threshold: float) -> NabResult:
        """One threshold fixed beforehand for every file."""
        raw = sum(float(f.score_at(threshold)[0]) for f in self.files)
        return self._result(raw, float(threshold))

    def per_file(self, thresholds: Sequence[float]) -> NabResult:
        """A threshold per file (e.g. chosen on that file's probationary period)."""
        raw = sum(float(f.score_at(t)[0]) for f, t in zip(self.files, thresholds, strict=True))
        return self._result(raw, None)

    def optimal(self) -> NabResult:
        """NAB's scoreboard threshold: the one maximizing the corpus score (ties: the highest threshold,
        as NAB's stable sort of a descending sweep picks)."""
        totals = self._per_file.sum(axis=0)
        best = len(totals) - 1 - int(np.argmax(totals[::-1]))
        return self._result(float(totals[best]), float(self.candidates[best]))

    def leave_one_file_out(self) -> tuple[NabResult, list[float]]:
        """Each file scored at the threshold that is optimal on the other files (never its own labels)."""
        totals = self._per_file.sum(axis=0)
        raw, chosen = 0.0, []
        for i in range(len(self.files)):
            others = totals - self._per_file[i]
            best = len(others) - 1 - int(np.argmax(others[::-1]))
            raw += float(self._per_file[i, best])
            chosen.append(float(self.candidates[best]))
        return self._result(raw, None), chosen
