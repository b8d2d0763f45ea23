"""Throughput benchmark, one run: points/s through one worker subprocess vs bare ONNX Runtime windows/s for
same bundle at the same batch size. Prints a table and writes a JSON result.

    python -m stream.bench [--model DIR] [--series 32] [--points 400] [--batch 256] [--json bench.json]

Uses the broker and Redis given (--broker / --redis-url) or starts local ones (stream.localstack).
The worker's figure covers everything per point: JSON parsing, Redis load and atomic write, inference,
aggregation, alerts and the acknowledged produce of each score; it is measured from the first to the last
score message, after the worker has joined its group.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import click
import numpy as np

from model.bundle import DEFAULT_BUNDLE_DIR, Bundle, load_bundle

log = logging.getLogger(__name__)


def bare_ort(bundle: Bundle, batch: int, seconds: float = 5.0) -> float:
    """Windows per second of `bundle.score_windows` on random windows, `batch` at a time."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch, bundle.window_size, bundle.channels))
    bundle.score_windows(x)  # warm-up
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        bundle.score_windows(x)
        n += batch
    return n / (time.perf_counter() - t0)


async def _produce(bootstrap: str, topic: str, n_series: int, n_points: int) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20)
    await producer.start()
    try:
        rng = np.random.default_rng(1)
        futures = []
        for i in range(n_points):
            for s in range(n_series):
                sid = f"bench-{s}"
                msg = {"series_id": sid, "ts": 1_700_000_000_000 + 1000 * i, "value": float(rng.normal())}
                futures.append(await producer.send(topic, json.dumps(msg).encode(), key=sid.encode()))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def _count(bootstrap: str, topic: str, expected: int, timeout: float) -> tuple[float, float, int]:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest")
    await consumer.start()
    first = last = 0.0
    n = 0
    deadline = time.monotonic() + timeout
    try:
        while n < expected and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            got = sum(len(v) for v in batch.values())
            if got:
                now = time.perf_counter()
                first = first or now
                last = now
                n += got
    finally:
        await consumer.stop()
    return first, last, n


def through_worker(
    model: Path,
    bootstrap: str,
    redis_url: str,
    n_series: int,
    n_points: int,
    batch: int,
    threads: int,
    timeout: float = 600.0,
) -> dict[str, Any]:
    """Pre-load the input topic, start one worker, time the scores it publishes."""
    token = uuid.uuid4().hex[:8]
    topics = {
        "TELEMETRY": f"bench-tel-{token}",
        "SCORES": f"bench-scores-{token}",
        "ALERTS": f"bench-alerts-{token}",
        "DLQ": f"bench-dlq-{token}",
        "MODEL_UPDATES": f"bench-mu-{token}",
    }
    bundle = load_bundle(model)
    lag = bundle.window_size - 1
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANOMALYBERT_")}
    env |= {
        "ANOMALYBERT_KAFKA__BOOTSTRAP": bootstrap,
        "ANOMALYBERT_KAFKA__GROUP_ID": f"bench-{token}",
        "ANOMALYBERT_REDIS__URL": redis_url,
        "ANOMALYBERT_REDIS__KEY_PREFIX": f"bench{token}:",
        "ANOMALYBERT_MODEL__PATH": str(model),
        "ANOMALYBERT_MODEL__THREADS": str(threads),
        "ANOMALYBERT_SCORING__MAX_BATCH": str(batch),
        "ANOMALYBERT_WORKER__WEB_ENABLED": "false",
        "ANOMALYBERT_WORKER__LOG_LEVEL": "WARNING",
        "ANOMALYBERT_KAFKA__PARTITIONS": "4",
    }
    env |= {f"ANOMALYBERT_KAFKA__TOPICS__{k}": v for k, v in topics.items()}
    from stream.kafka import ensure_topics
    from stream.settings import KafkaSettings

    asyncio.run(ensure_topics(KafkaSettings(bootstrap=bootstrap, partitions=4), list(topics.values())))
    asyncio.run(_produce(bootstrap, topics["TELEMETRY"], n_series, n_points))
    expected = n_series * (n_points - lag)
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "stream", "worker"], env=env, stdout=out, stderr=subprocess.STDOUT
        )
        try:
            first, last, n = asyncio.run(_count(bootstrap, topics["SCORES"], expected, timeout))
        finally:
            proc.terminate()
            proc.wait(30)
    if n < expected:
        raise RuntimeError(f"worker published {n} of {expected} scores within {timeout:.0f}s")
    # Points accepted while the scores were flowing: all of them, less those scored before `first`.
    return {"points": n, "seconds": last - first, "points_per_s": n / max(last - first, 1e-9)}


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--model", type=click.Path(path_type=Path), default=DEFAULT_BUNDLE_DIR, show_default=True)
@click.option("--series", default=32, show_default=True, help="distinct series, interleaved")
@click.option("--points", default=400, show_default=True, help="points per series")
@click.option("--batch", default=256, show_default=True, help="max_batch of the worker = ORT batch size")
@click.option("--threads", default=1, show_default=True, help="ONNX Runtime intra-op threads (both sides)")
@click.option("--broker", default=None, help="bootstrap servers (default: start a local broker)")
@click.option("--redis-url", default=None, help="default: the local Redis on 6379 (started when absent)")
@click.option("--json", "json_path", type=click.Path(path_type=Path), default=None, help="write the result here")
def main(
    model: Path,
    series: int,
    points: int,
    batch: int,
    threads: int,
    broker: str | None,
    redis_url: str | None,
    json_path: Path | None,
) -> None:
    """Points/s through one worker vs bare ONNX Runtime windows/s, same bundle and batch size."""
    logging.basicConfig(level=logging.WARNING)
    from stream.localstack import local_stack

    bundle = load_bundle(model, threads=threads)
    ort = bare_ort(bundle, batch)
    with local_stack(kafka_bootstrap=broker) as stack:
        worker = through_worker(
            model, stack.kafka_bootstrap, redis_url or stack.redis_url, series, points, batch, threads
        )
    result = {
        "bundle": bundle.version,
        "window_size": bundle.window_size,
        "channels": bundle.channels,
        "batch": batch,
        "threads": threads,
        "series": series,
        "points_per_series": points,
        "bare_ort_windows_per_s": round(ort, 1),
        "worker_points_per_s": round(worker["points_per_s"], 1),
        "worker_share_of_bare_ort": round(worker["points_per_s"] / ort, 3),
    }
    click.echo(f"{'bundle':<28}{bundle.version} (W={bundle.window_size}, C={bundle.channels})")
    click.echo(f"{'batch size':<28}{batch}")
    click.echo(f"{'bare ONNX Runtime':<28}{ort:>12,.0f} windows/s")
    click.echo(
        f"{'one worker (end to end)':<28}{worker['points_per_s']:>12,.0f} points/s "
        f"({worker['points']} points in {worker['seconds']:.1f}s)"
    )
    if json_path:
        json_path.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
