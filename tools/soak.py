"""`anomalybert soak`: the stream workers under faults, on a local stack the soak owns; is every point scored
exactly once and every bad message dead-lettered exactly once?

The soak starts its own Kafka-compatible broker (Tansu, `tools.localstack`) and its own `redis-server` with
an append-only file at the chosen fsync policy, so that it may freeze the one and kill the other. Each
scenario runs on fresh topics, consumer group and key prefix, with several workers in one group:

    kill       a random worker SIGKILLed every few seconds (no shutdown, no commit); restarted a second later
    churn      workers join, and leave gracefully (SIGTERM), one at a time
    redis      redis-server SIGKILLed mid-stream and restarted from its append-only file 2 s later
    redis-crash  (not in the default run) a crash of Redis's host, modelled: with appendfsync always the
               file keeps every write Redis acknowledged; with everysec or no, Redis comes back from its
               files as they were a second before the kill (what the OS had not yet written is gone)
    freeze     the broker stopped (SIGSTOP) for 10 s, then resumed (SIGCONT)
    bad-input  fuzzed invalid messages among the points: bad JSON, wrong types, NaN, missing fields, a
               series id too long, non-UTF-8 bytes, and values of up to 900 KB
    all        every fault above in one run, with bad input throughout

What it checks, reading the outputs with confluent-kafka (librdkafka: not the worker's client): every point
that should be final has exactly one score; every bad message is in the dead-letter topic (by its partition
and offset) and no good one is; no worker exits on its own; for a sample of series the streamed scores equal
what the same bundle gives offline (`evaluation.detect.score_series`). It also reports the throughput, the
latency of every score from the send of the point that made it final (its maximum is the recovery time
after a kill, a freeze or an outage) and Redis memory. Dead
letters are at-least-once (a worker killed after sending one and before its offset is committed sends it
again after the restart): repeats are counted, not failed.

Import-light at module level (click only), as every command module.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import click

log = logging.getLogger(__name__)

SCENARIOS = ("kill", "churn", "redis", "freeze", "bad-input", "all")
# Not in the default run: with the shipped appendfsync always it is the `redis` scenario.
EXTRA_SCENARIOS = ("redis-crash",)
TS0 = 1_732_600_000_000
FREEZE_S = 10.0
REDIS_DOWN_S = 2.0
KILL_RESTART_S = 1.0
# Scored points stop being awaited when none arrived for this long (what is missing then is lost).
STALL_S = 90.0
# After the last expected score, keep reading this long so that late duplicates are counted too.
LINGER_S = 5.0
# A fault's recovery time: the longest wait of the scores made final by points sent from 5 s before the
# fault to this long after it.
RECOVERY_WINDOW_S = 30.0


@dataclass(frozen=True)
class Plan:
    series: int = 100
    points: int = 200
    workers: int = 3
    partitions: int = 8
    rate: float = 1000.0  # points/s sent
    bad: int = 200  # bad messages per scenario with bad input
    oversized: int = 3  # of which this many close to the broker's 1 MB limit
    kills: int = 4
    fsync: str = "always"
    model: Path | None = None
    score_lag: int | None = None
    max_batch: int = 256
    sample: int = 8  # series compared with offline scores
    seed: int = 0
    log_level: str = "WARNING"  # the workers' (their logs are kept in the log directory)
    # The workers' kafka.fetch_max_wait_ms. Not the workers' default (10 ms): on the local broker (Tansu 0.6,
    # memory storage) a fetch lists every record batch of each partition it reads and gives up, returning no
    # record, when its wait is over; at 10 ms that is from ~15,000 batches per partition on (docs/operations.md,
    # "Fault soak"). 500 ms is Apache Kafka's default.
    fetch_max_wait_ms: int = 500
    linger_ms: int = 5  # the soak's telemetry producer's linger (more records per batch: fewer batches)
    bootstrap: str | None = None  # an external broker instead of the soak's own


@dataclass
class Result:
    scenario: str
    series: int
    points: int
    expected_scores: int
    scored: int = 0
    lost: int = 0
    duplicated: int = 0
    bad_sent: int = 0
    dead_lettered: int = 0  # bad messages found in the dead-letter topic exactly once
    dead_letters_missing: int = 0
    dead_letters_duplicated: int = 0  # dead letters are at-least-once: reported, not a failure
    dead_letters_unexpected: int = 0  # dead letters of messages that were not bad (good points refused)
    crashes: int = 0
    faults: list[str] = field(default_factory=list)
    faults_at_ms: list[float] = field(default_factory=list)  # epoch ms at which each fault began
    # Per fault: the longest wait of a score made final by a point sent from 5 s before the fault to
    # RECOVERY_WINDOW_S after it (None: no such score), i.e. the recovery after that fault.
    recovery_s: list[float | None] = field(default_factory=list)
    offline_max_abs_diff: float | None = None
    points_per_s: float | None = None  # scores / (last score published - first point sent)
    latency_p50_s: float | None = None  # from the send of the point that makes a score final to its publish
    latency_p99_s: float | None = None
    latency_max_s: float | None = None  # the worst wait: the recovery after a kill, a freeze, an outage
    redis_used_memory_mb: float | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return (self.lost == 0 and self.duplicated == 0 and self.dead_letters_missing == 0
                and self.dead_letters_unexpected == 0 and self.crashes == 0
                and (self.offline_max_abs_diff is None or self.offline_max_abs_diff <= 1e-4))


# ------------------------------------------------------------------------------------------ local services


class SoakError(RuntimeError):
    pass


@dataclass
class Stack:
    """The soak's own broker and Redis (with AOF), which it may freeze and kill."""

    fsync: str
    workdir: Path
    broker: subprocess.Popen | None = None
    redis: subprocess.Popen | None = None
    broker_port: int = 0
    redis_port: int = 0
    external_bootstrap: str | None = None  # a broker of the user's (Apache Kafka): not started, never frozen

    @property
    def bootstrap(self) -> str:
        return self.external_bootstrap or f"127.0.0.1:{self.broker_port}"

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"

    def start(self) -> None:
        from tools.localstack import free_port, start_broker

        self.redis_port = free_port()
        if self.external_bootstrap is None:
            self.broker_port = free_port()
            self.broker = start_broker(self.broker_port)
        self.start_redis()

    def start_redis(self) -> None:
        from tools.localstack import LocalStackError, redis_answers

        exe = shutil.which("redis-server")
        if exe is None:
            raise LocalStackError("redis-server not found: install it (Debian: apt-get install redis-server)")
        data = self.workdir / "redis"
        data.mkdir(parents=True, exist_ok=True)
        self.redis = subprocess.Popen(
            [exe, "--port", str(self.redis_port), "--bind", "127.0.0.1", "--dir", str(data), "--save", "",
             "--appendonly", "yes", "--appendfsync", self.fsync],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while not redis_answers("127.0.0.1", self.redis_port):
            if self.redis.poll() is not None or time.monotonic() > deadline:
                raise LocalStackError(f"redis-server on port {self.redis_port} did not start")
            time.sleep(0.05)

    def kill_redis(self) -> None:
        assert self.redis is not None
        self.redis.send_signal(signal.SIGKILL)
        self.redis.wait(10)

    def close(self) -> None:
        for proc in (self.redis, self.broker):
            if proc is None or proc.poll() is not None:
                continue
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGCONT)
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


