"""The offline commands: generate, train, detect, export (arguments in, files and reports out).

Import-light on purpose: torch, pandas and onnxruntime are imported inside the commands, so that
`anomalybert --help` stays fast and works in the slim worker image.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from model.errors import DataError
from model.families.anomalybert.config import ModelConfig
from model.normalize import DEFAULT_HALFLIFE, KINDS, SCOPES, Normalizer
from training.calibrate import DEFAULT_THRESHOLD_BETA
from training.synth import MIN_SAMPLES, SCENARIOS

_DEFAULTS = ModelConfig()


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(message)s")


@click.command()
@click.option("--output-dir", "-o", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Directory for the CSV files (created if missing).")
@click.option("--scenario", "-s", "scenarios", multiple=True, type=click.Choice(SCENARIOS),
              help="Scenario to generate; repeat for several. Default: all 8.")
@click.option("--n-samples", "-n", required=True, type=click.IntRange(min=MIN_SAMPLES),
              help="Points per series.")
@click.option("--n-series", default=1, show_default=True, type=click.IntRange(min=1),
              help="Series per scenario; files are then named <scenario>_<k>.csv.")
@click.option("--seed", type=click.IntRange(min=0), default=None,
              help="Random seed; the same seed gives the same files. Default: a fresh one (printed).")
def generate(output_dir: Path, scenarios: tuple[str, ...], n_samples: int, n_series: int,
             seed: int | None) -> None:
    """Generate synthetic series with labelled anomalies.

    Writes one CSV per scenario and series with the columns timestamp, value, probability (how much
    the point contributes to an anomaly, 0 to 1) and anomaly_tag (1 where probability >= 0.5, else 0).
    Base signal, amplitude, noise and anomaly positions are random on every call.

    \b
    Example:
      anomalybert generate --output-dir data/train --n-samples 3000 --n-series 4 --seed 1
    """
    import numpy as np

    from training.synth import write_scenarios

    if seed is None:
        seed = int(np.random.default_rng().integers(2**31))
    paths = write_scenarios(output_dir, n_samples, seed, scenarios or SCENARIOS, n_series)
    click.echo(f"wrote {len(paths)} file(s) to {output_dir} (seed {seed})")


def _model_config(family_name: str, options: dict[str, Any], settings: tuple[str, ...]) -> Any:
    """The family's config from the architecture options and `--set KEY=VALUE` pairs (JSON values)."""
    from model import families

    given = dict(options)
    fields = getattr(families.get(family_name).config_class, "__dataclass_fields__", {})
    if "n_layers" in given and "n_layers" not in fields:  # the references' names
        for name in ("e_layers", "enc_layers"):
            if name in fields:
                given[name] = given.pop("n_layers")
                break
    for item in settings:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected KEY=VALUE, got {item!r}", param_hint="--set")
        try:
            given[key.strip().replace("-", "_")] = json.loads(raw)
        except json.JSONDecodeError:
            given[key.strip().replace("-", "_")] = raw
    try:
        return families.get(family_name).config(**given)
    except ValueError as e:
        raise click.UsageError(str(e)) from e


def _family_names() -> list[str]:
    from model import families

    return families.names()


family_option = click.option(
    "--family", default="anomalybert", show_default=True, metavar="NAME",
    help="Model family to train (see the README's model families; a family installed by another package "
         "through the 'anomalybert.families' entry point works too).")
set_option = click.option(
    "--set", "settings", multiple=True, metavar="KEY=VALUE",
    help="A field of the family's config (value as JSON, else a string); repeat for several. The "
         "architecture options above are shortcuts for AnomalyBERT's.")


@click.command()
@click.option("--data", "-d", type=click.Path(path_type=Path),
              help="A CSV file or a directory of CSV files (searched recursively) with the columns "
                   "timestamp, value and probability (or anomaly_tag). Or --dataset with --path.")
@click.option("--dataset", type=click.Choice(("smd", "smap_msl")), default=None,
              help="Train on a public set's normal train splits instead (unlabelled: an unsupervised family "
                   "such as anomaly-transformer, with --threshold-percentile); SMD keeps its 38 channels.")
@click.option("--path", "dataset_path", type=click.Path(path_type=Path), default=None,
              help="The --dataset folder, e.g. ../shared/data/smd.")
@click.option("--max-points", type=click.IntRange(min=2), default=4000, show_default=True,
              help="With --dataset: the last N points of each train split (memory: every window is built).")
