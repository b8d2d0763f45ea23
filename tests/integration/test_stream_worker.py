"""The stream worker end to end: real broker, real Redis, `python -m stream worker` subprocesses.

Offline reference: make_windows + Bundle.score_windows + aggregate with the same bundle and lag, i.e.
what the `detect` path computes.
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis

from model.bundle import DEFAULT_BUNDLE_DIR, load_bundle
from model.serving import serve
from model.windows import aggregate, make_windows
from stream.alerts import AlertPolicy, AlertState, update
from tests.stream_support import (
    Names,
    Worker,
    default_bundle_exists,
    json_messages,
    point,
    produce,
    random_bundle,
    read_topic,
    spike_bundle,
)
from tools.localstack import free_port

pytestmark = pytest.mark.integration

T0 = 1_732_600_000_000


def offline_scores(bundle_dir: Path, values: np.ndarray, lag: int) -> np.ndarray:
    bundle = load_bundle(bundle_dir)
    w, s = bundle.window_size, bundle.stride
    windows = make_windows(bundle.normalizer.prepare_series(values), w, s)  # series scope: point by point first
    scores, _ = aggregate(bundle.score_windows(windows), len(values), w, s, lag)
    return serve(bundle, lag).geometry.calibrate(scores)  # what is served: through the bundle's calibration


def served_lag(bundle: Any) -> int:
    """The lag a worker with default settings serves the bundle with: its calibrated one, else W-1."""
    return serve(bundle).lag


def offline_alerts(scores: np.ndarray, ts: list[int], policy: AlertPolicy) -> list[tuple[str, int]]:
    st, out = AlertState(), []
    for t, sc in zip(ts, scores, strict=False):
        ev = update(st, policy, t, float(sc))
        if ev is not None:
            out.append((ev.state, ev.opened_ts))
    return out


def synthetic(n: int, seed: int, anomaly_at: int | None = None, channels: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    base = np.sin(2 * np.pi * t / 24)[:, None] + 0.3 * rng.normal(size=(n, channels))
    if anomaly_at is not None:
        base[anomaly_at : anomaly_at + 3, min(1, channels - 1)] += 25.0  # deliberately large
    return base


def by_series(messages: list[Any], series_id: str) -> list[dict[str, Any]]:
    return [m for m in messages if isinstance(m, dict) and m.get("series_id") == series_id]


def assert_worker_alive(*workers: Worker) -> None:
    for w in workers:
        assert w.alive(), f"worker died:\n{w.log()}"


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bundles")
    return {
        "replay": DEFAULT_BUNDLE_DIR if default_bundle_exists() else random_bundle(root / "random1"),
        "tiny": random_bundle(root / "tiny1"),
        "spike3": spike_bundle(root / "spike3", channels=3),
    }


@pytest.fixture(scope="module")
def main_worker(services: Any, bundles: dict[str, Path], tmp_path_factory: pytest.TempPathFactory):
    """One single-channel worker shared by the replay, dead-letter and duplicate tests (own topics)."""
    import uuid

    names = Names(uuid.uuid4().hex[:10])
    port = free_port()
    env = names.env(
        services,
        bundles["replay"],
        ANOMALYBERT_WORKER__ID="main",
        ANOMALYBERT_WORKER__WEB_ENABLED="true",
        ANOMALYBERT_WORKER__WEB_PORT=port,
        ANOMALYBERT_WORKER__WEB_BIND="127.0.0.1",
        ANOMALYBERT_ALERTS__CLOSE_RATIO="1.0",
        ANOMALYBERT_ALERTS__COOLDOWN_POINTS="5",
    )
    worker = Worker(env, tmp_path_factory.mktemp("logs") / "main.log").start()
    yield names, worker, port
    worker.stop()


def test_replay_scores_every_point_once_equal_to_offline(
    services: Any, bundles: dict[str, Path], main_worker: Any
) -> None:
    names, worker, _ = main_worker
    bundle = load_bundle(bundles["replay"])
    lag = served_lag(bundle)
    n = 4 * bundle.window_size + 200  # the anomaly after a calibrated bundle's min_history (200) points
    at = 3 * n // 4
    values = synthetic(n, seed=1, anomaly_at=at)[:, 0]
    ts = [T0 + 1000 * i for i in range(n)]
    expected = offline_scores(bundles["replay"], values, lag)
    final = n - lag
    # A threshold override (Redis key) just under the offline peak near the anomaly makes an alert certain
    # whatever the bundle's weights; the exact open/close sequence is then simulated offline.
    peak = float(np.max(expected[at - 2 : at + 5]))
    assert peak > 0
    thr = round(peak - 1e-4, 6)
    sid = f"replay-{names.token}"
    redis.Redis.from_url(services.redis_url).set(f"{names.prefix}{{{sid}}}:thr", repr(thr))

    asyncio.run(
        produce(
            services.kafka_bootstrap,
            names.topics["telemetry"],
            json_messages(point(sid, t, float(v)) for t, v in zip(ts, values, strict=True)),
        )
    )
    scores = by_series(
        asyncio.run(
            read_topic(
                services.kafka_bootstrap,
                names.topics["scores"],
                lambda m: len(by_series(m, sid)) >= final,
                timeout=90,
            )
        ),
        sid,
    )
    assert_worker_alive(worker)

    assert [m["ts"] for m in scores] == ts[:final], "one score per point, in order"
    got = np.array([m["score"] for m in scores])
    np.testing.assert_allclose(got, expected[:final], atol=1e-5, rtol=0)
    assert all(m["threshold"] == thr and m["is_anomaly"] == (m["score"] >= thr) for m in scores)
    assert {m["model_version"] for m in scores} == {bundle.version}
    assert [m["n_windows"] for m in scores][-1] == lag + 1  # windows ending at most `lag` points later

    want = offline_alerts(got, ts, AlertPolicy(thr, 1, 5, 1.0))
    alerts = by_series(
        asyncio.run(
            read_topic(
                services.kafka_bootstrap,
                names.topics["alerts"],
                lambda m: len(by_series(m, sid)) >= len(want),
                timeout=30,
            )
        ),
        sid,
    )
    assert [(a["state"], a["opened_ts"]) for a in alerts] == want
    assert want and want[0][0] == "open"
    assert all(a["alert_id"] == f"{sid}:{a['opened_ts']}" for a in alerts)


def _malformed(sid: str, rng: random.Random) -> list[tuple[bytes | None, bytes]]:
    """Many kinds of bad telemetry (seeded fuzz plus the named cases)."""
    good = {"series_id": sid, "ts": T0, "value": 1.0}
    cases: list[Any] = [
        b"",
        b"{",
        b"not json",
        b"\xff\xfe\x00garbage",
        b"[1, 2, 3]",
        b"null",
        b"42",
        b'"text"',
        b'{"series_id": "x", "ts": 1, "value": NaN}',
        b'{"series_id": "x", "ts": 1, "value": Infinity}',
        b'{"series_id": "x", "ts": 1, "value": -Infinity}',
        b'{"series_id": "x", "ts": 1, "value": 1e999}',
        {"ts": T0, "value": 1.0},
        {"series_id": sid, "value": 1.0},
        {"series_id": sid, "ts": T0},
        {"series_id": "", "ts": T0, "value": 1.0},
        {"series_id": "x" * 300, "ts": T0, "value": 1.0},
        {"series_id": "bad\nid", "ts": T0, "value": 1.0},
        {"series_id": sid, "ts": 1.5, "value": 1.0},
        {"series_id": sid, "ts": "yesterday", "value": 1.0},
        {"series_id": sid, "ts": "2026-11-26T03:00:00", "value": 1.0},
        {"series_id": sid, "ts": True, "value": 1.0},
        {"series_id": sid, "ts": T0, "value": "1.0"},
        {"series_id": sid, "ts": T0, "value": None},
        {"series_id": sid, "ts": T0, "value": [1.0]},
        {"series_id": sid, "ts": T0, "values": [1.0, 2.0]},
        {"series_id": sid, "ts": T0, "values": []},
        {"series_id": sid, "ts": T0, "value": 1.0, "values": [1.0]},
        {"series_id": 7, "ts": T0, "value": 1.0},
        {"series_id": sid, "ts": 2**70, "value": 1.0},
        {"series_id": sid, "ts": T0, "value": False},
    ]
    out: list[tuple[bytes | None, bytes]] = []
    for c in cases:
        out.append((None, c if isinstance(c, bytes) else json.dumps(c).encode()))
    bad_values = {
        "series_id": [None, [], {}, "", 5, "x" * 300, "tab\there"],
        "ts": [None, [], {}, "", "NaN", 1.5, True, "2026-13-45T00:00:00Z"],
        "value": [None, [], {}, "", "NaN", True, [1.0], {"v": 1}, "1"],
    }
    for _ in range(40):  # seeded fuzz: a valid message with one field replaced by a bad value
        msg = dict(good)
        field = rng.choice(sorted(bad_values))
        msg[field] = rng.choice(bad_values[field])
        out.append((None, json.dumps(msg).encode()))
    for _ in range(20):  # random bytes that are not JSON objects
        out.append((None, bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40))) + b"\x00"))
    out.append((b"another-key", json.dumps(good).encode()))  # key must equal series_id
    return out


def test_malformed_input_goes_to_the_dead_letter_topic(services: Any, main_worker: Any) -> None:
    names, worker, _ = main_worker
    sid = f"dlq-{names.token}"
    bad = _malformed(sid, random.Random(7))
    window = load_bundle(Path(worker.env["ANOMALYBERT_MODEL__PATH"])).window_size
    good = [point(sid, T0 + i, float(np.sin(i))) for i in range(window + 5)]
    asyncio.run(produce(services.kafka_bootstrap, names.topics["telemetry"], bad))
    asyncio.run(produce(services.kafka_bootstrap, names.topics["telemetry"], json_messages(good)))

    dead = asyncio.run(
        read_topic(services.kafka_bootstrap, names.topics["dlq"], lambda m: len(m) >= len(bad), timeout=60)
    )
    assert sorted(base64.b64decode(d["value_b64"]) for d in dead) == sorted(v for _, v in bad)
    assert all(d["reason"] and d["code"] and d["topic"] == names.topics["telemetry"] and d["offset"] >= 0 for d in dead)
    codes = {d["code"] for d in dead}
    assert {
        "empty",
        "invalid_json",
        "invalid_field",
        "series_id_too_long",
        "channels_mismatch",
        "key_mismatch",
    } <= codes
    # the worker carried on: the good points after the bad ones are scored
    scores = asyncio.run(
        read_topic(
            services.kafka_bootstrap,
            names.topics["scores"],
            lambda m: len(by_series(m, sid)) >= 6,
            timeout=60,
        )
    )
    assert len(by_series(scores, sid)) >= 6
    assert_worker_alive(worker)


def test_duplicates_and_late_points_are_ignored_and_counted(services: Any, main_worker: Any) -> None:
    names, worker, port = main_worker
    sid = f"dup-{names.token}"
    bundle = load_bundle(Path(worker.env["ANOMALYBERT_MODEL__PATH"]))
    window, final = bundle.window_size, 2 * bundle.window_size - served_lag(bundle)
    n = 2 * window
    pts = [point(sid, T0 + 10 * i, float(np.cos(i))) for i in range(n)]
    noisy = []
    for i, p in enumerate(pts):
        noisy.append(p)
        if i % 7 == 3:
            noisy.append(dict(p, value=99.0))  # duplicate ts with another value: must not be applied
        if i % 11 == 5:
            noisy.append(dict(pts[i - 3], value=-99.0))  # late
    before = _metric(port, "anomalybert_points_late_or_duplicate_total")
    asyncio.run(produce(services.kafka_bootstrap, names.topics["telemetry"], json_messages(noisy)))
    scores = by_series(
        asyncio.run(
            read_topic(
                services.kafka_bootstrap,
                names.topics["scores"],
                lambda m: len(by_series(m, sid)) >= final,
                timeout=60,
            )
        ),
        sid,
    )
    assert [m["ts"] for m in scores] == [p["ts"] for p in pts[:final]]
    assert all(abs(m["value"]) < 2 for m in scores)
    assert _metric(port, "anomalybert_points_late_or_duplicate_total") - before == len(noisy) - n


def _metric(port: int, name: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics:\n{text[:2000]}")


def test_multichannel_scores_alerts_and_channel_mismatch(
    services: Any, unique: str, bundles: dict[str, Path], tmp_path: Path
) -> None:
    names = Names(unique)
    worker = Worker(
        names.env(
            services,
            bundles["spike3"],
            ANOMALYBERT_WORKER__ID="multi",
            ANOMALYBERT_ALERTS__MIN_POINTS="2",
            ANOMALYBERT_ALERTS__COOLDOWN_POINTS="4",
        ),
        tmp_path / "multi.log",
    ).start()
    try:
        n, at, w = 120, 60, 16
        values = synthetic(n, seed=3, anomaly_at=at, channels=3)
        ts = [T0 + 1000 * i for i in range(n)]
        sid = f"pump-{unique}"
        msgs = json_messages(point(sid, t, [float(x) for x in v]) for t, v in zip(ts, values, strict=True))
        wrong = json_messages([point(sid, T0 + 10**6, [1.0, 2.0]), point(sid, T0 + 10**6 + 1, 1.0)])
        asyncio.run(produce(services.kafka_bootstrap, names.topics["telemetry"], msgs[:50] + wrong + msgs[50:]))

        final = n - (w - 1)
        scores = by_series(
            asyncio.run(
                read_topic(
                    services.kafka_bootstrap,
                    names.topics["scores"],
                    lambda m: len(by_series(m, sid)) >= final,
                    timeout=90,
                )
            ),
            sid,
        )
        assert [m["ts"] for m in scores] == ts[:final]
        assert all(len(m["values"]) == 3 and "value" not in m for m in scores)
        expected = offline_scores(bundles["spike3"], values, w - 1)
        np.testing.assert_allclose([m["score"] for m in scores], expected[:final], atol=1e-5, rtol=0)

        alerts = by_series(
            asyncio.run(
                read_topic(
                    services.kafka_bootstrap,
                    names.topics["alerts"],
                    lambda m: len(by_series(m, sid)) >= 2,
                    timeout=30,
                )
            ),
            sid,
        )
        assert [a["state"] for a in alerts] == ["open", "closed"]
        opened, closed = alerts
        assert opened["opened_ts"] == ts[at] and opened["alert_id"] == f"{sid}:{ts[at]}"
        assert ts[at] <= opened["peak_ts"] <= ts[at + 2] and opened["peak_score"] > 0.99
        assert ts[at + 2] < closed["closed_ts"] <= ts[at + 2 + 4]

        dead = asyncio.run(read_topic(services.kafka_bootstrap, names.topics["dlq"], lambda m: len(m) >= 2, timeout=30))
        assert sorted(d["code"] for d in dead) == ["channels_mismatch", "channels_mismatch"]
        assert_worker_alive(worker)
    finally:
        worker.stop()


class Counter:
    """Consumes a topic in the background so a test can act when output reaches a given count."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.bootstrap, self.topic = bootstrap, topic
        self.messages: list[dict[str, Any]] = []
        self._task: asyncio.Task | None = None

    async def __aenter__(self) -> Counter:
        from aiokafka import AIOKafkaConsumer

        self._consumer = AIOKafkaConsumer(
            self.topic,
            bootstrap_servers=self.bootstrap,
            group_id=None,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        await self._consumer.start()
        self._task = asyncio.create_task(self._run())
        return self

    async def _run(self) -> None:
        async for r in self._consumer:
            self.messages.append(json.loads(r.value))

    async def wait_for(self, count: int, workers: list[Worker], timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while len(self.messages) < count:
            assert time.monotonic() < deadline, f"only {len(self.messages)} of {count} scores:\n" + "\n".join(
                w.log() for w in workers
            )
            await asyncio.sleep(0.05)

    async def __aexit__(self, *exc: Any) -> None:
        assert self._task is not None
        self._task.cancel()
        await self._consumer.stop()


def _series_points(unique: str, n_series: int, n: int) -> tuple[list[tuple[bytes, bytes]], int]:
    """Round-robin points of several series, as they would interleave in production."""
    msgs = []
    for i in range(n):
        for s in range(n_series):
            msgs.extend(json_messages([point(f"s{s}-{unique}", T0 + 1000 * i, float(np.sin(i / 3 + s)))]))
    return msgs, n_series


def _assert_exactly_once(messages: list[dict[str, Any]], unique: str, n_series: int, final: int) -> None:
    seen: dict[tuple[str, int], int] = {}
    for m in messages:
        seen[(m["series_id"], m["ts"])] = seen.get((m["series_id"], m["ts"]), 0) + 1
    dupes = {k: c for k, c in seen.items() if c > 1}
    assert not dupes, f"{len(dupes)} points published more than once, e.g. {list(dupes.items())[:5]}"
    want = {(f"s{s}-{unique}", T0 + 1000 * i) for s in range(n_series) for i in range(final)}
    assert set(seen) == want, f"missing {len(want - set(seen))}, unexpected {len(set(seen) - want)}"


@pytest.mark.parametrize("consumer", ["aiokafka", "faust"])
async def test_sigkill_and_restart_scores_every_point_exactly_once(
    services: Any, unique: str, bundles: dict[str, Path], tmp_path: Path, consumer: str
) -> None:
    names = Names(unique)
    n_series, n = 6, 400
    msgs, _ = _series_points(unique, n_series, n)
    final = n - 15
    env = names.env(services, bundles["tiny"], ANOMALYBERT_WORKER__ID="killme", ANOMALYBERT_SCORING__MAX_BATCH="40",
                    ANOMALYBERT_KAFKA__CONSUMER=consumer)
    workers: list[Worker] = []
    async with Counter(services.kafka_bootstrap, names.topics["scores"]) as out:
        # input keeps arriving while the worker is killed (SIGKILL: no shutdown, no commit, no clean-up)
        producer = asyncio.create_task(_paced(services.kafka_bootstrap, names.topics["telemetry"], msgs, 20.0))
        for _ in range(3):  # each worker gets going, publishes some scores, and dies mid-stream
            w = Worker(env, tmp_path / f"w{len(workers)}.log").start()
            workers.append(w)
            await w.wait_ready()
            # A worker that joins after a long rebalance may catch up on nearly all of the input at once,
            # before this test even looks: then it dies right after.
            await out.wait_for(min(len(out.messages) + 50, n_series * final), workers)
            w.kill()
        # the last one under another id: it must wait for the dead worker's outbox claims to expire
        workers.append(Worker(env | {"ANOMALYBERT_WORKER__ID": "successor"}, tmp_path / "last.log").start())
        await producer
        await out.wait_for(n_series * final, workers)
        await asyncio.sleep(3)  # room for duplicates to show up
        assert_worker_alive(workers[-1])
        workers[-1].stop()
    _assert_exactly_once(out.messages, unique, n_series, final)


@pytest.mark.parametrize("consumer", ["aiokafka", "faust"])
async def test_partitions_move_to_a_second_worker_without_loss_or_duplicates(
    services: Any, unique: str, bundles: dict[str, Path], tmp_path: Path, consumer: str
) -> None:
    names = Names(unique)
    n_series, n = 8, 300
    msgs, _ = _series_points(unique, n_series, n)
    final = n - 15
    env = names.env(services, bundles["tiny"], ANOMALYBERT_SCORING__MAX_BATCH="40",
                    ANOMALYBERT_KAFKA__CONSUMER=consumer)
    first = Worker(env | {"ANOMALYBERT_WORKER__ID": "first"}, tmp_path / "first.log").start()
    second = Worker(env | {"ANOMALYBERT_WORKER__ID": "second"}, tmp_path / "second.log")
    async with Counter(services.kafka_bootstrap, names.topics["scores"]) as out:
        producer = asyncio.create_task(_paced(services.kafka_bootstrap, names.topics["telemetry"], msgs, 12.0))
        await out.wait_for(int(0.2 * n_series * final), [first])
        second.start()
        await asyncio.sleep(8)  # let the group rebalance and both work
        assert first.stop() == 0, first.log()  # graceful: partitions move to the second worker
        await producer
        await out.wait_for(n_series * final, [first, second])
        await asyncio.sleep(3)
        assert_worker_alive(second)
        second.stop()
    _assert_exactly_once(out.messages, unique, n_series, final)
    assert "Setting newly assigned partitions" in second.log()


async def test_a_redis_stall_longer_than_its_timeout_loses_and_repeats_nothing(
    services: Any, unique: str, bundles: dict[str, Path], tmp_path: Path
) -> None:
    """Redis stops answering mid-stream (CLIENT PAUSE) for longer than the worker's Redis timeout: the batch
    in flight times out and is retried with backoff, nothing is committed past it, and once Redis answers
    again every point is scored exactly once."""
    names = Names(unique)
    n_series, n = 4, 200
    msgs, _ = _series_points(unique, n_series, n)
    final = n - 15
    env = names.env(services, bundles["tiny"], ANOMALYBERT_SCORING__MAX_BATCH="40",
                    ANOMALYBERT_REDIS__SOCKET_TIMEOUT_S="1", ANOMALYBERT_WORKER__RETRY_BACKOFF_S="0.2")
    worker = Worker(env | {"ANOMALYBERT_WORKER__ID": "stalled"}, tmp_path / "stalled.log").start()
    admin = redis.Redis.from_url(services.redis_url)
    try:
        async with Counter(services.kafka_bootstrap, names.topics["scores"]) as out:
            producer = asyncio.create_task(_paced(services.kafka_bootstrap, names.topics["telemetry"], msgs, 8.0))
            await out.wait_for(int(0.2 * n_series * final), [worker])
            admin.execute_command("CLIENT", "PAUSE", 3000, "ALL")  # every client's commands wait 3 s
            await producer
            await out.wait_for(n_series * final, [worker])
            await asyncio.sleep(2)  # room for duplicates to show up
            assert_worker_alive(worker)
    finally:
        admin.execute_command("CLIENT", "UNPAUSE")
        admin.close()
        worker.stop()
    _assert_exactly_once(out.messages, unique, n_series, final)
    assert "failed, retrying" in worker.log(), "the stall did not reach the worker's retry path"


async def _paced(bootstrap: str, topic: str, msgs: list[tuple[bytes, bytes]], seconds: float) -> None:
    chunks = 24
    size = -(-len(msgs) // chunks)
    for i in range(0, len(msgs), size):
        await produce(bootstrap, topic, msgs[i : i + size])
        await asyncio.sleep(seconds / chunks)


async def test_on_a_redis_cluster_sigkill_and_restart_score_every_point_exactly_once(
    services: Any, redis_cluster_url: str, unique: str, bundles: dict[str, Path], tmp_path: Path
) -> None:
    """The worker against a local 3-node Redis Cluster (`redis+cluster://`): series spread over the slots of
    every node, two SIGKILLs mid-stream and a successor; every point scored once, as offline."""
    import uuid

    from redis.asyncio.cluster import RedisCluster

    n_series, n = 6, 300
    cluster = RedisCluster.from_url(redis_cluster_url.replace("+cluster", ""))
    await cluster.initialize()

    def nodes_of(token: str) -> set[int]:
        return {cluster.get_node_from_key(f"t{token}:{{s{s}-{token}}}:st").port for s in range(n_series)}

    # Series ids that differ in one character hash to nearby slots: pick a token whose series span 2+ nodes.
    while len(nodes_of(unique)) < 2:
        unique = uuid.uuid4().hex[:10]
    names = Names(unique)
    msgs, _ = _series_points(unique, n_series, n)
    final = n - 15
    env = names.env(services, bundles["tiny"], ANOMALYBERT_WORKER__ID="cluster", ANOMALYBERT_SCORING__MAX_BATCH="40",
                    ANOMALYBERT_REDIS__URL=redis_cluster_url)
    workers: list[Worker] = []
    async with Counter(services.kafka_bootstrap, names.topics["scores"]) as out:
        producer = asyncio.create_task(_paced(services.kafka_bootstrap, names.topics["telemetry"], msgs, 12.0))
        for _ in range(2):
            w = Worker(env, tmp_path / f"c{len(workers)}.log").start()
            workers.append(w)
            await w.wait_ready()
            await out.wait_for(min(len(out.messages) + 50, n_series * final), workers)
            w.kill()
        workers.append(Worker(env | {"ANOMALYBERT_WORKER__ID": "cluster-successor"}, tmp_path / "c-last.log").start())
        await producer
        await out.wait_for(n_series * final, workers)
        await asyncio.sleep(3)
        assert_worker_alive(workers[-1])
        workers[-1].stop()
    _assert_exactly_once(out.messages, unique, n_series, final)
    sid = f"s0-{unique}"
    got = [m["score"] for m in sorted(by_series(out.messages, sid), key=lambda m: m["ts"])]
    expected = offline_scores(bundles["tiny"], np.sin(np.arange(n) / 3), 15)[:final]
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)
    try:
        assert names.prefix == f"t{unique}:" and len(nodes_of(unique)) >= 2  # the states live on several nodes
        assert all([await cluster.exists(f"{names.prefix}{{s{s}-{unique}}}:st") for s in range(n_series)])
    finally:
        await cluster.aclose()


async def test_redis_killed_and_restarted_at_the_shipped_durability_loses_and_repeats_nothing(
    services: Any, unique: str, bundles: dict[str, Path], tmp_path: Path
) -> None:
    """Redis (its own server, with the flags docker-compose.yml ships) is SIGKILLed mid-stream and restarted
    from its append-only file two seconds later: every point is scored exactly once, and as offline (the
    series' states came back whole)."""
    import shutil
    import signal
    import subprocess

    from tests.stream_support import shipped_redis_flags
    from tools.localstack import _cluster_ports, redis_answers

    flags = shipped_redis_flags()
    assert "--appendonly" in flags and flags[flags.index("--appendonly") + 1] == "yes"
    port = _cluster_ports(1)[0]
    data = tmp_path / "redis-data"
    data.mkdir()

    def start() -> subprocess.Popen:
        proc = subprocess.Popen([shutil.which("redis-server") or "redis-server", *flags, "--port", str(port),
                                 "--bind", "127.0.0.1", "--dir", str(data)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while not redis_answers("127.0.0.1", port):
            assert proc.poll() is None and time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)
        return proc

    names = Names(unique)
    n_series, n = 6, 300
    msgs, _ = _series_points(unique, n_series, n)
    final = n - 15
    redis_proc = start()
    env = names.env(services, bundles["tiny"], ANOMALYBERT_WORKER__ID="redis-kill",
                    ANOMALYBERT_SCORING__MAX_BATCH="40", ANOMALYBERT_REDIS__URL=f"redis://127.0.0.1:{port}/0",
                    ANOMALYBERT_REDIS__SOCKET_TIMEOUT_S="2")
    worker = Worker(env, tmp_path / "w.log").start()
    try:
        async with Counter(services.kafka_bootstrap, names.topics["scores"]) as out:
            producer = asyncio.create_task(_paced(services.kafka_bootstrap, names.topics["telemetry"], msgs, 12.0))
            await out.wait_for(n_series * final // 3, [worker])
            redis_proc.send_signal(signal.SIGKILL)  # no shutdown: what is not in the append-only file is gone
            redis_proc.wait(10)
            await asyncio.sleep(2.0)
            redis_proc = start()
            await producer
            await out.wait_for(n_series * final, [worker])
            await asyncio.sleep(3)
            assert_worker_alive(worker)
    finally:
        worker.stop()
        redis_proc.terminate()
        redis_proc.wait(10)
    _assert_exactly_once(out.messages, unique, n_series, final)
    for s in range(n_series):
        got = [m["score"] for m in sorted(by_series(out.messages, f"s{s}-{unique}"), key=lambda m: m["ts"])]
        expected = offline_scores(bundles["tiny"], np.sin(np.arange(n) / 3 + s), 15)[:final]
        np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)
    assert "retrying" in worker.log()  # the worker did meet the outage
