"""The settings tree: environment nesting, secrets, start-up validation of score_lag."""

from __future__ import annotations

import sys

import pytest
from pydantic import ValidationError

from stream.settings import Settings


def test_environment_nesting_and_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANOMALYBERT_KAFKA__BOOTSTRAP", "k1:9092,k2:9092")
    monkeypatch.setenv("ANOMALYBERT_KAFKA__TOPICS__SCORES", "scores-v2")
    monkeypatch.setenv("ANOMALYBERT_KAFKA__SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("ANOMALYBERT_KAFKA__SASL_USERNAME", "u")
    monkeypatch.setenv("ANOMALYBERT_KAFKA__SASL_PASSWORD", "hunter2")
    monkeypatch.setenv("ANOMALYBERT_SCORING__THRESHOLDS", '{"pump-7": 0.9}')
    s = Settings(redis={"key_prefix": "x:"})
    assert s.kafka.bootstrap == "k1:9092,k2:9092" and s.kafka.topics.scores == "scores-v2"
    assert s.kafka.topics.telemetry == "telemetry"
    assert s.kafka.consumer == "aiokafka"  # the default; "faust" runs the agent instead
    assert "hunter2" not in repr(s) and s.kafka.sasl_password.get_secret_value() == "hunter2"
    assert s.scoring.thresholds == {"pump-7": 0.9} and s.redis.key_prefix == "x:"


@pytest.mark.parametrize(
    "env",
    [
        {"ANOMALYBERT_KAFKA__SECURITY_PROTOCOL": "SASL_SSL"},  # no credentials
        {"ANOMALYBERT_KAFKA__SECURITY_PROTOCOL": "BOGUS"},
        {"ANOMALYBERT_REDIS__URL": "http://x"},
        {"ANOMALYBERT_REDIS__KEY_PREFIX": "a{b}"},
        {"ANOMALYBERT_SCORING__THRESHOLDS": '{"a": 1.5}'},
        {"ANOMALYBERT_KAFKA__TOPICS__TELEMETRY": "bad topic"},
        {"ANOMALYBERT_SCORING__MAX_BATCH": "0"},
        {"ANOMALYBERT_KAFKA__CONSUMER": "kafka-python"},
    ],
)
def test_bad_settings_fail_at_start_up(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(ValidationError):
        Settings()


def test_importing_stream_does_not_import_torch_or_faust() -> None:
    import subprocess

    code = (
        "import sys, stream, stream.cli, stream.app, stream.agents, stream.processor, stream.state; "
        "bad = [m for m in ('torch', 'pandas', 'faust') if m in sys.modules]; print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_redis_cluster_is_chosen_by_setting_or_url() -> None:
    from stream.settings import RedisSettings

    by_url = RedisSettings(url="redis+cluster://node-1:7000")
    assert by_url.is_cluster and by_url.client_url == "redis://node-1:7000"
    assert RedisSettings(url="redis://node-1:7000", cluster=True).is_cluster
    assert not RedisSettings().is_cluster and RedisSettings().client_url == "redis://localhost:6379/0"
    assert RedisSettings(url="rediss+cluster://n:7000/0").client_url == "rediss://n:7000/0"
    for bad in ("redis+cluster://n:7000/2", "unix:///tmp/r.sock"):
        with pytest.raises(ValidationError):
            RedisSettings(url=bad, cluster=True)


def test_a_served_stride_reaches_the_geometry_and_a_bad_one_stops_start_up(monkeypatch) -> None:
    from stream.app import load_checked_bundle
    from stream.errors import StartupError

    monkeypatch.setenv("ANOMALYBERT_SCORING__STRIDE", "4")
    _, geometry = load_checked_bundle(Settings())
    assert (geometry.stride, geometry.lag) == (4, 3)  # the shipped bundle's lag 0, raised to stride - 1
    monkeypatch.setenv("ANOMALYBERT_SCORING__STRIDE", "65")
    with pytest.raises(StartupError, match=r"scoring.stride: stride must be in \[1, 64\]"):
        load_checked_bundle(Settings())
