"""Benchmark results in -> the machine description, the targets verdicts and the terminal tables out."""

from __future__ import annotations

import math
import os
import platform
from pathlib import Path
from typing import Any

# The targets (issue 19), reported against, never assumed.
TARGET_EFFICIENCY = 0.9  # points/s over bare ONNX Runtime's, at TARGET_EFFICIENCY_SERIES series and more
TARGET_EFFICIENCY_SERIES = 1000
TARGET_P99_MS = 20.0  # send to score published, at half load, score_lag 0, TARGET_P99_SERIES series
TARGET_P99_SERIES = 100
TARGET_BYTES_PER_SERIES = 1024  # Redis used_memory per series, one channel, window TARGET_BYTES_WINDOW
TARGET_BYTES_WINDOW = 64
TARGET_SCALE_OUT = 1.8  # two workers' points/s over one worker's, same series ("close to twice")


def machine() -> dict[str, Any]:
    """CPU model and count, OS, Python and ONNX Runtime versions."""
    import onnxruntime

    cpu = "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {"cpu": cpu or platform.processor(), "cpus": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(), "onnxruntime": onnxruntime.__version__}


def ceiling(r: dict[str, Any], cpus: int) -> float | None:
    """The most efficiency a throughput run's measured CPU per point allows on this machine however the work were
    scheduled: `cpus` seconds a second over every process's CPU µs per point (/proc, the worker's neighbours
    included), over the bare model's points/s. None where a figure is missing (no steady part, no /proc)."""
    everything = (r.get("worker") or {}).get("machine_cpu_us_per_point")
    figures = (everything, r.get("efficiency"), r.get("points_per_s"))
    if any(v is None or not math.isfinite(v) or v <= 0 for v in figures):
        return None
    return cpus * 1e6 / everything * r["efficiency"] / r["points_per_s"]


def targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Every target figure with its verdict."""
    out = []
    cpus = result["machine"]["cpus"]
    for name, b in result["bundles"].items():
        for t in b["throughput"]:
            if t["series"] < TARGET_EFFICIENCY_SERIES:
                continue  # the target is at fleet scale; smaller runs are in the throughput table
            steady = t.get("steady", True)  # a run too small for a steady part says nothing either way
            c = ceiling(t, cpus)
            out.append({"target": f"pipeline efficiency >= {TARGET_EFFICIENCY} at >= {TARGET_EFFICIENCY_SERIES:,} "
                                  "series", "bundle": name,
                        "where": f"{t['series']:,} series" + ("" if steady else " (no steady part)")
                        + ("" if c is None else f"; the cores allow {c:.2f}"),
                        "value": t["efficiency"], "met": t["efficiency"] >= TARGET_EFFICIENCY if steady else None})
        for lat in b["latency"]:
            if lat["score_lag"] == 0:
                p99 = lat["end_to_end_ms"]["p99"]
                fits = lat.get("half_load", True) and lat["series"] == TARGET_P99_SERIES
                out.append({"target": f"p99 latency <= {TARGET_P99_MS:.0f} ms at half load, score_lag 0, "
                                      f"{TARGET_P99_SERIES} series",
                            "bundle": name, "where": f"{lat['series']} series at {lat['rate_points_per_s']:.0f}/s"
                            + ("" if lat.get("half_load", True) else " (rate given)")
                            + (f", others at nice {lat['others_niced']}" if lat.get("others_niced") else ""),
                            "value": p99, "met": p99 <= TARGET_P99_MS if fits else None})
                own = (lat.get("in_worker_ms") or {}).get("p99")
                if own is not None and own == own:
                    # what the shared cores cost the figure: the worker's own share of it (arrival to produce)
                    out.append({"target": f"p99 in the worker (its own share: arrival to produce) <= "
                                          f"{TARGET_P99_MS:.0f} ms, the same run", "bundle": name,
                                "where": out[-1]["where"],
                                "value": own, "met": own <= TARGET_P99_MS if fits else None})
        if len(b.get("scale_out", [])) == 2:
            one, two = b["scale_out"]
            ratio = two["points_per_s"] / one["points_per_s"]
            out.append({"target": f"two workers >= {TARGET_SCALE_OUT} x one worker's points/s", "bundle": name,
                        "where": f"{one['series']:,} series: {two['points_per_s']:,.0f} / {one['points_per_s']:,.0f}",
                        "value": ratio, "met": ratio >= TARGET_SCALE_OUT})
    for m in result["redis"]:
        if m["channels"] == 1:
            v = m["used_memory_per_series"]
            fits = m["window_size"] == TARGET_BYTES_WINDOW
            out.append({"target": f"Redis <= {TARGET_BYTES_PER_SERIES} B per series (W={TARGET_BYTES_WINDOW}, C=1)",
                        "bundle": "any", "where": f"W={m['window_size']}, score_lag {m['score_lag']}", "value": v,
                        "met": v <= TARGET_BYTES_PER_SERIES if fits else None})
    return out


def _f(v: Any, digits: int = 0) -> str:
    if v is None or v != v:
        return "–"
    return f"{v:,.{digits}f}"


def _ok(met: bool | None) -> str:
    if met is None:
        return "n/a"
    return "[green]met[/green]" if met else "[red]missed[/red]"


def print_tables(console: Any, result: dict[str, Any]) -> None:
    """The throughput, latency, memory, accuracy and target tables."""
    m = result["machine"]
    console.print(f"[bold]machine[/bold] {m['cpu']}, {m['cpus']} CPUs; onnxruntime {m['onnxruntime']}, "
                  f"Python {m['python']}; broker {result['services']['broker']}, Redis "
                  f"{result['services']['redis_version']}")
    for name, b in result["bundles"].items():
        console.print(f"[bold]{name}[/bold] {b['version']} ({b.get('family', 'anomalybert')}, W={b['window_size']}, "
                      f"stride {b['stride']}, C={b['channels']}, {b['model_bytes'] / 1e6:.2f} MB graph; default "
                      f"score_lag {b['default_score_lag']}; {b.get('execution_provider', 'CPUExecutionProvider')})")
    _throughput(console, result)
    _latency(console, result)
    _cores(console, result)
    _memory(console, result)
    if result.get("accuracy"):
        _accuracy(console, result["accuracy"])
    _targets(console, result["targets"])


def _table(title: str, columns: tuple[str, ...], left: tuple[str, ...] = ("bundle",),
           caption: str | None = None) -> Any:
    """A rich table of these columns, none wrapped: the `left` ones (names) aligned left, the figures right."""
    from rich.table import Table

    t = Table(title=title, caption=caption)
    for c in columns:
        t.add_column(c, justify="left" if c in left else "right", no_wrap=True)
    return t


def _throughput(console: Any, result: dict[str, Any]) -> None:
    s = result["settings"]
    caption = (
        f"batch {s['batch']}, up to {s.get('inference_batch', s['batch'])} windows per ORT call, {s['threads']} ORT "
        "thread(s); points/s over the middle 80% of the scores by their Kafka timestamps; efficiency = points/s / "
        "(bare ORT windows/s at the same windows per call, measured just before the run, x stride: a window every "
        "stride points); windows/inference: per queued inference (scored up to the windows per call at a time); "
        "CPU efficiency = the bare model's CPU µs per point / the worker's (what the cores' other users do not lower); "
        "ORT share = the worker's inference time / wall time over the same part; CPU µs/point = the worker "
        "process's CPU time per scored point (all threads), and the part outside inference (the model thread's "
        "time in ONNX Runtime runs, anomalybert_model_busy_seconds); cores allow = the "
        "most efficiency the run's CPU per point allows on this machine however it were scheduled: the cores' "
        "seconds over every process's CPU per point (the next table's all), over the bare model's points/s")
    t = _table("Throughput: one worker, end to end", (
        "bundle", "series", "workers", "points", "points/s", "bare ORT win/s", "efficiency", "CPU efficiency",
        "events/batch", "windows/inference", "ORT share", "CPU µs/point", "outside inference", "cores allow"),
        caption=caption)
    cpus = result["machine"]["cpus"]
    for name, b in result["bundles"].items():
        runs = b["throughput"] + [r for r in b.get("scale_out", []) if r.get("workers", 1) > 1]
        for r in runs:
            w = r.get("worker", {})
            t.add_row(name, _f(r["series"]), _f(r.get("workers", 1)), _f(r["points"]), _f(r["points_per_s"]),
                      _f(r.get("bare_ort_windows_per_s", b["bare_ort_windows_per_s"])), _f(r["efficiency"], 2),
                      _f(r.get("cpu_efficiency"), 2),
                      _f(w.get("mean_batch_events")),
                      _f(w.get("mean_windows_per_inference")), _f(w.get("inference_share_of_wall"), 2),
                      _f(w.get("cpu_us_per_point")), _f(w.get("cpu_us_per_point_outside_inference")),
                      _f(ceiling(r, cpus), 2))
    console.print(t)


def _cores(console: Any, result: dict[str, Any]) -> None:
    """Where the machine's CPU went in each throughput and latency run: the worker and its neighbours."""
    caption = (
        "all: every process on the machine (/proc/stat); the worker's process (all threads), its inference "
        "(ONNX Runtime's time) and the rest; Redis (INFO cpu); the local broker; the bench process (the load "
        "generator); other: what none of them used (this machine's other processes, the kernel's interrupts). "
        "busy: the share of all cores in use over the same part. –: could not be read. Each figure is sampled at "
        "a slightly different moment, in 10 ms ticks, so other can come out a little below 0.")
    t = _table("The machine's CPU per scored point (µs), steady part", (
        "bundle", "run", "series", "points/s", "all", "worker", "inference", "worker, rest", "Redis", "broker",
        "bench", "other", "busy"), left=("bundle", "run"), caption=caption)
    for name, b in result["bundles"].items():
        more = [x for x in b.get("scale_out", []) if x.get("workers", 1) > 1]
        runs = [("throughput" + (f", {r['workers']} workers" if r.get("workers", 1) > 1 else ""), r)
                for r in b["throughput"] + more]
        runs += [(f"latency, lag {r['score_lag']}", r) for r in b["latency"]]
        for kind, r in runs:
            w = r.get("worker", {})
            if "machine_cpu_us_per_point" not in w:
                continue

            def fig(key: str, missing: float = math.nan, w: dict[str, Any] = w) -> float:
                v = w.get(key)  # absent, or None where the saved JSON holds a NaN (no steady part)
                return missing if v is None else v

            worker, rest = fig("cpu_us_per_point"), fig("cpu_us_per_point_outside_inference")
            parts = [worker] + [fig(f"{k}_cpu_us_per_point", 0.0) for k in ("redis", "broker", "bench")]
            rate = r.get("points_per_s", w.get("points_per_s_from_metrics"))
            t.add_row(name, kind, _f(r["series"]), _f(rate), _f(fig("machine_cpu_us_per_point")), _f(worker),
                      _f(worker - rest), _f(rest), _f(fig("redis_cpu_us_per_point")),
                      _f(fig("broker_cpu_us_per_point")), _f(fig("bench_cpu_us_per_point")),
                      _f(fig("machine_cpu_us_per_point") - sum(parts)),
                      f"{100 * fig('machine_busy_share'):.0f} %")
    if t.row_count:
        console.print(t)