# ------------------------------------------------------------------------------------------ workers


@dataclass
class WorkerProc:
    worker_id: str
    proc: subprocess.Popen
    log_path: Path


class Workers:
    """The worker processes of one scenario (one consumer group)."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env, self.log_dir = env, log_dir
        self.live: list[WorkerProc] = []
        self.ended: list[WorkerProc] = []
        self.crashed: list[WorkerProc] = []
        self._n = 0

    def start(self, worker_id: str | None = None) -> WorkerProc:
        self._n += 1
        wid = worker_id or f"soak-{self._n}"
        env = self.env | {"ANOMALYBERT_WORKER__ID": wid}
        path = self.log_dir / f"{wid}-{self._n}.log"
        with open(path, "wb") as out:
            proc = subprocess.Popen([sys.executable, "-m", "stream", "worker"], env=env, stdout=out,
                                    stderr=subprocess.STDOUT)
        w = WorkerProc(wid, proc, path)
        self.live.append(w)
        return w

    def _end(self, w: WorkerProc) -> None:
        self.live.remove(w)
        self.ended.append(w)

    def kill(self, w: WorkerProc) -> None:
        w.proc.send_signal(signal.SIGKILL)
        w.proc.wait(10)
        self._end(w)

    def stop(self, w: WorkerProc, timeout: float = 60) -> None:
        w.proc.terminate()
        try:
            w.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            w.proc.kill()
            w.proc.wait(10)
        self._end(w)

    def reap(self) -> list[WorkerProc]:
        """Workers that exited on their own since the last call (crashes); they are restarted."""
        crashed = [w for w in self.live if w.proc.poll() is not None]
        for w in crashed:
            log.error("worker %s exited on its own with code %s; restarting it", w.worker_id, w.proc.returncode)
            self._end(w)
            self.crashed.append(w)
            self.start(w.worker_id)
        return crashed

    def stop_all(self) -> None:
        for w in list(self.live):
            self.stop(w)


# ------------------------------------------------------------------------------------------ input


def series_id(token: str, s: int) -> str:
    return f"soak-{token}-{s:06d}"


def value(s: int, i: int) -> float:
    return round(math.sin(i / 3 + s) * 10, 6)


def bad_messages(rng: random.Random, n: int, oversized: int, sids: list[str]) -> list[tuple[bytes | None, bytes]]:
    """n invalid telemetry messages (key, value), `oversized` of them close to the broker's 1 MB limit."""
    out: list[tuple[bytes | None, bytes]] = []
    for k in range(n):
        sid = rng.choice(sids)
        key = sid.encode()
        kind = "huge" if k < oversized else rng.choice(
            ["json", "string", "nan", "missing", "long_id", "bytes", "empty", "both", "key", "float32"])
        if kind == "huge":
            v = json.dumps({"series_id": sid, "ts": TS0, "value": "x" * rng.randint(700_000, 900_000)}).encode()
        elif kind == "json":
            v = b'{"series_id": "' + sid.encode() + b'", "ts": ' + bytes(rng.choices(b"{}[]:,x9", k=12))
        elif kind == "string":
            v = json.dumps({"series_id": sid, "ts": TS0, "value": "high"}).encode()
        elif kind == "nan":
            v = f'{{"series_id": "{sid}", "ts": {TS0}, "value": NaN}}'.encode()
        elif kind == "missing":
            v = json.dumps({"series_id": sid, "value": 1.0}).encode()
        elif kind == "long_id":
            v = json.dumps({"series_id": "x" * 5000, "ts": TS0, "value": 1.0}).encode()
            key = None
        elif kind == "bytes":
            v = bytes(rng.randrange(128, 256) for _ in range(rng.randint(1, 64)))
        elif kind == "empty":
            v = b""
        elif kind == "float32":  # finite, but beyond what the model's float32 inputs can hold
            v = json.dumps({"series_id": sid, "ts": TS0, "value": rng.choice([1e39, -1e300])}).encode()
        elif kind == "both":
            v = json.dumps({"series_id": sid, "ts": TS0, "value": 1.0, "values": [1.0]}).encode()
        else:  # a valid body under another series' key
            v = json.dumps({"series_id": sid + "-other", "ts": TS0, "value": 1.0}).encode()
        out.append((key, v))
    return out


