"""Offline detection: a checkpoint or bundle plus a series in, per-point scores and the top-N points out.

Scoring is exactly `make_windows` -> window scores -> `aggregate` (the seed's overlapping-window
averaging), the same composition the stream worker computes incrementally. A bundle is run with ONNX
Runtime and never imports torch; a `.pt` checkpoint is run with torch and the same normalizer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from evaluation.series import Series, load_csv, require_length
from model.bundle import DEFAULT_BUNDLE_DIR, load_bundle
from model.normalize import Normalizer
from model.serving import Geometry, serve
from model.windows import aggregate, check_lag, in_batches, make_windows, point_contributions, series_phase

if TYPE_CHECKING:
    from model.families.checkpoint import Checkpoint

log = logging.getLogger(__name__)

# Windows per inference call: bounds memory (attention is (B, H, W, W)) without changing any score.
BATCH = 256

WindowScorer = Callable[[np.ndarray], np.ndarray]  # raw windows (B, W, C) -> scores (B, W)


def window_scores(score_windows: WindowScorer, values: np.ndarray, window_size: int, stride: int,
                  normalizer: Normalizer | None = None, phase: int = 0) -> np.ndarray:
    """Scores (N, W) of every window of one series (values (T,) or (T, C)), windows at `phase`
    (`model.windows.window_ends`).

    `normalizer`: the model's, when its normalization runs point by point before windowing (the series
    scope; `Normalizer.prepare_series`); None when `values` are already prepared or it need not."""
    if normalizer is not None:
        values = normalizer.prepare_series(values)
    return in_batches(score_windows, make_windows(values, window_size, stride, phase), BATCH, window_size)


def score_series(score_windows: WindowScorer, values: np.ndarray, window_size: int, stride: int,
                 score_lag: int | None = None, normalizer: Normalizer | None = None, phase: int = 0) -> np.ndarray:
    """Per-point scores (T,) of one series: the mean of the scores of the windows covering each point, as the
    worker computes them incrementally (`window_scores`, then `model.windows.aggregate`). NaN marks points no
    window covers (only possible at the end of a series when stride > 1)."""
    ws = window_scores(score_windows, values, window_size, stride, normalizer, phase)
    scores, _ = aggregate(ws, len(values), window_size, stride, score_lag, phase)
    return scores


class TorchScorer:
    """Scores windows with a checkpoint's PyTorch model and normalizer (imports torch)."""

    def __init__(self, ckpt: Checkpoint) -> None:
        self.model = ckpt.model.eval()
        self.normalizer: Normalizer = ckpt.normalizer

    def __call__(self, windows: np.ndarray) -> np.ndarray:
        import torch

        x = torch.from_numpy(self.normalizer.transform(windows))
        with torch.no_grad():
            return self.model(x).numpy()


def _raw(scores: np.ndarray, inputs: np.ndarray | None = None) -> np.ndarray:
    return scores


def _checkpoint_geometry(ckpt: Checkpoint, per: dict[str, Any]) -> Geometry:
    """The geometry the checkpoint's bundle will be served with, for its per-series calibration."""
    cfg, norm, shape = ckpt.config, ckpt.normalizer, per.get("novelty") or {}
    return Geometry(cfg.window_size, cfg.stride, cfg.window_size - 1, cfg.channels,
                    norm.halflife if norm.pointwise else 0.0, norm.deviation_halflife if norm.pointwise else 0.0,
                    float(per["halflife"]), int(per["min_history"]),
                    int(shape.get("length", 0)), int(shape.get("history", 0)), float(shape.get("rarity", 1.0)))


def top_n(series: Series, scores: np.ndarray, n: int) -> list[dict[str, Any]]:
    """The `n` highest-scored points, highest first (earlier points first on ties)."""
    order = np.argsort(-np.nan_to_num(scores, nan=-np.inf), kind="stable")
    ranked = [int(i) for i in order if not np.isnan(scores[i])][:n]
    def point(i: int) -> dict[str, Any]:
        v = series.values[i]
        return {"value": float(v)} if np.ndim(v) == 0 else {"values": [float(x) for x in v]}

    return [{"timestamp": _plain(series.timestamps[i]), **point(i), "score": float(scores[i])} for i in ranked]


def _plain(x: Any) -> Any:
    """numpy scalars to Python ones, so that results serialize as JSON."""
    return x.item() if isinstance(x, np.generic) else x


