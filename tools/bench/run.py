"""Speed of the stream: a bundle and running servers in -> throughput, latency and bare-model figures out.

Every figure comes from one real `python -m stream worker` subprocess on the given broker and Redis, with
its own topics, consumer group and Redis key prefix (cleaned up afterwards). Torch-free; the command that
drives it, adds Redis memory and accuracy and prints the table is `anomalybert bench`
(`tools.bench.commands`).

What is measured, precisely:
- throughput: one worker first applies the first W points of S series (warm-up: the first window fills);
  then the remaining P-W points of every series are written to the telemetry topic at once (far faster
  than the worker reads them), interleaved. Points per second is the rate of score messages over their middle 80 %
  (by count), from the messages' Kafka timestamps, i.e. the moments the worker handed each score to its
  Kafka producer: the steady part, where every point makes one window (stride 1) and one score.
- bare ONNX Runtime: `Bundle.score_windows` (normalization included) on random windows, `batch` at a time,
  same bundle and thread count, in this process while no worker runs.
- latency: after every series has W points in Redis, points are sent at a fixed rate; for each score,
  `publish - send`, where send is the wall clock just before `AIOKafkaProducer.send()` of the point and
  publish is the score message's Kafka timestamp (same host, same clock, millisecond resolution). With
  `score_lag` L > 0 a point is final only once the point L later has arrived, so this end-to-end figure
  includes that wait by design; `processing` is measured from the send of the point that made it final.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from model.bundle import Bundle, load_bundle

log = logging.getLogger(__name__)

PARTITIONS = 4
TS0 = 1_700_000_000_000  # first point's ts (epoch ms); points are one second apart
STEADY = (0.1, 0.9)  # share of the scores, by count, between which throughput is measured
MIN_STEADY_BATCHES = 4  # measured scores, in full batches, below which a throughput run has no steady part
STALL_S = 60.0  # no new point consumed for this long: the run failed

_METRIC = re.compile(r"^(anomalybert_[a-z_]+?|process_cpu_seconds)(?:_total)? ([0-9.e+-]+)$", re.M)
# The buckets of the worker's own latency histogram, kept as "<name>:<le>" (cumulative counts)
IN_WORKER = "anomalybert_in_worker_seconds_bucket"
# CPU seconds of the worker's neighbours, sampled beside its /metrics (`CpuSampler`)
MACHINE_CPU, REDIS_CPU, BROKER_CPU, BENCH_CPU = "cpu:machine", "cpu:redis", "cpu:broker", "cpu:bench"
_IN_WORKER_BUCKET = re.compile(r'^anomalybert_in_worker_seconds_bucket\{le="([^"]+)"\} ([0-9.e+-]+)$', re.M)


class BenchError(RuntimeError):
    """A run could not finish (worker died or stalled, scores missing): the message says which."""


@dataclass(frozen=True)
class Services:
    """The broker and Redis the runs use (`broker_pid`: the local broker's process, when the bench started it)."""

    bootstrap: str
    redis_url: str
    broker_pid: int | None = None


def renice(pid: int, niceness: int) -> bool:
    """Set every thread of process `pid` to `niceness` (Linux: nice is per thread). False where it is refused
    (raising a priority back needs privileges) or the process is gone."""
    try:
        tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        tids = [pid]
    try:
        for tid in tids:
            os.setpriority(os.PRIO_PROCESS, tid, niceness)
    except OSError:
        return False
    return True


@contextlib.contextmanager
def niced_broker(services: Services, niceness: int) -> Iterator[bool]:
    """The local broker at `niceness` for the duration (yields whether it could be set), then back at 0."""
    if not niceness or services.broker_pid is None:
        yield False
        return
    ok = renice(services.broker_pid, niceness)
    try:
        yield ok
    finally:
        if ok and not renice(services.broker_pid, 0):
            log.warning("could not set the broker's priority back (it stays niced for the rest of the bench)")


def _in_niced_thread(niceness: int, fn: Any) -> Any:
    """`fn()` in a thread of its own at `niceness` (the rest of this process keeps its priority)."""
    import threading

    out: dict[str, Any] = {}

    def run() -> None:
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), niceness)
            out["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - handed to the caller
            out["error"] = e

    t = threading.Thread(target=run, name="bench-load", daemon=True)
    t.start()
    t.join()
    if "error" in out:
        raise out["error"]
    return out["value"]


@dataclass(frozen=True)
class WorkerConfig:
    """How the worker under test is configured (everything else is the worker's default)."""

    model: Path
    batch: int = 256
    threads: int = 1
    score_lag: int | None = None
    max_wait_s: float | None = None
    # run the worker under cProfile from `profile_measured()` on (the measured part), one .prof file per run
    profile_dir: Path | None = None
    fetch_max_wait_ms: int | None = None  # the worker's kafka.fetch_max_wait_ms; None: its default
    consumer: str | None = None  # the worker's kafka.consumer ("aiokafka" or "faust"); None: its default
    device: str = "cpu"  # the worker's model.device (ONNX Runtime execution provider)
    inference_batch: int = 256  # the worker's model.inference_batch: windows per ONNX Runtime call
    stride: int | None = None  # the worker's scoring.stride; None: the bundle's
    pipeline_depth: int | None = None  # the worker's scoring.pipeline_depth; None: its default


def bare_ort(bundle: Bundle, batch: int, seconds: float = 5.0) -> float:
    """Windows per second of `bundle.score_windows` on random windows, `batch` at a time."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch, bundle.window_size, bundle.input_channels))
    bundle.score_windows(x)  # warm-up
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        bundle.score_windows(x)
        n += batch
    return n / (time.perf_counter() - t0)


def served_geometry(cfg: WorkerConfig) -> Any:
    """The geometry the worker will serve: its stride (the setting, else the bundle's) and score_lag (the
    setting, else the bundle's calibrated lag raised to stride - 1, else W-1)."""
    from model.serving import serve

    return serve(load_bundle(cfg.model, verify=False), cfg.score_lag, cfg.stride).geometry


def served_lag(cfg: WorkerConfig) -> int:
    """The score_lag the worker will use (`served_geometry`)."""
    return served_geometry(cfg).lag


def percentiles(samples_ms: np.ndarray) -> dict[str, float]:
    """p50 / p95 / p99 / max of a latency sample in milliseconds."""
    if len(samples_ms) == 0:
        return {"p50": float("nan"), "p95": float("nan"), "p99": float("nan"), "max": float("nan")}
    p = np.percentile(samples_ms, [50, 95, 99])
    return {"p50": float(p[0]), "p95": float(p[1]), "p99": float(p[2]), "max": float(samples_ms.max())}


def histogram_percentiles(before: dict[str, float], after: dict[str, float],
                          name: str = IN_WORKER) -> dict[str, float]:
    """p50 / p95 / p99 in milliseconds of what a Prometheus histogram observed between two /metrics samples,
    linear within a bucket (as PromQL's histogram_quantile); NaN where it observed nothing."""
    bounds = sorted((float(k.split(":", 1)[1]), k) for k in after if k.startswith(name + ":"))
    counts = np.array([after[k] - before.get(k, 0.0) for _, k in bounds])
    uppers = np.array([b for b, _ in bounds])
    out = {"p50": float("nan"), "p95": float("nan"), "p99": float("nan")}
    if len(counts) == 0 or counts[-1] <= 0:
        return out
    for q in (50, 95, 99):
        rank = counts[-1] * q / 100
        i = int(np.searchsorted(counts, rank, side="left"))
        if i >= len(uppers) - 1 and not np.isfinite(uppers[min(i, len(uppers) - 1)]):
            value = uppers[-2]  # in the +Inf bucket: its lower bound, as histogram_quantile
        else:
            lo, c0 = (0.0, 0.0) if i == 0 else (uppers[i - 1], counts[i - 1])
            share = (rank - c0) / (counts[i] - c0) if counts[i] > c0 else 1.0
            value = lo + (uppers[i] - lo) * share
        out[f"p{q}"] = 1000 * float(value)
    return out


def steady_rate(publish_ms: np.ndarray, share: tuple[float, float] = STEADY) -> float:
    """Messages per second between the `share` quantiles (by count) of the publish times."""
    t = np.sort(publish_ms)
    lo, hi = int(share[0] * (len(t) - 1)), int(share[1] * (len(t) - 1))
    span = (t[hi] - t[lo]) / 1000.0
    return (hi - lo) / span if span > 0 else float("nan")


# ------------------------------------------------------------------------------------------ one worker run


@dataclass
class WorkerRun:
    """One worker under test with unique topics, group and key prefix; `start()` launches it."""

    services: Services
    cfg: WorkerConfig
    log_dir: Path
    token: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    member: str = ""  # tells apart workers of one run (same topics, group and key prefix; scale-out)
    proc: subprocess.Popen | None = None
    web_port: int = 0

    @property
    def topics(self) -> dict[str, str]:
        t = self.token
        return {"telemetry": f"bench-tel-{t}", "scores": f"bench-scores-{t}", "alerts": f"bench-alerts-{t}",
                "dlq": f"bench-tel-{t}.dlq", "model_updates": f"bench-mu-{t}"}

    @property
    def prefix(self) -> str:
        return f"bench-{self.token}:"

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"worker-{self.token}{self.member}.log"

    def env(self) -> dict[str, str]:
        c = self.cfg
        env = {k: v for k, v in os.environ.items() if not k.startswith("ANOMALYBERT_")}
        env |= {
            "ANOMALYBERT_KAFKA__BOOTSTRAP": self.services.bootstrap,
            "ANOMALYBERT_KAFKA__GROUP_ID": f"bench-{self.token}",
            "ANOMALYBERT_KAFKA__PARTITIONS": str(PARTITIONS),
            # A quick first group join; nothing on the per-point path depends on these.
            "ANOMALYBERT_KAFKA__SESSION_TIMEOUT_S": "6",
            "ANOMALYBERT_KAFKA__HEARTBEAT_INTERVAL_S": "1",
            "ANOMALYBERT_KAFKA__REBALANCE_TIMEOUT_S": "10",
            "ANOMALYBERT_REDIS__URL": self.services.redis_url,
            "ANOMALYBERT_REDIS__KEY_PREFIX": self.prefix,
            "ANOMALYBERT_MODEL__PATH": str(c.model),
            "ANOMALYBERT_MODEL__THREADS": str(c.threads),
            "ANOMALYBERT_MODEL__DEVICE": c.device,
            "ANOMALYBERT_MODEL__INFERENCE_BATCH": str(c.inference_batch),
            "ANOMALYBERT_SCORING__MAX_BATCH": str(c.batch),
            "ANOMALYBERT_WORKER__ID": f"bench-{self.token}{self.member}",
            "ANOMALYBERT_WORKER__WEB_PORT": str(self.web_port),
            "ANOMALYBERT_WORKER__WEB_BIND": "127.0.0.1",
            "ANOMALYBERT_WORKER__LOG_LEVEL": "WARNING",
            "ANOMALYBERT_WORKER__DATA_DIR": str(self.log_dir / f"data-{self.token}{self.member}"),
            "PYTHONUNBUFFERED": "1",
        }
        if c.score_lag is not None:
            env["ANOMALYBERT_SCORING__SCORE_LAG"] = str(c.score_lag)
        if c.stride is not None:
            env["ANOMALYBERT_SCORING__STRIDE"] = str(c.stride)
        if c.pipeline_depth is not None:
            env["ANOMALYBERT_SCORING__PIPELINE_DEPTH"] = str(c.pipeline_depth)
        if c.max_wait_s is not None:
            env["ANOMALYBERT_SCORING__MAX_WAIT_S"] = str(c.max_wait_s)
        if c.fetch_max_wait_ms is not None:
            env["ANOMALYBERT_KAFKA__FETCH_MAX_WAIT_MS"] = str(c.fetch_max_wait_ms)
        if c.consumer is not None:
            env["ANOMALYBERT_KAFKA__CONSUMER"] = c.consumer
        env |= {f"ANOMALYBERT_KAFKA__TOPICS__{k.upper()}": v for k, v in self.topics.items()}
        return env

    def create_topics(self) -> None:
        from stream.kafka import ensure_topics
        from stream.settings import KafkaSettings

        cfg = KafkaSettings(bootstrap=self.services.bootstrap, partitions=PARTITIONS)
        asyncio.run(ensure_topics(cfg, list(self.topics.values()), compacted=[self.topics["model_updates"]]))

    def start(self) -> None:
        from tools.localstack import free_port

        self.web_port = free_port()
        env = self.env()
        module = "stream"
        cmd = [sys.executable, "-m", module, "worker"]
        if self.cfg.profile_dir is not None:
            self.cfg.profile_dir.mkdir(parents=True, exist_ok=True)
            prof = self.cfg.profile_dir / f"worker-{self.token}{self.member}.prof"
            cmd = [sys.executable, "-m", "tools.bench.profiled", str(prof), "worker"]
        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)

    def profile_measured(self) -> None:
        """Start the worker's profiler (`tools.bench.profiled`), when it runs under one."""
        if self.cfg.profile_dir is not None and self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGWINCH)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    def metrics(self) -> dict[str, float] | None:
        """The worker's counters and histogram sums from /metrics (None until its web server answers)."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.web_port}/metrics", timeout=2) as r:
                text = r.read().decode()
        except OSError:
            return None
        out: dict[str, float] = {}
        for name, value in _METRIC.findall(text):
            out[name] = out.get(name, 0.0) + float(value)  # labelled counters are summed
        for le, value in _IN_WORKER_BUCKET.findall(text):
            out[f"{IN_WORKER}:{le}"] = float(value)
        return out

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise BenchError(f"the worker exited with code {self.proc.returncode}:\n{self.log_tail()}")

    def log_tail(self, n: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def cleanup(self) -> None:
        """Delete this run's Redis keys and topics (best effort: a broker may refuse deletes)."""
        asyncio.run(_delete_prefix(self.services.redis_url, self.prefix))
        asyncio.run(_delete_topics(self.services.bootstrap, list(self.topics.values())))