async def produce(bootstrap: str, topic: str, sids: list[str], points: int, rate: float,
                  bad: list[tuple[bytes | None, bytes]], rng: random.Random,
                  started: threading.Event, linger_ms: int = 5) -> tuple[list[tuple[int, int]], Any]:
    """Points 0..points-1 of every series, interleaved, paced at `rate`, with the bad messages spread among
    them; returns the (partition, offset) of every bad message, and when (epoch ms) each point (series x
    point array) was handed to the producer."""
    import numpy as np
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=linger_ms, max_batch_size=1 << 20,
                                max_request_size=1 << 20, request_timeout_ms=60_000)
    await producer.start()
    total = len(sids) * points
    bad_at = dict(zip(sorted(rng.sample(range(total), min(len(bad), total))), bad, strict=False))
    extra = bad[len(bad_at):]  # more bad messages than points: sent at the end
    bad_futures: list[asyncio.Future] = []
    futures: list[asyncio.Future] = []
    keys = [s.encode() for s in sids]
    t0, sent = time.monotonic(), 0
    sent_ms = np.zeros((len(sids), points))
    started.set()
    try:
        for i in range(points):
            for s, key in enumerate(keys):
                msg = json.dumps({"series_id": sids[s], "ts": TS0 + 1000 * i, "value": value(s, i)}).encode()
                futures.append(await producer.send(topic, msg, key=key))
                sent_ms[s, i] = time.time() * 1000
                b = bad_at.get(sent)
                if b is not None:
                    bad_futures.append(await producer.send(topic, b[1], key=b[0]))
                sent += 1
                ahead = sent / rate - (time.monotonic() - t0)
                if ahead > 0.02:
                    await asyncio.sleep(ahead)
                if len(futures) > 20_000:
                    await asyncio.gather(*futures)
                    futures.clear()
        for b in extra:
            bad_futures.append(await producer.send(topic, b[1], key=b[0]))
        await asyncio.gather(*futures)
        metas = await asyncio.gather(*bad_futures)
    finally:
        await producer.stop()
    return [(m.partition, m.offset) for m in metas], sent_ms


# ------------------------------------------------------------------------------------------ output reader


