"""The user's side of the topics: `publish` replays CSV telemetry in; `alerts` and `scores` print what comes out.

Torch-free: these run from the slim worker image too. Broker and topic names come from the same
settings as the worker (ANOMALYBERT_KAFKA__BOOTSTRAP, ANOMALYBERT_KAFKA__TOPICS__TELEMETRY, ...).
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import click

BOOTSTRAP = click.option("--bootstrap", envvar="ANOMALYBERT_KAFKA__BOOTSTRAP", show_envvar=True,
                         help="Kafka bootstrap servers (default: the worker settings' value).")


def kafka_settings(bootstrap: str | None) -> Any:
    from stream.settings import Settings

    cfg = Settings().kafka
    return cfg.model_copy(update={"bootstrap": bootstrap}) if bootstrap else cfg


@click.command("publish")
@click.argument("source", type=click.Path(exists=True, path_type=Path))
@click.option("--series-id", help="Series id for files without a series_id column (default: the file name).")
@click.option("--rate", type=float, help="Send at most N points per second.")
@click.option("--speedup", type=float, help="Replay the files' own timing, X times faster.")
@click.option("--topic", help="Telemetry topic (default: from settings, 'telemetry').")
@click.option("--limit", type=int, help="Stop after N points.")
@BOOTSTRAP
def publish(source: Path, series_id: str | None, rate: float | None, speedup: float | None,
            topic: str | None, limit: int | None, bootstrap: str | None) -> None:
    """Replay CSV telemetry from SOURCE (a file or a directory of .csv) to the telemetry topic.

    Reads the seed's CSV (timestamp, value, probability, anomaly_tag), NAB-style timestamp,value files,
    and files with a series_id column. Timestamps are integers or date-times (sent as epoch ms).
    Without --rate or --speedup, points are sent as fast as the broker takes them.
    """
    if rate is not None and speedup is not None:
        raise click.UsageError("give --rate or --speedup, not both")
    from evaluation.series import data_files
    from tools.telemetry_io import read_points

    points = [p for f in data_files(source) for p in read_points(f, series_id)]
    if limit is not None:
        points = points[:limit]
    cfg = kafka_settings(bootstrap)
    sent = asyncio.run(_send(points, cfg, topic or cfg.topics.telemetry, rate, speedup))
    click.echo(f"published {sent} points to {topic or cfg.topics.telemetry}")


async def _send(points: list, cfg: Any, topic: str, rate: float | None, speedup: float | None) -> int:
    from aiokafka import AIOKafkaProducer
    from rich.progress import Progress

    from stream.kafka import client_options

    producer = AIOKafkaProducer(**client_options(cfg), linger_ms=5, acks="all")
    await producer.start()
    start, first_ts = time.monotonic(), points[0].ts if points else 0
    try:
        with Progress(transient=False) as progress:
            task = progress.add_task("publishing", total=len(points))
            for i, p in enumerate(points):
                due = i / rate if rate else (p.ts - first_ts) / 1000.0 / speedup if speedup else 0.0
                delay = start + due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                body = json.dumps({"series_id": p.series_id, "ts": p.ts, "value": p.value}).encode()
                await producer.send(topic, body, key=p.series_id.encode())
                progress.advance(task)
            await producer.flush()
    finally:
        await producer.stop()
    return len(points)


def _follow_options(f: Any) -> Any:
    for opt in reversed([
        click.option("--follow/--no-follow", default=False, show_default=True,
                     help="Keep printing new messages until interrupted."),
        click.option("--from-beginning/--from-end", default=True, show_default=True,
                     help="Start at the topic's first message or only print new ones."),
        click.option("--idle-timeout", type=float, default=5.0, show_default=True,
                     help="Without --follow: stop after this many seconds without a message."),
        click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
                     show_default=True),
        click.option("--topic", help="Topic to read (default: from settings)."),
        BOOTSTRAP,
    ]):
        f = opt(f)
    return f


@click.command("alerts")
@_follow_options
@click.option("--series-id", help="Only this series.")
def alerts(follow: bool, from_beginning: bool, idle_timeout: float, fmt: str, topic: str | None,
           bootstrap: str | None, series_id: str | None) -> None:
    """Print alert events (open / closed) from the alerts topic as they come."""
    cfg = kafka_settings(bootstrap)
    columns = ["state", "series_id", "alert_id", "opened_ts", "peak_ts", "peak_score", "model_version"]
    _print_topic(cfg, topic or cfg.topics.alerts, columns, follow, from_beginning, idle_timeout, fmt, series_id)


@click.command("scores")
@_follow_options
@click.option("--series-id", help="Only this series.")
def scores(follow: bool, from_beginning: bool, idle_timeout: float, fmt: str, topic: str | None,
           bootstrap: str | None, series_id: str | None) -> None:
    """Print scored points from the scores topic as they come."""
    cfg = kafka_settings(bootstrap)
    columns = ["series_id", "ts", "value", "score", "n_windows", "is_anomaly", "threshold", "model_version"]
    _print_topic(cfg, topic or cfg.topics.scores, columns, follow, from_beginning, idle_timeout, fmt, series_id)


def _print_topic(cfg: Any, topic: str, columns: list[str], follow: bool, from_beginning: bool,
                 idle_timeout: float, fmt: str, series_id: str | None) -> None:
    def show(msg: dict[str, Any]) -> None:
        if fmt == "json":
            click.echo(json.dumps(msg))
        else:
            click.echo("  ".join(_cell(msg.get(c)) for c in columns))

    if fmt == "table":
        click.echo("  ".join(columns))
    try:
        asyncio.run(_consume(cfg, topic, show, follow, from_beginning, idle_timeout, series_id))
    except KeyboardInterrupt:
        pass


def _cell(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


async def _consume(cfg: Any, topic: str, show: Any, follow: bool, from_beginning: bool,
                   idle_timeout: float, series_id: str | None) -> None:
    """Read without a consumer group (nothing is committed), so any number of viewers can watch."""
    from aiokafka import AIOKafkaConsumer

    from stream.kafka import client_options

    consumer = AIOKafkaConsumer(topic, **client_options(cfg), group_id=None, enable_auto_commit=False,
                                auto_offset_reset="earliest" if from_beginning else "latest")
    await consumer.start()
    last_message = time.monotonic()
    try:
        while follow or time.monotonic() - last_message < idle_timeout:
            batch = await consumer.getmany(timeout_ms=500)
            records = sorted((r for rs in batch.values() for r in rs), key=lambda r: r.timestamp)
            if records:
                last_message = time.monotonic()
            for r in records:
                msg = json.loads(r.value)
                if series_id is None or msg.get("series_id") == series_id:
                    show(msg)
    finally:
        await consumer.stop()





@click.command("plot")
@click.option("--input", "input_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="CSV with timestamp,value (labels, if present, are shaded).")
@click.option("--model", "model_path", type=click.Path(exists=True, path_type=Path),
              help="Bundle (directory or model.onnx), registry, or .pt checkpoint (default: the shipped model).")
@click.option("--from-topic", "from_topic", is_flag=True,
              help="Plot what the worker published to the scores and alerts topics instead of scoring a file.")
@click.option("--series-id", help="With --from-topic: the series to plot.")
@click.option("--score-lag", type=int, help="Aggregation lag (default: window_size - 1).")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), required=True, help="PNG to write.")
@BOOTSTRAP
def plot(input_path: Path | None, model_path: Path | None, from_topic: bool, series_id: str | None,
         score_lag: int | None, output: Path, bootstrap: str | None) -> None:
    """Draw a series, its anomaly score, the threshold and the alert spans in one picture.

    Either score a CSV offline (--input, --model) exactly as the worker would, or read a recorded
    series back from the scores and alerts topics (--from-topic --series-id).
    """
    if from_topic:
        if not series_id:
            raise click.UsageError("--from-topic needs --series-id")
        plot_from_topic(kafka_settings(bootstrap), series_id, output)
    else:
        if input_path is None:
            raise click.UsageError("give --input (or --from-topic --series-id)")
        _plot_file(input_path, model_path, score_lag, output)
    click.echo(f"wrote {output}")


def _plot_file(input_path: Path, model_path: Path | None, score_lag: int | None, output: Path) -> None:
    from evaluation.detect import Detector
    from evaluation.series import load_csv, require_length
    from model.bundle import DEFAULT_BUNDLE_DIR
    from stream.alerts import AlertPolicy
    from stream.settings import AlertSettings
    from tools.plot import alert_spans, label_spans, plot_series

    series = load_csv(input_path)
    detector = Detector(model_path or DEFAULT_BUNDLE_DIR, score_lag=score_lag)
    require_length([series], detector.window_size)
    scores = detector.score(series.values)
    a = AlertSettings()
    policy = AlertPolicy(detector.threshold, a.min_points, a.cooldown_points, a.close_ratio)
    truth = label_spans(series.labels) if series.labels is not None else None
    spans = alert_spans(scores, policy)
    plot_series(output, series.values, scores, detector.threshold, spans, truth,
                title=f"{Path(series.name).name}: {len(spans)} alert(s)")


def plot_from_topic(cfg: Any, series_id: str, output: Path, labels: Any = None) -> None:
    """Plot a series as published; `labels` (aligned with the series' points in ts order) shades truth."""
    import numpy as np

    from tools.plot import Span, label_spans, plot_series

    scored: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    for topic, sink in ((cfg.topics.scores, scored), (cfg.topics.alerts, events)):
        asyncio.run(_consume(cfg, topic, sink.append, False, True, 3.0, series_id))
    if not scored:
        raise click.ClickException(f"no scores for series {series_id!r} on {cfg.topics.scores}")
    scored.sort(key=lambda m: m["ts"])
    ts = np.array([m["ts"] for m in scored])
    spans, opened = [], {}
    for e in events:
        if e["state"] == "open":
            opened[e["alert_id"]] = e["opened_ts"]
        elif e["alert_id"] in opened:
            spans.append((opened.pop(e["alert_id"]), e.get("closed_ts") or e["peak_ts"]))
    spans += [(start, ts[-1]) for start in opened.values()]
    index = [Span(int(np.searchsorted(ts, a)), int(min(np.searchsorted(ts, b), len(ts) - 1))) for a, b in spans]
    truth = label_spans(np.asarray(labels)[:len(scored)]) if labels is not None else None
    plot_series(output, np.array([m["value"] for m in scored]), np.array([m["score"] for m in scored]),
                float(scored[-1]["threshold"]), index, truth,
                title=f"{series_id}: {len(index)} alert(s), as published to {cfg.topics.scores}")
COMMANDS = [publish, alerts, scores, plot]
