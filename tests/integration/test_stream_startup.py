"""Start-up fails fast with one clear line when the bundle, Redis or the broker is unusable."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from stream.cli import stream_command
from tests.stream_support import random_bundle
from tools.localstack import free_port

pytestmark = pytest.mark.integration


def check(monkeypatch: pytest.MonkeyPatch, **env: str) -> Any:
    for k, v in env.items():
        monkeypatch.setenv(f"ANOMALYBERT_{k}", v)
    return CliRunner().invoke(stream_command, ["--check"])


def test_missing_bundle(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    result = check(monkeypatch, MODEL__PATH=str(tmp_path / "nothing"))
    assert result.exit_code == 1 and "model bundle unusable" in result.output


def test_score_lag_outside_the_window(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    result = check(monkeypatch, MODEL__PATH=str(random_bundle(tmp_path / "b")), SCORING__SCORE_LAG="16")
    assert result.exit_code == 1 and "score_lag must be in [0, 15]" in result.output


def test_unreachable_redis(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    result = check(
        monkeypatch,
        MODEL__PATH=str(random_bundle(tmp_path / "b")),
        REDIS__URL=f"redis://127.0.0.1:{free_port()}/0",
        REDIS__SOCKET_TIMEOUT_S="2",
        REDIS__CONNECT_TIMEOUT_S="2",
    )
    assert result.exit_code == 1 and "Redis" in result.output and "unreachable" in result.output


def test_a_redis_that_is_restarting_is_waited_for(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                  services: Any) -> None:
    """A worker started while Redis restarts (a soak's join during its Redis kill) waits for it instead of
    exiting, as it waits for the broker."""
    import shutil
    import subprocess
    import threading

    port = free_port()
    exe = shutil.which("redis-server")
    assert exe is not None
    procs: list[subprocess.Popen] = []
    timer = threading.Timer(1.5, lambda: procs.append(subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)))
    timer.start()
    try:
        result = check(monkeypatch, MODEL__PATH=str(random_bundle(tmp_path / "b")),
                       REDIS__URL=f"redis://127.0.0.1:{port}/0", REDIS__CONNECT_TIMEOUT_S="20",
                       KAFKA__BOOTSTRAP=services.kafka_bootstrap)
        assert result.exit_code == 0, result.output
    finally:
        timer.cancel()
        for p in procs:
            p.terminate()
            p.wait(10)


def test_unreachable_broker(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, services: Any) -> None:
    result = check(
        monkeypatch,
        MODEL__PATH=str(random_bundle(tmp_path / "b")),
        REDIS__URL=services.redis_url,
        KAFKA__BOOTSTRAP=f"127.0.0.1:{free_port()}",
        KAFKA__CONNECT_TIMEOUT_S="3",
    )
    assert result.exit_code == 1 and "Kafka broker" in result.output and "unreachable" in result.output


def test_check_passes_and_creates_topics(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, services: Any, unique: str
) -> None:
    result = check(
        monkeypatch,
        MODEL__PATH=str(random_bundle(tmp_path / "b")),
        REDIS__URL=services.redis_url,
        KAFKA__BOOTSTRAP=services.kafka_bootstrap,
        KAFKA__PARTITIONS="3",
        KAFKA__TOPICS__TELEMETRY=f"tel-{unique}",
        KAFKA__TOPICS__SCORES=f"scores-{unique}",
    )
    assert result.exit_code == 0, result.output
    assert f"'tel-{unique}': 3" in result.output and f"'scores-{unique}': 3" in result.output
