"""Nothing a producer sends can stall a partition: dead letters are bounded, and an output the broker or the
producer refuses for its size is final (dropped, logged, counted), while other send errors still raise."""

from __future__ import annotations

import asyncio
import hashlib
import json
from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError, MessageSizeTooLargeError
from faust.exceptions import ProducerSendError
from pydantic import ValidationError

from stream.errors import InvalidRecord
from stream.metrics import Metrics
from stream.publish import Publisher, never_fits
from stream.records import MAX_REASON_CHARS, DeadLetter, to_json
from stream.settings import KafkaSettings, TopicNames


def letter(value: bytes, key: bytes | None = b"k", max_bytes: int = 1024, reason: str = "bad") -> DeadLetter:
    return DeadLetter.of(InvalidRecord("invalid_json", reason), topic="telemetry", partition=0, offset=7,
                         timestamp_ms=None, key=key, value=value, worker="w", max_bytes=max_bytes)


def test_a_short_value_is_kept_whole_with_its_size_and_hash() -> None:
    dl = DeadLetter.model_validate_json(to_json(letter(b"{bad")))
    assert dl.original_value() == b"{bad" and dl.value_bytes == 4 and dl.value_truncated is None
    assert dl.value_sha256 == hashlib.sha256(b"{bad").hexdigest() and dl.key_truncated is None


def test_a_long_value_and_key_keep_a_prefix_their_size_and_hash() -> None:
    value, key = b"x" * 900_000, b"k" * 5000
    raw = to_json(letter(value, key=key))
    dl = DeadLetter.model_validate_json(raw)
    assert dl.original_value() == value[:1024] and dl.value_bytes == 900_000 and dl.value_truncated is True
    assert dl.value_sha256 == hashlib.sha256(value).hexdigest()
    assert dl.key_bytes == 5000 and dl.key_truncated is True and len(dl.key_b64 or "") <= 4 * 1024 // 3 + 4
    assert "value truncated: the first 1024 of 900000 bytes are kept" in dl.reason
    assert len(raw) < 4000


def test_a_long_reason_is_cut() -> None:
    assert len(letter(b"x", reason="r" * 5000).reason) == MAX_REASON_CHARS


def test_the_settings_refuse_a_dead_letter_that_cannot_fit_a_request() -> None:
    assert KafkaSettings().max_request_bytes == 1_048_576 and KafkaSettings().dead_letter_max_bytes == 65_536
    with pytest.raises(ValidationError, match="does not fit"):
        KafkaSettings(max_request_bytes=65_536, dead_letter_max_bytes=60_000)


def test_size_refusals_are_recognised_through_the_producer_wrapper() -> None:
    try:
        try:
            raise MessageSizeTooLargeError("too big")
        except MessageSizeTooLargeError as inner:
            raise ProducerSendError("Error while sending") from inner
    except ProducerSendError as wrapped:
        assert never_fits(wrapped)
    assert not never_fits(KafkaConnectionError("down"))


class FakeSend:
    """The worker's send(): raises at send time for one value, fails at delivery for another."""

    def __init__(self, refuse_now: bytes, refuse_later: bytes, down: bytes = b"") -> None:
        self.refuse_now, self.refuse_later, self.down = refuse_now, refuse_later, down
        self.sent: list[bytes] = []

    async def __call__(self, topic: str, key: bytes, value: bytes, partition: int) -> Any:
        if value == self.refuse_now:
            raise ProducerSendError("Error while sending") from MessageSizeTooLargeError("client-side")
        fut = asyncio.get_running_loop().create_future()
        if value == self.refuse_later:
            fut.set_exception(MessageSizeTooLargeError("broker-side"))
        elif value == self.down:
            fut.set_exception(KafkaConnectionError("broker away"))
        else:
            self.sent.append(value)
            fut.set_result(len(self.sent))
        return fut


def publisher(send: FakeSend, metrics: Metrics) -> Publisher:
    topics = TopicNames()
    partitions = {topics.scores: 1, topics.alerts: 1, topics.dlq: 1}
    return Publisher(None, send, None, topics, partitions, metrics)  # type: ignore[arg-type]


def test_an_output_that_never_fits_is_dropped_and_counted_and_the_rest_are_sent() -> None:
    metrics = Metrics()
    send = FakeSend(refuse_now=b"now", refuse_later=b"later")
    pub = publisher(send, metrics)
    msgs = [("scores", b"a", v, 0) for v in (b"ok1", b"now", b"ok2", b"later", b"ok3")]
    offsets = asyncio.run(pub._send_all(msgs))
    assert offsets == [1, None, 2, None, 3] and send.sent == [b"ok1", b"ok2", b"ok3"]
    assert metrics.outputs_dropped.labels("scores", "too_large")._value.get() == 2


