"""`anomalybert bench`: a bundle in (and its int8 copy), throughput, latency, Redis memory and the int8
accuracy change out, as terminal tables and a JSON file.

Import-light at module level (click only). The measuring code is `tools.bench.run` (worker runs, torch-free),
`tools.bench.memory`, `model.quantize` and `tools.bench.accuracy`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import click

from stream.settings import ScoringSettings

# Measured points per throughput run when --points is not given: at least SCORED_POINTS_TARGET and
# SCORED_BATCHES full batches (a run of a batch or two has no steady part); each series gets W points of
# warm-up first, and at least 32 measured ones, so that large S still has a steady part.
SCORED_POINTS_TARGET = 20_000
SCORED_BATCHES = 8
MIN_SCORED_PER_SERIES = 32


def auto_points(n_series: int, window: int, batch: int) -> int:
    """Points per series: W of warm-up, then enough measured points in total for a steady part."""
    scored = max(SCORED_POINTS_TARGET, SCORED_BATCHES * batch)
    return window + max(MIN_SCORED_PER_SERIES, math.ceil(scored / n_series))


def _series_list(_ctx: Any, _param: Any, value: str) -> list[int]:
    try:
        out = [int(v) for v in value.split(",") if v.strip()]
    except ValueError as e:
        raise click.BadParameter(f"a comma-separated list of integers, got {value!r}") from e
    if not out or min(out) < 1:
        raise click.BadParameter("at least one series count, every one >= 1")
    return out


@click.command("bench")
@click.option("--model", type=click.Path(path_type=Path), default=None, metavar="BUNDLE",
              help="Bundle directory, its model.onnx, or a registry with `current` [default: the shipped one].")
@click.option("--series", default="1,100,1000", show_default=True, callback=_series_list, metavar="S,S,..",
              help="Series counts of the throughput runs (e.g. 1,100,10000).")
@click.option("--points", type=click.IntRange(min=2), default=None, metavar="P",
              help=f"Points per series in each throughput run, the first W of them warm-up "
                   f"[default: W + max({MIN_SCORED_PER_SERIES}, max({SCORED_POINTS_TARGET}, "
                   f"{SCORED_BATCHES} x batch) / S)].")
@click.option("--batch", type=click.IntRange(min=1), default=ScoringSettings.model_fields["max_batch"].default,
              show_default=True,
              help="The worker's max_batch: most events in one batch (the worker's default).")
@click.option("--inference-batch", type=click.IntRange(min=1), default=256, show_default=True,
              help="The worker's model.inference_batch: windows per ONNX Runtime call; the bare ONNX Runtime run "
                   "scores min(batch, inference batch) windows a call, as the worker does with a full batch.")
@click.option("--pipeline-depth", type=click.IntRange(1, 3), default=None, metavar="N",
              help="The worker's scoring.pipeline_depth: batches in flight [default: the worker's, 2].")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True,
              help="ONNX Runtime intra-op threads (worker and bare run alike).")
@click.option("--device", type=click.Choice(["cpu", "cuda", "auto"]), default="cpu", show_default=True,
              help="Where ONNX Runtime runs the model, in the worker and the bare run (the worker's model.device; "
                   "cuda needs the onnxruntime-gpu package and a GPU).")
@click.option("--stride", type=click.IntRange(min=1), default=None, metavar="N",
              help="Serve a window every N points (the worker's scoring.stride; the default lag becomes at least "
                   "N-1) [default: the bundle's].")
@click.option("--scale-out", type=click.IntRange(min=1), default=None, metavar="S",
              help="Also run two workers in one consumer group on S series, beside one worker on the same S "
                   "(a throughput run of its own when S is not in --series) [default: no scale-out run].")
@click.option("--quantize/--no-quantize", default=True, show_default=True,
              help="Also measure an int8 copy of the bundle (ONNX Runtime dynamic quantization) and its "
                   "accuracy change.")
@click.option("--latency-series", type=click.IntRange(min=1), default=100, show_default=True,
              help="Series in the latency runs.")
@click.option("--latency-seconds", type=click.FloatRange(min=1), default=10.0, show_default=True,
              help="Paced sending time of each latency run.")
@click.option("--latency-rate", type=click.FloatRange(min=1), default=None, metavar="N",
              help="Points/s of the latency runs [default: half the measured maximum at --latency-series].")
@click.option("--max-wait", type=click.FloatRange(min=0, min_open=True), default=None, metavar="S",
              help="The worker's scoring.max_wait_s (with --consumer faust: the longest wait to fill a batch) "
                   "[default: the worker's].")
@click.option("--fetch-max-wait-ms", type=click.IntRange(min=0), default=None, metavar="MS",
              help="Latency runs only: the worker's kafka.fetch_max_wait_ms [default: the worker's, 10]. Apache "
                   "Kafka answers a fetch as soon as a record is there, whatever the wait; the local Tansu broker "
                   "holds it, which adds up to the wait to every point (1500 is faust's own fixed value).")
@click.option("--consumer", type=click.Choice(["aiokafka", "faust"]), default=None,
              help="The worker's kafka.consumer: aiokafka getmany() batches or faust's agent stream "
                   "[default: the worker's, aiokafka].")
@click.option("--nice-others", type=click.IntRange(min=0, max=19), default=0, show_default=True, metavar="N",
              help="Latency runs only: run the load generator and the local broker at niceness N, so that the "
                   "worker and Redis get the shared cores first (what the sharing costs the latency figure).")
@click.option("--memory-series", type=click.IntRange(min=1), default=10_000, show_default=True,
              help="Series written to Redis for the memory figure.")
@click.option("--nab", "nab_path", type=click.Path(path_type=Path), default=Path("../shared/data/nab"),
              show_default=True, help="NAB folder for the int8 accuracy check (skipped when absent).")
@click.option("--nab-files", type=click.IntRange(min=0), default=6, show_default=True,
              help="NAB files in the accuracy check (the shortest labelled file of each category).")
@click.option("--bootstrap", default=None, metavar="HOST:PORT",
              help="Kafka bootstrap servers to use [default: start the local broker].")
@click.option("--redis-url", default=None, metavar="URL",
              help="Redis to use [default: the one on 127.0.0.1:6379, started when absent].")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), default=Path("runs/bench.json"),
              show_default=True, help="JSON result.")
@click.option("--profile", "profile_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Run each worker's event loop under cProfile over the measured part (after the warm-up) and keep "
              "its .prof file here.")
def bench(**options: Any) -> None:
    """Measure what the stream costs: throughput, latency and Redis memory through the real broker, Redis
    and one worker, beside the bare ONNX Runtime speed of the same bundle, for the bundle and its int8 copy.

    \b
    1. Points/s of one worker with S series (steady part), and bare ONNX Runtime windows/s with as many
       windows a call as the worker's calls hold, in the same run; their ratio is the pipeline efficiency.
    2. Latency from a point's send to its score's publish (p50/p95/p99) at half the measured maximum
       rate, with score_lag 0 (stride - 1 for a bundle with a stride) and with the bundle's default lag.
    3. Redis bytes per active series (INFO memory before and after writing N series).
    4. The same for an int8 copy of the bundle, and its accuracy change on synthetic and NAB dev data.

    \b
    Examples:
      anomalybert bench
      anomalybert bench --series 1,100,10000 --output runs/bench-10k.json
      anomalybert bench --no-quantize --series 100 --max-wait 0.005
    """
    from rich.console import Console

    from tools.bench.report import print_tables

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    plan = Plan(**options)
    console = Console(highlight=False)
    if not console.is_terminal:
        console = Console(width=160, highlight=False)
    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="anomalybert-bench-"))
    try:
        result = run_bench(plan, work, console.print)
    except Exception:
        console.print(f"[red]bench failed[/red]; worker logs kept in {work}")
        raise
    shutil.rmtree(work, ignore_errors=True)
    result["elapsed_s"] = round(time.perf_counter() - started, 1)
    plan.output.parent.mkdir(parents=True, exist_ok=True)
    plan.output.write_text(json.dumps(_plain(result), indent=1, allow_nan=False) + "\n")
    print_tables(console, result)
    console.print(f"result written to [bold]{plan.output}[/bold] ({result['elapsed_s']} s)")


@dataclass(frozen=True)
class Plan:
    """The command's options."""

    model: Path | None
    series: list[int]
    points: int | None
    batch: int
    inference_batch: int
    pipeline_depth: int | None
    threads: int
    device: str
    stride: int | None
    scale_out: int | None
    quantize: bool
    latency_series: int
    latency_seconds: float
    latency_rate: float | None
    max_wait: float | None
    fetch_max_wait_ms: int | None
    consumer: str | None
    nice_others: int
    memory_series: int
    nab_path: Path
    nab_files: int
    bootstrap: str | None
    redis_url: str | None
    output: Path
    profile_dir: Path | None

    def settings(self) -> dict[str, Any]:
        return {"series": self.series, "points": self.points, "batch": self.batch,
                "inference_batch": self.inference_batch, "pipeline_depth": self.pipeline_depth,
                "threads": self.threads,
                "device": self.device, "stride": self.stride, "scale_out_series": self.scale_out,
                "latency_series": self.latency_series, "latency_seconds": self.latency_seconds,
                "latency_rate": self.latency_rate,
                "max_wait_s": self.max_wait, "latency_fetch_max_wait_ms": self.fetch_max_wait_ms,
                "consumer": self.consumer, "nice_others": self.nice_others,
                "memory_series": self.memory_series, "nab_files": self.nab_files, "quantize": self.quantize}