@contextlib.contextmanager
def worker_run(services: Services, cfg: WorkerConfig, log_dir: Path) -> Iterator[WorkerRun]:
    """A WorkerRun with its topics created; stopped and cleaned up on exit."""
    run = WorkerRun(services, cfg, log_dir)
    run.create_topics()
    try:
        yield run
    finally:
        run.stop()
        run.cleanup()


async def _delete_prefix(redis_url: str, prefix: str) -> int:
    from redis.asyncio import Redis

    redis = Redis.from_url(redis_url)
    n = 0
    try:
        batch: list[bytes] = []
        async for key in redis.scan_iter(match=f"{prefix}*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                n += await redis.unlink(*batch)
                batch.clear()
        if batch:
            n += await redis.unlink(*batch)
    finally:
        await redis.aclose()
    return n


async def _delete_topics(bootstrap: str, topics: list[str]) -> None:
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.errors import KafkaError

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        await admin.start()
        await admin.delete_topics(topics)
    except (KafkaError, OSError) as e:
        log.debug("could not delete bench topics: %s", e)
    finally:
        with contextlib.suppress(KafkaError, OSError):
            await admin.close()


# ------------------------------------------------------------------------------------------ Kafka helpers


def _message(sid: str, i: int, value: np.ndarray) -> bytes:
    """One point; `value` holds one number per channel (`values` when there are several)."""
    point = {"value": float(value[0])} if len(value) == 1 else {"values": [float(x) for x in value]}
    return json.dumps({"series_id": sid, "ts": TS0 + 1000 * i, **point}).encode()


def series_ids(n_series: int, tag: str = "s") -> list[str]:
    return [f"bench-{tag}-{s:05d}" for s in range(n_series)]


async def preload(bootstrap: str, topic: str, sids: list[str], start: int, stop: int, seed: int = 1,
                  channels: int = 1) -> int:
    """Points start..stop-1 of every series, interleaved (point i of all series, then i+1), `channels` values
    each; returns the count."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20, max_batch_size=1 << 20)
    await producer.start()
    rng = np.random.default_rng(seed)
    keys = [s.encode() for s in sids]
    try:
        futures = []
        for i in range(start, stop):
            values = rng.normal(size=(len(sids), channels))
            for sid, key, v in zip(sids, keys, values, strict=True):
                futures.append(await producer.send(topic, _message(sid, i, v), key=key))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return len(sids) * (stop - start)


async def read_scores(bootstrap: str, topic: str, expected: int, timeout: float = 120.0) -> list[Any]:
    """Every record of `topic` from the start, until `expected` records or `timeout` (records, not decoded)."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest",
                                enable_auto_commit=False, max_partition_fetch_bytes=8 << 20)
    await consumer.start()
    out: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < expected and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500, max_records=100_000)).values():
                out.extend(records)
    finally:
        await consumer.stop()
    return out


