"""`retrain --from-topic`'s bounded read of the telemetry topic against the real broker."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest

from stream.settings import KafkaSettings
from tests.stream_support import produce
from training.retrain import read_topic

pytestmark = pytest.mark.integration


def test_read_topic_bounds_filters_and_dedupes(services, unique) -> None:
    topic = f"tel-{unique}"
    msgs = [(f"s{s}".encode(), json.dumps({"series_id": f"s{s}", "ts": 1000 + i, "value": float(i)}).encode())
            for i in range(100) for s in range(3)]
    msgs += [(b"s0", json.dumps({"series_id": "s0", "ts": 1050, "value": -1.0}).encode()),  # late duplicate
             (b"s1", b"{not json"), (b"s2", json.dumps({"series_id": "s2", "ts": 5000, "values": [1, 2]}).encode())]
    # What the worker dead-letters is not learnt from either: a date-time without an offset, a key that is
    # not the series id.
    msgs += [(b"s1", json.dumps({"series_id": "s1", "ts": "2026-01-01T00:00:00", "value": 1.0}).encode()),
             (b"other", json.dumps({"series_id": "s2", "ts": 6000, "value": 1.0}).encode())]
    asyncio.run(produce(services.kafka_bootstrap, topic, msgs))
    kafka = KafkaSettings(bootstrap=services.kafka_bootstrap)

    every = {s.name: s for s in asyncio.run(read_topic(kafka, topic, None, None, None, None))}
    assert sorted(every) == ["s0", "s1", "s2"]
    for s in every.values():
        assert list(s.timestamps) == list(range(1000, 1100))  # late duplicate dropped, invalid ones skipped
        np.testing.assert_array_equal(s.values, np.arange(100.0))

    some = asyncio.run(read_topic(kafka, topic, None, 1049, None, {"s1"}))
    assert [s.name for s in some] == ["s1"] and some[0].timestamps[-1] == 1049 and len(some[0]) == 50
    capped = asyncio.run(read_topic(kafka, topic, None, None, 30, None))
    assert 30 <= sum(len(s) for s in capped) < 300
