"""Batched inference off the event loop: raw windows (B, W, C) in -> scores (B, W) out (current bundle), and
the per-channel contributions (B, W, C) when the bundle's graph has them (`model.bundle.CONTRIB_NAME`).

A model that fails on some windows must not stop the partition: a batch whose run raises is split in
halves until the windows that fail are alone, and those windows, like windows whose scores are not
finite numbers in [0, 1], come back as rows of NaN (`Scored.failed` counts them by reason). The series'
state leaves such a window out of its points' averages (`stream.state.SeriesState.apply`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from model.bundle import Bundle
from model.serving import Served
from model.windows import in_batches

# Scores may stray from [0, 1] by float rounding (a sigmoid computed in float32); beyond this they are wrong.
_RANGE_SLACK = 1e-5


@dataclass
class Scored:
    """One inference: scores (B, W), NaN rows for windows the model could not score; `failed` counts those
    by reason ("error": the run raised, "invalid": not finite or outside [0, 1]); `error` is the first
    exception's text."""

    scores: np.ndarray
    seconds: float
    failed: dict[str, int] = field(default_factory=dict)
    error: str | None = None
    contrib: np.ndarray | None = None  # (B, W, channels) when the graph gives contributions


class Scorer:
    """Holds the model being served. `swap()` replaces it with one attribute assignment, so a batch that
    started on the old model finishes on it (it read `self.served` once) and the next uses the new one."""

    def __init__(self, served: Served, max_inference_batch: int = 256,
                 busy: Callable[[float], None] | None = None) -> None:
        self.served = served
        self.max_inference_batch = max_inference_batch
        # Given the seconds of each ONNX Runtime run as it ends, on the scorer's thread (`Scored.seconds` covers a
        # whole submission, which the caller observes only when it takes the scores: at 16,384 events a batch,
        # seconds later).
        self._busy = busy
        # One thread: ONNX Runtime parallelises inside a run (model.threads); two concurrent runs would
        # only contend for the same cores.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="onnx")

    @property
    def bundle(self) -> Bundle:
        return self.served.bundle

    def swap(self, served: Served) -> None:
        self.served = served

    def submit(self, windows: np.ndarray, bundle: Bundle | None = None) -> asyncio.Future:
        """Queue windows for the executor thread now; the future gives a `Scored`.

        Submitted at once (not when awaited), so a pipelined caller can queue batch N+1's windows while
        batch N is still being scored; the one thread scores them in submission order."""
        bundle = bundle or self.served.bundle
        loop = asyncio.get_running_loop()
        if len(windows) == 0:
            done = loop.create_future()
            done.set_result(Scored(np.empty((0, bundle.window_size), np.float32), 0.0))
            return done
        return loop.run_in_executor(self._executor, self.score, bundle, windows)

    def score(self, bundle: Bundle, windows: np.ndarray) -> Scored:
        """Score windows on this thread, isolating the windows the model fails on (see the module doc)."""
        t0 = time.perf_counter()
        failed: dict[str, int] = {}
        errors: list[str] = []
        packed = bundle.has_contrib
        out = self._isolating(bundle, windows, errors, packed)
        scores, contrib = (out[..., 0], out[..., 1:]) if packed else (out, None)
        valid = np.isfinite(scores) & (scores >= -_RANGE_SLACK) & (scores <= 1 + _RANGE_SLACK)
        bad = ~valid.all(axis=1)  # the windows whose run raised (rows of NaN) and those with wrong scores
        if errors:
            failed["error"] = len(errors)
        if int(bad.sum()) > len(errors):
            failed["invalid"] = int(bad.sum()) - len(errors)
        if bad.any():
            scores = scores.astype(np.float32, copy=True)
            scores[bad] = np.nan
        return Scored(np.clip(scores, 0.0, 1.0), time.perf_counter() - t0, failed, errors[0] if errors else None,
                      contrib)

    def _isolating(self, bundle: Bundle, windows: np.ndarray, errors: list[str], packed: bool) -> np.ndarray:
        try:
            fn = bundle.score_windows_packed if packed else bundle.score_windows
            return in_batches(fn if self._busy is None else self._timed(fn), windows, self.max_inference_batch,
                              bundle.window_size)
        except Exception as e:  # noqa: BLE001 - any failure of the model on these windows
            if len(windows) == 1:
                errors.append(f"{type(e).__name__}: {e}")
                shape = (1, bundle.window_size, 1 + bundle.channels) if packed else (1, bundle.window_size)
                return np.full(shape, np.nan, np.float32)
            mid = len(windows) // 2
            return np.concatenate([self._isolating(bundle, windows[:mid], errors, packed),
                                   self._isolating(bundle, windows[mid:], errors, packed)])

    def _timed(self, fn: Callable[[np.ndarray], np.ndarray]) -> Callable[[np.ndarray], np.ndarray]:
        def run(x: np.ndarray) -> np.ndarray:
            t0 = time.perf_counter()
            try:
                return fn(x)
            finally:
                self._busy(time.perf_counter() - t0)  # type: ignore[misc]

        return run

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
