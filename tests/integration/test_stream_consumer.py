"""The aiokafka telemetry consumer on the real broker: it commits only what the pipeline acknowledged, so the
rest is redelivered to the next group member, and before giving partitions away it waits for the batches
in flight and commits them, so the next owner does not see them again.

The pipeline here is a stand-in that records what it is handed and acknowledges on the test's word (the
real pipeline, with Redis and the model, is covered end to end in test_stream_worker)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from stream.consumer import TelemetryConsumer
from stream.kafka import ensure_topics
from stream.processor import RawEvent
from stream.settings import KafkaSettings
from tests.stream_support import Names, produce

pytestmark = pytest.mark.integration

running: set[asyncio.Task] = set()  # the consumers' run() tasks, referenced until they end


class HeldPipeline:
    """Records every event put; acknowledges them (in order) only when `release()` says how many."""

    def __init__(self, ack: Callable[[RawEvent], Any]) -> None:
        self._ack = ack
        self.seen: list[RawEvent] = []
        self.acked = 0
        self.drains = 0

    async def put(self, events: list[RawEvent], raw: list[RawEvent]) -> None:
        self.seen.extend(raw)

    async def release(self, upto: int) -> None:
        for ev in self.seen[self.acked : upto]:
            await self._ack(ev)
        self.acked = max(self.acked, upto)

    @property
    def idle(self) -> bool:
        return self.acked >= len(self.seen)

    async def drain(self, timeout: float) -> bool:
        self.drains += 1
        for _ in range(int(timeout / 0.01)):
            if self.idle:
                return True
            await asyncio.sleep(0.01)
        return self.idle

    def cancel(self) -> None:
        pass


def kafka_settings(services: Any, names: Names) -> KafkaSettings:
    return KafkaSettings.model_validate(
        {
            "bootstrap": services.kafka_bootstrap,
            "group_id": f"g-{names.token}",
            "partitions": names.partitions,
            "session_timeout_s": 6,
            "heartbeat_interval_s": 1,
            "rebalance_timeout_s": 10,
            "commit_interval_s": 0.2,
            "topics": {"telemetry": names.topics["telemetry"]},
        }
    )


async def start(kafka: KafkaSettings, name: str) -> tuple[TelemetryConsumer, list[HeldPipeline]]:
    consumer = TelemetryConsumer(kafka, name, max_records=100, retry_backoff_s=0.1)
    made: list[HeldPipeline] = []

    def make(ack: Callable[[RawEvent], Any]) -> Any:
        made.append(HeldPipeline(ack))
        return made[0]

    task = asyncio.create_task(consumer.run(make))  # `stop()` ends it
    running.add(task)
    task.add_done_callback(running.discard)
    return consumer, made


async def until(cond: Callable[[], bool], timeout: float = 30.0) -> None:
    for _ in range(int(timeout / 0.05)):
        if cond():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached in time")


def offsets(events: list[RawEvent]) -> set[tuple[int, int]]:
    return {(e.partition, e.offset) for e in events}


async def forty_events_read_by_a_first_member(
    services: Any, unique: str, partitions: int
) -> tuple[KafkaSettings, TelemetryConsumer, HeldPipeline]:
    """A telemetry topic with 40 events, and a first group member whose pipeline holds all 40 unacknowledged."""
    names = Names(unique, partitions=partitions)
    kafka = kafka_settings(services, names)
    await ensure_topics(kafka, [kafka.topics.telemetry])
    await produce(services.kafka_bootstrap, kafka.topics.telemetry, [(f"k{i}".encode(), b"%d" % i) for i in range(40)])
    first, made = await start(kafka, "first")
    await until(lambda: bool(made) and len(made[0].seen) == 40)
    return kafka, first, made[0]


async def test_only_acknowledged_offsets_are_committed_the_rest_is_redelivered(services: Any, unique: str) -> None:
    kafka, first, held = await forty_events_read_by_a_first_member(services, unique, partitions=2)
    seen = held.seen
    await held.release(25)  # the pipeline finished the first 25 events it was handed, not the rest
    await first.stop()  # commits what was acknowledged, leaves the group

    second, made2 = await start(kafka, "second")
    await until(lambda: bool(made2) and len(made2[0].seen) == 15)
    await asyncio.sleep(1.0)  # nothing more arrives
    assert offsets(made2[0].seen) == offsets(seen[25:])
    await made2[0].release(15)
    await second.stop()


async def test_partitions_given_away_after_the_batches_in_flight_are_committed(services: Any, unique: str) -> None:
    kafka, first, held = await forty_events_read_by_a_first_member(services, unique, partitions=4)
    second, made2 = await start(kafka, "second")  # joining triggers a rebalance
    await until(lambda: held.drains > 0)  # the first member is giving partitions away: it waits for the pipeline
    await asyncio.sleep(0.5)
    assert len(second.partitions()) == 0  # ... and the group waits for it
    await held.release(40)  # the batches in flight finish
    await until(lambda: len(second.partitions()) > 0 and len(first.partitions()) > 0)
    await produce(services.kafka_bootstrap, kafka.topics.telemetry, [(f"k{i}".encode(), b"n%d" % i) for i in range(40)])
    await until(lambda: len(held.seen) + (len(made2[0].seen) if made2 else 0) == 80)
    await asyncio.sleep(1.0)
    # Nothing of the first 40 reached the second member, and nothing arrived twice.
    got2 = made2[0].seen if made2 else []
    assert all(e.value.startswith(b"n") for e in got2)
    assert len(offsets(held.seen) | offsets(got2)) == 80
    await held.release(len(held.seen))
    if made2:
        await made2[0].release(len(got2))
    await first.stop()
    await second.stop()