class Reader(threading.Thread):
    """Reads `scores` and the dead-letter topic from the start with confluent-kafka, counting each point's
    scores and each bad message's dead letters, until `stop` is set."""

    def __init__(self, bootstrap: str, topics: dict[str, str], token: str, n_series: int, points: int,
                 sample: set[int], partitions: int) -> None:
        super().__init__(daemon=True)
        import numpy as np

        self.bootstrap, self.topics, self.token, self.partitions = bootstrap, topics, token, partitions
        self.counts = np.zeros((n_series, points), np.uint16)
        self.unexpected = 0
        self.sample_scores: dict[int, dict[int, float]] = {s: {} for s in sample}
        self.letters: dict[tuple[int, int], int] = {}
        self.published_ms = np.zeros((n_series, points), np.int64)  # Kafka timestamp of the first score
        self.unique = 0
        self.last_new = time.monotonic()
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self._prefix = f"soak-{token}-"
        self._warm = f"warmup-{token}-"
        self.warmed: set[str] = set()

    def run(self) -> None:
        try:
            self._run()
        except BaseException as e:  # noqa: BLE001 - reported by the caller
            self.error = e

    def _run(self) -> None:
        from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

        # Partitions assigned by hand, no consumer group: nothing to rejoin after a broker freeze.
        consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": f"soak-reader-{uuid.uuid4().hex}",
                             "enable.auto.commit": False, "fetch.message.max.bytes": 8 << 20})
        consumer.assign([TopicPartition(self.topics[t], p, OFFSET_BEGINNING)
                         for t in ("scores", "dlq") for p in range(self.partitions)])
        try:
            while not self.stop.is_set():
                for m in consumer.consume(num_messages=10_000, timeout=0.5):
                    if m.error():
                        if m.error().code() != KafkaError._PARTITION_EOF:
                            log.warning("reader: %s", m.error())
                        continue
                    if m.topic() == self.topics["scores"]:
                        self._score(m.value(), m.timestamp()[1])
                    else:
                        d = json.loads(m.value())
                        k = (int(d["partition"]), int(d["offset"]))
                        self.letters[k] = self.letters.get(k, 0) + 1
        finally:
            consumer.close()

    def _score(self, raw: bytes, ts_ms: int) -> None:
        d = json.loads(raw)
        sid = d["series_id"]
        if sid.startswith(self._warm):
            self.warmed.add(sid)
            return
        if not sid.startswith(self._prefix):
            self.unexpected += 1
            return
        s, i = int(sid[len(self._prefix):]), (int(d["ts"]) - TS0) // 1000
        if not (0 <= s < self.counts.shape[0] and 0 <= i < self.counts.shape[1]):
            self.unexpected += 1
            return
        if self.counts[s, i] == 0:
            self.unique += 1
            self.last_new = time.monotonic()
            self.published_ms[s, i] = ts_ms
        self.counts[s, i] += 1
        if s in self.sample_scores:
            self.sample_scores[s][i] = float(d["score"])


class GroupProgress:
    """The workers' consumer group's committed offsets on the telemetry topic, polled: while they advance the
    workers are still catching up (at 100,000 series the first window of a series fills only after the whole
    fleet's W-th point), so waiting for scores goes on even when none arrived for a while."""

    def __init__(self, bootstrap: str, group: str, topic: str, partitions: int, every_s: float = 2.0) -> None:
        from confluent_kafka import Consumer, TopicPartition

        # Never subscribes or assigns, so it does not join the workers' group; committed() only asks.
        self._consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
        self._tps = [TopicPartition(topic, p) for p in range(partitions)]
        self.every_s, self.total, self.last_advance, self._polled = every_s, -1, time.monotonic(), 0.0

    def poll(self) -> float:
        """Polls at most every `every_s`; returns when the committed offsets last advanced (monotonic s)."""
        now = time.monotonic()
        if now - self._polled >= self.every_s:
            self._polled = now
            with contextlib.suppress(Exception):  # a broker freeze: no answer is no progress
                total = sum(max(tp.offset, 0) for tp in self._consumer.committed(self._tps, timeout=5))
                if total > self.total:
                    self.total, self.last_advance = total, time.monotonic()
        return self.last_advance

    def close(self) -> None:
        self._consumer.close()


# ------------------------------------------------------------------------------------------ one scenario


def _faults(scenario: str) -> list[tuple[float, str]]:
    """(fraction of the sending time, fault) of a scenario."""
    if scenario == "kill":
        return []  # spread by the plan's kill count
    if scenario == "churn":
        return [(0.2, "join"), (0.4, "leave"), (0.6, "join"), (0.8, "leave")]
    if scenario == "redis":
        return [(0.4, "redis")]
    if scenario == "redis-crash":
        return [(0.4, "redis-crash")]
    if scenario == "freeze":
        return [(0.4, "freeze")]
    if scenario == "all":
        return [(0.15, "kill"), (0.3, "join"), (0.4, "redis"), (0.55, "freeze"), (0.7, "kill"), (0.85, "leave")]
    return []