class Detector:
    """Loads a model once and scores series with it.

    `model` is a `.pt` checkpoint (needs torch), or a bundle: its directory, its `model.onnx`, or a
    registry directory with a `current` pointer (numpy + onnxruntime only). `score_lag` defaults to the
    lag the model's threshold was calibrated at (what the stream worker serves), else `window_size - 1`:
    every window that covers a point is averaged.
    """

    def __init__(self, model: str | Path = DEFAULT_BUNDLE_DIR, score_lag: int | None = None,
                 threads: int = 1) -> None:
        path = Path(model)
        if path.suffix == ".pt":
            from model.families.checkpoint import load_checkpoint

            ckpt = load_checkpoint(path)
            self._score_windows: WindowScorer = TorchScorer(ckpt)
            self.normalizer = ckpt.normalizer
            cfg, self.threshold = ckpt.config, ckpt.threshold
            self.window_size, self.stride = cfg.window_size, cfg.stride
            calibrated = ckpt.calibration.get("score_lag")
            per = ckpt.calibration.get("per_series")  # as `export` will declare it in the bundle
            self._calibrate = _raw if per is None else _checkpoint_geometry(ckpt, per).calibrate
        else:
            served = serve(load_bundle(path, threads=threads), score_lag)
            self._score_windows = served.bundle.score_windows
            self._bundle = served.bundle
            self.normalizer = served.bundle.normalizer
            self.threshold = served.threshold
            self.window_size, self.stride = served.bundle.window_size, served.bundle.stride
            self.score_lag = served.lag
            calibrated = served.lag
            self._calibrate = served.geometry.calibrate
        if score_lag is None:
            score_lag = self.window_size - 1 if calibrated is None else int(calibrated)
        self.score_lag = score_lag
        check_lag(self.window_size, self.stride, self.score_lag)
        log.debug("loaded %s (window %d, stride %d)", path, self.window_size, self.stride)

    def _phase(self, series_id: str | None) -> int:
        return 0 if series_id is None else series_phase(series_id, self.stride)

    def score(self, values: np.ndarray, series_id: str | None = None) -> np.ndarray:
        """Per-point anomaly scores (T,) in [0, 1] of one series of at least `window_size` points: what the
        worker publishes, i.e. through the bundle's per-series calibration when it declares one (with its
        shape novelty, from the model inputs the worker keeps: float32). `series_id`: at a stride above 1, the
        windows fall where the worker puts them for that series (it staggers them by id,
        `model.windows.series_phase`); without it, every `stride` points from the first window."""
        raw = self.raw_score(values, series_id)
        if self._calibrate is _raw:
            return raw
        inputs = self.normalizer.prepare_series(values).astype(np.float32) if self.normalizer.pointwise else None
        return self._calibrate(raw, inputs)

    def raw_score(self, values: np.ndarray, series_id: str | None = None) -> np.ndarray:
        """Per-point raw scores (T,): the mean of each point's window scores, before any calibration."""
        return score_series(self._score_windows, values, self.window_size, self.stride, self.score_lag,
                            self.normalizer, self._phase(series_id))

    def contributions(self, values: np.ndarray, series_id: str | None = None) -> np.ndarray:
        """Per-point per-channel contributions (T, C) of a multichannel series, as the worker publishes them
        (each point's from the window that finalizes it); a bundle whose graph gives them only."""
        bundle = getattr(self, "_bundle", None)
        if bundle is None or not bundle.has_contrib:
            raise ValueError("this model gives no per-channel contributions (a bundle with a 'contrib' output)")
        phase = self._phase(series_id)
        packed = window_scores(bundle.score_windows_packed, values, self.window_size, self.stride,
                               self.normalizer, phase)
        return point_contributions(packed[..., 1:], len(values), self.window_size, self.stride, self.score_lag,
                                   phase)

    def detect(self, series: Series, n: int = 10, series_id: str | None = None) -> list[dict[str, Any]]:
        """The top-`n` points of a series as `{timestamp, value, score}`, highest score first (`series_id`: as
        `score`)."""
        require_length([series], self.window_size)
        return top_n(series, self.score(series.values, series_id), n)

    def detect_file(self, path: str | Path, n: int = 10, series_id: str | None = None) -> list[dict[str, Any]]:
        """`detect` on a CSV with at least the columns `timestamp, value`."""
        return self.detect(load_csv(path), n, series_id)