@click.option("--threshold-percentile", type=click.FloatRange(0.0, 100.0, min_open=True, max_open=True),
              default=None, metavar="P",
              help="Store the P-th percentile of the training and validation points' scores as the threshold "
                   "(the Anomaly Transformer's rule, reference 99; no labels used) instead of best F-beta "
                   "[with --dataset: 99].")
@click.option("--output", "-o", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Checkpoint to write (.pt).")
@click.option("--epochs", "-e", default=10, show_default=True, type=click.IntRange(min=1))
@click.option("--n-layers", "--e-layers", "n_layers", type=click.IntRange(min=1),
              help=f"Encoder layers [{_DEFAULTS.n_layers}; anomaly-transformer: 3].")
@click.option("--d-model", type=click.IntRange(min=1), help=f"Model width [{_DEFAULTS.d_model}].")
@click.option("--n-heads", type=click.IntRange(min=1), help=f"Attention heads [{_DEFAULTS.n_heads}].")
@click.option("--d-ff", type=click.IntRange(min=1), help=f"Feed-forward width [{_DEFAULTS.d_ff}].")
@click.option("--window-size", "--win-size", "window_size", type=click.IntRange(min=2),
              help=f"Points per window [{_DEFAULTS.window_size}; anomaly-transformer: 100].")
@click.option("--patch-size", type=click.IntRange(min=1),
              help="Points per encoder token (a divisor of --window-size): a window P times longer through "
                   f"the same number of tokens [{_DEFAULTS.patch_size}: one token per point].")
@click.option("--stride", type=click.IntRange(min=1),
              help=f"Step between windows, in training and in serving [{_DEFAULTS.stride}].")
@click.option("--dropout", type=click.FloatRange(0.0, 1.0, max_open=True), help=f"[{_DEFAULTS.dropout}]")
@click.option("--window-features/--no-window-features", default=None,
              help="Also feed each window standardized by its own statistics (in the graph); for "
                   "--scope series [off].")
@click.option("--deviation-blend", type=click.FloatRange(0.0, 1.0),
              help="Weight of the input's deviation score in the served score (in the graph; the loss "
                   "sees the encoder alone); --scope series only [0: the encoder's score alone].")
@click.option("--deviation-scale", type=click.FloatRange(min=0.0, min_open=True),
              help="Deviation (in running standard deviations) whose deviation score is 0.68 [4].")
@click.option("--batch-size", default=64, show_default=True, type=click.IntRange(min=1))
@click.option("--lr", default=1e-3, show_default=True, type=click.FloatRange(min=0.0, min_open=True),
              help="Peak AdamW learning rate (one cycle: warm-up, then cosine decay).")
@click.option("--normalization", type=click.Choice(KINDS),
              help="Normalizer kind [minmax; with --finetune: the checkpoint's].")
@click.option("--scope", type=click.Choice(SCOPES),
              help="Normalizer statistics: per window (scale-free, serves series of any scale), per "
                   "series (running mean and std of each series' history, zscore only; the worker "
                   "keeps them in Redis) or global (fitted on the training data) "
                   "[window; with --finetune: the checkpoint's].")
@click.option("--halflife", type=click.FloatRange(min=1.0),
              help="--scope series: half-life of the running statistics, in points [1000].")
@click.option("--val-fraction", default=0.2, show_default=True,
              type=click.FloatRange(0.0, 1.0, max_open=True),
              help="Tail of each series held out for validation loss, ROC-AUC and the threshold.")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0),
              help="Makes the run reproducible.")
@click.option("--score-lag", type=click.IntRange(min=0),
              help="Lag at which validation scores points and the threshold is calibrated; recorded in "
                   "the checkpoint as the worker's default lag [window_size - 1].")
@click.option("--threshold-beta", default=DEFAULT_THRESHOLD_BETA, show_default=True,
              type=click.FloatRange(min=0.0, min_open=True),
              help="The stored threshold maximizes F-beta on the validation tails: below 1 favours "
                   "precision (fewer, more trustworthy alerts), 1 is best F1.")
@click.option("--finetune", type=click.Path(dir_okay=False, path_type=Path),
              help="Start from this checkpoint: keep its encoder frozen and train a new head only.")
@family_option
@click.option("--config", "config_name", default=None, metavar="NAME",
              help="A named configuration of the family (tae: robust, gan-cnn, plain): its model fields and its "
                   "training settings (epochs, batch size, learning rate, weight decay); options given here win.")