def _plain(o: Any) -> Any:
    """numpy scalars to Python ones and NaN to None, so that the JSON is strict."""
    import numpy as np

    if isinstance(o, dict):
        return {k: _plain(v) for k, v in o.items()}
    if isinstance(o, list | tuple):
        return [_plain(v) for v in o]
    if isinstance(o, np.generic):
        o = o.item()
    if isinstance(o, float) and not math.isfinite(o):
        return None
    return o


@contextlib.contextmanager
def _services(bootstrap: str | None, redis_url: str | None) -> Any:
    from tools.bench.run import Services

    if bootstrap and redis_url:
        yield Services(bootstrap, redis_url), f"given ({bootstrap})"
        return
    from tools.localstack import local_stack

    with local_stack(kafka_bootstrap=bootstrap) as stack:
        broker = f"given ({bootstrap})" if bootstrap else f"local Tansu ({stack.kafka_bootstrap})"
        pid = stack.started[-1].pid if not bootstrap and stack.started else None  # the broker is started last
        yield Services(stack.kafka_bootstrap, redis_url or stack.redis_url, pid), broker


def run_bench(plan: Plan, work: Path, say: Callable[[str], None]) -> dict[str, Any]:
    """Every measurement of `plan`; worker logs and the int8 bundle go under `work`. Returns the result."""
    from model.bundle import DEFAULT_BUNDLE_DIR, resolve_bundle_dir
    from tools.bench.report import machine, targets

    fp32 = resolve_bundle_dir(plan.model or DEFAULT_BUNDLE_DIR)
    bundles = {"fp32": fp32}
    if plan.quantize:
        from model.quantize import quantize_bundle

        say("quantizing to int8 (ONNX Runtime dynamic quantization)")
        quantize_bundle(fp32, work / "int8")
        bundles["int8"] = work / "int8"
    result: dict[str, Any] = {"created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                              "command": _command(), "machine": machine(), "settings": plan.settings(),
                              "bundles": {}}
    with _services(plan.bootstrap, plan.redis_url) as (services, broker):
        result["services"] = {"broker": broker, "redis_url": services.redis_url,
                              "redis_version": _redis_version(services.redis_url)}
        for name, path in bundles.items():
            result["bundles"][name] = _measure_bundle(plan, work, name, path, services, say)
        result["redis"] = _measure_redis(fp32, services.redis_url, plan.memory_series, say, plan.stride)
    if plan.quantize and result["bundles"]["fp32"]["channels"] != 1:
        say("accuracy of int8 vs fp32: skipped (the check scores one-channel dev data)")
    elif plan.quantize:
        from tools.bench.accuracy import accuracy_change

        say("accuracy of int8 vs fp32 on dev data")
        result["accuracy"] = accuracy_change(fp32, bundles["int8"], plan.nab_path, plan.nab_files)
    result["targets"] = targets(result)
    return result


