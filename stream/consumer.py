"""Telemetry in as aiokafka `getmany()` batches -> the `Pipeline`; the offsets it acknowledged -> committed.

The worker's default consumer (`kafka.consumer = "aiokafka"`). faust's agent stream (`"faust"`) hands
every message from its consumer thread to the event loop and through a stream one at a time; measured
with `anomalybert bench` on the local broker (100 series at 2,000 points/s, 2 cores), a record's trip from
the producer to the agent took 24 ms on average there, and that per-message path costs event-loop time
the scoring needs. This consumer fetches in the worker's own event loop and hands whole fetches to the
pipeline, which forms its batches from what has arrived whenever a slot is free (no batching wait).

Guarantees, the same as the agent's:
- At-least-once: an offset is committed only once the pipeline acknowledged the event, i.e. after its
  state, outbox and outputs were written; the pipeline acknowledges in consumption order.
- Rebalance: before partitions are revoked, fetching stops, everything already handed to the pipeline is
  processed and acknowledged (up to half the rebalance timeout), and the acknowledged offsets are
  committed, so the next owner starts after them. What is not committed by then is redelivered; the
  state's `ts` rule and the outbox make a repeated point a no-op.
- Stop: the same drain (shorter), then the rest is cancelled unacknowledged, the offsets committed and the
  group left.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import OffsetAndMetadata

from stream.kafka import client_options
from stream.pipeline import Pipeline
from stream.processor import RawEvent
from stream.recovery import Backoff, retry
from stream.settings import KafkaSettings

log = logging.getLogger(__name__)

STOP_DRAIN_S = 10.0  # on stop, how long batches in flight may take to finish before they are cancelled


def raw_record(r: Any) -> RawEvent:
    """aiokafka ConsumerRecord -> the processor's plain view of it."""
    ts = r.timestamp
    return RawEvent(r.key, r.value, r.topic, r.partition, r.offset, ts if ts is not None and ts > 0 else None)


class TelemetryConsumer(ConsumerRebalanceListener):
    """One consumer-group member for the telemetry topic, feeding a `Pipeline` and committing its acks.

    `make_pipeline(ack)` builds the pipeline once, given this consumer's acknowledgement callback."""

    def __init__(self, kafka: KafkaSettings, client_id: str, max_records: int, retry_backoff_s: float) -> None:
        self.kafka = kafka
        self.topic = kafka.topics.telemetry
        self.max_records = max_records
        self.retry_backoff_s = retry_backoff_s
        self.client_id = client_id
        self.consumer: AIOKafkaConsumer | None = None  # created in the event loop it runs in (`start`)
        self.pipeline: Pipeline | None = None
        self._acked: dict[TopicPartition, int] = {}  # next offset to commit, per partition
        self._committed: dict[TopicPartition, int] = {}
        self._handing = asyncio.Lock()  # held while fetched records go into the pipeline
        self._task: asyncio.Task | None = None  # the one running `run`
        self._started = False
        self._stopped = False

    # ---------------------------------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Connect and join the group; retries with backoff while the broker is unreachable."""
        k = self.kafka

        async def start() -> None:
            self.consumer = AIOKafkaConsumer(
                **client_options(k),
                client_id=self.client_id,
                group_id=k.group_id,
                enable_auto_commit=False,
                auto_offset_reset=k.auto_offset_reset,
                session_timeout_ms=int(k.session_timeout_s * 1000),
                heartbeat_interval_ms=int(k.heartbeat_interval_s * 1000),
                rebalance_timeout_ms=int(k.rebalance_timeout_s * 1000),
                fetch_max_wait_ms=k.fetch_max_wait_ms,
                max_poll_records=self.max_records,
            )
            self.consumer.subscribe([self.topic], listener=self)
            await self.consumer.start()
            self._started = True

        async def stop() -> None:
            if self.consumer is not None:
                await self.consumer.stop()

        await retry(start, (KafkaError,), Backoff(self.retry_backoff_s), "telemetry consumer start", stop)

    async def run(self, make_pipeline: Callable[[Callable[[RawEvent], Any]], Pipeline]) -> None:
        """Fetch and hand over until cancelled (`stop`); commits every `kafka.commit_interval_s`."""
        self._task = asyncio.current_task()
        self.pipeline = make_pipeline(self.ack)
        await self.start()
        assert self.consumer is not None
        last_commit, backoff = time.monotonic(), Backoff(self.retry_backoff_s)
        while True:
            try:
                fetched = await self.consumer.getmany(timeout_ms=1000, max_records=self.max_records)
                backoff.reset()
            except KafkaError as e:
                await backoff.wait("fetch", e)
                continue
            if fetched:
                async with self._handing:
                    events = [raw_record(r) for records in fetched.values() for r in records]
                    await self.pipeline.put(events, events)
            if time.monotonic() - last_commit >= self.kafka.commit_interval_s:
                await self.commit()
                last_commit = time.monotonic()

    async def stop(self) -> None:
        """Stop fetching (cancel `run`), let batches in flight finish for up to `STOP_DRAIN_S`, cancel the
        rest unacknowledged, commit, leave the group. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        task = self._task
        if task is not None and not task.done() and task is not asyncio.current_task():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if self.pipeline is not None:
            if not await self.pipeline.drain(STOP_DRAIN_S):
                log.warning("stopping with batches still in flight: they stay unacknowledged (redelivered)")
            self.pipeline.cancel()
        if self._started and self.consumer is not None:
            await self.commit()
            await self.consumer.stop()

    # ---------------------------------------------------------------------------------------- offsets

    async def ack(self, ev: RawEvent) -> None:
        """The pipeline's acknowledgement: `ev` and everything before it in its partition are processed."""
        tp = TopicPartition(ev.topic, ev.partition)
        if ev.offset + 1 > self._acked.get(tp, -1):
            self._acked[tp] = ev.offset + 1

    def assignment(self) -> set[TopicPartition]:
        return set(self.consumer.assignment()) if self._started and self.consumer is not None else set()

    def partitions(self) -> list[int]:
        """The telemetry partitions this worker owns now."""
        return sorted(tp.partition for tp in self.assignment() if tp.topic == self.topic)

    async def commit(self) -> None:
        """Commit the acknowledged offsets of the partitions still assigned (errors: logged, retried at the
        next commit; what is not committed is redelivered, and redelivery changes nothing)."""
        owned = self.assignment()
        offsets = {tp: o for tp, o in self._acked.items() if tp in owned and o != self._committed.get(tp)}
        if not offsets:
            return
        assert self.consumer is not None
        try:
            await self.consumer.commit({tp: OffsetAndMetadata(o, "") for tp, o in offsets.items()})
        except KafkaError as e:
            log.warning("offset commit failed (retried at the next one): %s: %s", type(e).__name__, e)
            return
        self._committed.update(offsets)

    # ---------------------------------------------------------------------------------------- rebalance

    async def on_partitions_revoked(self, revoked: Any) -> None:
        if not revoked or self.pipeline is None or self._stopped:
            return
        async with self._handing:  # no fetch is half handed over while we drain
            if not await self.pipeline.drain(self.kafka.rebalance_timeout_s / 2):
                log.warning("rebalance: batches still in flight after %.0fs; their events will be redelivered",
                            self.kafka.rebalance_timeout_s / 2)
            await self.commit()
        for tp in revoked:
            self._acked.pop(tp, None)
            self._committed.pop(tp, None)
        log.info("partitions revoked: %s", sorted(tp.partition for tp in revoked))

    async def on_partitions_assigned(self, assigned: Any) -> None:
        log.info("partitions assigned: %s", sorted(tp.partition for tp in assigned))
