"""Batched inference off the event loop: raw windows (B, W, C) in -> scores (B, W) out (current bundle)."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from model.bundle import Bundle
from model.serving import Served
from model.windows import in_batches


class Scorer:
    """Holds the model being served. `swap()` replaces it with one attribute assignment, so a batch that
    started on the old model finishes on it (it read `self.served` once) and the next uses the new one."""

    def __init__(self, served: Served, max_inference_batch: int = 1024) -> None:
        self.served = served
        self.max_inference_batch = max_inference_batch
        # One thread: ONNX Runtime parallelises inside a run (model.threads); two concurrent runs would
        # only contend for the same cores.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="onnx")

    @property
    def bundle(self) -> Bundle:
        return self.served.bundle

    def swap(self, served: Served) -> None:
        self.served = served

    def submit(self, windows: np.ndarray, bundle: Bundle | None = None) -> asyncio.Future:
        """Queue windows for the executor thread now; the future gives (scores, seconds ONNX Runtime took).

        Submitted at once (not when awaited), so a pipelined caller can queue batch N+1's windows while
        batch N is still being scored; the one thread scores them in submission order."""
        bundle = bundle or self.served.bundle
        loop = asyncio.get_running_loop()
        if len(windows) == 0:
            done = loop.create_future()
            done.set_result((np.empty((0, bundle.window_size), np.float32), 0.0))
            return done
        return loop.run_in_executor(self._executor, self._timed_run, bundle, windows)

    def _timed_run(self, bundle: Bundle, windows: np.ndarray) -> tuple[np.ndarray, float]:
        t0 = time.perf_counter()
        out = self._run(bundle, windows)
        return out, time.perf_counter() - t0

    def _run(self, bundle: Bundle, windows: np.ndarray) -> np.ndarray:
        return in_batches(bundle.score_windows, windows, self.max_inference_batch, bundle.window_size)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
