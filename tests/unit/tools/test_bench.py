"""The benchmark's arithmetic: steady rate, percentiles, steady-state size; no timing of anything."""

from __future__ import annotations

import numpy as np

from model.serving import Geometry
from stream.state import SeriesState
from tools.bench.memory import steady_state
from tools.bench.run import IN_WORKER, histogram_percentiles, percentiles, steady_rate


def test_steady_rate_ignores_a_slow_start_and_end() -> None:
    # 1000 messages/s in the middle; a slow first and last 5 %.
    t = np.concatenate([np.linspace(0, 5000, 50), 5000 + np.arange(900) * 1.0, 5900 + np.linspace(0, 5000, 50)])
    assert abs(steady_rate(t) - 1000.0) < 20
    assert np.isnan(steady_rate(np.full(10, 42.0)))  # all in one millisecond: no steady part


def test_percentiles_of_a_known_sample() -> None:
    p = percentiles(np.arange(1, 101, dtype=float))
    assert p["max"] == 100 and abs(p["p50"] - 50.5) < 1e-9 and 95 <= p["p95"] <= 96 and 99 <= p["p99"] <= 100
    assert np.isnan(percentiles(np.array([]))["p99"])


def test_steady_state_has_a_full_buffer_and_lag_pending_points() -> None:
    g = Geometry(window=64, stride=1, lag=63, channels=1)
    blob = steady_state(g, np.random.default_rng(0), version="2026-11-26T05-09-45Z-969075")
    s = SeriesState.decode(blob)
    assert s.n == 127 and len(s.values) == 64 and len(s.ts) == len(s.sums) == 63
    assert s.version == "2026-11-26T05-09-45Z-969075"
    lag0 = steady_state(Geometry(64, 1, 0, 1), np.random.default_rng(0), version="2026-11-26T05-09-45Z-969075")
    assert len(lag0) < len(blob)


def test_renice_lowers_every_thread_of_a_process() -> None:
    import subprocess
    import sys
    from pathlib import Path

    from tools.bench.run import renice

    child = subprocess.Popen([sys.executable, "-c", "import threading, time; "
                              "threading.Thread(target=time.sleep, args=(30,)).start(); time.sleep(30)"])
    try:
        import time

        time.sleep(0.5)
        assert renice(child.pid, 7)
        tids = list(Path(f"/proc/{child.pid}/task").iterdir())
        assert len(tids) == 2
        for t in tids:
            assert int((t / "stat").read_text().rsplit(")", 1)[1].split()[16]) == 7  # field 19: nice
    finally:
        child.kill()
        child.wait()
    assert not renice(child.pid, 7)  # gone


def test_histogram_percentiles_interpolate_within_buckets_between_two_samples() -> None:
    def sample(counts: dict[str, float]) -> dict[str, float]:
        return {f"{IN_WORKER}:{le}": c for le, c in counts.items()}

    before = sample({"0.01": 5, "0.02": 5, "0.04": 5, "+Inf": 5})  # observed earlier: subtracted
    # 100 new: 50 in (0, 10 ms], 40 in (10, 20], 8 in (20, 40], 2 above 40 ms
    after = sample({"0.01": 55, "0.02": 95, "0.04": 103, "+Inf": 105})
    p = histogram_percentiles(before, after)
    assert abs(p["p50"] - 10.0) < 1e-9  # the 50th of 100 is the last of the first bucket
    assert abs(p["p95"] - (20 + 20 * 5 / 8)) < 1e-9  # 5 of the 8 between 20 and 40 ms
    assert p["p99"] == 40.0  # in the +Inf bucket: its lower bound
    assert np.isnan(histogram_percentiles(after, after)["p99"])  # nothing observed in between
