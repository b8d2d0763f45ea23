"""`python -m stream worker [options]`: the same command as `anomalybert stream`."""

from __future__ import annotations

import click

from stream.cli import stream_command


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """AnomalyBERT stream worker."""


main.add_command(stream_command, name="worker")

if __name__ == "__main__":
    main()
