"""Helpers for stream tests: bundles, worker subprocesses, producing telemetry and reading topics back.

`spike_bundle` is a hand-written graph whose per-point score is sigmoid(4 * (max_c |x| - 4)) on z-scored
input: near 0 for ordinary N(0, 1) points, near 1 for a 20-sigma spike, so alert tests do not depend on
what random weights happen to do. `tests.bundles.tiny_bundle` is the real encoder with random weights.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from model.bundle import DEFAULT_BUNDLE_DIR, INPUT_NAME, MODEL_FILE, OUTPUT_NAME, write_bundle
from tests.bundles import TINY, tiny_bundle

ROOT = Path(__file__).resolve().parents[1]


def shipped_redis_flags() -> list[str]:
    """The redis-server flags docker-compose.yml ships (its durability; the Kubernetes notes ask the same)."""
    import yaml

    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return list(compose["services"]["redis"]["command"][1:])


def default_bundle_exists() -> bool:
    return (DEFAULT_BUNDLE_DIR / MODEL_FILE).is_file()


def random_bundle(directory: Path, channels: int = 1, window: int = 16, seed: int = 0) -> Path:
    """The real AnomalyBERT graph, tiny, random weights (window-scope min-max normalization)."""
    from dataclasses import replace

    return tiny_bundle(directory, seed=seed, cfg=replace(TINY, channels=channels, window_size=window))


def calibrated(directory: Path, threshold: float, halflife: float = 200.0, min_history: int = 50,
               novelty: tuple[int, int] | None = None) -> Path:
    """The bundle in `directory`, rewritten to be served through the per-series tail calibration (its
    manifest's `calibration.per_series`), with `threshold` on the calibrated scale. With `novelty` (length,
    history) also shape novelty, which needs the series scope: the normalization becomes running z-scores
    (half-life 100)."""
    path = directory / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["threshold"] = threshold
    manifest["calibration"]["per_series"] = {"method": "tail", "halflife": halflife, "min_history": min_history}
    if novelty is not None:
        manifest["calibration"]["per_series"]["novelty"] = {"length": novelty[0], "history": novelty[1]}
        manifest["normalization"] = {"kind": "zscore", "scope": "series", "offset": [], "scale": [],
                                     "halflife": 100.0}
    path.write_text(json.dumps(manifest, indent=1))
    return directory


def spike_bundle(directory: Path, channels: int = 1, window: int = 16, threshold: float = 0.5,
                 fail_above: float | None = None) -> Path:
    """`fail_above`: the graph also fails to run (ONNX Runtime raises: a Gather index out of bounds) on any
    batch holding a window with a point |x| above it, as a model with a data-dependent bug would."""
    import torch
    from torch import nn

    class Spike(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, W, C) -> (B, W)
            score = torch.sigmoid(4.0 * (x.abs().amax(dim=-1) - 4.0))
            if fail_above is None:
                return score
            # index 1 into a 1-element table wherever |x| > fail_above: ORT refuses to run the batch
            idx = (x.abs().amax(dim=-1) > fail_above).long().amax(dim=-1, keepdim=True).expand_as(score)
            return score + torch.zeros(1)[idx]

    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            Spike(),
            (torch.zeros(2, window, channels),),
            buf,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            opset_version=17,
            dynamo=False,
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
        )
    write_bundle(
        directory,
        buf.getvalue(),
        {
            "family": "test-spike",
            "model": {},  # a family's own config: the worker never reads it
            "window_size": window,
            "stride": 1,
            "channels": channels,
            "threshold": threshold,
            "normalization": {
                "kind": "zscore",
                "scope": "global",
                "offset": [0.0] * channels,
                "scale": [1.0] * channels,
            },
        },
    )
    return directory


@dataclass
class Names:
    """Per-test unique topics, group and key prefix, as worker environment variables."""

    token: str
    partitions: int = 4

    @property
    def topics(self) -> dict[str, str]:
        t = self.token
        return {
            "telemetry": f"tel-{t}",
            "scores": f"scores-{t}",
            "alerts": f"alerts-{t}",
            "dlq": f"tel-{t}.dlq",
            "model_updates": f"mu-{t}",
        }

    @property
    def prefix(self) -> str:
        return f"t{self.token}:"

    def env(self, services: Any, bundle: Path, **extra: Any) -> dict[str, str]:
        env = {
            "ANOMALYBERT_KAFKA__BOOTSTRAP": services.kafka_bootstrap,
            "ANOMALYBERT_KAFKA__GROUP_ID": f"g-{self.token}",
            "ANOMALYBERT_KAFKA__PARTITIONS": str(self.partitions),
            "ANOMALYBERT_KAFKA__SESSION_TIMEOUT_S": "6",
            "ANOMALYBERT_KAFKA__HEARTBEAT_INTERVAL_S": "1",
            "ANOMALYBERT_KAFKA__REBALANCE_TIMEOUT_S": "10",
            "ANOMALYBERT_KAFKA__COMMIT_INTERVAL_S": "0.5",
            "ANOMALYBERT_REDIS__URL": services.redis_url,
            "ANOMALYBERT_REDIS__KEY_PREFIX": self.prefix,
            "ANOMALYBERT_MODEL__PATH": str(bundle),
            "ANOMALYBERT_WORKER__WEB_ENABLED": "false",
            "ANOMALYBERT_WORKER__OUTBOX_CLAIM_S": "3",
            "ANOMALYBERT_WORKER__SWEEP_INTERVAL_S": "0.5",
            "ANOMALYBERT_SCORING__MAX_WAIT_S": "0.05",
        }
        for name, topic in self.topics.items():
            env[f"ANOMALYBERT_KAFKA__TOPICS__{name.upper()}"] = topic
        env.update({k: str(v) for k, v in extra.items()})
        return env


@dataclass
class Worker:
    """A `python -m stream worker` subprocess; its output goes to a log file for post-mortems."""

    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen | None = field(default=None, init=False)

    def start(self) -> Worker:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ANOMALYBERT_")} | self.env
        env["PYTHONUNBUFFERED"] = "1"
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "stream", "worker"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        return self

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self, timeout: float = 30) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode

    async def wait_ready(self, timeout: float = 60) -> None:
        """Until the worker has processed its first batch (it logs 'ready' then)."""
        deadline = time.monotonic() + timeout
        while ") ready" not in self.log_path.read_text(errors="replace"):
            assert self.alive(), f"worker died:\n{self.log()}"
            assert time.monotonic() < deadline, f"worker not ready after {timeout}s:\n{self.log()}"
            await asyncio.sleep(0.1)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:]


def point(series_id: str, ts: int, value: float | list[float]) -> dict[str, Any]:
    key = "values" if isinstance(value, list) else "value"
    return {"series_id": series_id, "ts": ts, key: value}


async def produce(bootstrap: str, topic: str, messages: Iterable[tuple[bytes | None, bytes]]) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        futures = [await producer.send(topic, value=v, key=k) for k, v in messages]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


def json_messages(points: Iterable[dict[str, Any]]) -> list[tuple[bytes, bytes]]:
    return [(p["series_id"].encode(), json.dumps(p).encode()) for p in points]


async def read_topic(
    bootstrap: str, topic: str, until: Any, timeout: float = 60.0, settle: float = 1.0
) -> list[dict[str, Any]]:
    """Read a topic from the start until `until(messages)` is true, then `settle` seconds more (to catch
    duplicates that would follow), or until `timeout`. Returns decoded JSON values (raw bytes if not JSON)."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    out: list[Any] = []
    deadline = time.monotonic() + timeout
    done_at: float | None = None
    try:
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                for r in records:
                    try:
                        out.append(json.loads(r.value))
                    except ValueError:
                        out.append(r.value)
            if done_at is None and until(out):
                done_at = time.monotonic()
            if done_at is not None and time.monotonic() - done_at >= settle:
                break
    finally:
        await consumer.stop()
    return out


def replay_series(services: Any, names: Names, worker: Worker, sid: str, ts: list[int], values: Any,
                  timeout: float = 90, expect: int | None = None) -> list[dict[str, Any]]:
    """Send one series' points (`values` (T,) or (T, C)) to the telemetry topic, read its score messages until
    there is one per point (or `expect`: fewer, for a lag that leaves the last points open), or `timeout`, then
    stop the worker; asserts it stayed alive."""
    rows = [v.tolist() if hasattr(v, "tolist") else v for v in values]
    points = (point(sid, t, [float(x) for x in v] if isinstance(v, list) else float(v))
              for t, v in zip(ts, rows, strict=True))
    try:
        asyncio.run(produce(services.kafka_bootstrap, names.topics["telemetry"], json_messages(points)))
        wanted = expect or len(ts)
        got = [m for m in asyncio.run(read_topic(services.kafka_bootstrap, names.topics["scores"],
                                                 lambda ms: sum(m.get("series_id") == sid for m in ms) >= wanted,
                                                 timeout=timeout))
               if isinstance(m, dict) and m.get("series_id") == sid]
        assert worker.alive(), worker.log()
    finally:
        worker.stop()
    return got
