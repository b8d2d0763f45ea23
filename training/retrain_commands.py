"""`anomalybert retrain`: the user's telemetry in, a gated, published model version out."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import click

from tools.topics import kafka_settings


def _when(value: str | None) -> int | None:
    from tools.telemetry_io import parse_ts

    return None if value is None else parse_ts(value, "--since/--until")


@click.command("retrain")
@click.argument("sources", nargs=-1, type=click.Path(exists=True, path_type=Path))
@click.option("--from-topic", help="Read telemetry from this topic instead of files (a bounded read).")
@click.option("--since", help="With --from-topic: first point time (epoch ms or a date-time).")
@click.option("--until", help="With --from-topic: last point time (epoch ms or a date-time).")
@click.option("--max-points", type=int, help="With --from-topic: stop after this many points.")
@click.option("--series-id", "series_ids", multiple=True, help="Only these series (repeatable; default: all).")
@click.option("--registry", type=click.Path(file_okay=False, path_type=Path), required=True,
              envvar="ANOMALYBERT_MODEL__REGISTRY", show_envvar=True,
              help="Registry to compare against and publish to; when empty, the shipped model is current.")
@click.option("--finetune/--from-scratch", default=True, show_default=True,
              help="Keep the current model's encoder frozen and train a new head, or train everything anew.")
@click.option("--epochs", type=int, default=5, show_default=True)
@click.option("--lr", type=float, default=2e-3, show_default=True)
@click.option("--batch-size", type=int, default=64, show_default=True)
@click.option("--copies", type=int, default=4, show_default=True,
              help="Injected-anomaly versions of each unlabelled training series.")
@click.option("--gate-fraction", type=float, default=0.2, show_default=True,
              help="Tail of each series held out to compare the candidate with the current model.")
@click.option("--tolerance", type=float, default=0.0, show_default=True,
              help="How much worse (ROC-AUC and best F1) the candidate may be and still pass the gate.")
@click.option("--seed", type=int, default=0, show_default=True, help="Makes the run reproducible.")
@click.option("--force", is_flag=True, help="Publish even if the candidate is worse.")
@click.option("--dry-run", is_flag=True, help="Train and compare, publish nothing.")
@click.option("--announce/--no-announce", default=True, show_default=True,
              help="Announce the new version on the model-updates topic (workers also poll `current`).")
@click.option("--bootstrap", envvar="ANOMALYBERT_KAFKA__BOOTSTRAP", show_envvar=True,
              help="Kafka bootstrap servers (default: the worker settings' value).")
@click.option("--family", metavar="NAME",
              help="With --from-scratch: train a model of this family [the current model's].")
@click.option("--feedback/--no-feedback", default=None,
              help="Learn from the operators' verdicts on the feedback topic (`anomalybert feedback`): the points of "
                   "alerts marked true become labelled anomalies, those of false alarms labelled normal, and the "
                   "gate reports both models' precision on those alerts [on with --from-topic].")
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: on a terminal).")
def retrain(sources: tuple[Path, ...], from_topic: str | None, since: str | None, until: str | None,
            max_points: int | None, series_ids: tuple[str, ...], registry: Path, finetune: bool, epochs: int,
            lr: float, batch_size: int, copies: int, gate_fraction: float, tolerance: float, seed: int,
            force: bool, dry_run: bool, announce: bool, bootstrap: str | None, family: str | None,
            feedback: bool | None, progress: bool | None) -> None:
    """Retrain on your own telemetry and publish the result if it is not worse than the current model.

    SOURCES are CSV or Parquet files or directories with the columns timestamp, value and optionally
    series_id, anomaly_tag, probability. Or read a bounded slice of the telemetry topic with
    --from-topic (--since/--until/--max-points). Unlabelled series are trained self-supervised by
    injecting synthetic anomalies into them; labelled ones are used as given. The tail of every
    series (--gate-fraction) is held out: both models are scored there and the comparison is printed.
    A passing candidate is written to the registry, made current and announced on model-updates.
    """
    from training.retrain import RetrainPlan, load_tables, read_topic

    if bool(sources) == bool(from_topic):
        raise click.UsageError("give input files or --from-topic (one of the two)")
    if family is not None:
        from model import families

        try:
            families.get(family)
        except ValueError as e:
            raise click.BadParameter(str(e), param_hint="--family") from e
    ids = set(series_ids) or None
    feedback = bool(from_topic) if feedback is None else feedback
    kafka = kafka_settings(bootstrap) if (from_topic or announce or feedback) else None
    if from_topic:
        raw = asyncio.run(read_topic(kafka, from_topic, _when(since), _when(until), max_points, ids))
    else:
        raw = load_tables(list(sources), ids)
    verdicts = []
    if feedback:
        from training.feedback import read_verdicts

        verdicts = asyncio.run(read_verdicts(kafka))
        click.echo(f"feedback: {len(verdicts)} alert(s) with a verdict on {kafka.topics.feedback} "
                   f"({sum(v.true for v in verdicts)} true, {sum(not v.true for v in verdicts)} false)")
    plan = RetrainPlan(epochs=epochs, seed=seed, finetune=finetune, copies=copies, gate_fraction=gate_fraction,
                       tolerance=tolerance, lr=lr, batch_size=batch_size, progress=progress,
                       family=family, feedback=verdicts)
    outcome = _train_and_compare(raw, registry, plan)
    if dry_run:
        click.echo("dry run: nothing published")
        return
    if not outcome.accepted and not force:
        raise click.ClickException("the candidate is worse than the current model on the gate slice; "
                                   "not published (use --force to publish anyway)")
    _publish(outcome, registry, kafka if announce else None)


def _train_and_compare(raw: list, registry: Path, plan: Any) -> Any:
    from rich.console import Console
    from rich.table import Table

    from model.bundle import DEFAULT_BUNDLE_DIR
    from model.registry import Registry
    from training.retrain import run_retrain

    reg = Registry(registry)
    current_dir = reg.path(reg.current()) if reg.current() else DEFAULT_BUNDLE_DIR
    outcome = run_retrain(raw, current_dir, plan)
    table = Table(title="gate: the same held-out slice for both models")
    for col in ("model", "version", "ROC-AUC", "best F1", "points", "anomalous"):
        table.add_column(col)
    for name, version, r in (("current", outcome.base_version, outcome.current),
                             ("candidate", "(new)", outcome.new)):
        auc = "n/a" if r.roc_auc is None else f"{r.roc_auc:.4f}"
        table.add_row(name, version, auc, f"{r.best_f1:.4f}", str(r.n_points), str(r.n_anomalous))
    console = Console()
    console.print(table)
    if outcome.feedback is not None:
        fb = Table(title="the fed-back alerts (the candidate has trained on them)")
        for col in ("model", "raised on true alarms", "raised on false alarms", "precision"):
            fb.add_column(col)
        for name, r in zip(("current", "candidate"), outcome.feedback, strict=True):
            p = "n/a" if r.precision is None else f"{r.precision:.3f}"
            fb.add_row(name, f"{r.raised_true}/{r.n_true}", f"{r.raised_false}/{r.n_false}", p)
        console.print(fb)
    console.print("gate: " + ("[green]pass[/green]" if outcome.accepted else "[red]fail[/red]"))
    return outcome


def _publish(outcome: Any, registry: Path, kafka: Any) -> None:
    from training.retrain import announce, publish_candidate

    version, path = publish_candidate(outcome.candidate, registry)
    click.echo(f"published {version} to {registry} (current)")
    if kafka is not None:
        asyncio.run(announce(kafka, version, path))
        click.echo(f"announced {version} on {kafka.topics.model_updates}")


COMMANDS = [retrain]
