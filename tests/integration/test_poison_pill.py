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


def test_a_model_that_fails_on_one_window_holds_back_nothing(services: Any, tmp_path: Path) -> None:
    """The served graph raises (ONNX Runtime: an index out of bounds) on every window that holds one point of
    one series: that point gets no score, the windows over its neighbours are left out of their averages,
    every other point of every series is scored, and the worker goes on."""
    names = Names(uuid.uuid4().hex[:10], partitions=1)
    bundle = spike_bundle(tmp_path / "spike", fail_above=1000.0)  # served at lag 15: 16 windows per point
    env = names.env(services, bundle, ANOMALYBERT_WORKER__ID="model-fails", ANOMALYBERT_SCORING__MAX_BATCH="64")
    worker = Worker(env, tmp_path / "w.log").start()
    bad, good = f"bad-{names.token}", f"good-{names.token}"
    n, at, final = 400, 100, 400 - 15
    pts = []
    for i in range(n):
        pts.append(point(bad, T0 + 1000 * i, 5000.0 if i == at else float(i % 5)))
        pts.append(point(good, T0 + 1000 * i, float(i % 7)))
    try:
        asyncio.run(produce(services.kafka_bootstrap, names.topics["telemetry"], json_messages(pts)))
        scores = asyncio.run(read_topic(
            services.kafka_bootstrap, names.topics["scores"],
            lambda ms: sum(m.get("series_id") == good for m in ms) >= final
            and sum(m.get("series_id") == bad for m in ms) >= final - 1, timeout=90))
        assert worker.alive(), worker.log()
    finally:
        worker.stop()
    of_bad = {m["ts"]: m for m in scores if m["series_id"] == bad}
    assert sorted(of_bad) == [T0 + 1000 * i for i in range(final) if i != at]  # once each, all but the one
    assert sorted(m["ts"] for m in scores if m["series_id"] == good) == [T0 + 1000 * i for i in range(final)]
    # the neighbours within a window of the failing point are averaged without the windows that held it
    for i in range(at - 15, at + 16):
        if i != at:
            assert of_bad[T0 + 1000 * i]["n_windows"] == abs(i - at), i  # 16 windows, less those holding it
    assert of_bad[T0 + 1000 * (at + 16)]["n_windows"] == 16
    assert "could not score" in worker.log() and "out of data bounds" in worker.log()
