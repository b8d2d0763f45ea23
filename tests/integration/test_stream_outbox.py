"""The outbox against real Redis and the real broker: compare-and-set, claims, and the read-back that closes
the crash window between the broker's acknowledgement and the outbox delete."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from stream.agents import send_batch_with
from stream.kafka import PartitionReader, ensure_topics
from stream.metrics import Metrics
from stream.publish import SCORE, Publisher
from stream.settings import KafkaSettings, RedisSettings, TopicNames
from stream.store import Store, Write, connect
from tests.stream_support import read_topic

pytestmark = pytest.mark.integration


class Node:
    """One worker's outbox machinery (Store + Publisher) with its own producer."""

    def __init__(self, services: Any, unique: str, worker_id: str, incarnation: str, claim_ms: int = 60_000,
                 batched: bool = False):
        self.kafka = KafkaSettings(
            bootstrap=services.kafka_bootstrap,
            topics=TopicNames(
                telemetry=f"tel-{unique}",
                scores=f"scores-{unique}",
                alerts=f"alerts-{unique}",
                dlq=f"dlq-{unique}",
                model_updates=f"mu-{unique}",
            ),
            partitions=3,
        )
        self.redis_cfg = RedisSettings(url=services.redis_url, key_prefix=f"t{unique}:")
        self.worker_id, self.incarnation, self.claim_ms = worker_id, incarnation, claim_ms
        self.sent: list[tuple[str, bytes]] = []
        self.batched = batched  # publish through record batches (`send_batch`), as the worker does

    async def __aenter__(self) -> Node:
        t = self.kafka.topics
        partitions = await ensure_topics(self.kafka, [t.telemetry, t.scores, t.alerts, t.dlq, t.model_updates])
        self.producer = AIOKafkaProducer(bootstrap_servers=self.kafka.bootstrap, acks="all")
        await self.producer.start()
        self.redis = connect(self.redis_cfg)
        self.store = Store(self.redis, self.redis_cfg, self.worker_id, self.incarnation, self.claim_ms)
        self.reader = PartitionReader(self.kafka)
        self.publisher = Publisher(self.store, self.send, self.reader, t, partitions, Metrics(),
                                   self.send_batch if self.batched else None)
        await self.publisher.start()
        return self

    async def send(self, topic: str, key: bytes, value: bytes, partition: int) -> Any:
        self.sent.append((topic, value))
        fut = await self.producer.send(topic, value=value, key=key, partition=partition)

        async def offset() -> int:
            return (await fut).offset

        return offset()

    async def send_batch(self, topic: str, partition: int, records: list[tuple[bytes, bytes]]) -> Any:
        self.sent.extend((topic, value) for _, value in records)
        return await send_batch_with(self.producer, topic, partition, records)

    async def __aexit__(self, *exc: Any) -> None:
        await self.reader.close()
        await self.producer.stop()
        await self.redis.aclose()


def score_entry(sid: str, ts: int) -> bytes:
    return (
        SCORE
        + json.dumps(
            {
                "series_id": sid,
                "ts": ts,
                "value": 1.0,
                "score": 0.5,
                "n_windows": 1,
                "is_anomaly": False,
                "threshold": 0.5,
                "model_version": "v",
            },
            separators=(",", ":"),
        ).encode()
    )


def token(n: int) -> bytes:
    from stream.state import token as t

    return t(n)


async def test_compare_and_set_lets_only_one_writer_apply(services: Any, unique: str) -> None:
    async with Node(services, unique, "a", "1") as a, Node(services, unique, "b", "1") as b:
        sid = "cas"
        first = await a.store.save([Write(sid, b"", token(5) + b"A", [], 0)])
        assert first[sid].written
        lost = await b.store.save([Write(sid, b"", token(5) + b"B", [], 0)])  # b also thought it was new
        assert not lost[sid].written
        stale = await b.store.save([Write(sid, token(4), token(9) + b"B", [], 0)])
        assert not stale[sid].written
        ok = await b.store.save([Write(sid, token(5), token(9) + b"B", [], 0)])
        assert ok[sid].written
        loaded = await a.store.load([sid])
        assert loaded[sid].blob == token(9) + b"B"


async def test_a_live_claim_blocks_other_workers_until_it_expires(services: Any, unique: str) -> None:
    async with Node(services, unique, "a", "1", claim_ms=400) as a, Node(services, unique, "b", "1") as b:
        sid = "claimed"
        ra = await a.store.save([Write(sid, b"", token(1), [score_entry(sid, 1)], 0, a.publisher.marks(sid))])
        assert ra[sid].claimed == 1 and ra[sid].entries == (score_entry(sid, 1),)
        rb = await b.store.save([Write(sid, token(1), token(2), [score_entry(sid, 2)], 0, b.publisher.marks(sid))])
        assert rb[sid].written and rb[sid].claimed == -1  # a holds the claim: b must not publish
        await asyncio.sleep(0.5)
        rc = await b.store.claim({sid: b.publisher.marks(sid)})
        assert rc[sid].claimed == 1 and rc[sid].prev_marks is not None
        assert rc[sid].entries == (score_entry(sid, 1), score_entry(sid, 2))  # oldest first


