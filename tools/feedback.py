"""`anomalybert feedback`: an operator's verdict on an alert, published to the compacted `feedback` topic (key:
the alert id), or a summary of the verdicts so far. Torch-free: it runs from the worker image too."""

from __future__ import annotations

import asyncio
import time

import click

from tools.topics import BOOTSTRAP, kafka_settings


@click.command("feedback")
@click.argument("alert_id", required=False)
@click.option("--true", "verdict", flag_value="true", help="The alert was a real anomaly.")
@click.option("--false", "verdict", flag_value="false", help="The alert was a false alarm.")
@click.option("--note", help="Free text kept with the verdict (at most 1,000 characters).")
@click.option("--summary", is_flag=True,
              help="Instead: read the feedback topic and print each verdict's count over every alert's latest "
                   "verdict, and the alert precision they imply.")
@click.option("--topic", help="Feedback topic (default: from settings, 'feedback').")
@BOOTSTRAP
def feedback(alert_id: str | None, verdict: str | None, note: str | None, summary: bool, topic: str | None,
             bootstrap: str | None) -> None:
    """Mark the alert ALERT_ID (`<series_id>:<opened_ts>`, as in the alerts topic) as a true or a false alarm.

    Publishes {"alert_id", "verdict": "true"|"false", "note", "at"} keyed by the alert id to the compacted
    feedback topic, so the latest verdict on each alert is kept. The workers count the verdicts
    (anomalybert_feedback_total{verdict}) and dead-letter messages they cannot read.

    \b
    Examples:
      anomalybert feedback 'web-01/cpu:1732600000000' --false --note "deploy at 10:00"
      anomalybert feedback --summary
    """
    cfg = kafka_settings(bootstrap)
    name = topic or cfg.topics.feedback
    if summary:
        if alert_id or verdict or note:
            raise click.UsageError("--summary takes no ALERT_ID, --true/--false or --note")
        from stream.feedback import read_feedback

        latest, unreadable = asyncio.run(read_feedback(cfg, name))
        n_true = sum(fb.is_true for fb in latest.values())
        n_false = len(latest) - n_true
        precision = f"{n_true / len(latest):.3f}" if latest else "n/a (no verdicts yet)"
        click.echo(f"{len(latest)} alerts with a verdict on {name}: {n_true} true, {n_false} false; "
                   f"alert precision {precision}" + (f"; {unreadable} unreadable message(s)" if unreadable else ""))
        return
    if not alert_id or not verdict:
        raise click.UsageError("give ALERT_ID and --true or --false (or --summary)")
    from pydantic import ValidationError

    from stream.records import Feedback, to_json

    try:
        msg = Feedback(alert_id=alert_id, verdict=verdict, note=note, at=int(time.time() * 1000))
    except ValidationError as e:
        first = e.errors()[0]
        raise click.BadParameter(first["msg"].removeprefix("Value error, "),
                                 param_hint="ALERT_ID" if first["loc"] == ("alert_id",) else "--note") from e
    asyncio.run(_send(cfg, name, msg.alert_id, to_json(msg)))
    click.echo(f"{msg.alert_id}: marked {'a true alarm' if msg.is_true else 'a false alarm'} on {name}")


async def _send(cfg: object, topic: str, key: str, body: bytes) -> None:
    from aiokafka import AIOKafkaProducer

    from stream.kafka import client_options

    producer = AIOKafkaProducer(**client_options(cfg), acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topic, body, key=key.encode())
    finally:
        await producer.stop()


COMMANDS = [feedback]
