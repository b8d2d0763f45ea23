"""`anomalybert demo`: the whole service on one machine, end to end, without Docker.

Starts Redis and the local Kafka-compatible broker when they are not running, one stream worker with
the shipped model, replays synthetic series with anomalies to `telemetry`, prints the alerts as they
open and close, writes a plot per series from what the worker published, and stops what it started.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import numpy as np
from rich.console import Console

from tools.localstack import LocalStackError, free_port, local_stack, port_open
from tools.topics import BOOTSTRAP, plot_from_topic

console = Console(highlight=False)

# Series of the demo: (series id, scenario). Different kinds so the plot shows several behaviours.
SERIES = (("pump-7/pressure", "collective_anomaly"), ("web-01/cpu", "point_anomaly"),
          ("fan-3/vibration", "frequency_change"))

T0_MS, STEP_MS = 1_700_000_000_000, 60_000  # the demo's timestamps: one point a minute
# An alert counts for a labelled anomaly when it opens within this many points of it (the served lag is 0).
ALERT_SLACK = 5


@dataclass(frozen=True)
class DemoPlan:
    points: int
    rate: float
    seed: int
    output_dir: Path
    model: Path | None


def demo_series(plan: DemoPlan) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(series id, values, labels) of each demo series, reproducible from the seed."""
    from training.synth import generate, scenario_rng

    out = []
    for k, (sid, scenario) in enumerate(SERIES):
        s = generate(scenario, plan.points, scenario_rng(plan.seed, scenario, k))
        out.append((sid, s.values, (s.probability >= 0.5).astype(np.int8)))
    return out


