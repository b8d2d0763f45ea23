"""Prometheus metrics of one worker (own registry, so several workers can live in one test process)."""

from __future__ import annotations

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, ProcessCollector, generate_latest

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# Finer where a point's time in the worker lies (milliseconds to tens of them), for its quantiles
_IN_WORKER_BUCKETS = (0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.0125, 0.015, 0.0175, 0.02, 0.025, 0.03, 0.04,
                      0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    """Counters and histograms the worker updates; `render()` gives the text exposition format."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.points_in = Counter("anomalybert_points_in", "Telemetry messages received", registry=r)
        self.points_accepted = Counter("anomalybert_points_accepted", "Points applied to series state", registry=r)
        self.points_scored = Counter("anomalybert_points_scored", "Final scores published", registry=r)
        self.late_or_duplicate = Counter(
            "anomalybert_points_late_or_duplicate",
            "Points whose ts was not newer than the series' last (not applied)",
            registry=r,
        )
        self.dead_letters = Counter(
            "anomalybert_dead_letters", "Messages sent to the dead-letter topic", ["code"], registry=r
        )
        self.outputs_dropped = Counter(
            "anomalybert_outputs_dropped",
            "Output messages that can never be sent (e.g. larger than the broker or producer allows): dropped, "
            "not retried",
            ["topic", "reason"],
            registry=r,
        )
        self.states_reset = Counter(
            "anomalybert_series_states_reset",
            "Stored series states that could not be used (undecodable, other channel count, unusable) and were "
            "started anew: the series' pending points are lost, the partition goes on",
            ["reason"],
            registry=r,
        )
        self.state_cache = Counter(
            "anomalybert_state_cache_lookups",
            "Stored series states looked up among the decoded ones this worker keeps (scoring.state_cache): "
            "result=hit (the stored bytes were the kept state's: not decoded) or miss",
            ["result"],
            registry=r,
        )
        self.windows_failed = Counter(
            "anomalybert_windows_failed",
            "Windows the model could not score: reason=error (its run raised, found by splitting the batch) or "
            "invalid (scores not finite or outside [0, 1]); their points are averaged without them",
            ["reason"],
            registry=r,
        )
        self.points_unscored = Counter(
            "anomalybert_points_unscored",
            "Final points with no score message because the model failed on every window over them",
            registry=r,
        )
        self.alerts = Counter("anomalybert_alerts", "Alert events published", ["state"], registry=r)
        self.state_conflicts = Counter(
            "anomalybert_state_conflicts",
            "Series writes lost to another worker (reloaded and redone)",
            registry=r,
        )
        self.readback_skipped = Counter(
            "anomalybert_outbox_readback_skipped",
            "Outbox messages found already published after an interrupted publish",
            registry=r,
        )
        self.retries = Counter("anomalybert_batch_retries", "Batches retried after a Redis or broker error", registry=r)
        self.batch_size = Histogram(
            "anomalybert_batch_size",
            "Events per batch",
            buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000),
            registry=r,
        )
        self.windows_per_batch = Histogram(
            "anomalybert_inference_windows",
            "Windows per inference call",
            buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000),
            registry=r,
        )
        self.inference_latency = Histogram(
            "anomalybert_inference_seconds",
            "ONNX Runtime time per batch",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.model_busy = Counter(
            "anomalybert_model_busy_seconds",
            "Seconds the model thread spent in ONNX Runtime runs, counted as each run ends",
            registry=r,
        )
        self.end_to_end = Histogram(
            "anomalybert_end_to_end_seconds",
            "Telemetry append time (Kafka timestamp) to its batch being published",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.in_worker = Histogram(
            "anomalybert_in_worker_seconds",
            "A point's arrival in the worker (the fetch that brought it returned) to its outputs handed to the "
            "producer (their Kafka timestamps; a batch redone after an error: to its write): the worker's own "
            "share of the end-to-end latency",
            buckets=_IN_WORKER_BUCKETS,
            registry=r,
        )
        self.model = Info("anomalybert_model", "The bundle being served", registry=r)
        self.model_reloads = Counter(
            "anomalybert_model_reloads",
            "Hot-reload attempts: result=ok (swapped) or refused (bad bundle; the old one keeps serving)",
            ["result"],
            registry=r,
        )
        self.feedback = Counter(
            "anomalybert_feedback",
            "Operators' verdicts on alerts read from the feedback topic, verdict=true (a real anomaly) or false (a "
            "false alarm); each message is counted by one worker of the group",
            ["verdict"],
            registry=r,
        )
        self.open_series = Gauge("anomalybert_series_in_batch", "Distinct series in the last batch", registry=r)
        ProcessCollector(registry=r)  # process_cpu_seconds_total, memory, open fds (Linux)

    def set_model(self, version: str, window: int, stride: int, channels: int, lag: int) -> None:
        self.model.info(
            {
                "version": version,
                "window_size": str(window),
                "stride": str(stride),
                "channels": str(channels),
                "score_lag": str(lag),
            }
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)


def observe_many(histogram: Histogram, amounts: np.ndarray) -> None:
    """`histogram.observe(a)` for each of `amounts`, in one pass: the worker observes every point's end-to-end
    latency, and a thousand `observe` calls a batch cost more than the rest of its metrics together. Uses the
    histogram's own fields as its `observe` does (each amount counts in the first bucket whose bound it does not
    exceed; the sum); `tests/unit/stream/test_metrics.py` checks that both give the same exposition."""
    if len(amounts) == 0:
        return
    histogram._raise_if_not_observable()
    counts = np.bincount(np.searchsorted(histogram._upper_bounds, amounts, side="left"),
                         minlength=len(histogram._upper_bounds))
    histogram._sum.inc(float(np.sum(amounts)))
    for i, n in enumerate(counts.tolist()):
        if n:
            histogram._buckets[i].inc(n)