def _measure_bundle(plan: Plan, work: Path, name: str, path: Path, services: Any,
                    say: Callable[[str], None]) -> dict[str, Any]:
    from model.bundle import load_bundle
    from model.quantize import quantized_from
    from tools.bench.run import WorkerConfig, bare_ort, measure_latency, measure_throughput, served_geometry

    bundle = load_bundle(path, threads=plan.threads, device=plan.device)
    cfg = WorkerConfig(model=path, batch=plan.batch, threads=plan.threads, max_wait_s=plan.max_wait,
                       profile_dir=plan.profile_dir, consumer=plan.consumer, device=plan.device,
                       stride=plan.stride, inference_batch=plan.inference_batch,
                       pipeline_depth=plan.pipeline_depth)
    g = served_geometry(cfg)
    lag, stride = g.lag, g.stride
    call = min(plan.batch, plan.inference_batch)  # windows per ONNX Runtime call of a full batch in the worker
    say(f"[bold]{name}[/bold]: bare ONNX Runtime on {bundle.execution_provider}, {call} windows a call")
    ort = bare_ort(bundle, call)
    out: dict[str, Any] = {
        "version": bundle.version, "family": bundle.manifest.family, "window_size": bundle.window_size,
        "stride": stride, "bundle_stride": bundle.stride, "channels": bundle.channels, "default_score_lag": lag,
        "quantized_from": quantized_from(bundle.manifest), "execution_provider": bundle.execution_provider,
        "model_bytes": (bundle.directory / "model.onnx").stat().st_size, "bare_ort_windows_per_s": ort,
        "throughput": [], "latency": [], "scale_out": [],
    }

    def throughput(s: int, workers: int = 1) -> dict[str, Any]:
        p = plan.points or auto_points(s, bundle.window_size, plan.batch)
        say(f"[bold]{name}[/bold]: throughput, {s} series x {p} points, {workers} worker(s)")
        # The bare model again, just before the run: on a shared VM it drifts by a third within minutes, and the
        # efficiency is only as good as the bare figure beside it.
        run_ort = bare_ort(bundle, call, seconds=3.0)
        r = measure_throughput(services, cfg, s, p, work, workers=workers)
        r["bare_ort_windows_per_s"] = run_ort
        with_efficiency(r, run_ort, stride)
        return r

    for s in plan.series:
        out["throughput"].append(throughput(s))
    if plan.scale_out:
        one = next((r for r in out["throughput"] if r["series"] == plan.scale_out), None) or throughput(plan.scale_out)
        two = throughput(plan.scale_out, workers=2)
        out["scale_out"] = [one, two]
    rates = {r["series"]: r["points_per_s"] for r in out["throughput"]}
    # Half the measured maximum; never above half the bare model's speed (tiny runs have no steady part).
    rate = plan.latency_rate or 0.5 * min(rates.get(plan.latency_series, max(rates.values())), ort * stride)
    # The smallest lag the bundle can serve (stride - 1: every point covered when final), and its default.
    for lat_lag in sorted({stride - 1, lag}):
        lcfg = replace(cfg, score_lag=lat_lag, fetch_max_wait_ms=plan.fetch_max_wait_ms)
        for nice in sorted({0, plan.nice_others}) if lat_lag == stride - 1 else (0,):
            say(f"[bold]{name}[/bold]: latency, score_lag {lat_lag}, {plan.latency_series} series at {rate:.0f}/s"
                + (f", load generator and broker at nice {nice}" if nice else ""))
            lat = measure_latency(services, lcfg, plan.latency_series, rate, plan.latency_seconds, work, nice)
            out["latency"].append({**lat, "half_load": plan.latency_rate is None})
    return out


