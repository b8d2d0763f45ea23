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


def test_a_busy_process_cpu_time_is_read_from_proc() -> None:
    import os
    import subprocess
    import sys
    import time

    from tools.bench.run import _machine_busy_seconds, _proc_cpu_seconds

    child = subprocess.Popen([sys.executable, "-c", "import time\nt = time.process_time()\n"
                              "while time.process_time() - t < 0.6: pass\ntime.sleep(30)"])
    try:
        machine0 = _machine_busy_seconds()
        deadline = time.monotonic() + 20
        while (_proc_cpu_seconds(child.pid) or 0.0) < 0.5 and time.monotonic() < deadline:
            time.sleep(0.05)
        used = _proc_cpu_seconds(child.pid)
        assert used is not None and 0.5 <= used < 5
        machine1 = _machine_busy_seconds()
        assert machine0 is not None and machine1 is not None and machine1 - machine0 >= 0.3
    finally:
        child.kill()
        child.wait()
    assert _proc_cpu_seconds(child.pid) is None  # gone
    assert os.cpu_count()


def test_window_breakdown_gives_each_neighbour_cpu_per_point() -> None:
    from tools.bench.run import BENCH_CPU, BROKER_CPU, MACHINE_CPU, REDIS_CPU, _window_breakdown

    a = {"anomalybert_points_scored": 1000.0, "process_cpu_seconds": 10.0, "anomalybert_inference_seconds_sum": 2.0,
         MACHINE_CPU: 100.0, REDIS_CPU: 5.0, BROKER_CPU: 7.0, BENCH_CPU: 1.0}
    b = {"anomalybert_points_scored": 11000.0, "process_cpu_seconds": 11.0, "anomalybert_inference_seconds_sum": 2.5,
         MACHINE_CPU: 101.6, REDIS_CPU: 5.2, BROKER_CPU: 7.1, BENCH_CPU: 1.05}
    w = _window_breakdown((0.0, a), (2.0, b))
    assert abs(w["cpu_us_per_point"] - 100.0) < 1e-6 and abs(w["cpu_us_per_point_outside_inference"] - 50.0) < 1e-6
    assert abs(w["machine_cpu_us_per_point"] - 160.0) < 1e-6 and abs(w["redis_cpu_us_per_point"] - 20.0) < 1e-6
    assert abs(w["broker_cpu_us_per_point"] - 10.0) < 1e-6 and abs(w["bench_cpu_us_per_point"] - 5.0) < 1e-6
    import os

    assert abs(w["machine_busy_share"] - 1.6 / (2.0 * (os.cpu_count() or 1))) < 1e-9
    # the model thread's own counter, where the worker has it, over the batches' inference histogram
    w = _window_breakdown((0.0, {**a, "anomalybert_model_busy_seconds": 1.0}),
                          (2.0, {**b, "anomalybert_model_busy_seconds": 1.6}))
    assert abs(w["cpu_us_per_point_outside_inference"] - 40.0) < 1e-6 and abs(w["inference_share_of_wall"] - 0.3) < 1e-9
    del a[BROKER_CPU]  # a remote broker: left out, the rest still given
    w = _window_breakdown((0.0, a), (2.0, b))
    assert "broker_cpu_us_per_point" not in w and "redis_cpu_us_per_point" in w


def test_the_cores_table_lists_each_run_with_its_neighbours_share() -> None:
    from rich.console import Console

    from tools.bench.report import _cores

    worker = {"cpu_us_per_point": 202.0, "cpu_us_per_point_outside_inference": 114.0, "machine_cpu_us_per_point": 227.0,
              "redis_cpu_us_per_point": 21.0, "broker_cpu_us_per_point": 6.0, "bench_cpu_us_per_point": 1.0,
              "machine_busy_share": 0.79}
    result = {"bundles": {"fp32": {
        "throughput": [{"series": 10000, "points_per_s": 6970.0, "worker": worker},
                       {"series": 1, "points_per_s": 10.0, "worker": {}}],  # a run without the figures: left out
        "latency": [{"series": 100, "score_lag": 0, "worker": {**worker, "points_per_s_from_metrics": 973.0}}],
    }}}
    console = Console(record=True, width=200)
    _cores(console, result)
    text = console.export_text()
    rows = [line for line in text.splitlines() if "fp32" in line]
    assert len(rows) == 2 and "throughput" in rows[0] and "latency, lag 0" in rows[1]
    # all, worker, inference, the worker's rest, Redis, broker, bench, other, busy
    for cell in ("6,970", "227", "202", "88", "114", "21", "79 %"):
        assert cell in rows[0]
    assert "973" in rows[1]


def test_the_cores_table_renders_a_saved_run_whose_figures_are_null() -> None:
    from rich.console import Console

    from tools.bench.report import _cores

    # a run without a steady part: its per-point figures are NaN, which the saved JSON holds as null
    worker = {"cpu_us_per_point": None, "cpu_us_per_point_outside_inference": None, "machine_cpu_us_per_point": None,
              "redis_cpu_us_per_point": None, "bench_cpu_us_per_point": None, "machine_busy_share": 0.51}
    console = Console(record=True, width=200)
    _cores(console, {"bundles": {"fp32": {"throughput": [{"series": 100, "points_per_s": 9922.0, "worker": worker}],
                                          "latency": []}}})
    (row,) = [line for line in console.export_text().splitlines() if "fp32" in line]
    assert "9,922" in row and "51 %" in row and row.count("–") == 8