@set_option
@click.option("--weight-decay", type=click.FloatRange(min=0.0), default=None,
              help="AdamW weight decay [0.01, or the named configuration's].")
@click.option("--report", "report_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              metavar="DIR", help="Where history.json (each epoch's losses, the loss's parts, validation) and "
                                  "losses.png go [beside the checkpoint: <output stem>-report/].")
@click.option("--progress/--no-progress", default=None, help="Progress bar [on a terminal only].")
@click.option("--verbose", "-v", is_flag=True, help="Log details.")
def train(data: Path | None, dataset: str | None, dataset_path: Path | None, max_points: int,
          threshold_percentile: float | None, output: Path, epochs: int, batch_size: int, lr: float,
          val_fraction: float, seed: int,
          score_lag: int | None, finetune: Path | None, normalization: str | None, scope: str | None,
          halflife: float | None, threshold_beta: float, family: str, config_name: str | None,
          settings: tuple[str, ...], weight_decay: float | None, report_dir: Path | None,
          progress: bool | None, verbose: bool, **arch: Any) -> None:
    """Train a model (or finetune one) on labelled CSV data and save a checkpoint.

    Loss is binary cross-entropy between the per-point scores and `probability`, over overlapping
    windows. Prints training loss, validation loss and ROC-AUC per epoch; the stored threshold is the
    best F-beta threshold on the validation tails (--threshold-beta).

    \b
    Examples:
      anomalybert train --data data/train --output model.pt --epochs 10
      anomalybert train --data data/mine.csv --output tuned.pt --epochs 5 --finetune model.pt
      anomalybert train --family anomaly-transformer --dataset smd --path ../shared/data/smd \\
          --normalization zscore --scope global --window-size 100 --output at.pt
      anomalybert train --family tae --config robust --dataset smd --path ../shared/data/smd \\
          --normalization zscore --scope global --output tae.pt
    """
    _setup_logging(verbose)
    from evaluation.series import load_series
    from model import families
    from training.train import TrainConfig
    from training.train import train as run_training

    if finetune is not None:
        if given := [k for k, v in arch.items() if v is not None] + ["set"] * bool(settings):
            raise click.UsageError(f"--finetune keeps the checkpoint's architecture; drop "
                                   f"{', '.join('--' + k.replace('_', '-') for k in given)}")
        if normalization is not None or scope is not None or halflife is not None:
            raise click.UsageError("--finetune keeps the checkpoint's normalization; "
                                   "drop --normalization/--scope/--halflife")
    if (data is None) == (dataset is None) or (dataset is None) != (dataset_path is None):
        raise click.UsageError("give --data, or --dataset with --path")
    try:
        fam = families.get(family)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--family") from e
    named: dict[str, dict[str, Any]] = {"model": {}, "train": {}}
    if config_name is not None:
        if finetune is not None:
            raise click.UsageError("--finetune keeps the checkpoint's configuration; drop --config")
        if config_name not in fam.configs:
            known = ", ".join(fam.configs) or "none"
            raise click.BadParameter(f"family {family!r} has no configuration {config_name!r} (known: {known})",
                                     param_hint="--config")
        named = fam.configs[config_name]
        ctx = click.get_current_context()
        given = {k for k in ("epochs", "batch_size", "lr") if ctx.get_parameter_source(k) != ParameterSource.DEFAULT}
        epochs, batch_size, lr = (named["train"].get(k, v) if k not in given else v
                                  for k, v in (("epochs", epochs), ("batch_size", batch_size), ("lr", lr)))
        arch = {**named["model"], **{k: v for k, v in arch.items() if v is not None}}
    if weight_decay is None:
        weight_decay = named["train"].get("weight_decay", 0.01)
    if dataset is not None and fam.supervised:
        raise click.UsageError(f"--dataset trains on unlabelled normal data: family {family!r} learns from labels; "
                               "use an unsupervised family such as anomaly-transformer")
    _model_config(family, arch, settings)  # a bad architecture option fails before any data is read
    channels = None
    if dataset is not None:  # the set's channel count unless --set channels=... says otherwise
        assert dataset_path is not None
        from training.datasets import normal_train_splits

        try:
            series = normal_train_splits(dataset, dataset_path, max_points)
        except DataError as e:
            raise click.BadParameter(str(e), param_hint="--path") from e
        channels = series[0].channels if series else None
    else:
        assert data is not None
        from training.datasets import as_normal

        # An unsupervised family learns from the windows alone: unlabelled files are normal data, and without
        # any labels the threshold is a percentile of the training and validation scores.
        series = load_series(data, labels=fam.supervised)
        unlabelled = [as_normal(s) for s in series if s.probability is None]
        if unlabelled and len(unlabelled) == len(series) and threshold_percentile is None:
            threshold_percentile = 99.0
        widths = {s.channels for s in series}
        if len(widths) > 1:
            raise click.BadParameter(f"the files have different channel counts {sorted(widths)}", param_hint="--data")
        channels = widths.pop() if widths and widths != {1} else None
    cfg = _model_config(family, arch | ({"channels": channels} if channels else {}), settings)
    kind = normalization or ("zscore" if scope == "series" else "minmax")
    try:
        fam.check(cfg, Normalizer(kind=kind, scope=scope or "window",  # type: ignore[arg-type]
                                  halflife=halflife or DEFAULT_HALFLIFE))
    except ValueError as e:
        raise click.UsageError(str(e)) from e
    tc = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
                     val_fraction=val_fraction, seed=seed, family=family,
                     normalization=kind, scope=scope or "window",
                     halflife=halflife or DEFAULT_HALFLIFE, threshold_beta=threshold_beta,
                     finetune=str(finetune) if finetune else None, progress=progress,
                     score_lag=score_lag,
                     threshold_percentile=threshold_percentile or (99.0 if dataset is not None else None))

    def report(s: Any) -> None:
        val = "n/a" if s.val_loss is None else f"{s.val_loss:.4f}"
        auc = "n/a" if s.val_roc_auc is None else f"{s.val_roc_auc:.4f}"
        click.echo(f"epoch {s.epoch}/{epochs}  train_loss {s.train_loss:.4f}  val_loss {val}  "
                   f"val_roc_auc {auc}  ({s.seconds:.1f}s)")

    try:
        ckpt = run_training(series, cfg, tc, on_epoch=report)
    except ValueError as e:
        if "lag" not in str(e) or isinstance(e, DataError):
            raise
        raise click.BadParameter(str(e), param_hint="--score-lag") from e
    ckpt.training_data["source"] = str(data if data is not None else dataset_path)
    if config_name is not None:
        ckpt.training_data["config_name"] = config_name
    ckpt.save(output)
    click.echo(f"saved {output} ({ckpt.family}, threshold {ckpt.threshold:.4f}, {ckpt.calibration['method']})")
    from training.history import write_history

    report_dir = report_dir or output.with_name(f"{output.stem}-report")
    click.echo(f"history: {', '.join(str(p) for p in write_history(ckpt.metrics['history'], report_dir))}")


