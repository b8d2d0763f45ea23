"""A bundle served through the per-series calibration (`calibration.per_series` in its manifest), by a real
worker (real broker and Redis): every point's published score is its surprise for its own series, equal to
what `detect` computes offline, the raw score rides along, and one threshold alerts on series whose raw
scores sit at different levels."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis

from evaluation.detect import Detector
from model.bundle import load_bundle
from model.serving import serve
from stream.state import SeriesState
from tests.stream_support import Names, Worker, calibrated, json_messages, point, produce, read_topic, spike_bundle

pytestmark = pytest.mark.integration

T0 = 1_732_600_000_000


def _series(n: int, seed: int, level: float, spike_at: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    v = level + np.sin(np.arange(n) / 5) + 0.2 * rng.normal(size=n)
    v[spike_at:spike_at + 2] += 12.0
    return v


def _replay(services: Any, names: Names, series: dict[str, np.ndarray], ts: list[int], final: int) -> list[dict]:
    """Send every series' points, interleaved by series, and read the scores until each has `final`."""
    msgs = [m for sid, v in series.items()
            for m in json_messages(point(sid, t, float(x)) for t, x in zip(ts, v, strict=True))]
    asyncio.run(produce(services.kafka_bootstrap, names.topics["telemetry"], msgs))
    return asyncio.run(read_topic(
        services.kafka_bootstrap, names.topics["scores"],
        lambda ms: all(sum(1 for m in ms if m.get("series_id") == sid) >= final for sid in series),
        timeout=120))


def test_a_calibrated_bundle_publishes_offline_equal_surprise_per_series(
        services: Any, tmp_path: Path) -> None:
    bundle_dir = calibrated(spike_bundle(tmp_path / "cal", window=16), threshold=0.4)
    bundle = load_bundle(bundle_dir)
    served = serve(bundle)
    assert served.geometry.calibrated
    names = Names(uuid.uuid4().hex[:10])
    worker = Worker(names.env(services, bundle_dir, ANOMALYBERT_ALERTS__COOLDOWN_POINTS="3"),
                    tmp_path / "worker.log").start()
    try:
        n = 400
        series = {f"cal-{names.token}-{k}": _series(n, k, level, spike)
                  for k, (level, spike) in enumerate(((0.0, 300), (3.0, 330)))}
        ts = [T0 + 1000 * i for i in range(n)]
        final = n - served.lag
        got = _replay(services, names, series, ts, final)
        alerts = asyncio.run(read_topic(services.kafka_bootstrap, names.topics["alerts"],
                                        lambda ms: len(ms) >= 2, timeout=30))
        assert worker.alive(), worker.log()
        offline = Detector(bundle_dir)
        flagged = {}
        for sid, values in series.items():
            mine = [m for m in got if m["series_id"] == sid]
            assert [m["ts"] for m in mine] == ts[:final], "one score per point, in order"
            score = np.array([m["score"] for m in mine])
            raw = np.array([m["raw_score"] for m in mine])
            np.testing.assert_allclose(raw, offline.raw_score(values)[:final], atol=1e-5)
            np.testing.assert_allclose(score, offline.score(values)[:final], atol=1e-5)
            assert (score[:50] == 0).all(), "no surprise before min_history scores"
            assert all(m["threshold"] == 0.4 and m["is_anomaly"] == (m["score"] >= 0.4) for m in mine)
            flagged[sid] = (sum(m["is_anomaly"] for m in mine), int((raw >= 0.4).sum()))
            # the state in Redis carries the sketch
            blob = redis.Redis.from_url(services.redis_url).get(f"{names.prefix}{{{sid}}}:st")
            assert blob is not None and SeriesState.decode(blob).sketch is not None
        opened = {a["series_id"] for a in alerts if a["state"] == "open"}
        assert opened == set(series), "the one threshold alerts on both series, whatever their raw level"
        # the spike model's raw scores sit near 0 on the level-0 series and spread over (0, 1) on the level-3
        # one, where the same threshold on raw scores would flag dozens of normal points
        (calm, calm_raw), (busy, busy_raw) = flagged.values()
        assert busy_raw > 20 and busy <= 5 and 2 <= calm <= 5, flagged
    finally:
        worker.stop()


def test_shape_novelty_is_served_as_offline_and_alerts_on_an_odd_beat(services: Any, tmp_path: Path) -> None:
    """A bundle with shape novelty (`calibration.per_series.novelty`): the published scores equal `detect`'s,
    the state in Redis keeps the novelty's history, and an odd beat whose values stay in range (the spike
    model's raw score stays low) is alerted through its shape."""
    from tests.unit.model.test_novelty import heartbeat

    bundle_dir = calibrated(spike_bundle(tmp_path / "nov", window=16), threshold=0.4, novelty=(16, 160))
    served = serve(load_bundle(bundle_dir))
    assert served.geometry.novel and served.lag == 15
    names = Names(uuid.uuid4().hex[:10])
    worker = Worker(names.env(services, bundle_dir, ANOMALYBERT_ALERTS__COOLDOWN_POINTS="3"),
                    tmp_path / "worker.log").start()
    try:
        n, odd = 700, 600
        series = {f"nov-{names.token}-{k}": heartbeat(n, period=20, odd_at=odd, seed=k) * scale + level
                  for k, (scale, level) in enumerate(((1.0, 0.0), (40.0, 500.0)))}
        ts = [T0 + 1000 * i for i in range(n)]
        final = n - served.lag
        got = _replay(services, names, series, ts, final)
        assert worker.alive(), worker.log()
        offline = Detector(bundle_dir)
        for sid, values in series.items():
            mine = [m for m in got if m["series_id"] == sid]
            assert [m["ts"] for m in mine] == ts[:final], "one score per point, in order"
            score = np.array([m["score"] for m in mine])
            raw = np.array([m["raw_score"] for m in mine])
            np.testing.assert_allclose(raw, offline.raw_score(values)[:final], atol=1e-5)
            np.testing.assert_allclose(score, offline.score(values)[:final], atol=1e-5)
            hot = np.flatnonzero(score >= 0.4)
            assert len(hot) and hot.min() >= odd and hot.min() < odd + 40, hot  # alerted at the odd beat only
            assert raw[odd:odd + 40].max() < 0.5, "the values alone stay ordinary"
            blob = redis.Redis.from_url(services.redis_url).get(f"{names.prefix}{{{sid}}}:st")
            state = SeriesState.decode(blob)
            assert state.shape is not None and len(state.shape) == 159
    finally:
        worker.stop()