# ------------------------------------------------------------------------------------------ throughput


def _delta(a: dict[str, float], b: dict[str, float], name: str) -> float:
    return b.get(name, 0.0) - a.get(name, 0.0)


def _summed(runs: list[WorkerRun]) -> dict[str, float] | None:
    """The workers' /metrics added up (None until every one answers)."""
    out: dict[str, float] = {}
    for run in runs:
        m = run.metrics()
        if m is None:
            return None
        for k, v in m.items():
            out[k] = out.get(k, 0.0) + v
    return out


def _proc_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of process `pid` (Linux /proc; None where it cannot be read)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def _machine_busy_seconds() -> float | None:
    """CPU seconds all cores spent running something since boot: user, nice, system, irq and softirq time (not
    idle, iowait, or what the hypervisor took, steal) (Linux /proc/stat; None elsewhere)."""
    try:
        with open("/proc/stat") as f:
            ticks = [int(x) for x in f.readline().split()[1:8]]  # user nice system idle iowait irq softirq
    except (OSError, ValueError):
        return None
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


class CpuSampler:
    """The CPU seconds that the worker's neighbours on the machine have used so far, sampled with its /metrics:
    the whole machine (every process, the worker's included), Redis (its INFO cpu), the local broker and this
    process (the load generator). Each is left out where it cannot be read (a remote Redis or broker)."""

    def __init__(self, services: Services) -> None:
        from redis import Redis

        self.services = services
        self.redis = Redis.from_url(services.redis_url, socket_timeout=2)

    def sample(self) -> dict[str, float]:
        out: dict[str, float] = {}
        machine = _machine_busy_seconds()
        if machine is not None:
            out[MACHINE_CPU] = machine
        try:
            info = self.redis.info("cpu")
            out[REDIS_CPU] = float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
        except Exception:  # noqa: BLE001 - a figure left out, not a failed run
            pass
        broker = _proc_cpu_seconds(self.services.broker_pid) if self.services.broker_pid else None
        if broker is not None:
            out[BROKER_CPU] = broker
        t = os.times()
        out[BENCH_CPU] = t.user + t.system  # this process and its threads: the load generator, the polling
        return out

    def close(self) -> None:
        self.redis.close()