def _shown(result: dict[str, Any]) -> str:
    """A detected point's value, or its channels' values separated by spaces."""
    if "values" in result:
        return " ".join(f"{x:.6g}" for x in result["values"])
    return f"{result['value']:.6g}"


def _write_results(results: list[dict[str, Any]], fmt: str, output: Path | None) -> None:
    if fmt == "json":
        text = json.dumps(results, indent=2) + "\n"
    elif fmt == "csv":
        import csv
        import io

        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=["timestamp", "value", "score"], lineterminator="\n")
        writer.writeheader()
        writer.writerows({"timestamp": r["timestamp"], "value": r.get("value", _shown(r)), "score": r["score"]}
                         for r in results)
        text = buf.getvalue()
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"Top {len(results)} anomalies")
        for col in ("rank", "timestamp", "value", "score"):
            table.add_column(col, justify="left" if col == "timestamp" else "right")
        for i, r in enumerate(results, 1):
            table.add_row(str(i), str(r["timestamp"]), _shown(r), f"{r['score']:.4f}")
        if output is None:
            Console().print(table)
            return
        with open(output, "w") as f:
            Console(file=f, width=100).print(table)
        return
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text)


@click.command()
@click.option("--model", "-m", "model_path", type=click.Path(path_type=Path),
              help="A checkpoint (.pt, needs torch), a bundle directory or its model.onnx "
                   "(ONNX Runtime, no torch), or a registry directory [the default bundle shipped "
                   "with the package].")
@click.option("--input", "-i", "input_path", required=True, type=click.Path(path_type=Path),
              help="CSV with at least the columns timestamp, value.")