@contextlib.contextmanager
def worker_process(env: dict[str, str], web_port: int, log_path: Path) -> Iterator[subprocess.Popen]:
    """A `python -m stream worker` subprocess, stopped (SIGTERM, then SIGKILL) on exit."""
    log = open(log_path, "w")
    proc = subprocess.Popen([sys.executable, "-m", "stream", "worker"], env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        while not port_open("127.0.0.1", web_port):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise LocalStackError(f"the worker did not start (see {log_path}):\n"
                                      + log_path.read_text()[-2000:])
            time.sleep(0.2)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


async def replay_and_watch(bootstrap: str, topics: Any, series: list, rate: float, lag_points: int) -> dict:
    """Publish every series interleaved at `rate` points/s while printing alerts; return what came out."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    consumer = AIOKafkaConsumer(topics.alerts, topics.scores, bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="earliest")
    await producer.start()
    await consumer.start()
    seen: dict[str, Any] = {"scores": 0, "alerts": []}
    expected = sum(len(v) for _, v, _ in series) - lag_points * len(series)
    try:
        watcher = asyncio.create_task(_watch(consumer, topics, seen))
        t0 = time.monotonic()
        n = max(len(v) for _, v, _ in series)
        for i in range(n):
            for sid, values, _ in series:
                if i < len(values):
                    msg = {"series_id": sid, "ts": T0_MS + i * STEP_MS, "value": float(values[i])}
                    await producer.send(topics.telemetry, json.dumps(msg).encode(), key=sid.encode())
            if rate > 0:
                await asyncio.sleep(max(0.0, t0 + (i + 1) * len(series) / rate - time.monotonic()))
        await producer.flush()
        console.print(f"[dim]published {sum(len(v) for _, v, _ in series)} points; waiting for the scores[/dim]")
        deadline = time.monotonic() + 60
        while seen["scores"] < expected and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        await asyncio.sleep(0.5)
        watcher.cancel()
    finally:
        await consumer.stop()
        await producer.stop()
    return seen


async def _watch(consumer: Any, topics: Any, seen: dict[str, Any]) -> None:
    async for msg in consumer:
        body = json.loads(msg.value)
        if msg.topic == topics.scores:
            seen["scores"] += 1
            continue
        seen["alerts"].append(body)
        colour = "red" if body["state"] == "open" else "green"
        console.print(f"[{colour}]ALERT {body['state']:>6}[/{colour}] {body['series_id']:<18} "
                      f"id={body['alert_id']}  peak={body['peak_score']:.3f}")


def alert_quality(series: list, alerts: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Per series, the alerts against the demo's own labels: labelled anomalies (runs of labelled points)
    and how many of them an alert opened on (within `ALERT_SLACK` points), alerts opened and how many of them
    opened on a labelled anomaly."""
    out = {}
    for sid, _, labels in series:
        edges = np.flatnonzero(np.diff(np.concatenate([[0], labels, [0]])))
        runs = list(zip(edges[::2], edges[1::2], strict=True))  # [start, end) of each labelled anomaly
        opens = [(a["opened_ts"] - T0_MS) // STEP_MS for a in alerts
                 if a["series_id"] == sid and a["state"] == "open"]

        def near(i: int, run: tuple[int, int]) -> bool:
            return run[0] - ALERT_SLACK <= i < run[1] + ALERT_SLACK

        out[sid] = {"anomalies": len(runs), "anomalies_alerted": sum(any(near(i, r) for i in opens) for r in runs),
                    "alerts": len(opens), "alerts_on_anomalies": sum(any(near(i, r) for r in runs) for i in opens)}
    return out


def run_demo(plan: DemoPlan, bootstrap: str | None = None) -> dict[str, Any]:
    """The whole demo; returns a summary (points, scores, alerts, plots)."""
    from stream.settings import TopicNames

    plan.output_dir.mkdir(parents=True, exist_ok=True)
    series = demo_series(plan)
    run = uuid.uuid4().hex[:8]
    with local_stack(kafka_bootstrap=bootstrap) as stack:
        console.print(f"[bold]broker[/bold] {stack.kafka_bootstrap}   [bold]redis[/bold] {stack.redis_url}")
        web_port = free_port()
        env = {**os.environ, "ANOMALYBERT_KAFKA__BOOTSTRAP": stack.kafka_bootstrap,
               "ANOMALYBERT_KAFKA__PARTITIONS": "4", "ANOMALYBERT_KAFKA__GROUP_ID": f"demo-{run}",
               "ANOMALYBERT_REDIS__URL": stack.redis_url, "ANOMALYBERT_REDIS__KEY_PREFIX": f"demo-{run}:",
               "ANOMALYBERT_WORKER__WEB_PORT": str(web_port), "ANOMALYBERT_WORKER__ID": f"demo-{run}",
               "ANOMALYBERT_WORKER__DATA_DIR": str(plan.output_dir / f".worker-{run}")}
        if plan.model is not None:
            env["ANOMALYBERT_MODEL__PATH"] = str(plan.model)
        topics = TopicNames()
        with worker_process(env, web_port, plan.output_dir / "worker.log"):
            console.print(f"[bold]worker[/bold] up (metrics on http://127.0.0.1:{web_port}/metrics); "
                          f"replaying {len(series)} series x {plan.points} points")
            lag = _served_lag(plan.model)
            seen = asyncio.run(replay_and_watch(stack.kafka_bootstrap, topics, series, plan.rate, lag))
        plots = _plots(stack.kafka_bootstrap, series, plan.output_dir)
    summary = {"points": sum(len(v) for _, v, _ in series), "scores": seen["scores"],
               "alerts_opened": sum(a["state"] == "open" for a in seen["alerts"]),
               "alerts_closed": sum(a["state"] == "closed" for a in seen["alerts"]),
               "plots": [str(p) for p in plots], "quality": alert_quality(series, seen["alerts"])}
    for sid, q in summary["quality"].items():
        console.print(f"{sid:<16} anomalies alerted {q['anomalies_alerted']}/{q['anomalies']}, "
                      f"alerts on an anomaly {q['alerts_on_anomalies']}/{q['alerts']}")
    console.print(f"[bold]done[/bold]: {summary['scores']} scores, {summary['alerts_opened']} alerts opened, "
                  f"{summary['alerts_closed']} closed; plots: {', '.join(summary['plots'])}")
    return summary


def _served_lag(model: Path | None) -> int:
    """Points per series that stay pending at the end of the replay (the score lag in force)."""
    from model.bundle import DEFAULT_BUNDLE_DIR, read_manifest, resolve_bundle_dir
    from model.serving import default_lag

    return default_lag(read_manifest(resolve_bundle_dir(model or DEFAULT_BUNDLE_DIR)))


def _plots(bootstrap: str, series: list, output_dir: Path) -> list[Path]:
    from stream.settings import KafkaSettings

    cfg = KafkaSettings(bootstrap=bootstrap)
    paths = []
    for sid, _, labels in series:
        path = output_dir / f"demo-{sid.replace('/', '_')}.png"
        plot_from_topic(cfg, sid, path, labels)
        paths.append(path)
    return paths


@click.command("demo")
@click.option("--points", type=int, default=1500, show_default=True, help="Points per demo series.")
@click.option("--rate", type=float, default=600.0, show_default=True,
              help="Points per second, all series together (0: as fast as possible).")
@click.option("--seed", type=int, default=7, show_default=True, help="Seed of the synthetic series.")
@click.option("--output-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("demo-output"),
              show_default=True, help="Where the plots and the worker log go.")
@click.option("--model", type=click.Path(exists=True, path_type=Path),
              help="Bundle to serve (default: the shipped model).")
@BOOTSTRAP
def demo(points: int, rate: float, seed: int, output_dir: Path, model: Path | None, bootstrap: str | None) -> None:
    """Run the whole service locally without Docker and watch it catch anomalies.

    Starts Redis and the local Kafka-compatible broker when they are not already running, one stream
    worker with the shipped model, replays three synthetic series with injected anomalies to the
    telemetry topic, prints alerts as they open and close, writes one plot per series from what the
    worker published, and stops everything it started (also on Ctrl-C).
    """
    run_demo(DemoPlan(points, rate, seed, output_dir, model), bootstrap=bootstrap)


COMMANDS = [demo]
