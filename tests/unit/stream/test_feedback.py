"""Feedback messages: what the workers accept, count and dead-letter."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import pytest

from stream.errors import InvalidRecord
from stream.feedback import FeedbackReader
from stream.metrics import Metrics
from stream.records import DeadLetter, Feedback, parse_feedback
from stream.settings import Settings

GOOD = {"alert_id": "web-01/cpu:1732600000000", "verdict": "false", "note": "deploy", "at": 1732603600000}


def test_a_verdict_names_its_alert_series_and_start() -> None:
    fb = parse_feedback(json.dumps(GOOD).encode(), b"web-01/cpu:1732600000000")
    assert (fb.series_id, fb.opened_ts, fb.is_true) == ("web-01/cpu", 1732600000000, False)
    assert parse_feedback(json.dumps({**GOOD, "verdict": "true", "extra": 1}).encode(), None).is_true
    assert Feedback(alert_id="a:b:12", verdict="true", at=0).series_id == "a:b"  # ':' inside a series id


@pytest.mark.parametrize(("raw", "key", "code"), [
    (b"", None, "empty"),
    (None, b"x:1", "empty"),
    (b"{not json", None, "invalid_json"),
    (json.dumps({**GOOD, "verdict": "maybe"}).encode(), None, "invalid_field"),
    (json.dumps({**GOOD, "alert_id": "web-01/cpu"}).encode(), None, "invalid_field"),
    (json.dumps({**GOOD, "alert_id": ":17"}).encode(), None, "invalid_field"),
    (json.dumps({k: v for k, v in GOOD.items() if k != "at"}).encode(), None, "invalid_field"),
    (json.dumps({**GOOD, "note": "x" * 1001}).encode(), None, "invalid_field"),
    (json.dumps(GOOD).encode(), b"web-01/cpu:1", "key_mismatch"),
])
def test_what_cannot_be_read_is_refused_with_a_code(raw: bytes | None, key: bytes | None, code: str) -> None:
    with pytest.raises(InvalidRecord) as err:
        parse_feedback(raw, key)
    assert err.value.code == code


@dataclass
class Msg:
    value: bytes | None
    key: bytes | None
    topic: str = "feedback"
    partition: int = 0
    offset: int = 7
    timestamp: int = 1732603600000


class Producer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes | None]] = []

    async def send_and_wait(self, topic: str, value: bytes, key: bytes | None = None) -> None:
        self.sent.append((topic, value, key))


def test_the_reader_counts_verdicts_and_dead_letters_the_rest() -> None:
    metrics, producer = Metrics(), Producer()
    reader = FeedbackReader(Settings(), metrics)
    key = GOOD["alert_id"].encode()
    for msg in (Msg(json.dumps(GOOD).encode(), key), Msg(json.dumps({**GOOD, "verdict": "true"}).encode(), key),
                Msg(json.dumps({**GOOD, "verdict": "true"}).encode(), None), Msg(b"{oops", b"k")):
        asyncio.run(reader.handle(msg, producer))

    def value(counter: Any, label: str) -> float:
        return counter.labels(label)._value.get()

    assert value(metrics.feedback, "true") == 2 and value(metrics.feedback, "false") == 1
    assert value(metrics.dead_letters, "invalid_json") == 1
    [(topic, body, k)] = producer.sent
    letter = DeadLetter.model_validate_json(body)
    assert topic == Settings().kafka.topics.dlq and k == b"k"
    assert (letter.code, letter.topic, letter.offset, letter.original_value()) == ("invalid_json", "feedback", 7,
                                                                                   b"{oops")
    assert reader.group_id == f"{Settings().kafka.group_id}-feedback"
