"""Outbox publishing: claimed outboxes in -> messages on `scores` / `alerts`, acknowledged, then deleted.

An outbox entry is one kind byte (`s` score, `a` alert) followed by the message's JSON. The claim holder
sends a series' entries in order to a partition it computes itself (the default partitioner's choice for
the key), waits for the broker's acknowledgements, then deletes them by count.

The one gap this leaves: a worker that dies after the broker stored a message but before the outbox
delete. Every claim therefore records "marks": for each output partition the series maps to, an offset
at or below where this publish can land (the end offset seen at start-up, raised by each acknowledgement
this process receives). Whoever next claims an outbox whose previous claim never finished reads those
partitions from the marks to their end and skips the entries that are already there, identified by
(series_id, ts) for scores and (alert_id, state) for alerts.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiokafka import TopicPartition

from stream.kafka import PartitionReader, partition_for
from stream.metrics import Metrics
from stream.records import DeadLetter, to_json
from stream.settings import TopicNames
from stream.store import Store, WriteResult

log = logging.getLogger(__name__)
# Distinct (partition, partition, mark, mark) combinations whose encoded marks are kept (`Publisher.marks`).
_MARKS_CACHE = 4096

SCORE, ALERT = b"s", b"a"

# send(topic, key, value, partition) -> awaitable of the record's offset, once the broker acknowledged it.
SendFn = Callable[[str, bytes, bytes, int], Awaitable[Awaitable[int]]]


def identity(kind: bytes, payload: dict[str, Any]) -> tuple:
    """What makes an output message unique: a point's ts, or an alert's id and state."""
    if kind == SCORE:
        return (SCORE, payload["series_id"], payload["ts"])
    return (ALERT, payload["series_id"], payload["alert_id"], payload["state"])


class Publisher:
    """Sends claimed outboxes and dead letters; keeps the per-partition marks."""

    def __init__(
        self,
        store: Store,
        send: SendFn,
        reader: PartitionReader,
        topics: TopicNames,
        partitions: dict[str, int],
        metrics: Metrics,
    ) -> None:
        self.store, self.send, self.reader, self.topics = store, send, reader, topics
        self.partitions = partitions
        self.metrics = metrics
        self.low: dict[tuple[str, int], int] = {}
        self._marks: dict[tuple[int, int, int, int], str] = {}

    async def start(self) -> None:
        """Learn the end offset of every output partition: a valid mark for anything sent from now on."""
        tps = [
            TopicPartition(t, p) for t in (self.topics.scores, self.topics.alerts) for p in range(self.partitions[t])
        ]
        for tp, off in (await self.reader.end_offsets(tps)).items():
            self.low[(tp.topic, tp.partition)] = off

    def topic_of(self, kind: bytes) -> str:
        return self.topics.scores if kind == SCORE else self.topics.alerts

    def target(self, topic: str, series_id: str) -> int:
        return partition_for(series_id.encode(), self.partitions[topic])

    def marks(self, series_id: str) -> str:
        scores, alerts = self.topics.scores, self.topics.alerts
        ps, pa = self.target(scores, series_id), self.target(alerts, series_id)
        key = (ps, pa, self.low.get((scores, ps), 0), self.low.get((alerts, pa), 0))
        # The series of one batch share few output partitions and marks: encode each combination once.
        if (out := self._marks.get(key)) is None:
            if len(self._marks) >= _MARKS_CACHE:
                self._marks.clear()
            out = self._marks[key] = json.dumps({f"{scores}/{ps}": key[2], f"{alerts}/{pa}": key[3]},
                                                separators=(",", ":"))
        return out

    async def publish(self, claimed: dict[str, WriteResult], telemetry_partition: dict[str, int]) -> int:
        """Publish every claimed outbox (claimed == 1), then release them; returns messages sent."""
        todo = {sid: r for sid, r in claimed.items() if r.claimed == 1 and r.entries}
        if not todo:
            return 0
        skip = await self._already_published({sid: r for sid, r in todo.items() if r.prev_marks})
        futures: list[tuple[str, int, Awaitable[int]]] = []
        for sid, r in todo.items():
            key = sid.encode()
            for entry in r.entries:
                kind, body = entry[:1], entry[1:]
                if skip and identity(kind, json.loads(body)) in skip:
                    self.metrics.readback_skipped.inc()
                    continue
                topic = self.topic_of(kind)
                p = self.target(topic, sid)
                futures.append((topic, p, await self.send(topic, key, body, p)))
        offsets = await asyncio.gather(*(f for _, _, f in futures))
        for (topic, p, _), offset in zip(futures, offsets, strict=True):
            # Anything this process sends later lands after this record: a valid mark from now on.
            self.low[(topic, p)] = max(self.low.get((topic, p), 0), int(offset) + 1)
        left = await self.store.release({sid: len(r.entries) for sid, r in todo.items()})
        done: dict[int, list[str]] = {}
        for sid, n_left in left.items():
            if n_left == 0:
                done.setdefault(telemetry_partition[sid], []).append(sid)
            elif n_left < 0:
                log.warning("series %r: outbox claim was taken over while publishing", sid)
        await self.store.unindex_many(done)
        return len(futures)

    async def _already_published(self, stale: dict[str, WriteResult]) -> set[tuple]:
        """Identities of outbox entries an unfinished earlier publish already put on the broker."""
        if not stale:
            return set()
        starts: dict[tuple[str, int], int] = {}
        for sid, r in stale.items():
            marks = json.loads(r.prev_marks or "{}")
            for topic in (self.topics.scores, self.topics.alerts):
                p = self.target(topic, sid)
                start = int(marks.get(f"{topic}/{p}", 0))
                starts[(topic, p)] = min(start, starts.get((topic, p), start))
        found: set[tuple] = set()
        keys = {sid.encode() for sid in stale}
        for (topic, p), start in starts.items():
            kind = SCORE if topic == self.topics.scores else ALERT
            for key, value in await self.reader.read(TopicPartition(topic, p), start):
                if key in keys and value:
                    try:
                        found.add(identity(kind, json.loads(value)))
                    except (ValueError, KeyError):
                        continue  # not one of ours
        log.info(
            "read back %d partition(s) for %d series with an unfinished publish: %d already there",
            len(starts),
            len(stale),
            len(found),
        )
        return found

    async def dead_letters(self, letters: Sequence[tuple[bytes | None, DeadLetter]]) -> None:
        """Send dead letters and wait for the broker (at-least-once: a crash may repeat one)."""
        futures = [
            await self.send(
                self.topics.dlq,
                key or b"",
                to_json(dl),
                partition_for(key or b"", self.partitions[self.topics.dlq]),
            )
            for key, dl in letters
        ]
        await asyncio.gather(*futures)
        for _, dl in letters:
            self.metrics.dead_letters.labels(dl.code).inc()