def _env(stack: Stack, plan: Plan, token: str, topics: dict[str, str], model: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANOMALYBERT_")}
    env |= {
        "ANOMALYBERT_KAFKA__BOOTSTRAP": stack.bootstrap,
        "ANOMALYBERT_KAFKA__GROUP_ID": f"soak-{token}",
        "ANOMALYBERT_KAFKA__PARTITIONS": str(plan.partitions),
        "ANOMALYBERT_KAFKA__SESSION_TIMEOUT_S": "6",
        "ANOMALYBERT_KAFKA__HEARTBEAT_INTERVAL_S": "1",
        "ANOMALYBERT_KAFKA__REBALANCE_TIMEOUT_S": "10",
        "ANOMALYBERT_KAFKA__COMMIT_INTERVAL_S": "0.5",
        "ANOMALYBERT_KAFKA__FETCH_MAX_WAIT_MS": str(plan.fetch_max_wait_ms),
        "ANOMALYBERT_REDIS__URL": stack.redis_url,
        "ANOMALYBERT_REDIS__KEY_PREFIX": f"soak-{token}:",
        "ANOMALYBERT_REDIS__SOCKET_TIMEOUT_S": "2",
        "ANOMALYBERT_MODEL__PATH": str(model),
        "ANOMALYBERT_SCORING__MAX_BATCH": str(plan.max_batch),
        "ANOMALYBERT_WORKER__WEB_ENABLED": "false",
        "ANOMALYBERT_WORKER__OUTBOX_CLAIM_S": "3",
        "ANOMALYBERT_WORKER__SWEEP_INTERVAL_S": "0.5",
        "ANOMALYBERT_WORKER__LOG_LEVEL": plan.log_level,
        "PYTHONUNBUFFERED": "1",
    }
    if plan.score_lag is not None:
        env["ANOMALYBERT_SCORING__SCORE_LAG"] = str(plan.score_lag)
    env |= {f"ANOMALYBERT_KAFKA__TOPICS__{k.upper()}": v for k, v in topics.items()}
    return env


def run_scenario(stack: Stack, plan: Plan, scenario: str, model: Path, log_dir: Path,
                 say: Callable[[str], None]) -> Result:
    import numpy as np

    from model.bundle import load_bundle
    from model.serving import serve
    from stream.kafka import ensure_topics
    from stream.settings import KafkaSettings

    bundle = load_bundle(model)
    lag = serve(bundle, plan.score_lag).lag
    final = plan.points - lag
    if final < 1:
        raise SoakError(f"--points {plan.points} leaves no final point at score_lag {lag}")
    token = uuid.uuid4().hex[:8]
    topics = {"telemetry": f"soak-tel-{token}", "scores": f"soak-scores-{token}", "alerts": f"soak-alerts-{token}",
              "dlq": f"soak-tel-{token}.dlq", "model_updates": f"soak-mu-{token}"}
    asyncio.run(ensure_topics(KafkaSettings(bootstrap=stack.bootstrap, partitions=plan.partitions),
                              list(topics.values()), compacted=[topics["model_updates"]]))
    rng = random.Random(f"{plan.seed}-{scenario}")
    sids = [series_id(token, s) for s in range(plan.series)]
    with_bad = scenario in ("bad-input", "all")
    bad = bad_messages(rng, plan.bad, min(plan.oversized, plan.bad), sids) if with_bad else []
    sample = set(rng.sample(range(plan.series), min(plan.sample, plan.series)))
    result = Result(scenario, plan.series, plan.points, plan.series * final, bad_sent=len(bad))

    reader = Reader(stack.bootstrap, topics, token, plan.series, plan.points, sample, plan.partitions)
    reader.start()
    workers = Workers(_env(stack, plan, token, topics, model), log_dir / scenario)
    workers.log_dir.mkdir(parents=True, exist_ok=True)
    for _ in range(plan.workers):
        workers.start()
    t_start = time.monotonic()
    _warm_up(stack.bootstrap, topics["telemetry"], token, plan.partitions, bundle.window_size + lag, reader,
             workers)
    send_s = plan.series * plan.points / plan.rate
    faults = _faults(scenario)
    if scenario == "kill":
        faults = [((k + 1) / (plan.kills + 1), "kill") for k in range(plan.kills)]
    started = threading.Event()
    sent: dict[str, Any] = {}

    def send() -> None:
        try:
            sent["bad"], sent["ms"] = asyncio.run(produce(stack.bootstrap, topics["telemetry"], sids, plan.points,
                                                          plan.rate, bad, rng, started, plan.linger_ms))
        except BaseException as e:  # noqa: BLE001 - reported below
            sent["error"] = e

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    started.wait(60)
    t_send = time.monotonic()
    try:
        for frac, fault in faults:
            while time.monotonic() < t_send + frac * send_s:
                workers.reap()
                time.sleep(0.1)
            result.faults_at_ms.append(time.time() * 1000)
            result.faults.append(_apply(fault, stack, workers, rng))
            say(f"  {scenario}: {result.faults[-1]} at {time.monotonic() - t_send:.0f}s")
        sender.join()
        if "error" in sent:
            raise SoakError(f"sending failed: {sent['error']!r}")
        # every point of every series sent: wait for the scores (while they keep coming or the workers' committed
        # offsets keep advancing)
        reader.last_new = max(reader.last_new, time.monotonic())
        progress = GroupProgress(stack.bootstrap, f"soak-{token}", topics["telemetry"], plan.partitions)
        try:
            while (reader.unique < result.expected_scores
                   and time.monotonic() - max(reader.last_new, progress.poll()) < STALL_S):
                workers.reap()
                if reader.error is not None:
                    raise SoakError(f"reading the outputs failed: {reader.error!r}")
                time.sleep(0.2)
        finally:
            progress.close()
        deadline = time.monotonic() + LINGER_S
        while time.monotonic() < deadline or (with_bad and len(reader.letters) < len(set(sent["bad"]))
                                              and time.monotonic() < deadline + STALL_S):
            workers.reap()
            time.sleep(0.2)
    finally:
        result.seconds = time.monotonic() - t_start
        workers.reap()
        workers.stop_all()
        reader.stop.set()
        reader.join(30)
    result.crashes = len(workers.crashed)
    counts = reader.counts[:, :final]
    result.scored = int((counts > 0).sum())
    result.lost = int((counts == 0).sum())
    result.duplicated = int(np.maximum(reader.counts.astype(np.int64) - 1, 0).sum()) + reader.unexpected
    want = sent.get("bad", [])
    result.dead_lettered = sum(1 for k in want if reader.letters.get(k) == 1)
    result.dead_letters_missing = sum(1 for k in want if k not in reader.letters)
    result.dead_letters_duplicated = sum(1 for k in want if reader.letters.get(k, 0) > 1)
    result.dead_letters_unexpected = len(set(reader.letters) - set(want))
    result.offline_max_abs_diff = _offline_diff(bundle, lag, reader.sample_scores, plan.points, final)
    _latency(result, reader.published_ms[:, :final], counts > 0, sent.get("ms"), lag, bundle.window_size)
    result.redis_used_memory_mb = _redis_used_memory_mb(stack.redis_url)
    for w in workers.crashed:
        say(f"  {scenario}: worker {w.worker_id} exited with code {w.proc.returncode}; log: {w.log_path}")
    return result


def _warm_up(bootstrap: str, topic: str, token: str, partitions: int, n_points: int, reader: Reader,
             workers: Workers, timeout: float = 180.0) -> None:
    """Before the measured points: one series per partition, until each has a score, so that every
    partition has an owner that scores (the group formed, the model loaded) and the latency measured
    afterwards is the stream's, not the start-up's."""
    from stream.kafka import partition_for

    sids: dict[int, str] = {}
    k = 0
    while len(sids) < partitions:
        sid = f"warmup-{token}-{k}"
        sids.setdefault(partition_for(sid.encode(), partitions), sid)
        k += 1

    async def send() -> None:
        from aiokafka import AIOKafkaProducer

        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
        await producer.start()
        try:
            for i in range(n_points):
                for sid in sids.values():
                    msg = json.dumps({"series_id": sid, "ts": TS0 + 1000 * i, "value": float(i % 3)}).encode()
                    await producer.send(topic, msg, key=sid.encode())
            await producer.flush()
        finally:
            await producer.stop()

    asyncio.run(send())
    deadline = time.monotonic() + timeout
    while len(reader.warmed) < len(sids):
        if time.monotonic() > deadline:
            raise SoakError(f"only {len(reader.warmed)} of {len(sids)} partitions scored within {timeout:.0f}s "
                            f"of the workers' start; see their logs in {workers.log_dir}")
        workers.reap()
        time.sleep(0.2)


def _apply(fault: str, stack: Stack, workers: Workers, rng: random.Random) -> str:
    if fault == "kill":
        w = rng.choice(workers.live)
        workers.kill(w)
        time.sleep(KILL_RESTART_S)
        workers.start(w.worker_id)
        return f"SIGKILL {w.worker_id}, restarted"
    if fault == "join":
        w = workers.start()
        return f"{w.worker_id} joined"
    if fault == "leave":
        if len(workers.live) < 2:
            return "leave skipped (one worker left)"
        w = rng.choice(workers.live)
        workers.stop(w)
        return f"{w.worker_id} left (SIGTERM)"
    if fault == "redis":
        stack.kill_redis()
        time.sleep(REDIS_DOWN_S)
        stack.start_redis()
        return f"redis SIGKILL, restarted from its AOF after {REDIS_DOWN_S:.0f}s (appendfsync {stack.fsync})"
    if fault == "redis-crash":
        data = stack.workdir / "redis"
        before = stack.workdir / "redis-1s-before"
        shutil.rmtree(before, ignore_errors=True)
        shutil.copytree(data, before)
        time.sleep(1.0)
        stack.kill_redis()
        if stack.fsync != "always":  # the last second never reached the disk
            shutil.rmtree(data)
            before.rename(data)
        time.sleep(REDIS_DOWN_S)
        stack.start_redis()
        kept = "every acknowledged write" if stack.fsync == "always" else "its files of 1 s before"
        return f"redis host crash (appendfsync {stack.fsync}: restarted with {kept})"
    if fault == "freeze":
        assert stack.broker is not None
        stack.broker.send_signal(signal.SIGSTOP)
        time.sleep(FREEZE_S)
        stack.broker.send_signal(signal.SIGCONT)
        return f"broker frozen {FREEZE_S:.0f}s"
    raise ValueError(fault)


def _offline_diff(bundle: Any, lag: int, sample: dict[int, dict[int, float]], points: int,
                  final: int) -> float | None:
    import numpy as np

    from evaluation.detect import score_series
    from model.serving import serve

    calibrate = serve(bundle, lag).geometry.calibrate  # the bundle's per-series calibration, if it has one
    diffs = []
    for s, got in sample.items():
        if not got:
            continue
        values = np.array([value(s, i) for i in range(points)])
        want = calibrate(score_series(bundle.score_windows, values, bundle.window_size, bundle.stride, lag,
                                      bundle.normalizer))
        diffs += [abs(v - float(want[i])) for i, v in got.items() if i < final]
    return float(max(diffs)) if diffs else None


def _latency(result: Result, published_ms: Any, scored: Any, sent_ms: Any, lag: int, window: int) -> None:
    """Throughput and the latency of every score from the send of the point that made it final (point i of a
    series at score_lag L is final once its point max(i + L, W - 1) arrived: the first window finalizes all of
    its points) to its publish (the score's Kafka timestamp). `sent_ms`: when each point (series x point) was
    handed to the producer, epoch ms."""
    import numpy as np

    if sent_ms is None or not len(sent_ms) or not scored.any():
        return
    sent = np.asarray(sent_ms, dtype=np.float64)
    made_final_by = np.minimum(np.maximum(np.arange(published_ms.shape[1]) + lag, window - 1), sent.shape[1] - 1)
    waits = (published_ms - sent[:, made_final_by])[scored] / 1000
    # a score's Kafka timestamp is the worker's clock, the send time the soak's: never below 0
    waits = np.maximum(waits, 0.0)
    result.latency_p50_s, result.latency_p99_s = (float(v) for v in np.percentile(waits, [50, 99]))
    result.latency_max_s = float(waits.max())
    span = (published_ms[scored].max() - sent.min()) / 1000  # from the first point sent to the last score
    result.points_per_s = float(scored.sum() / span) if span > 0 else None
    final_at = sent[:, made_final_by][scored]
    result.recovery_s = []
    for at in result.faults_at_ms:
        near = (final_at >= at - 5000) & (final_at <= at + RECOVERY_WINDOW_S * 1000)
        result.recovery_s.append(float(waits[near].max()) if near.any() else None)


def _redis_used_memory_mb(url: str) -> float | None:
    import redis

    try:
        client = redis.Redis.from_url(url)
        return round(int(client.info("memory")["used_memory"]) / 2**20, 1)
    except redis.RedisError:
        return None


# ------------------------------------------------------------------------------------------ the command


@contextlib.contextmanager
def soak_stack(fsync: str, bootstrap: str | None = None) -> Iterator[Stack]:
    workdir = Path(tempfile.mkdtemp(prefix="anomalybert-soak-"))
    stack = Stack(fsync, workdir, external_bootstrap=bootstrap)
    try:
        stack.start()
        yield stack
    finally:
        stack.close()
        shutil.rmtree(workdir / "redis", ignore_errors=True)


def run_soak(plan: Plan, scenarios: list[str], log_dir: Path, say: Callable[[str], None] = print) -> list[Result]:
    from model.bundle import DEFAULT_BUNDLE_DIR

    model = plan.model or DEFAULT_BUNDLE_DIR
    results = []
    if plan.bootstrap and {"freeze", "all"} & set(scenarios):
        raise SoakError("the freeze and all scenarios stop the soak's own broker: leave out --bootstrap for them")
    with soak_stack(plan.fsync, plan.bootstrap) as stack:
        for scenario in scenarios:
            say(f"{scenario}: {plan.series} series x {plan.points} points at {plan.rate:.0f}/s, "
                f"{plan.workers} workers")
            results.append(run_scenario(stack, plan, scenario, model, log_dir, say))
    return results


def _scenarios(_ctx: Any, _param: Any, value: str) -> list[str]:
    out = [v.strip() for v in value.split(",") if v.strip()]
    unknown = [v for v in out if v not in SCENARIOS + EXTRA_SCENARIOS]
    if unknown or not out:
        raise click.BadParameter(f"choose from {', '.join(SCENARIOS + EXTRA_SCENARIOS)}; got {value!r}")
    return out


@click.command("soak")
@click.option("--scenarios", default=",".join(SCENARIOS), show_default=True, callback=_scenarios,
              metavar="S,S,..", help=f"Scenarios to run, in order: {', '.join(SCENARIOS + EXTRA_SCENARIOS)}.")
@click.option("--series", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--points", type=click.IntRange(min=2), default=200, show_default=True, help="Points per series.")
@click.option("--workers", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--partitions", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--rate", type=click.FloatRange(min=1), default=1000.0, show_default=True,
              help="Points/s sent (keep it below what the workers score, or the run measures a backlog).")
@click.option("--bad", type=click.IntRange(min=0), default=200, show_default=True,
              help="Bad messages in the bad-input and all scenarios.")
@click.option("--oversized", type=click.IntRange(min=0), default=3, show_default=True,
              help="Of the bad messages, this many of 700-900 KB.")
@click.option("--kills", type=click.IntRange(min=1), default=4, show_default=True,
              help="SIGKILLs in the kill scenario.")
@click.option("--fsync", type=click.Choice(["always", "everysec", "no"]), default="always", show_default=True,
              help="The soak's Redis appendfsync (docker-compose.yml ships always).")
@click.option("--model", type=click.Path(path_type=Path), default=None, metavar="BUNDLE",
              help="Bundle the workers serve [default: the shipped one].")
@click.option("--score-lag", type=click.IntRange(min=0), default=None, help="[default: the bundle's].")
@click.option("--max-batch", type=click.IntRange(min=1), default=256, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--bootstrap", default=None, metavar="HOST:PORT",
              help="Run against this broker (Apache Kafka, e.g. `docker compose up -d kafka`) instead of starting "
                   "the local one; each scenario uses fresh topics and a fresh group. Not with freeze or all.")
@click.option("--fetch-max-wait-ms", type=click.IntRange(min=0, max=60_000), default=500, show_default=True,
              help="The workers' kafka.fetch_max_wait_ms. The local broker (Tansu 0.6) returns nothing from a "
                   "partition it cannot list within this wait: at the workers' default 10 ms, from ~15,000 record "
                   "batches per partition on (docs/operations.md, Fault soak).")
@click.option("--linger-ms", type=click.IntRange(min=0, max=10_000), default=5, show_default=True,
              help="The soak's telemetry producer's linger (ms).")
@click.option("--log-level", type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"]), default="WARNING",
              show_default=True, help="The workers' log level (their logs go beside --output).")
@click.option("--output", type=click.Path(path_type=Path), default=Path("runs/soak.json"), show_default=True)
def soak(scenarios: list[str], output: Path, **options: Any) -> None:
    """Run the stream workers under faults (SIGKILL storm, join/leave churn, Redis kill -9, broker freeze, bad
    and oversized input) on a local broker and Redis of its own, and check that every point is scored
    exactly once and every bad message dead-lettered, reading the outputs with confluent-kafka.

    Exits 1 if any scenario lost or duplicated a point, missed a dead letter or dead-lettered a good point,
    saw a worker exit on its own, or scored differently from the bundle offline (repeated dead letters are
    counted: they are at-least-once).

    \b
    Examples:
      anomalybert soak
      anomalybert soak --scenarios all --series 100000 --points 24 --rate 4000
    """
    from rich.console import Console

    plan = Plan(**options)
    if plan.bootstrap and {"freeze", "all"} & set(scenarios):
        raise click.BadParameter("the freeze and all scenarios stop the soak's own broker; leave them out",
                                 param_hint="--bootstrap")
    # a SIGTERM (a CI timeout, `kill`) unwinds like Ctrl-C, so the workers, the broker and Redis are stopped
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    output.parent.mkdir(parents=True, exist_ok=True)
    log_dir = output.parent / f"{output.stem}-logs"
    console = Console(highlight=False)
    if not console.is_terminal:
        console = Console(width=180, highlight=False)
    results = run_soak(plan, scenarios, log_dir, say=console.print)
    print_table(console, results)
    output.write_text(json.dumps({"plan": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(plan).items()},
                                  "command": " ".join(sys.argv), "results": [asdict(r) | {"ok": r.ok}
                                                                              for r in results]}, indent=2))
    console.print(f"result written to {output}; worker logs in {log_dir}")
    if not all(r.ok for r in results):
        raise SystemExit(1)


def _letters(r: Result) -> str:
    """Bad messages dead-lettered exactly once, and what went wrong otherwise."""
    wrong = [f"{n} {what}" for n, what in ((r.dead_letters_missing, "missing"),
                                            (r.dead_letters_duplicated, "repeated"),
                                            (r.dead_letters_unexpected, "of good points")) if n]
    return str(r.dead_lettered) + (f" ({', '.join(wrong)})" if wrong else "")


def print_table(console: Any, results: list[Result]) -> None:
    from rich.table import Table

    t = Table(title="Soak: every point scored exactly once, every bad message dead-lettered")
    for c in ("scenario", "series", "points", "scored", "lost", "duplicated", "bad sent", "dead-lettered",
              "crashes", "offline |diff|", "points/s", "latency p50 / p99 / max s", "recovery s", "Redis MB",
              "verdict"):
        t.add_column(c, justify="left" if c == "scenario" else "right")
    for r in results:
        t.add_row(r.scenario, f"{r.series:,}", f"{r.series * r.points:,}", f"{r.scored:,}", str(r.lost),
                  str(r.duplicated), str(r.bad_sent),
                  _letters(r),
                  str(r.crashes), "-" if r.offline_max_abs_diff is None else f"{r.offline_max_abs_diff:.1e}",
                  "-" if r.points_per_s is None else f"{r.points_per_s:,.0f}",
                  "-" if r.latency_max_s is None else
                  f"{r.latency_p50_s:.2f} / {r.latency_p99_s:.1f} / {r.latency_max_s:.1f}",
                  ", ".join("-" if v is None else f"{v:.1f}" for v in r.recovery_s) or "-",
                  "-" if r.redis_used_memory_mb is None else f"{r.redis_used_memory_mb:,.1f}",
                  "ok" if r.ok else "FAILED")
    console.print(t)


COMMANDS = [soak]