def test_any_other_send_error_is_raised_for_a_retry() -> None:
    send = FakeSend(refuse_now=b"now", refuse_later=b"later", down=b"down")
    with pytest.raises(KafkaConnectionError):
        asyncio.run(publisher(send, Metrics())._send_all([("scores", b"a", v, 0) for v in (b"ok", b"down")]))


def test_dead_letters_are_counted_only_when_sent() -> None:
    metrics = Metrics()
    good, bad = letter(b"{"), letter(b"[")
    send = FakeSend(refuse_now=to_json(bad), refuse_later=b"-")
    asyncio.run(publisher(send, metrics).dead_letters([(b"k" * 3000, good), (None, bad)]))
    assert [json.loads(v)["value_b64"] for v in send.sent] == [good.value_b64]
    assert metrics.dead_letters.labels("invalid_json")._value.get() == 1
    assert metrics.outputs_dropped.labels("telemetry.dlq", "too_large")._value.get() == 1


class FakeBatchSend:
    """The worker's send_batch(): a partition's records cut into record batches of `size`, each stored whole or
    refused whole (for its size when it holds `too_big`, unreachable when it holds `down`), as a broker does; the
    outcome of each record is its offset or its batch's error."""

    def __init__(self, too_big: bytes = b"", down: bytes = b"", size: int = 100) -> None:
        self.too_big, self.down, self.size = too_big, down, size
        self.logs: dict[tuple[str, int], list[bytes]] = {}
        self.batches = 0

    async def __call__(self, topic: str, partition: int, records: list[tuple[bytes, bytes]]) -> Any:
        log = self.logs.setdefault((topic, partition), [])
        out: list[Any] = []
        for start in range(0, len(records), self.size):
            self.batches += 1
            values = [v for _, v in records[start : start + self.size]]
            if self.too_big in values:
                refused = ProducerSendError("Error while sending")
                refused.__cause__ = MessageSizeTooLargeError("broker-side")
                out += [refused] * len(values)
            elif self.down in values:
                out += [KafkaConnectionError("broker away")] * len(values)
            else:
                out += range(len(log), len(log) + len(values))
                log.extend(values)
        fut = asyncio.get_running_loop().create_future()
        fut.set_result(out)
        return fut


def batch_publisher(send: FakeSend, send_batch: FakeBatchSend, partitions: int = 3) -> Publisher:
    topics = TopicNames()
    counts = {topics.scores: partitions, topics.alerts: partitions, topics.dlq: 1}
    return Publisher(None, send, None, topics, counts, Metrics(), send_batch)  # type: ignore[arg-type]


def test_batches_keep_each_partitions_order_and_give_each_message_its_offset() -> None:
    send, batches = FakeSend(refuse_now=b"-", refuse_later=b"-"), FakeBatchSend()
    msgs = [("scores", b"k", b"s%d" % i, i % 3) for i in range(9)] + [("alerts", b"k", b"a0", 1)]
    offsets = asyncio.run(batch_publisher(send, batches)._send_all(msgs))
    assert batches.batches == 4 and send.sent == []  # three score partitions and one alert partition
    assert batches.logs[("scores", 0)] == [b"s0", b"s3", b"s6"] and batches.logs[("alerts", 1)] == [b"a0"]
    assert offsets == [0, 0, 0, 1, 1, 1, 2, 2, 2, 0]


def test_only_the_messages_of_a_batch_refused_for_its_size_go_again_one_by_one() -> None:
    send, batches = FakeSend(refuse_now=b"-", refuse_later=b"big"), FakeBatchSend(too_big=b"big", size=2)
    pub = batch_publisher(send, batches)
    # partition 1 in batches of two: [a, big] refused, [b, c] stored; partition 0 stored
    msgs = [("scores", b"k", v, p) for v, p in ((b"a", 1), (b"big", 1), (b"b", 1), (b"c", 1), (b"d", 0))]
    offsets = asyncio.run(pub._send_all(msgs))
    assert batches.logs == {("scores", 1): [b"b", b"c"], ("scores", 0): [b"d"]}
    assert send.sent == [b"a"]  # again, alone (no duplicate of b or c); "big" never fits: dropped
    assert offsets == [1, None, 0, 1, 0]
    assert pub.metrics.outputs_dropped.labels("scores", "too_large")._value.get() == 1


def test_any_other_batch_error_is_raised_for_a_retry_after_the_other_batches_settled() -> None:
    send, batches = FakeSend(refuse_now=b"-", refuse_later=b"-"), FakeBatchSend(down=b"down")
    msgs = [("scores", b"k", b"ok", 0), ("scores", b"k", b"down", 1), ("scores", b"k", b"ok2", 2)]
    with pytest.raises(KafkaConnectionError):
        asyncio.run(batch_publisher(send, batches)._send_all(msgs))
    assert batches.logs == {("scores", 0): [b"ok"], ("scores", 1): [], ("scores", 2): [b"ok2"]}
