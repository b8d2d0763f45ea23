"""`publish`, `alerts` and `scores` against the real broker."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from click.testing import CliRunner

from tools.cli import cli

pytestmark = pytest.mark.integration


async def _read_all(bootstrap: str, topic: str, expected: int, timeout: float = 30.0) -> list[dict]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    out: list[dict] = []
    try:
        async def run() -> None:
            async for msg in consumer:
                out.append({"key": msg.key, **json.loads(msg.value)})
                if len(out) >= expected:
                    return
        await asyncio.wait_for(run(), timeout)
    finally:
        await consumer.stop()
    return out


def test_publish_replays_nab_style_and_series_id_files(services, unique, tmp_path: Path) -> None:
    nab = tmp_path / "machine_temp.csv"
    nab.write_text("timestamp,value\n2014-02-14 14:30:00,1.5\n2014-02-14 14:35:00,2.5\n2014-02-14 14:40:00,x\n")
    topic = f"telemetry-{unique}"
    bad = CliRunner().invoke(cli, ["publish", str(nab), "--topic", topic, "--bootstrap", services.kafka_bootstrap])
    assert bad.exit_code != 0 and "is not a number" in str(bad.exception or bad.output)

    nab.write_text("timestamp,value\n2014-02-14 14:30:00,1.5\n2014-02-14 14:35:00,2.5\n")
    multi = tmp_path / "fleet.csv"
    multi.write_text("timestamp,value,series_id\n1,0.1,pump-1\n2,0.2,pump-2\n3,0.3,pump-1\n")
    for f in (nab, multi):
        res = CliRunner().invoke(cli, ["publish", str(f), "--topic", topic, "--bootstrap", services.kafka_bootstrap])
        assert res.exit_code == 0, res.output
    got = asyncio.run(_read_all(services.kafka_bootstrap, topic, 5))
    assert {(m["series_id"], m["ts"], m["value"]) for m in got} == {
        ("machine_temp", 1392388200000, 1.5), ("machine_temp", 1392388500000, 2.5),
        ("pump-1", 1, 0.1), ("pump-2", 2, 0.2), ("pump-1", 3, 0.3)}
    assert all(m["key"] == m["series_id"].encode() for m in got)


def test_alerts_prints_what_the_topic_holds(services, unique) -> None:
    topic = f"alerts-{unique}"
    events = [
        {"series_id": "web-01/cpu", "alert_id": "web-01/cpu:100", "state": "open", "opened_ts": 100,
         "peak_ts": 100, "peak_score": 0.97, "model_version": "v1"},
        {"series_id": "web-01/cpu", "alert_id": "web-01/cpu:100", "state": "closed", "opened_ts": 100,
         "peak_ts": 103, "peak_score": 0.99, "model_version": "v1"},
    ]

    async def produce() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=services.kafka_bootstrap)
        await producer.start()
        for e in events:
            await producer.send_and_wait(topic, json.dumps(e).encode(), key=b"web-01/cpu")
        await producer.stop()

    asyncio.run(produce())
    args = ["alerts", "--topic", topic, "--bootstrap", services.kafka_bootstrap, "--idle-timeout", "3"]
    res = CliRunner().invoke(cli, [*args, "--format", "json"])
    assert res.exit_code == 0, res.output
    assert [json.loads(line) for line in res.output.splitlines()] == events
    table = CliRunner().invoke(cli, args).output.splitlines()
    assert table[0].split()[:2] == ["state", "series_id"]
    assert [row.split()[0] for row in table[1:]] == ["open", "closed"]