@pytest.mark.parametrize("batched", [False, True], ids=["one-by-one", "batched"])
@pytest.mark.parametrize("restart_as", ["same-id", "other-id"])
async def test_crash_after_ack_before_delete_publishes_nothing_twice(
    services: Any, unique: str, restart_as: str, batched: bool
) -> None:
    sids = [f"s{i}" for i in range(5)]
    async with Node(services, unique, "w", "first", claim_ms=300, batched=batched) as first:
        # some traffic first, so marks are past offset 0
        for sid in sids:
            res = await first.store.save(
                [Write(sid, b"", token(1), [score_entry(sid, 0)], 0, first.publisher.marks(sid))]
            )
            await first.publisher.publish(res, {sid: 0})
        writes = [
            Write(
                sid,
                token(1),
                token(4),
                [score_entry(sid, t) for t in (1, 2, 3)],
                0,
                first.publisher.marks(sid),
            )
            for sid in sids
        ]
        res = await first.store.save(writes)
        # "crash" after the broker acknowledged but before the outbox delete: publish without release
        original = first.store.release

        async def no_release(published: dict[str, int]) -> dict[str, int]:
            raise ConnectionError("killed")

        first.store.release = no_release  # type: ignore[method-assign]
        with pytest.raises(ConnectionError):
            await first.publisher.publish(res, {sid: 0 for sid in sids})
        first.store.release = original  # type: ignore[method-assign]

    await asyncio.sleep(0.4)  # the dead worker's claim expires (needed only for another worker id)
    worker_id = "w" if restart_as == "same-id" else "other"
    async with Node(services, unique, worker_id, "second", batched=batched) as second:
        res = await second.store.save(
            [Write(sid, token(4), token(5), [score_entry(sid, 4)], 0, second.publisher.marks(sid)) for sid in sids]
        )
        assert all(r.claimed == 1 and r.prev_marks for r in res.values())
        await second.publisher.publish(res, {sid: 0 for sid in sids})
        assert second.publisher.metrics.readback_skipped._value.get() == 3 * len(sids)
        assert await second.redis.smembers(second.store.index_key(0)) == set()

    msgs = await read_topic(
        services.kafka_bootstrap,
        f"scores-{unique}",
        lambda m: len(m) >= 5 * len(sids),
        timeout=20,
        settle=1.0,
    )
    pairs = sorted((m["series_id"], m["ts"]) for m in msgs)
    assert pairs == sorted((sid, t) for sid in sids for t in range(5))


async def test_redis_bytes_per_series_single_channel_w64(services: Any, unique: str) -> None:
    """What one steady-state series costs in Redis (issue 4 measures this at scale)."""
    import numpy as np

    from model.serving import Geometry
    from stream.state import SeriesState

    state = SeriesState(Geometry(64, 1, 63, 1))
    step = state.push(1_732_600_000_000 + 1000 * np.arange(300), np.random.default_rng(0).normal(size=300))
    state.apply(step, np.full((len(step.windows), 64), 0.5, np.float32))
    async with Node(services, unique, "a", "1") as a:
        sid = "web-01/cpu"
        await a.store.save([Write(sid, b"", state.encode(), [], 0)])
        used = await a.redis.memory_usage(a.store.key(sid, "st"))
        assert used < 2048, used


async def test_record_batches_keep_the_order_and_give_each_record_its_offset(services: Any, unique: str) -> None:
    """More records than one batch holds (aiokafka's 16 KB): several batches, each record's own offset."""
    async with Node(services, unique, "w", "1") as node:
        topic = node.kafka.topics.scores
        values = [json.dumps({"i": i, "pad": "x" * 100}).encode() for i in range(400)]  # about 45 KB
        before = await send_batch_with(node.producer, topic, 1, [(b"k", v) for v in values[:3]])
        first = await before
        offsets = await (await send_batch_with(node.producer, topic, 1, [(b"k", v) for v in values[3:]]))
        assert offsets == list(range(first[-1] + 1, first[-1] + 1 + 397)) and first == [first[0] + i for i in range(3)]
        got = await read_topic(services.kafka_bootstrap, topic, lambda m: len(m) >= 400, timeout=20, settle=0.5)
        assert [m["i"] for m in got] == list(range(400))


async def test_a_batch_of_more_series_than_one_command_takes_is_split_and_answered_in_order(
    services: Any, unique: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import stream.store

    monkeypatch.setattr(stream.store, "SERIES_PER_COMMAND", 3)  # 8 series: three commands of each kind
    async with Node(services, unique, "a", "1") as a:
        sids = [f"m{i}" for i in range(8)]
        await a.store.save([Write("m4", b"", token(1) + b"old", [], 0)])  # m4 exists: a write as new loses
        results = await a.store.save([Write(sid, b"", token(2) + sid.encode(), [score_entry(sid, 2)], 0,
                                            a.publisher.marks(sid)) for sid in sids])
        assert list(results) == sids
        assert [sid for sid, r in results.items() if not r.written] == ["m4"]
        assert all(r.claimed == 1 and r.entries == (score_entry(sid, 2),)
                   for sid, r in results.items() if sid != "m4")
        mgets = (await a.redis.info("commandstats")).get("cmdstat_mget", {}).get("calls", 0)
        loaded = await a.store.load(sids)
        assert (await a.redis.info("commandstats"))["cmdstat_mget"]["calls"] - mgets == 3  # 3 + 3 + 2 series
        assert list(loaded) == sids
        assert [loaded[sid].blob for sid in sids] == [token(1) + b"old" if sid == "m4" else token(2) + sid.encode()
                                                      for sid in sids]
        await a.store.set_threshold("m6", 0.7)
        assert (await a.store.load(sids))["m6"].threshold == 0.7  # each series' own override, in any command
        left = await a.store.release({sid: 1 for sid in sids if sid != "m4"})
        assert left == {sid: 0 for sid in sids if sid != "m4"}