@click.option("--top-n", "-n", default=10, show_default=True, type=click.IntRange(min=1),
              help="How many of the highest-scored points to report.")
@click.option("--score-lag", type=click.IntRange(min=0),
              help="Points after a point whose windows still count towards its score "
                   "[the lag the model's threshold was calibrated at, as the worker serves it; "
                   "else window_size - 1: every covering window is averaged].")
@click.option("--series-id", default=None, metavar="ID",
              help="Score the series as the worker scores the series of this id: at a stride above 1 the worker "
                   "staggers each series' windows by its id [windows every stride points from the first].")
@click.option("--format", "fmt", default="table", show_default=True,
              type=click.Choice(["table", "json", "csv"]))
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the results here instead of to standard output.")
def detect(model_path: Path | None, input_path: Path, top_n: int, score_lag: int | None, series_id: str | None,
           fmt: str, output: Path | None) -> None:
    """Score every point of a series and report the top-N anomalies (timestamp, value, score).

    \b
    Examples:
      anomalybert detect --input data.csv
      anomalybert detect --model model.pt --input data.csv --top-n 5
      anomalybert detect --model bundle/ --input data.csv --format json --output top.json
    """
    from evaluation.detect import Detector
    from model.bundle import DEFAULT_BUNDLE_DIR

    try:
        detector = Detector(model_path or DEFAULT_BUNDLE_DIR, score_lag=score_lag)
    except ValueError as e:
        if isinstance(e, DataError):
            raise
        raise click.BadParameter(str(e), param_hint="--score-lag") from e
    _write_results(detector.detect_file(input_path, top_n, series_id), fmt, output)


@click.command("export")
@click.option("--model", "-m", "model_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Checkpoint to export (.pt).")
@click.option("--output", "-o", required=True, type=click.Path(path_type=Path),
              help="Bundle directory, or DIR/model.onnx; manifest.json is written beside the graph.")
def export(model_path: Path, output: Path) -> None:
    """Export a checkpoint to a bundle: model.onnx (dynamic batch) plus manifest.json.

    The bundle is written atomically, then loaded back and checked against PyTorch on random windows.

    \b
    Example:
      anomalybert export --model model.pt --output bundle/
    """
    from training.export_check import export_and_verify

    try:
        directory, manifest, max_diff = export_and_verify(model_path, output)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--output") from e
    click.echo(f"wrote {directory} (version {manifest.version}, threshold {manifest.threshold:.4f}, "
               f"ONNX vs PyTorch max |diff| {max_diff:.2e})")


@click.command("calibrate")
@click.option("--model", "-m", "model_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Checkpoint (.pt) whose threshold to choose again.")
@click.option("--data", "-d", required=True, type=click.Path(path_type=Path),
              help="Labelled CSV file or directory; its validation tails (--val-fraction) are used.")
