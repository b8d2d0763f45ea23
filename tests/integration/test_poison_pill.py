"""A poison pill against the real broker: one invalid message close to the broker's 1 MB limit, whose dead letter
would not fit a request if it carried the whole value, must not hold back the good points behind it."""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.stream_support import Names, Worker, json_messages, point, produce, read_topic, spike_bundle

pytestmark = pytest.mark.integration

T0 = 1_732_600_000_000


def test_an_oversized_bad_message_is_dead_lettered_bounded_and_the_partition_goes_on(
    services: Any, tmp_path: Path
) -> None:
    names = Names(uuid.uuid4().hex[:10], partitions=1)  # one partition: the good points queue behind the pill
    bundle = spike_bundle(tmp_path / "spike")
    worker = Worker(names.env(services, bundle, ANOMALYBERT_WORKER__ID="pill"), tmp_path / "w.log").start()
    sid = f"after-pill-{names.token}"
    pill = json.dumps({"series_id": sid, "ts": T0, "value": "x" * 900_000}).encode()  # a string value: invalid
    try:
        asyncio.run(produce(services.kafka_bootstrap, names.topics["telemetry"], [(sid.encode(), pill)]))
        good = [point(sid, T0 + 1000 * (i + 1), float(i % 5)) for i in range(400)]
        asyncio.run(produce(services.kafka_bootstrap, names.topics["telemetry"], json_messages(good)))
        final = 400 - 15  # the spike bundle is served at window_size - 1
        scores = asyncio.run(read_topic(services.kafka_bootstrap, names.topics["scores"],
                                        lambda ms: sum(m.get("series_id") == sid for m in ms) >= final, timeout=90))
        letters = asyncio.run(read_topic(services.kafka_bootstrap, names.topics["dlq"], lambda ms: len(ms) >= 1,
                                         timeout=30))
        assert worker.alive(), worker.log()
    finally:
        worker.stop()
    assert [m["ts"] for m in scores if m.get("series_id") == sid] == [p["ts"] for p in good[:final]]
    (dl,) = letters
    assert dl["code"] == "invalid_field" and dl["value_bytes"] == len(pill) and dl["value_truncated"] is True
    assert dl["value_sha256"] == hashlib.sha256(pill).hexdigest() and len(dl["value_b64"]) < 100_000
    assert "value truncated" in dl["reason"]
