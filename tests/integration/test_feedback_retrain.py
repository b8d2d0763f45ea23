"""The feedback loop end to end, against the real broker and Redis: a worker raises alerts on a replayed series,
an operator marks them false alarms (`anomalybert feedback`), `anomalybert retrain --from-topic` reads the verdicts
with the telemetry and reports both models on the fed-back alerts, and the next replay of the series through the
new model raises fewer alerts.

What this does not show: that the verdicts, rather than the retrain itself (a new head and a threshold chosen
again), lower the alerts. For that comparison see docs/results.md ("Alert feedback")."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from evaluation.detect import TorchScorer, score_series
from evaluation.series import load_series
from model.registry import Registry
from tests.stream_support import Names, Worker, read_topic, replay_series
from tools.cli import cli

pytestmark = pytest.mark.integration

T0 = 1_732_600_000_000
N, EVERY = 1500, 150
BURSTS = range(EVERY, N, EVERY)


def _series() -> np.ndarray:
    """A sine with a short burst every 150 points: normal for this pump (a valve cycling), odd to the model."""
    rng = np.random.default_rng(0)
    v = np.sin(np.arange(N) / 8) + rng.normal(0, 0.1, N)
    for k in BURSTS:
        v[k:k + 3] += 3.0
    return v


def _base(tmp_path: Path, values: np.ndarray) -> Path:
    """A small AnomalyBERT trained on synthetic anomalies, its threshold the 99th percentile of its own scores on
    the series (a sensitive model: it raises false alarms there), exported into a registry."""
    from model import families
    from model.families.export import export_bundle
    from training.train import TrainConfig, train

    made = CliRunner().invoke(cli, ["generate", "-o", str(tmp_path / "d"), "-n", "800", "--seed", "1"])
    assert made.exit_code == 0, made.output
    cfg = families.get("anomalybert").config(window_size=32, d_model=32, n_heads=2, n_layers=2, d_ff=64)
    ckpt = train(load_series(tmp_path / "d", labels=True), cfg, TrainConfig(epochs=2, progress=False, score_lag=0))
    ckpt.threshold = float(np.nanpercentile(score_series(TorchScorer(ckpt), values, 32, 1, 0), 99))
    directory, _ = export_bundle(ckpt, tmp_path / "base")
    reg = Registry(tmp_path / "registry")
    reg.publish(directory)
    return reg.root


def _opened(services: Any, topic: str, since_ts: int) -> list[str]:
    got = asyncio.run(read_topic(services.kafka_bootstrap, topic, lambda ms: False, timeout=3.0))
    return [m["alert_id"] for m in got if isinstance(m, dict) and m.get("state") == "open"
            and m["opened_ts"] >= since_ts]


def test_false_alarm_feedback_retrains_the_alerts_away(services: Any, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    values = _series()
    registry = _base(tmp_path, values)
    names = Names(uuid.uuid4().hex[:10], partitions=2)
    feedback_topic = f"fb-{names.token}"
    for key, value in {"BOOTSTRAP": services.kafka_bootstrap, "TOPICS__FEEDBACK": feedback_topic,
                       "TOPICS__ALERTS": names.topics["alerts"], "GROUP_ID": f"g-{names.token}"}.items():
        monkeypatch.setenv(f"ANOMALYBERT_KAFKA__{key}", value)
    sid = f"pump-{names.token}"
    reg = Registry(registry)

    def replay(first_ts: int, label: str) -> list[str]:
        env = names.env(services, reg.path(reg.current()), ANOMALYBERT_WORKER__ID=label,
                        ANOMALYBERT_KAFKA__TOPICS__FEEDBACK=feedback_topic)
        worker = Worker(env, tmp_path / f"{label}.log").start()
        ts = [first_ts + 1000 * i for i in range(N)]
        got = replay_series(services, names, worker, sid, ts, values)
        assert len(got) == N
        return _opened(services, names.topics["alerts"], first_ts)

    before = replay(T0, "before")
    assert len(before) >= 3, "the sensitive model raises false alarms on the bursts"
    runner = CliRunner()
    for alert_id in before:
        marked = runner.invoke(cli, ["feedback", alert_id, "--false", "--note", "valve cycling"])
        assert marked.exit_code == 0, marked.output
    retrained = runner.invoke(cli, ["retrain", "--from-topic", names.topics["telemetry"], "--registry", str(registry),
                                    "--epochs", "3", "--no-announce", "--force", "--no-progress", "--seed", "0"])
    assert retrained.exit_code == 0, retrained.output
    assert f"feedback: {len(before)} alert(s) with a verdict" in retrained.output
    assert "the fed-back alerts" in retrained.output
    manifest = json.loads((reg.path(reg.current()) / "manifest.json").read_text())
    gate = manifest["metrics"]["gate"]["feedback"]
    assert gate["current"]["n_false"] == len(before) and gate["current"]["raised_false"] == len(before)

    after = replay(T0 + 10_000_000, "after")
    assert len(after) < len(before), (before, after)
