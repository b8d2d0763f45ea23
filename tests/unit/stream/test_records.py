"""Telemetry validation and the output message shapes."""

from __future__ import annotations

import json

import pytest

from stream.errors import InvalidRecord
from stream.records import DeadLetter, ScoreMessage, parse_telemetry, to_json


def parse(obj: object, channels: int = 1, key: bytes | None = None) -> object:
    raw = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
    return parse_telemetry(raw, key, channels, max_id_length=32)


def test_single_and_multi_channel_points() -> None:
    p = parse({"series_id": "web-01/cpu", "ts": 1732600000000, "value": 0.93})
    assert (p.series_id, p.ts, p.channels) == ("web-01/cpu", 1732600000000, (0.93,))
    q = parse({"series_id": "pump-7", "ts": "2026-11-26T03:00:00Z", "values": [0.1, 3.2, 7]}, channels=3)
    assert q.ts == 1795662000000 and q.channels == (0.1, 3.2, 7.0)
    assert parse({"series_id": "a", "ts": "2026-11-26T04:00:00.123+01:00", "value": 1}).ts == 1795662000123


@pytest.mark.parametrize(
    "obj,code",
    [
        (b"", "empty"),
        (b"{nope", "invalid_json"),
        (b'{"series_id": "a", "ts": 1, "value": NaN}', "invalid_field"),
        (b'{"series_id": "a", "ts": 1, "value": 1e400}', "invalid_field"),
        ({"series_id": "a", "ts": 1}, "invalid_field"),
        ({"series_id": "a", "ts": 1, "value": 1, "values": [1]}, "invalid_field"),
        ({"series_id": "a", "ts": 1.5, "value": 1}, "invalid_field"),
        ({"series_id": "a", "ts": "2026-11-26T03:00:00", "value": 1}, "invalid_field"),
        ({"series_id": "a", "ts": 1, "value": "1"}, "invalid_field"),
        ({"series_id": "a", "ts": 1, "value": True}, "invalid_field"),
        ({"series_id": "a" * 33, "ts": 1, "value": 1}, "series_id_too_long"),
        ({"series_id": "a", "ts": 1, "values": [1, 2]}, "channels_mismatch"),
        ({"series_id": "a", "ts": 1, "value": 1e39}, "invalid_field"),  # beyond float32: inf in the model
        ({"series_id": "a", "ts": 1, "value": -3.5e38}, "invalid_field"),
    ],
)
def test_bad_telemetry_is_refused_with_a_code(obj: object, code: str) -> None:
    with pytest.raises(InvalidRecord) as e:
        parse(obj)
    assert e.value.code == code and e.value.reason


def test_values_up_to_float32s_range_are_accepted_and_beyond_it_explained() -> None:
    assert parse({"series_id": "a", "ts": 1, "value": -3.4e38}).channels == (-3.4e38,)
    with pytest.raises(InvalidRecord) as e:
        parse({"series_id": "a", "ts": 1, "value": 2e39})
    assert "2e+39 is beyond +-3.403e+38 (float32" in e.value.reason


def test_key_must_match_series_id() -> None:
    assert parse({"series_id": "a", "ts": 1, "value": 1}, key=b"a").series_id == "a"
    with pytest.raises(InvalidRecord, match="key"):
        parse({"series_id": "a", "ts": 1, "value": 1}, key=b"b")


def test_dead_letter_keeps_the_original_bytes() -> None:
    raw = b"\xff\x00not json"
    dl = DeadLetter.of(
        InvalidRecord("invalid_json", "bad"),
        topic="telemetry",
        partition=3,
        offset=17,
        timestamp_ms=5,
        key=b"k",
        value=raw,
        worker="w",
    )
    back = DeadLetter.model_validate_json(to_json(dl))
    assert back.original_value() == raw and (back.topic, back.partition, back.offset) == ("telemetry", 3, 17)


def test_score_message_has_value_or_values() -> None:
    one = json.loads(
        to_json(
            ScoreMessage(
                series_id="a",
                ts=1,
                value=0.5,
                score=0.9,
                n_windows=3,
                is_anomaly=True,
                threshold=0.5,
                model_version="v",
            )
        )
    )
    assert "values" not in one and one["value"] == 0.5