def with_efficiency(r: dict[str, Any], ort: float, stride: int) -> None:
    """The run's pipeline efficiency: points/s over what the bare model sustains (a window every `stride` points:
    ort * stride points/s); and the worker's own CPU efficiency: the bare model's CPU time per point over the
    worker's CPU time per point (all its threads), which the broker, Redis and the load generator sharing the
    cores do not lower (1.0: the worker spends nothing beyond the model)."""
    r["efficiency"] = r["points_per_s"] / (ort * stride)
    cpu = r.get("worker", {}).get("cpu_us_per_point")
    r["cpu_efficiency"] = (1e6 / (ort * stride)) / cpu if cpu and math.isfinite(cpu) else float("nan")


def _measure_redis(path: Path, redis_url: str, n_series: int, say: Callable[[str], None],
                   stride: int | None = None) -> list[dict[str, Any]]:
    from model.bundle import load_bundle
    from model.serving import serve
    from tools.bench.memory import measure_memory
    from tools.bench.run import WorkerConfig, served_geometry

    bundle = load_bundle(path)
    cfg = WorkerConfig(path, stride=stride)
    served = served_geometry(cfg)
    lag, served_stride = served.lag, served.stride
    out = []
    # The smallest lag the bundle can serve (stride - 1: every point covered when final), and its default.
    for lat_lag in sorted({served_stride - 1, lag}):
        say(f"Redis memory, {n_series} series, score_lag {lat_lag}")
        g = serve(bundle, lat_lag, stride).geometry
        out.append(measure_memory(redis_url, g, n_series, bundle.version))
    return out


def _redis_version(url: str) -> str:
    import redis

    client = redis.Redis.from_url(url)
    try:
        return str(client.info("server").get("redis_version", "?"))
    finally:
        client.close()


def _command() -> str:
    """The command line, as typed, when run through the `anomalybert` entry point."""
    if Path(sys.argv[0]).name == "anomalybert":
        return shlex.join(["anomalybert", *sys.argv[1:]])
    return shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]])


COMMANDS: list[click.Command] = [bench]