@click.option("--output", "-o", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Checkpoint to write (the same weights, the new threshold).")
@click.option("--score-lag", type=click.IntRange(min=0),
              help="Lag the worker will serve the model with [window_size - 1].")
@click.option("--threshold-beta", default=DEFAULT_THRESHOLD_BETA, show_default=True,
              type=click.FloatRange(min=0.0, min_open=True), help="The threshold maximizes F-beta.")
@click.option("--max-normal-rate", type=click.FloatRange(0.0, 1.0, min_open=True, max_open=True), metavar="R",
              help="Instead of F-beta: the lowest threshold that flags at most this share of the validation's "
                   "normal points (0.001: one in a thousand).")
@click.option("--val-fraction", default=0.2, show_default=True, type=click.FloatRange(0.0, 1.0, min_open=True,
              max_open=True), help="Tail of each series used for calibration.")
@click.option("--deviation-blend", type=click.FloatRange(0.0, 1.0),
              help="Serve the scores blended with the input's deviation score at this weight "
                   "(series-scope models) [the checkpoint's].")
@click.option("--deviation-scale", type=click.FloatRange(min=0.0, min_open=True),
              help="Deviation whose deviation score is 0.68, in running standard deviations [the checkpoint's].")
@click.option("--deviation-halflife", type=click.FloatRange(min=0.0),
              help="Measure the blended deviation against its own plain running statistics with this half-life "
                   "in points (deviation channels), instead of the model input's; 0 goes back to the model "
                   "input [the checkpoint's].")
@click.option("--per-series", type=click.Choice(("none", "tail")), default=None,
              help="Serve the scores through a per-series calibration: tail, each point's surprise among its own "
                   "series' recent scores (model.surprise), with the threshold at --tail-probability; none: "
                   "raw scores [the checkpoint's].")
@click.option("--tail-probability", type=click.FloatRange(0.0, 1.0, min_open=True, max_open=True),
              default=1e-3, show_default=True, metavar="P",
              help="With --per-series tail: alert on points rarer than P among their series' own scores.")
@click.option("--novelty", type=str, default=None, metavar="LENGTH/HISTORY[/RARITY]|none",
              help="With --per-series tail: also serve shape novelty (model.novelty), the larger of the two "
                   "per-series surprises, the novelty's counted only when RARITY times rarer (default 1); e.g. "
                   "128/2048/4 (each series keeps its last HISTORY-1 inputs, 2 bytes each); none: without it "
                   "[the checkpoint's].")
def calibrate(model_path: Path, data: Path, output: Path, score_lag: int | None, threshold_beta: float,
              max_normal_rate: float | None, val_fraction: float, deviation_blend: float | None,
              deviation_scale: float | None, deviation_halflife: float | None, per_series: str | None,
              tail_probability: float, novelty: str | None) -> None:
    """Choose a checkpoint's threshold again, without training: best F-beta at a score lag on labelled data,
    or (--max-normal-rate) the lowest threshold that flags at most that share of its normal points.

    For serving a model at another lag, with another precision/recall balance, or with its scores blended
    with the input's deviation score (the weights stay). With the training data and no blend change it
    stores the threshold that `train` with the same --score-lag and --threshold-beta stores.

    \b
    Examples:
      anomalybert calibrate --model model.pt --data data/val --score-lag 0 --output model-lag0.pt
      anomalybert calibrate --model model.pt --data data/val --score-lag 0 --deviation-blend 0.5 \\
          --output model-blend.pt
      anomalybert calibrate --model model.pt --data data/val --score-lag 0 --deviation-blend 0.7 \\
          --deviation-scale 8 --deviation-halflife 6400 --max-normal-rate 0.001 --output model-blend.pt
      anomalybert calibrate --model model.pt --data data/val --per-series tail --tail-probability 0.001 \\
          --output model-tail.pt
      anomalybert calibrate --model model.pt --data data/val --per-series tail --tail-probability 0.002 \\
          --novelty 128/2048 --output model-novelty.pt
    """
    from evaluation.series import load_series
    from model.families.checkpoint import load_checkpoint
    from model.novelty import parse_novelty
    from training.train import recalibrate

    try:
        shape = None if novelty is None else False if novelty == "none" else parse_novelty(novelty)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--novelty") from e
    try:
        blend = {k: v for k, v in (("deviation_blend", deviation_blend), ("deviation_scale", deviation_scale))
                 if v is not None}
        ckpt = recalibrate(load_checkpoint(model_path), load_series(data, labels=True), score_lag, threshold_beta,
                           val_fraction, deviation_halflife, max_normal_rate, per_series, tail_probability,
                           shape, **blend)
    except ValueError as e:
        if isinstance(e, DataError):
            raise
        hint = ("--novelty" if "novelty" in str(e)
                else "--deviation-halflife" if "deviation_halflife" in str(e)
                else "--deviation-blend" if "blend" in str(e)
                else "--max-normal-rate" if "max_normal_rate" in str(e) else "--score-lag")
        raise click.BadParameter(str(e), param_hint=hint) from e
    ckpt.save(output)
    cal = ckpt.calibration
    blend_weight = getattr(ckpt.config, "deviation_blend", 0.0)
    blended = f", deviation blend {blend_weight:g}" if blend_weight else ""
    if blend_weight and ckpt.normalizer.deviation_halflife:
        blended += f" against statistics of half-life {ckpt.normalizer.deviation_halflife:g}"
    if cal.get("per_series"):
        blended += f", per-series tail calibration (rarer than {cal['tail_probability']:g})"
        if cal["per_series"].get("novelty"):
            blended += " with shape novelty {length}/{history} (rarity {rarity:g})".format(
                **{"rarity": 1.0, **cal["per_series"]["novelty"]})
    click.echo(f"saved {output} (threshold {ckpt.threshold:.4f} at score_lag {cal['score_lag']}{blended}, "
               f"{cal['method']}; was {cal['recalibrated']['previous_threshold']:.4f})")


COMMANDS = [generate, train, detect, export, calibrate]
