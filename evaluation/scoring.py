"""Score labelled series as the stream worker would: a bundle and `Series` in, per-point scores out.

The model path is the worker's: `make_windows` -> `Bundle.score_windows` -> `aggregate(..., lag)`. Each
detector yields two aligned arrays per series:
- `scores[i]`: the final score of point i (what the `scores` topic carries for point i); point metrics
  (VUS-PR, AUC, F1, UCR) use these;
- `detections[j]`: the highest score that became final when point j arrived. Point i is final once point
  max(i + lag, W - 1) has arrived, so its score is emitted then; NAB scores detections at that row (and
  timestamp), which charges the lag as latency. NaN where nothing is emitted.
The baselines are per-point causal (lag 0); the peers (`evaluation.peers`, `--peers`) are not: each sees
the whole series at once, and NAB counts their scores at the same row (lag 0). Per-series calibration,
when chosen, is applied to the model's final scores in arrival order, so it is causal too; a univariate
model on multichannel data (SMD) calibrates each channel on its own, as the worker would serve each
channel as a series, then takes the channels' maximum (or mean).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from evaluation import baselines, peers
from evaluation.detect import window_scores
from evaluation.likelihood import calibrate
from evaluation.series import Series
from model.bundle import Bundle
from model.errors import DataError
from model.novelty import as_history, combine_surprise, novelty
from model.windows import aggregate


@dataclass(frozen=True)
class ModelVariant:
    """How the model's window scores become point scores: the aggregation lag and the calibration."""

    lag: int
    calibration: str = "none"
    novelty: tuple[int, int, float] | None = None  # (length, history, rarity) of `model.novelty`; cal=tail only

    @property
    def name(self) -> str:
        extra = ""
        if self.novelty:
            length, history, rarity = self.novelty
            extra = f" novelty={length}/{history}" + (f"/{rarity:g}" if rarity != 1.0 else "")
        return f"anomalybert lag={self.lag}{extra} cal={self.calibration}"


@dataclass(frozen=True)
class EvalConfig:
    """What to run. `eval_stride` > bundle stride subsamples windows for speed (then lags >= stride - 1)."""

    variants: tuple[ModelVariant, ...]
    eval_stride: int = 1
    channel_reduce: str = "max"
    baselines: bool = True
    seed: int = 0
    peers: tuple[str, ...] = ()  # keys of `evaluation.peers.PEERS`; none by default


@dataclass
class Scored:
    """One detector's output on one series."""

    scores: np.ndarray  # (T,) final score of each point
    detections: np.ndarray  # (T,) score emitted at each row, NaN where none
    lag: int
    seconds: float = 0.0  # time it took (recorded for the peers)
    failed: str | None = None  # why a peer gave no scores on this series (then they are all 0)


@dataclass
class ScoredSeries:
    series: Series
    detectors: dict[str, Scored] = field(default_factory=dict)


def series_seed(name: str, seed: int) -> int:
    """A stable per-series seed (Python's hash() is salted per process)."""
    return (zlib.crc32(name.encode()) + seed) % (2**32)


def detection_time(scores: np.ndarray, lag: int, window_size: int) -> np.ndarray:
    """Move each point's score to the row where it becomes final: max(i + lag, W - 1). Rows that finalize
    several points (the first full window) keep the highest; rows that finalize none are NaN, and the last
    `lag` points are never emitted within the series."""
    n = len(scores)
    out = np.full(n, -np.inf)
    rows = np.maximum(np.arange(n) + lag, window_size - 1)
    keep = rows < n
    np.maximum.at(out, rows[keep], np.nan_to_num(scores[keep], nan=-np.inf))
    return np.where(np.isneginf(out), np.nan, out)


def model_window_scores(bundle: Bundle, values: np.ndarray, stride: int) -> list[np.ndarray]:
    """Window scores (N, W) for each scored channel group.

    A bundle with as many channels as the data scores all channels together (one group). A univariate
    bundle on multichannel data scores each channel on its own; channels that are constant over the whole
    series carry no information and are skipped (their score would be a constant that could mask the
    others under the max).
    """
    return [window_scores(bundle.score_windows, g, bundle.window_size, stride, bundle.normalizer)
            for g in channel_groups(bundle, values)]


def channel_groups(bundle: Bundle, values: np.ndarray) -> list[np.ndarray]:
    """The scored channel groups of `values`, each (T, C'): all channels together when the bundle has as many,
    else (a univariate bundle) each non-constant channel on its own."""
    v = np.asarray(values, dtype=np.float64).reshape(len(values), -1)
    if v.shape[1] == bundle.channels:
        return [v]
    if bundle.channels != 1:
        raise DataError(f"bundle expects {bundle.channels} channels, data has {v.shape[1]}")
    return [v[:, [c]] for c in range(v.shape[1]) if np.ptp(v[:, c]) > 0]


def model_point_scores(window_scores: list[np.ndarray], n_points: int, window_size: int, stride: int,
                       lag: int, reduce: str, calibrate_one: Callable[[np.ndarray], np.ndarray] | None = None
                       ) -> np.ndarray:
    """Aggregate each channel group's window scores with the worker's rule, calibrate each (`calibrate_one`:
    a univariate model on multichannel data serves each channel as a series of its own, with its own
    calibration), then reduce across channels."""
    if not window_scores:
        return np.zeros(n_points)
    per_channel = []
    for ws in window_scores:
        scores = aggregate(ws, n_points, window_size, stride, lag)[0]
        per_channel.append(scores if calibrate_one is None else calibrate_one(scores))
    return baselines.reduce_channels(np.stack(per_channel, axis=1), reduce)  # (T, C) -> (T,)


