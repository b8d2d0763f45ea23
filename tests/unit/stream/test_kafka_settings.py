"""The faust side of the worker: the consumer fetch wait from the settings, the lean Monitor."""

from __future__ import annotations

from pathlib import Path

import pytest

from stream.app import Checked, build_app, load_checked_bundle
from stream.settings import Settings


def test_fetch_max_wait_default_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().kafka.fetch_max_wait_ms == 10
    monkeypatch.setenv("ANOMALYBERT_KAFKA__FETCH_MAX_WAIT_MS", "250")
    assert Settings().kafka.fetch_max_wait_ms == 250


async def test_worker_consumer_gets_the_fetch_wait(tmp_path: Path) -> None:
    settings = Settings(
        kafka={"fetch_max_wait_ms": 7},
        model={"reload": False},
        worker={"data_dir": tmp_path, "web_enabled": False, "id": "w"},
    )
    bundle, geometry = load_checked_bundle(settings)
    app, runtime = build_app(settings, Checked(bundle, geometry, {}))
    try:
        consumer = app.consumer._thread._create_worker_consumer(app.transport)
        assert consumer._fetch_max_wait_ms == 7
        assert consumer._group_id == settings.kafka.group_id
        assert type(app.monitor).__name__ == "LeanMonitor"
        await consumer.stop()  # never started: only releases its client
    finally:
        runtime.scorer.close()
