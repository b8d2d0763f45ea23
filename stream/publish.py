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
_TARGETS_CACHE = 200_000  # (topic, series) partitions kept; cleared when full

SCORE, ALERT = b"s", b"a"
# Bytes of the original key used as a dead letter's record key (the whole key, bounded, is in the letter).
_DLQ_KEY_BYTES = 1024


def never_fits(error: BaseException) -> bool:
    """An output the broker or the producer refuses for its size: sending it again cannot succeed."""
    from aiokafka.errors import MessageSizeTooLargeError, RecordListTooLargeError

    e: BaseException | None = error
    while e is not None:
        if isinstance(e, MessageSizeTooLargeError | RecordListTooLargeError):
            return True
        e = e.__cause__
    return False

# send(topic, key, value, partition) -> awaitable of the record's offset, once the broker acknowledged it.
SendFn = Callable[[str, bytes, bytes, int], Awaitable[Awaitable[int]]]
# send_batch(topic, partition, [(key, value), ...]) -> awaitable of each record's outcome, in order, once the broker
# answered: its offset, or its record batch's error. One partition's records as few record batches (no future per
# record); the broker stores a batch whole or not at all.
BatchSendFn = Callable[[str, int, list[tuple[bytes, bytes]]], Awaitable[Awaitable[list[int | BaseException]]]]


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
        send_batch: BatchSendFn | None = None,
    ) -> None:
        self.store, self.send, self.reader, self.topics = store, send, reader, topics
        self.send_batch = send_batch
        self.partitions = partitions
        self.metrics = metrics
        self.low: dict[tuple[str, int], int] = {}
        self._marks: dict[tuple[int, int, int, int], str] = {}
        self._targets: dict[tuple[str, str], int] = {}

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
        """The output partition of a series' messages (the key's murmur2, as Kafka's default partitioner):
        asked three times per point, computed once per series and topic while the cache holds it."""
        if (p := self._targets.get((topic, series_id))) is None:
            if len(self._targets) >= _TARGETS_CACHE:
                self._targets.clear()
            p = self._targets[(topic, series_id)] = partition_for(series_id.encode(), self.partitions[topic])
        return p

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
        messages: list[tuple[str, bytes, bytes, int]] = []
        for sid, r in todo.items():
            key = sid.encode()
            for entry in r.entries:
                kind, body = entry[:1], entry[1:]
                if skip and identity(kind, json.loads(body)) in skip:
                    self.metrics.readback_skipped.inc()
                    continue
                topic = self.topic_of(kind)
                messages.append((topic, key, body, self.target(topic, sid)))
        for (topic, _, _, p), offset in zip(messages, await self._send_all(messages), strict=True):
            if offset is not None:
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
        return len(messages)

    async def _send_all(self, messages: Sequence[tuple[str, bytes, bytes, int]]) -> list[int | None]:
        """Send (topic, key, value, partition) messages and wait for the broker; each one's offset, or None for
        one that can never be sent (`never_fits`): that one is final, logged and counted, and the rest go on.
        Any other error is raised once every send has settled (the caller retries the batch).

        With `send_batch`, each partition's messages go as record batches, in order: a few futures per
        partition instead of one per message (at a thousand points a batch, the per-message sends were the
        largest single cost of the event loop). The messages of a record batch the broker or the producer refuses
        for its size (a batch is stored whole or not at all) are sent again one by one, so that only the message
        that never fits is dropped. (A partition's messages of one batch larger than the producer's batch size
        go as several record batches; were one of those refused for its size, its messages would land after the
        later ones: a broker whose message size limit is below the producer's batch size, 16 KB.)"""
        if self.send_batch is None or len(messages) < 2:
            return await self._send_each(messages)
        groups: dict[tuple[str, int], list[int]] = {}
        for i, (topic, _, _, p) in enumerate(messages):
            groups.setdefault((topic, p), []).append(i)
        futures: list[Awaitable[list[int | BaseException]] | BaseException] = []
        for (topic, p), idx in groups.items():
            try:
                futures.append(await self.send_batch(topic, p, [(messages[i][1], messages[i][2]) for i in idx]))
            except Exception as e:  # noqa: BLE001 - sorted below, as in _send_each
                futures.append(e)
        results = await asyncio.gather(*(f for f in futures if not isinstance(f, BaseException)),
                                       return_exceptions=True)
        it = iter(results)
        offsets: list[int | None] = [None] * len(messages)
        retry: BaseException | None = None
        refused: list[int] = []  # messages of record batches refused for their size
        for idx, f in zip(groups.values(), futures, strict=True):
            out = f if isinstance(f, BaseException) else next(it)
            for i, o in zip(idx, [out] * len(idx) if isinstance(out, BaseException) else out, strict=True):
                if not isinstance(o, BaseException):
                    offsets[i] = int(o)
                elif never_fits(o):
                    refused.append(i)
                else:
                    retry = retry or o
        if refused:
            try:  # one by one: only the message that never fits is dropped
                for i, off in zip(refused, await self._send_each([messages[i] for i in refused]), strict=True):
                    offsets[i] = off
            except Exception as e:  # noqa: BLE001 - raised below with the others
                retry = retry or e
        if retry is not None:
            raise retry
        return offsets

    async def _send_each(self, messages: Sequence[tuple[str, bytes, bytes, int]]) -> list[int | None]:
        """`_send_all` one message at a time."""
        futures: list[Awaitable[int] | BaseException] = []
        for topic, key, value, p in messages:
            try:
                futures.append(await self.send(topic, key, value, p))
            except Exception as e:  # noqa: BLE001 - sorted below: final, or raised for a retry
                futures.append(e)
        results = await asyncio.gather(*(f for f in futures if not isinstance(f, BaseException)),
                                       return_exceptions=True)
        it = iter(results)
        outcomes = [f if isinstance(f, BaseException) else next(it) for f in futures]
        offsets: list[int | None] = []
        retry: BaseException | None = None
        for (topic, key, value, p), out in zip(messages, outcomes, strict=True):
            if not isinstance(out, BaseException):
                offsets.append(int(out))
            elif never_fits(out):
                offsets.append(None)
                self.metrics.outputs_dropped.labels(topic, "too_large").inc()
                log.error("dropped a %d-byte message for %s[%d] (key %r...): the broker or the producer refuses "
                          "its size (%s); it is not retried", len(value) + len(key), topic, p, key[:64], out)
            else:
                retry = retry or out
        if retry is not None:
            raise retry
        return offsets

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
        """Send dead letters and wait for the broker (at-least-once: a crash may repeat one). The record key is
        the original key (its first bytes when long); the letter itself is bounded (`DeadLetter.of`)."""
        dlq = self.topics.dlq
        messages = []
        for key, dl in letters:
            k = (key or b"")[:_DLQ_KEY_BYTES]
            messages.append((dlq, k, to_json(dl), partition_for(k, self.partitions[dlq])))
        for (_, dl), offset in zip(letters, await self._send_all(messages), strict=True):
            if offset is not None:
                self.metrics.dead_letters.labels(dl.code).inc()
