"""Alert feedback against the real broker: `anomalybert feedback` publishes verdicts keyed by alert id, `--summary`
reads each alert's latest verdict back, and the workers' feedback reader counts verdicts and dead-letters what it
cannot read."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from typing import Any

import pytest
from click.testing import CliRunner

from stream.feedback import FeedbackReader, read_feedback
from stream.metrics import Metrics
from stream.settings import Settings
from tests.stream_support import produce, read_topic
from tools.cli import cli

pytestmark = pytest.mark.integration


def test_feedback_is_published_summarized_counted_and_dead_lettered(services: Any,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    token = uuid.uuid4().hex[:10]
    topic, dlq = f"fb-{token}", f"dlq-{token}"
    monkeypatch.setenv("ANOMALYBERT_KAFKA__BOOTSTRAP", services.kafka_bootstrap)
    monkeypatch.setenv("ANOMALYBERT_KAFKA__TOPICS__FEEDBACK", topic)
    monkeypatch.setenv("ANOMALYBERT_KAFKA__TOPICS__DLQ", dlq)
    monkeypatch.setenv("ANOMALYBERT_KAFKA__GROUP_ID", f"g-{token}")
    settings = Settings()
    from stream.kafka import ensure_topics

    asyncio.run(ensure_topics(settings.kafka, [topic, dlq], compacted=[topic]))
    runner = CliRunner()
    for alert, verdict in (("pump-7:1000", "--true"), ("pump-7:5000", "--false"), ("web/cpu:7", "--true"),
                           ("pump-7:5000", "--true")):  # the operator changes their mind about the second
        result = runner.invoke(cli, ["feedback", alert, verdict, "--note", "checked"])
        assert result.exit_code == 0, result.output
    result = runner.invoke(cli, ["feedback", "pump-7", "--true"])
    assert result.exit_code == 2 and "<series_id>:<opened_ts>" in result.output

    got = asyncio.run(read_topic(services.kafka_bootstrap, topic, lambda ms: len(ms) >= 4))
    assert sorted((m["alert_id"], m["verdict"], m["note"]) for m in got) == [
        ("pump-7:1000", "true", "checked"), ("pump-7:5000", "false", "checked"), ("pump-7:5000", "true", "checked"),
        ("web/cpu:7", "true", "checked")]
    # one alert's verdicts share a partition (the key), so they stay in order
    assert [m["verdict"] for m in got if m["alert_id"] == "pump-7:5000"] == ["false", "true"]
    latest, unreadable = asyncio.run(read_feedback(settings.kafka))
    assert {a: fb.verdict for a, fb in latest.items()} == {"pump-7:1000": "true", "pump-7:5000": "true",
                                                          "web/cpu:7": "true"} and unreadable == 0
    runner.invoke(cli, ["feedback", "web/cpu:7", "--false"])
    summary = runner.invoke(cli, ["feedback", "--summary"])
    assert summary.exit_code == 0 and "3 alerts with a verdict" in summary.output
    assert "2 true, 1 false; alert precision 0.667" in summary.output, summary.output

    # A message from another tool that cannot be read, and the workers' reader.
    asyncio.run(produce(services.kafka_bootstrap, topic, [(b"x:1", b'{"alert_id": "x:1", "verdict": "yes"}')]))
    metrics = Metrics()
    reader = FeedbackReader(settings, metrics)

    async def run_until_counted() -> None:
        task = asyncio.create_task(reader.run())
        for _ in range(300):
            counted = sum(metrics.feedback.labels(v)._value.get() for v in ("true", "false"))
            if counted >= 5 and metrics.dead_letters.labels("invalid_field")._value.get() >= 1:
                break
            await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(run_until_counted())
    assert metrics.feedback.labels("true")._value.get() == 3 and metrics.feedback.labels("false")._value.get() == 2
    [letter] = asyncio.run(read_topic(services.kafka_bootstrap, dlq, lambda ms: len(ms) >= 1))
    assert letter["code"] == "invalid_field" and letter["topic"] == topic
    assert json.loads(base64.b64decode(letter["value_b64"]))["verdict"] == "yes"