def wait_scored(run: WorkerRun | list[WorkerRun], expected: int,
                timeout: float) -> list[tuple[float, dict[str, float]]]:
    """Poll the worker's /metrics (several workers': summed) until it has scored `expected` points; returns
    (time, metrics) samples."""
    runs = run if isinstance(run, list) else [run]
    samples: list[tuple[float, dict[str, float]]] = []
    deadline = time.monotonic() + timeout
    last_in, last_change = -1.0, time.monotonic()
    cpu = CpuSampler(runs[0].services)
    try:
        while time.monotonic() < deadline:
            for r in runs:
                r.check_alive()
            m = _summed(runs)
            now = time.monotonic()
            if m is not None:
                samples.append((now, {**m, **cpu.sample()}))
                if m.get("anomalybert_points_scored", 0) >= expected:
                    return samples
                if m.get("anomalybert_points_in", 0) != last_in:
                    last_in, last_change = m.get("anomalybert_points_in", 0), now
            if now - last_change > STALL_S:
                raise BenchError(f"the worker stalled (no point consumed for {STALL_S:.0f}s):\n"
                                 f"{runs[0].log_tail()}")
            time.sleep(0.25)
    finally:
        cpu.close()
    last = samples[-1][1] if samples else {}
    counts = ", ".join(f"{k.removeprefix('anomalybert_')} {last.get(k, 0):.0f}" for k in (
        "anomalybert_points_in", "anomalybert_points_accepted", "anomalybert_late_or_duplicate",
        "anomalybert_points_scored"))
    raise BenchError(f"the worker scored fewer than {expected} points within {timeout:.0f}s ({counts}):\n"
                     f"{runs[0].log_tail()}")


