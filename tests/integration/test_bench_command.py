"""`anomalybert bench` end to end on tiny sizes: it runs and its JSON carries every figure (no timing checks).

The int8 part is left out here to keep this under a minute (each measurement starts a worker); the int8
bundle and the accuracy comparison have their own unit tests.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.bundles import tiny_bundle
from tools.cli import cli

pytestmark = pytest.mark.integration


def test_bench_writes_every_figure(services, tmp_path: Path) -> None:
    model = tiny_bundle(tmp_path / "tiny")  # W=16, no calibrated lag: the default lag is 15
    out = tmp_path / "bench.json"
    res = CliRunner().invoke(cli, [
        "bench", "--model", str(model), "--series", "2", "--points", "100", "--latency-series", "2",
        "--scale-out", "16", "--latency-seconds", "1", "--nice-others", "10", "--memory-series", "50", "--no-quantize",
        "--bootstrap", services.kafka_bootstrap, "--redis-url", services.redis_url, "--output", str(out)])
    assert res.exit_code == 0, res.output + repr(res.exception)
    assert "Targets" in res.output

    r = json.loads(out.read_text())
    assert {"machine", "command", "settings", "services", "bundles", "redis", "targets", "elapsed_s"} <= set(r)
    assert r["machine"]["cpus"] >= 1 and r["machine"]["cpu"]
    assert set(r["bundles"]) == {"fp32"} and "accuracy" not in r
    for b in r["bundles"].values():
        assert b["window_size"] == 16 and b["default_score_lag"] == 15 and b["bare_ort_windows_per_s"] > 0
        assert b["execution_provider"] == "CPUExecutionProvider" and b["family"] == "anomalybert"
        (tp,) = b["throughput"]
        assert tp["series"] == 2 and tp["points"] == 200 and tp["scores"] == 2 * (100 - 15)
        assert tp["points_per_s"] > 0 and tp["efficiency"] > 0 and tp["workers"] == 1
        assert tp["bare_ort_windows_per_s"] > 0  # measured just before the run, beside the bundle-level figure
        # scale-out: one worker, then two in one group, on the same 16 series; every point scored once
        one, two = b["scale_out"]
        assert (one["workers"], two["workers"]) == (1, 2) and one["series"] == two["series"] == 16
        assert one["scores"] == two["scores"] == 16 * (100 - 15)
        # lag 0 with the load generator and the local broker at normal priority, then niced; the default lag
        assert [(lat["score_lag"], lat["others_niced"]) for lat in b["latency"]] == [(0, 0), (0, 10), (15, 0)]
        assert b["latency"][1]["broker_niced"] is False  # a broker the bench did not start is left alone
        for lat in b["latency"]:
            assert lat["samples"] > 0 and lat["rate_points_per_s"] > 0
            assert set(lat["end_to_end_ms"]) == set(lat["processing_ms"]) == {"p50", "p95", "p99", "max"}
        # where the machine's CPU went over each latency run (this throughput run is too short for a steady part):
        # the whole machine, Redis, the bench process (the broker is not the bench's here: left out)
        for run in b["latency"]:
            w = run["worker"]
            assert {"machine_cpu_us_per_point", "redis_cpu_us_per_point", "bench_cpu_us_per_point",
                    "machine_busy_share"} <= set(w) and "broker_cpu_us_per_point" not in w
            assert w["machine_cpu_us_per_point"] > 0 and 0 < w["machine_busy_share"] <= 1.05
    assert "The machine's CPU per scored point" in res.output
    assert [m["score_lag"] for m in r["redis"]] == [0, 15]
    for m in r["redis"]:
        assert m["series"] == 50 and m["state_bytes"] > 0 and m["memory_usage_per_series"] > m["state_bytes"]
        assert m["keys_per_series"] == 1
    kinds = {t["target"].split()[0] for t in r["targets"]}
    # no efficiency verdict below 1,000 series; the Redis target is at W=64 (this bundle's is 16): no verdict
    assert kinds == {"p99", "two", "Redis"} and all(t["met"] in (True, False, None) for t in r["targets"])
    assert [t["met"] for t in r["targets"] if t["target"].startswith("Redis")] == [None, None]
