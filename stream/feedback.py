"""Operators' verdicts on alerts in: the `feedback` topic counted by verdict, what cannot be read dead-lettered.

The workers read `feedback` as one consumer group of their own (`<group_id>-feedback`), so each message is
handled once across the fleet: a valid one adds to `anomalybert_feedback_total{verdict}`, an invalid one goes to
the dead-letter topic with its code and the original bytes, as refused telemetry does. Offsets are committed
after each fetched batch is handled (at least once: a worker killed in between counts those messages again).

The alert precision implied by the feedback is `sum(anomalybert_feedback_total{verdict="true"}) /
sum(anomalybert_feedback_total)` over the workers (counters restart with a worker); `anomalybert feedback
--summary` reads the compacted topic itself and gives it over each alert's latest verdict, since the start.
"""

from __future__ import annotations

import logging
from typing import Any

from stream.errors import InvalidRecord
from stream.metrics import Metrics
from stream.records import DeadLetter, parse_feedback, to_json
from stream.settings import Settings

log = logging.getLogger(__name__)


class FeedbackReader:
    """The worker task that consumes `feedback` (`run`)."""

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self.settings, self.metrics = settings, metrics

    @property
    def group_id(self) -> str:
        return f"{self.settings.kafka.group_id}-feedback"

    async def handle(self, msg: Any, producer: Any) -> None:
        """Count one message's verdict, or dead-letter it."""
        k = self.settings.kafka
        try:
            fb = parse_feedback(msg.value, msg.key)
        except InvalidRecord as err:
            letter = DeadLetter.of(err, topic=msg.topic, partition=msg.partition, offset=msg.offset,
                                   timestamp_ms=msg.timestamp, key=msg.key, value=msg.value,
                                   worker=self.settings.worker.id, max_bytes=k.dead_letter_max_bytes)
            await producer.send_and_wait(k.topics.dlq, to_json(letter), key=msg.key)
            self.metrics.dead_letters.labels(err.code).inc()
            log.warning("feedback at %s[%d]@%d dead-lettered: %s", msg.topic, msg.partition, msg.offset, err.reason)
            return
        self.metrics.feedback.labels(fb.verdict).inc()

    async def run(self) -> None:
        """Consume `feedback` for as long as the worker runs; a broker error stops this task alone (logged)."""
        from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
        from aiokafka.errors import KafkaError

        from stream.kafka import client_options

        k = self.settings.kafka
        consumer = AIOKafkaConsumer(k.topics.feedback, **client_options(k), group_id=self.group_id,
                                    enable_auto_commit=False, auto_offset_reset="earliest")
        producer = AIOKafkaProducer(**client_options(k), acks="all")
        try:
            await consumer.start()
            await producer.start()
            while True:
                fetched = await consumer.getmany(timeout_ms=1000)
                for messages in fetched.values():
                    for msg in messages:
                        await self.handle(msg, producer)
                if fetched:
                    await consumer.commit()
        except KafkaError as e:
            log.error("stopped reading %s (%s): feedback is not counted until the worker restarts",
                      k.topics.feedback, e)
        finally:
            await consumer.stop()
            await producer.stop()


async def read_feedback(cfg: Any, topic: str | None = None) -> tuple[dict[str, Any], int]:
    """Every alert's latest verdict on `topic` (default: the settings' feedback topic), read from its beginning to
    its end as of the call, without a consumer group; and how many messages could not be read. A tombstone (a
    key with no value) withdraws that alert's verdict."""
    from stream.kafka import read_to_end

    latest: dict[str, Any] = {}
    unreadable = 0
    async for msg in read_to_end(cfg, topic or cfg.topics.feedback):
        if msg.value is None and msg.key:
            latest.pop(msg.key.decode(errors="replace"), None)
            continue
        try:
            fb = parse_feedback(msg.value, msg.key)
        except InvalidRecord:
            unreadable += 1
            continue
        latest[fb.alert_id] = fb
    return latest, unreadable