def model_inputs(bundle: Bundle, values: np.ndarray, seen_end: int) -> list[np.ndarray]:
    """The standardized input (T, C) of each channel group of `model_window_scores`, in the same order: the
    normalizer's running statistics for the series scope, else the seen part's mean and spread."""
    out = []
    for g in channel_groups(bundle, values):
        if bundle.normalizer.pointwise:  # float32, as the worker's state keeps them
            out.append(bundle.normalizer.prepare_series(g)[:, : g.shape[1]].astype(np.float32))
        else:
            seen = g[: max(seen_end, 2)]
            spread = seen.std(axis=0)
            out.append((g - seen.mean(axis=0)) / np.where(spread > 0, spread, 1.0))
    return out


def novelty_point_scores(raw: list[np.ndarray], inputs: list[np.ndarray], shape: tuple[int, int, float],
                         stride: int,
                         tail: tuple[float, int] | None, reduce: str) -> np.ndarray:
    """Per channel group, the larger of the model's and the shape novelty's per-series surprises
    (`model.novelty`, on the same float16 inputs as the worker's; a group of several channels takes its
    channels' largest novelty), then reduced across groups. At `stride` 1 this is `Geometry.calibrate`."""
    from model.surprise import TailSketch

    tail = tail or (TailSketch().halflife, TailSketch().min_history)
    per_group = []
    for r, x in zip(raw, inputs, strict=True):
        found = novelty(as_history(x, x.shape[1]), shape[0], shape[1], stride=stride)
        per_group.append(combine_surprise(r, found, tail, shape[2]))
    return baselines.reduce_channels(np.stack(per_group, axis=1), reduce)


def served_calibration(bundle: Bundle) -> str:
    """The calibration a bundle is served with (its manifest's `calibration.per_series`), by name."""
    cal = bundle.manifest.calibration.per_series
    return "none" if cal is None else cal.method


def novelty_of(bundle: Bundle) -> tuple[int, int, float] | None:
    """The shape novelty's (length, history, rarity) the bundle is served with, or None."""
    cal = bundle.manifest.calibration.per_series
    n = None if cal is None else cal.novelty
    return None if n is None else (n.length, n.history, n.rarity)


def tail_of(bundle: Bundle) -> tuple[float, int] | None:
    """The tail sketch's (halflife, min_history) the bundle declares, or None (the defaults)."""
    cal = bundle.manifest.calibration.per_series
    return None if cal is None else (cal.halflife, cal.min_history)


def effective_lag(lag: int, stride: int) -> int:
    """With windows every `stride` points a point needs lag >= stride - 1 to be covered when final."""
    return max(lag, stride - 1)


def evaluate_series(bundle: Bundle, series: Series, cfg: EvalConfig) -> ScoredSeries:
    """Run the model variants and (optionally) the baselines and the peers on one series."""
    out = ScoredSeries(series)
    w, n = bundle.window_size, series.n_points
    if n < w:
        raise DataError(f"{series.name}: {n} points, fewer than the model window {w}")
    window_scores = model_window_scores(bundle, series.matrix, cfg.eval_stride)
    for variant in cfg.variants:
        lag, cal = variant.lag, variant.calibration

        def calibrate_one(x: np.ndarray, cal: str = cal) -> np.ndarray:
            return calibrate(x, cal, tail_of(bundle))

        if variant.novelty is not None:
            raw = [aggregate(ws, n, w, cfg.eval_stride, lag)[0] for ws in window_scores]
            scores = novelty_point_scores(raw, model_inputs(bundle, series.matrix, series.seen_end),
                                          variant.novelty, cfg.eval_stride, tail_of(bundle), cfg.channel_reduce)
        else:
            scores = model_point_scores(window_scores, n, w, cfg.eval_stride, lag, cfg.channel_reduce,
                                        None if cal == "none" else calibrate_one)
        out.detectors[variant.name] = Scored(scores, detection_time(scores, lag, w), lag)
    if cfg.baselines:
        for name, scores in baseline_scores(series, cfg).items():
            out.detectors[name] = Scored(scores, scores.copy(), 0)
    if cfg.peers:
        found = peers.score_series(series.name, series.matrix, series.seen_end, cfg.peers, cfg.channel_reduce,
                                   series_seed(series.name, cfg.seed))
        for name, (scores, seconds, failed) in found.items():
            out.detectors[name] = Scored(scores, scores.copy(), 0, seconds, failed)
    return out


def baseline_scores(series: Series, cfg: EvalConfig) -> dict[str, np.ndarray]:
    """The classical detectors on one series; each is causal and per point."""
    seed = series_seed(series.name, cfg.seed)
    return {
        "random": baselines.random_scores(series.n_points, seed),
        "windowed_gaussian": baselines.windowed_gaussian(series.matrix, reduce=cfg.channel_reduce),
        "iforest": baselines.iforest_scores(series.matrix, series.seen_end, seed=seed % (2**31)),
    }


def score_all(bundle: Bundle, series: list[Series], cfg: EvalConfig,
              progress: Callable[[Series], None] | None = None) -> list[ScoredSeries]:
    """Score every series; `progress` is called after each (the command draws a progress bar with it)."""
    out = []
    for s in series:
        out.append(evaluate_series(bundle, s, cfg))
        if progress is not None:
            progress(s)
    return out