def _latency(console: Any, result: dict[str, Any]) -> None:
    caption = (
        "end to end: the point's send() to its score's Kafka timestamp (the worker's produce); with "
        "score_lag L it includes waiting for the L later points of the series. processing: from the send() "
        "of the point that made the score final. in worker: from the point's arrival in the worker (its fetch "
        "returned) to its outputs handed to the producer, the worker's own share (its histogram "
        "anomalybert_in_worker_seconds, linear within buckets).")
    t = _table("Latency (ms) at the rate shown: half the measured maximum unless --latency-rate", (
        "bundle", "score_lag", "series", "rate/s", "others' nice", "samples", "e2e p50", "p95", "p99",
        "processing p50", "p95 ", "p99 ", "in worker p50", "p99  "), caption=caption)
    for name, b in result["bundles"].items():
        for r in b["latency"]:
            e, p = r["end_to_end_ms"], r["processing_ms"]
            w = r.get("in_worker_ms") or {"p50": float("nan"), "p99": float("nan")}
            t.add_row(name, str(r["score_lag"]), _f(r["series"]), _f(r["rate_points_per_s"]),
                      str(r.get("others_niced", 0))
                      + (" (not the broker)" if r.get("others_niced") and not r.get("broker_niced") else ""),
                      _f(r["samples"]),
                      _f(e["p50"], 1), _f(e["p95"], 1), _f(e["p99"], 1), _f(p["p50"], 1), _f(p["p95"], 1),
                      _f(p["p99"], 1), _f(w["p50"], 1), _f(w["p99"], 1))
    console.print(t)


def _memory(console: Any, result: dict[str, Any]) -> None:
    t = _table("Redis memory per active series (steady state)", (
        "score_lag", "W", "C", "series", "state bytes", "used_memory B/series", "MEMORY USAGE B/series"), left=(),
        caption="used_memory: growth of INFO memory used_memory / series (other clients of the same Redis add "
        "noise); MEMORY USAGE: mean over a sample of the keys; state: the encoded state value alone")
    for r in result["redis"]:
        t.add_row(str(r["score_lag"]), str(r["window_size"]), str(r["channels"]), _f(r["series"]),
                  _f(r["state_bytes"]), _f(r["used_memory_per_series"]), _f(r["memory_usage_per_series"]))
    console.print(t)


def _accuracy(console: Any, acc: dict[str, Any]) -> None:
    t = _table("int8 vs fp32 on dev data (per point; best F1 is an oracle threshold)",
               ("data", "points", "metric", "fp32", "int8", "change"), left=("data", "metric"))
    for data, r in acc.items():
        for k in ("roc_auc", "best_f1_oracle", "mean_file_roc_auc"):
            t.add_row(data, _f(r["points"]), k, _f(r["fp32"][k], 4), _f(r["int8"][k], 4), _f(r["delta"][k], 4))
        d = r["score_abs_diff"]
        t.add_row(data, "", "|score diff| mean / p99 / max", "", "",
                  f"{d['mean']:.4f} / {d['p99']:.4f} / {d['max']:.4f}")
        t.add_row(data, "", "flags that differ at the threshold", "", "", f"{r['flag_disagreement']:.4%}")
    console.print(t)


def _targets(console: Any, rows: list[dict[str, Any]]) -> None:
    t = _table("Targets", ("target", "bundle", "where", "value", "verdict"),
               left=("target", "bundle", "where", "verdict"))
    for r in rows:
        digits = 2 if ("efficiency" in r["target"] or "workers" in r["target"]) else (1 if "ms" in r["target"] else 0)
        t.add_row(r["target"], r["bundle"], r["where"], _f(r["value"], digits), _ok(r["met"]))
    console.print(t)