def worker_breakdown(samples: list[tuple[float, dict[str, float]]], expected: int) -> dict[str, float]:
    """From /metrics samples over the steady part: batch sizes and the share of wall time in ONNX Runtime."""
    lo, hi = STEADY[0] * expected, STEADY[1] * expected
    steady = [(t, m) for t, m in samples if lo <= m.get("anomalybert_points_scored", 0) <= hi]
    if len(steady) < 2:
        return {}
    return _window_breakdown(steady[0], steady[-1])


def _window_breakdown(a: tuple[float, dict[str, float]], b: tuple[float, dict[str, float]]) -> dict[str, float]:
    """Batches, windows per inference and the inference share of wall time between two /metrics samples."""
    (t0, m0), (t1, m1) = a, b
    batches = _delta(m0, m1, "anomalybert_batch_size_count")
    calls = _delta(m0, m1, "anomalybert_inference_windows_count")
    scored = _delta(m0, m1, "anomalybert_points_scored")
    cpu = _delta(m0, m1, "process_cpu_seconds")
    # The model thread's time as each ONNX Runtime run ends (a worker without that counter: each batch's inference
    # as the batch takes its scores, off by up to a batch over the window)
    busy = "anomalybert_model_busy_seconds"
    inference = _delta(m0, m1, busy if busy in m0 and busy in m1 else "anomalybert_inference_seconds_sum")
    # The worker process's CPU time per scored point, all threads, and the part outside inference (the
    # event loop's share: consuming, Redis, state work, publishing); /proc's 10 ms ticks, so over seconds.
    per_point = 1e6 / scored if scored and "process_cpu_seconds" in m1 else float("nan")
    return {
        "points_per_s_from_metrics": scored / (t1 - t0),
        "batches_per_s": batches / (t1 - t0),
        "mean_batch_events": _delta(m0, m1, "anomalybert_batch_size_sum") / batches if batches else float("nan"),
        "mean_windows_per_inference": _delta(m0, m1, "anomalybert_inference_windows_sum") / calls if calls else 0.0,
        "mean_inference_ms": 1000 * inference / calls if calls else 0.0,
        "inference_share_of_wall": inference / (t1 - t0),
        "cpu_us_per_point": cpu * per_point,
        "cpu_us_per_point_outside_inference": (cpu - inference) * per_point,
        # The machine's CPU per scored point over the same part: every process (the worker's included), and
        # the worker's neighbours on the same cores (absent where they cannot be read), and how busy the cores were
        **{f"{key}_us_per_point": _delta(m0, m1, name) * per_point
           for key, name in (("machine_cpu", MACHINE_CPU), ("redis_cpu", REDIS_CPU), ("broker_cpu", BROKER_CPU),
                             ("bench_cpu", BENCH_CPU)) if name in m0 and name in m1},
        **({"machine_busy_share": _delta(m0, m1, MACHINE_CPU) / ((t1 - t0) * (os.cpu_count() or 1))}
           if MACHINE_CPU in m0 and MACHINE_CPU in m1 else {}),
    }


