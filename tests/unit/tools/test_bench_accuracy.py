"""int8 vs fp32 accuracy comparison and the benchmark's target verdicts, on tiny bundles and made-up results."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from model.quantize import quantize_bundle
from tests.bundles import tiny_bundle
from tools.bench.accuracy import compare, nab_dev, synthetic_dev
from tools.bench.report import targets


def test_compare_scores_both_bundles_on_the_same_points(tmp_path: Path) -> None:
    fp32 = tiny_bundle(tmp_path / "fp32")
    quantize_bundle(fp32, tmp_path / "int8")
    data = synthetic_dev(n_points=300, per_scenario=1)
    r = compare(fp32, tmp_path / "int8", data)
    assert r["series"] == 8 and r["points"] == 2400 and r["anomalous_points"] > 0
    for k in ("roc_auc", "best_f1_oracle", "mean_file_roc_auc"):
        assert 0 <= r["fp32"][k] <= 1 and 0 <= r["int8"][k] <= 1
        assert abs(r["delta"][k] - (r["int8"][k] - r["fp32"][k])) < 1e-12
    assert 0 <= r["score_abs_diff"]["mean"] <= r["score_abs_diff"]["max"] < 0.05
    assert 0 <= r["flag_disagreement"] <= 1
    same = compare(fp32, fp32, data)
    assert same["score_abs_diff"]["max"] == 0 and same["delta"]["roc_auc"] == 0


def test_nab_dev_labels_rows_inside_the_windows(tmp_path: Path) -> None:
    (tmp_path / "data" / "realX").mkdir(parents=True)
    (tmp_path / "data" / "realY").mkdir(parents=True)
    (tmp_path / "labels").mkdir()
    rows = "\n".join(f"2014-01-01 00:{m:02d}:00,{m}" for m in range(10))
    (tmp_path / "data" / "realX" / "a.csv").write_text("timestamp,value\n" + rows + "\n")
    (tmp_path / "data" / "realY" / "b.csv").write_text("timestamp,value\n" + rows + "\n")  # no windows
    windows = {"realX/a.csv": [["2014-01-01 00:03:00.000000", "2014-01-01 00:05:00.000000"]], "realY/b.csv": []}
    (tmp_path / "labels" / "combined_windows.json").write_text(json.dumps(windows))
    (s,) = nab_dev(tmp_path, 6)
    assert s.name == "realX/a" and s.labels.tolist() == [0, 0, 0, 1, 1, 1, 0, 0, 0, 0]
    assert np.array_equal(s.values, np.arange(10.0))


def test_targets_report_each_figure_against_its_limit() -> None:
    # the 10,000-series run's CPU per point: inference 100 µs, the rest 150, all 450 -> 2 cores allow 4,444/s
    worker = {"cpu_us_per_point": 250.0, "cpu_us_per_point_outside_inference": 150.0, "machine_cpu_us_per_point": 450.0}
    result = {
        "machine": {"cpus": 2},
        "bundles": {"fp32": {
            "throughput": [{"series": 100, "efficiency": 0.95, "steady": True},
                           {"series": 1000, "efficiency": 0.92, "steady": True},
                           {"series": 10000, "efficiency": 0.6, "steady": True, "points_per_s": 4800.0,
                            "worker": worker},
                           {"series": 20000, "efficiency": 9.0, "steady": False}],
            "latency": [{"score_lag": 0, "series": 100, "rate_points_per_s": 500.0,
                         "end_to_end_ms": {"p99": 19.0}, "in_worker_ms": {"p99": 12.0}},
                        {"score_lag": 0, "series": 100, "rate_points_per_s": 2000.0, "half_load": True,
                         "end_to_end_ms": {"p99": 40.0}, "in_worker_ms": {"p99": 25.0}},
                        {"score_lag": 0, "series": 10, "rate_points_per_s": 500.0,
                         "end_to_end_ms": {"p99": 9.0}},
                        {"score_lag": 63, "series": 100, "rate_points_per_s": 500.0,
                         "end_to_end_ms": {"p99": 9000.0}}],
            "scale_out": [{"series": 1000, "points_per_s": 1000.0}, {"series": 1000, "points_per_s": 1500.0}]}},
        "redis": [{"score_lag": 0, "window_size": 64, "channels": 1, "used_memory_per_series": 1000.0},
                  {"score_lag": 63, "window_size": 64, "channels": 1, "used_memory_per_series": 2100.0},
                  {"score_lag": 0, "window_size": 128, "channels": 1, "used_memory_per_series": 900.0}],
    }
    verdicts = [(t["where"], t["met"]) for t in targets(result)]
    # 100 series is below the efficiency target's scale; a latency run with other than 100 series, or a window
    # other than 64, is reported without a verdict
    # bare: 4,800 / 0.6 = 8,000 points/s; the cores allow 4,444 of them
    assert verdicts == [("1,000 series", True), ("10,000 series; the cores allow 0.56", False),
                        ("20,000 series (no steady part)", None),
                        ("100 series at 500/s", True), ("100 series at 500/s", True),
                        ("100 series at 2000/s", False), ("100 series at 2000/s", False), ("10 series at 500/s", None),
                        ("1,000 series: 1,500 / 1,000", False),
                        ("W=64, score_lag 0", True), ("W=64, score_lag 63", False), ("W=128, score_lag 0", None)]


def test_the_ceiling_is_what_the_cores_allow_at_the_measured_cpu_per_point() -> None:
    from tools.bench.report import ceiling

    run = {"points_per_s": 3000.0, "efficiency": 0.5,  # bare: 6,000 points/s
           "worker": {"cpu_us_per_point": 250.0, "cpu_us_per_point_outside_inference": 150.0,
                      "machine_cpu_us_per_point": 400.0}}
    assert abs(ceiling(run, cpus=2) - 2e6 / 400 / 6000) < 1e-9  # type: ignore[operator]
    assert abs(ceiling(run, cpus=8) - 8e6 / 400 / 6000) < 1e-9  # type: ignore[operator]
    # a figure missing (no /proc, no steady part: NaN, or None from a saved run): no ceiling
    assert ceiling({**run, "worker": {"cpu_us_per_point": 250.0}}, cpus=2) is None
    assert ceiling({**run, "efficiency": float("nan")}, cpus=2) is None
    assert ceiling({**run, "worker": {"machine_cpu_us_per_point": None}}, cpus=2) is None
