"""`anomalybert models ...`: list, show, publish, promote and roll back bundles in a registry directory."""

from __future__ import annotations

import json

import click

REGISTRY_OPTION = click.option(
    "--registry", "registry", required=True, type=click.Path(file_okay=False),
    envvar="ANOMALYBERT_MODEL__REGISTRY", show_envvar=True,
    help="Registry directory (versioned bundles plus the `current` pointer).",
)


@click.group("models")
def models() -> None:
    """Manage the model registry that workers load from (hot reload follows `current`)."""


@models.command("list")
@REGISTRY_OPTION
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def list_versions(registry: str, fmt: str) -> None:
    """List versions, oldest first, marking the current one."""
    from rich.console import Console
    from rich.table import Table

    from model.registry import Registry

    reg = Registry(registry)
    current = reg.current()
    rows = []
    for v in reg.versions():
        m = reg.manifest(v)
        rows.append({"version": v, "current": v == current, "family": m.family, "window": m.window_size,
                     "channels": m.channels, "normalization": f"{m.normalization['kind']}/"
                     f"{m.normalization.get('scope', 'global')}", "threshold": m.threshold,
                     "created_at": m.created_at})
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2))
        return
    table = Table(title=f"registry {registry}")
    for col in ("", "version", "family", "window", "channels", "normalization", "threshold", "created_at"):
        table.add_column(col)
    for r in rows:
        table.add_row("*" if r["current"] else "", r["version"], r["family"], str(r["window"]),
                      str(r["channels"]), r["normalization"], f"{r['threshold']:.4f}", r["created_at"])
    Console().print(table)


@models.command("show")
@REGISTRY_OPTION
@click.argument("version", required=False)
def show(registry: str, version: str | None) -> None:
    """Print a version's manifest (default: the current version)."""
    from model.errors import BundleError
    from model.registry import Registry

    reg = Registry(registry)
    version = version or reg.current()
    if version is None:
        raise BundleError(f"registry {registry} has no current version")
    click.echo(reg.manifest(version).model_dump_json(indent=2))


@models.command("publish")
@REGISTRY_OPTION
@click.argument("bundle", type=click.Path(exists=True))
@click.option("--promote/--no-promote", default=True, show_default=True, help="Also make it current.")
def publish(registry: str, bundle: str, promote: bool) -> None:
    """Copy a verified BUNDLE (directory or model.onnx) into the registry."""
    from model.registry import Registry

    version = Registry(registry).publish(bundle, promote=promote)
    click.echo(f"published {version}" + (" (current)" if promote else ""))


@models.command("promote")
@REGISTRY_OPTION
@click.argument("version")
def promote(registry: str, version: str) -> None:
    """Make VERSION current (it is verified first; workers pick it up)."""
    from model.registry import Registry

    Registry(registry).promote(version)
    click.echo(f"current -> {version}")


@models.command("rollback")
@REGISTRY_OPTION
def rollback(registry: str) -> None:
    """Undo the last promotion: the previously current version becomes current again."""
    from model.registry import Registry

    click.echo(f"current -> {Registry(registry).rollback()}")


COMMANDS = [models]