def measure_throughput(services: Services, cfg: WorkerConfig, n_series: int, n_points: int, log_dir: Path,
                       timeout: float = 1800.0, workers: int = 1) -> dict[str, Any]:
    """Warm S series up, write the rest of their P points at once, time the scores (see the module docstring).
    `workers` > 1: as many workers in one consumer group (same topics and Redis prefix) share the partitions;
    every one must have consumed part of the warm-up, or the run fails (the group never split)."""
    t_run = time.perf_counter()
    lag = served_lag(cfg)
    bundle = load_bundle(cfg.model, verify=False)
    window, channels = bundle.window_size, bundle.channels
    if n_points < window + 2:
        raise ValueError(f"--points must be at least window_size + 2 = {window + 2} (W points of warm-up)")
    expected = n_series * (n_points - lag)  # point i is final once point i+lag has arrived
    # Warm-up: the first W points of every series, applied before the measured part: points before the
    # first window make none, and the first window finalizes W-lag points at once. From then on every
    # point makes one window and finalizes one point, and no batch mixes warm-up points of a slower
    # partition with measured ones.
    sids, first = series_ids(n_series), window
    with worker_run(services, cfg, log_dir) as run:
        runs = [run, *(WorkerRun(services, cfg, log_dir, token=run.token, member=f"-{k}") for k in range(1, workers))]
        try:
            for r in runs:
                r.start()
            if workers > 1:
                _wait_group(runs, timeout=60)
            asyncio.run(preload(services.bootstrap, run.topics["telemetry"], sids, 0, first, channels=channels))
            asyncio.run(_states_at(run, sids, first, timeout=timeout))
            idle = [r.member or "-0" for r in runs if not (r.metrics() or {}).get("anomalybert_points_in")]
            if workers > 1 and idle:
                raise BenchError(f"worker(s) {idle} got no partition of the warm-up: the group did not split")
            for r in runs:
                r.profile_measured()
            t_load = time.perf_counter()
            asyncio.run(preload(services.bootstrap, run.topics["telemetry"], sids, first, n_points,
                                channels=channels))
            load_s = time.perf_counter() - t_load
            samples = wait_scored(runs, expected, timeout)
            records = asyncio.run(read_scores(services.bootstrap, run.topics["scores"], expected))
        finally:
            for r in runs[1:]:
                r.stop()
    if len(records) < expected:
        raise BenchError(f"{len(records)} of {expected} score messages found on the scores topic")
    # The scores that points of the measured part made final: i + lag >= W.
    measured = [r for r in records if (json.loads(r.value)["ts"] - TS0) // 1000 + lag >= first]
    publish_ms = np.array([r.timestamp for r in measured], dtype=np.float64)
    overall = len(measured) / max((publish_ms.max() - publish_ms.min()) / 1000, 1e-3)
    # A steady part needs several batches: the scores of one come out together, and a run of a batch or two times
    # its boundaries rather than a rate.
    steady = steady_rate(publish_ms) if len(measured) >= MIN_STEADY_BATCHES * cfg.batch else float("nan")
    return {
        "series": n_series,
        "workers": workers,
        "points_per_series": n_points,
        "points": n_series * n_points,
        "scores": len(records),
        "measured_scores": len(measured),
        "score_lag": lag,
        "preload_s": round(load_s, 2),
        # A run too small for a steady part (a few batches) falls back to the overall rate.
        "points_per_s": steady if np.isfinite(steady) else overall,
        "steady": bool(np.isfinite(steady)),
        "overall_points_per_s": overall,
        "timestamp_type": "create" if records[0].timestamp_type == 0 else "log_append",
        "worker": worker_breakdown(samples, expected),
        "wall_s": round(time.perf_counter() - t_run, 1),
    }


def _wait_group(runs: list[WorkerRun], timeout: float) -> None:
    """Until every worker answers /metrics, and then the group's first rebalance has had time to settle: a
    worker that joins while another already consumes forces one more rebalance (its session timeout is 6 s,
    its rebalance timeout 10 s in these runs)."""
    deadline = time.monotonic() + timeout
    while _summed(runs) is None:
        for r in runs:
            r.check_alive()
        if time.monotonic() > deadline:
            raise BenchError(f"the workers did not all start within {timeout:.0f}s:\n{runs[-1].log_tail()}")
        time.sleep(0.25)
    time.sleep(8.0)


# ------------------------------------------------------------------------------------------ latency


async def _states_at(run: WorkerRun, sids: list[str], n: int, timeout: float) -> None:
    """Until every series' stored point count (the state's first 8 bytes) is `n`; fails if the worker dies."""
    from redis.asyncio import Redis

    redis = Redis.from_url(run.services.redis_url)
    deadline = time.monotonic() + timeout
    try:
        while True:
            run.check_alive()
            pipe = redis.pipeline(transaction=False)
            for sid in sids:
                pipe.getrange(f"{run.prefix}{{{sid}}}:st", 0, 7)
            heads = await pipe.execute()
            if all(len(h) == 8 and int.from_bytes(h, "big") == n for h in heads):
                return
            if time.monotonic() > deadline:
                raise BenchError(f"series did not reach {n} points in Redis within {timeout:.0f}s:\n{run.log_tail()}")
            await asyncio.sleep(0.2)
    finally:
        await redis.aclose()


async def paced_send(bootstrap: str, topic: str, sids: list[str], start: int, stop: int, rate: float,
                     seed: int = 2, channels: int = 1) -> dict[tuple[str, int], float]:
    """Send points start..stop-1 of every series, interleaved, `rate` messages per second in total;
    returns {(series_id, ts): wall-clock seconds just before send()}."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    rng = np.random.default_rng(seed)
    sent: dict[tuple[str, int], float] = {}
    futures = []
    try:
        t0, k = time.perf_counter(), 0
        for i in range(start, stop):
            values = rng.normal(size=(len(sids), channels))
            for sid, v in zip(sids, values, strict=True):
                delay = t0 + k / rate - time.perf_counter()
                if delay > 0.0005:
                    await asyncio.sleep(delay)
                msg = _message(sid, i, v)
                sent[(sid, TS0 + 1000 * i)] = time.time()
                futures.append(await producer.send(topic, msg, key=sid.encode()))
                k += 1
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return sent


def measure_latency(services: Services, cfg: WorkerConfig, n_series: int, rate: float, seconds: float,
                    log_dir: Path, nice_others: int = 0) -> dict[str, Any]:
    """Send at `rate` points/s once every series has W points, for about `seconds` plus the time the lag
    takes (the last `score_lag` points of each series only finalize earlier ones); per-score latencies.
    `nice_others` > 0: the load generator (a thread of this process) and the local broker run at that
    niceness while the points are sent, so the worker (and Redis) get the cores first."""
    from stream.settings import KafkaSettings, ScoringSettings

    t_run = time.perf_counter()
    lag = served_lag(cfg)
    bundle = load_bundle(cfg.model, verify=False)
    window, channels = bundle.window_size, bundle.channels
    sids = series_ids(n_series, "lat")
    # `seconds` worth of scored points, plus the lag's worth that only make earlier points final.
    per_series = max(2, round(rate * seconds / n_series)) + lag
    # Warm-up: W points, so that the first window fills and the worker has published before the measured
    # part (its first produce to the scores topic fetches metadata and connects).
    first, stop = window, window + per_series
    expected = n_series * (stop - lag)
    with worker_run(services, cfg, log_dir) as run:
        run.start()
        asyncio.run(preload(services.bootstrap, run.topics["telemetry"], sids, 0, first, channels=channels))
        asyncio.run(_states_at(run, sids, first, timeout=120))
        run.profile_measured()
        with contextlib.closing(CpuSampler(services)) as cpu:
            before = (time.monotonic(), {**(run.metrics() or {}), **cpu.sample()})
        with niced_broker(services, nice_others) as broker_niced:
            def send() -> dict[tuple[str, int], float]:
                return asyncio.run(paced_send(services.bootstrap, run.topics["telemetry"], sids, first, stop, rate,
                                              channels=channels))

            sent = _in_niced_thread(nice_others, send) if nice_others else send()
            samples = wait_scored(run, expected, timeout=60 + 2 * seconds)
        records = asyncio.run(read_scores(services.bootstrap, run.topics["scores"], expected))
    e2e, processing = [], []
    for r in records:
        msg = json.loads(r.value)
        sid, ts = msg["series_id"], msg["ts"]
        i = (ts - TS0) // 1000
        if i < first:
            continue  # the warm-up (sent as fast as possible, not at the rate)
        e2e.append(r.timestamp - 1000 * sent[(sid, ts)])
        processing.append(r.timestamp - 1000 * sent[(sid, TS0 + 1000 * (i + lag))])
    return {
        "series": n_series,
        "score_lag": lag,
        "max_wait_s": cfg.max_wait_s if cfg.max_wait_s is not None else ScoringSettings().max_wait_s,
        "fetch_max_wait_ms": (cfg.fetch_max_wait_ms if cfg.fetch_max_wait_ms is not None
                              else KafkaSettings().fetch_max_wait_ms),
        "consumer": cfg.consumer or KafkaSettings().consumer,
        "rate_points_per_s": rate,
        "others_niced": nice_others if nice_others else 0,
        "broker_niced": broker_niced,
        "points_sent": len(sent),
        "samples": len(e2e),
        "end_to_end_ms": percentiles(np.array(e2e)),
        "processing_ms": percentiles(np.array(processing)),
        # each point's arrival in the worker to its outputs handed to the producer (the worker's histogram)
        "in_worker_ms": histogram_percentiles(before[1], samples[-1][1]),
        "worker": _window_breakdown(before, samples[-1]),
        "wall_s": round(time.perf_counter() - t_run, 1),
    }
