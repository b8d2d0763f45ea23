"""`anomalybert evaluate`: a bundle and a labelled dataset in, accuracy tables and a JSON report out.

Import-light at module level (click only); numpy, onnxruntime, scikit-learn load inside the command.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import click

DATASET_CHOICES = ("seed", "nab", "ucr", "smd", "smap_msl")
# Speed knobs sized for a small shared CPU: windows scored every N points on the long sets, and at most
# this many points of a long training split kept as history (None: everything).
DEFAULT_EVAL_STRIDE = {"seed": 1, "nab": 1, "ucr": 8, "smd": 16, "smap_msl": 1}
DEFAULT_MAX_SEEN = {"seed": None, "nab": None, "ucr": 4000, "smd": 4000, "smap_msl": 4000}
NAB_PROFILE_LABELS = {"standard": "standard", "reward_low_FP_rate": "low FP", "reward_low_FN_rate": "low FN"}


def _novelty(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[int, int, float] | None:
    """`--novelty LENGTH/HISTORY[/RARITY]` -> (length, history, rarity), or a usage error saying what is wrong."""
    from model.novelty import parse_novelty

    try:
        return None if value is None else parse_novelty(value)
    except ValueError as e:
        raise click.BadParameter(str(e)) from e


def _peer_keys(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> tuple[str, ...]:
    """`--peers` values -> peer keys (comma separated or repeated), or a usage error naming the choices."""
    from evaluation.peers import parse_peers

    try:
        return parse_peers(value)
    except ValueError as e:
        raise click.BadParameter(str(e)) from e


@click.command("evaluate")
@click.option("--model", "model_path", default=None, metavar="BUNDLE_OR_DIR",
              help="Bundle directory, its model.onnx, or a registry with a `current` pointer "
                   "[default: the shipped bundle in model/default].")
@click.option("--dataset", type=click.Choice(DATASET_CHOICES), required=True,
              help="Data format: seed = CSV (timestamp,value,probability,anomaly_tag), nab, ucr, smd, "
                   "smap_msl (layouts in ../shared/data/README.md).")
@click.option("--path", "data_path", type=click.Path(path_type=Path), required=True,
              help="Dataset folder (for seed also a single CSV), e.g. ../shared/data/nab.")
@click.option("--score-lag", "lags", type=int, multiple=True, metavar="L",
              help="Points a score waits for later windows before it is final (0..W-1). Repeat to compare "
                   "several in one run. [default: the worker's: the bundle's calibrated lag, else W-1]")
@click.option("--calibration", "calibrations", type=click.Choice(("none", "likelihood", "tail")), multiple=True,
              help="Per-series calibration of the model's scores: none, the causal anomaly likelihood, or tail "
                   "(the per-series tail sketch of model.surprise; threshold 0.5 = rarer than 1 in 1,000). "
                   "Repeat to compare. [default: the one the bundle is served with]")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), default=None, metavar="FILE",
              help="JSON report path [default: runs/eval-<dataset>.json].")
@click.option("--limit", type=click.IntRange(min=1), default=None, metavar="N",
              help="Evaluate only the first N files/series (stable order).")
@click.option("--baselines/--no-baselines", default=True, show_default=True,
              help="Also score random, windowed Gaussian (NAB's) and Isolation Forest in the same run.")
@click.option("--peers", "peer_names", multiple=True, metavar="NAME[,NAME...]", callback=_peer_keys,
              help="Also score these peers: the published top performers of TSB-AD (sub-pca, kshape, poly, "
                   "matrix-profile; pca, kmeans on all channels jointly) and a matrix-profile discord (discord), "
                   "or all. None is causal: each sees the whole series. Needs the 'peers' extra and "
                   "`pip install --no-deps tsb-ad==1.5` (docs/results.md). [default: none]")
@click.option("--novelty", type=str, default=None, callback=_novelty, metavar="LENGTH/HISTORY[/RARITY]",
              help="Also score the model combined with shape novelty (model.novelty, a causal left discord): the "
                   "larger of the two per-series tail surprises, the shape's novelty being its distance to the "
                   "nearest earlier LENGTH-point subsequence of the last HISTORY points, counted only when RARITY "
                   "times rarer than the model's (default 1); e.g. 128/2048/4. [default: none]")
@click.option("--eval-stride", type=click.IntRange(min=1), default=None, metavar="N",
              help="Score a window every N points (N > 1 trades fidelity for speed; lags below N-1 are "
                   "raised to N-1). [default: 1 for seed/nab/smap_msl, 8 for ucr, 16 for smd; at most the "
                   "points a bundle scores per window (sdmae's score_last)]")
@click.option("--max-seen", type=click.IntRange(min=1), default=None, metavar="N",
              help="Keep at most the last N points of a long train split as history. "
                   "[default: all for seed/nab, 4000 for ucr/smd/smap_msl]")
@click.option("--channel-reduce", type=click.Choice(("max", "mean")), default="max", show_default=True,
              help="How a univariate model's per-channel scores combine on multichannel data (SMD).")
@click.option("--vus-max-buffer", type=click.IntRange(min=0), default=128, show_default=True,
              help="Largest label buffer of VUS-PR (buffers 0..L are averaged).")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the random baseline and IForest.")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True,
              help="ONNX Runtime threads.")
@click.option("--report", "report_dir", type=click.Path(file_okay=False, path_type=Path), default=None, metavar="DIR",
              help="Also write the served model's metrics.json (ROC-AUC, PR-AUC, precision, recall and F1 at a "
                   "percentile threshold of the seen parts' scores) and the plots scores.png, "
                   "score_distribution.png, roc.png, precision_recall.png into DIR.")
@click.option("--report-percentile", type=click.FloatRange(0.0, 100.0, min_open=True, max_open=True),
              default=95.0, show_default=True, metavar="P",
              help="--report: the threshold is the P-th percentile of the seen parts' scores (train splits, NAB's "
                   "probationary period), never of the scored part.")
@click.option("--sweep", is_flag=True,
              help="--report: also scan thresholds at percentiles 80-99.9 of the scored part (threshold_sweep.csv, "
                   "metrics_best.json, f1_vs_threshold.png). The best row is chosen with the test labels: an "
                   "oracle, labelled so.")
def evaluate_command(model_path: str | None, dataset: str, data_path: Path, lags: tuple[int, ...],
                     calibrations: tuple[str, ...], output: Path | None, limit: int | None, baselines: bool,
                     peer_names: tuple[str, ...], novelty: tuple[int, int, float] | None, eval_stride: int | None,
                     max_seen: int | None,
                     channel_reduce: str, vus_max_buffer: int, seed: int, threads: int, report_dir: Path | None,
                     report_percentile: float, sweep: bool) -> None:
    """Measure a bundle's accuracy on labelled data, scored causally as the stream worker scores it.

    Each point's score is final `score_lag` points after it arrives; NAB counts the detection at that
    later row. Metrics use only the part after the seen prefix (NAB's probationary 15 %, the train
    split elsewhere); thresholds come from the bundle, the seen part or other files, never from the
    labels being scored. Oracle figures (best F1, point-adjusted F1, NAB's corpus-optimized threshold)
    are labelled; PA-F1 is always shown beside the same metric for a random score.

    \b
    Examples:
      anomalybert evaluate --dataset nab --path ../shared/data/nab
      anomalybert evaluate --dataset nab --path ../shared/data/nab --score-lag 0 --score-lag 63 \\
          --calibration none --calibration likelihood --no-baselines
      anomalybert evaluate --dataset ucr --path ../shared/data/ucr --limit 20
      anomalybert evaluate --dataset ucr --path ../shared/data/ucr --novelty 128/2048
      anomalybert evaluate --dataset ucr --path ../shared/data/ucr --no-baselines --peers discord,sub-pca
      anomalybert evaluate --dataset smd --path ../shared/data/smd --model bundle/ --report runs/smd --sweep
    """
    from rich.console import Console

    from evaluation import peers
    from evaluation.datasets import load_dataset, nab_profiles
    from evaluation.report import build_report
    from evaluation.scoring import EvalConfig, ModelVariant, effective_lag, novelty_of, served_calibration
    from model.bundle import DEFAULT_BUNDLE_DIR, load_bundle
    from model.serving import scored_per_window, serve

    console = Console()
    if not console.is_terminal:  # a log file or pipe: wide enough that the tables do not wrap
        console = Console(width=150)
    started = time.perf_counter()
    peers.require(peer_names)  # a missing package fails now, not after the model's minutes
    if sweep and report_dir is None:
        raise click.UsageError("--sweep writes into the --report folder: give --report DIR")
    bundle = load_bundle(model_path or DEFAULT_BUNDLE_DIR, threads=threads)
    w = bundle.window_size
    stride = eval_stride or max(DEFAULT_EVAL_STRIDE[dataset], bundle.stride)
    scored = scored_per_window(bundle.manifest)  # a family may score only a window's newest points
    if eval_stride is None and scored < w:
        stride = max(bundle.stride, min(stride, scored))
    for lag in lags:
        if not 0 <= lag <= w - 1:
            raise click.BadParameter(f"must be in [0, {w - 1}] for window {w}, got {lag}",
                                     param_hint="--score-lag")
    # The worker's default: the lag the bundle's threshold was calibrated with, else W-1.
    default_lag = serve(bundle).lag
    chosen_lags = sorted({effective_lag(lag, stride) for lag in (lags or (default_lag,))})
    calibrations = calibrations or (served_calibration(bundle),)
    served_novelty = novelty_of(bundle)  # the tail calibration of a bundle with novelty includes it
    variants = tuple(ModelVariant(lag, cal, served_novelty if cal == "tail" else None)
                     for lag in chosen_lags for cal in calibrations)
    if novelty is not None and novelty != served_novelty:
        variants += tuple(ModelVariant(lag, "tail", novelty) for lag in chosen_lags)
    seen_cap = max_seen if max_seen is not None else DEFAULT_MAX_SEEN[dataset]
    series = [s.crop_seen(seen_cap) for s in load_dataset(dataset, data_path, limit)]
    cfg = EvalConfig(variants, eval_stride=stride, channel_reduce=channel_reduce, baselines=baselines,
                     seed=seed, peers=peer_names)

    scored = _score_with_progress(console, bundle, series, cfg)
    profiles = nab_profiles(data_path) if dataset in ("nab", "seed") else None
    detectors = build_report(scored, dataset, profiles, bundle.threshold, seed, vus_max_buffer,
                             served_calibration(bundle))
    for name, about in peers.describe(peer_names).items():  # not causal, what it is, its time, its failures
        failures = {s.series.name: s.detectors[name].failed for s in scored if s.detectors[name].failed}
        detectors[name].update(about, seconds=round(sum(s.detectors[name].seconds for s in scored), 1),
                               failures=failures)
    settings = {"eval_stride": stride, "bundle_stride": bundle.stride, "score_lags": chosen_lags,
                "requested_lags": list(lags), "calibrations": list(calibrations),
                "max_seen": seen_cap, "channel_reduce": channel_reduce, "vus_max_buffer": vus_max_buffer,
                "seed": seed, "limit": limit, "baselines": baselines, "novelty": novelty,
                "peers": list(peer_names)}
    report = {
        "dataset": dataset, "path": str(data_path),
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "bundle": {"directory": str(bundle.directory), "version": bundle.version,
                   "family": bundle.manifest.family, "window_size": w,
                   "stride": bundle.stride, "channels": bundle.channels, "threshold": bundle.threshold,
                   "normalization": bundle.manifest.normalization},
        "settings": settings, "n_series": len(series), "n_points": int(sum(s.n_points for s in series)),
        "elapsed_s": round(time.perf_counter() - started, 1), "detectors": detectors,
    }
    out = output or Path("runs") / f"eval-{dataset}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1, default=_json_default) + "\n")
    _print_tables(console, report)
    console.print(f"report written to [bold]{out}[/bold] ({report['elapsed_s']} s)")
    if report_dir is not None:
        from evaluation.artifacts import write_report

        served = variants[0].name  # the first variant: the worker's lag and calibration
        files = write_report(scored, served, report_dir, report_percentile, sweep, bundle.threshold,
                             {"dataset": dataset, "bundle": report["bundle"]["version"],
                              "family": bundle.manifest.family})
        console.print(f"report files in [bold]{report_dir}[/bold]: {', '.join(f.name for f in files)}")


def _score_with_progress(console: Any, bundle: Any, series: list, cfg: Any) -> list:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from evaluation.scoring import score_all

    with Progress(TextColumn("scoring"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("{task.description}"), console=console, transient=True) as bar:
        task = bar.add_task("", total=len(series))
        return score_all(bundle, series, cfg,
                         progress=lambda s: bar.update(task, advance=1, description=s.name))


def _json_default(o: Any) -> Any:
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


def _fmt(v: Any, digits: int = 3) -> str:
    return "–" if v is None or v != v else f"{v:.{digits}f}"


def _print_tables(console: Any, report: dict[str, Any]) -> None:
    from rich.table import Table

    s = report["settings"]
    caption = (f"{report['n_series']} series, {report['n_points']} points; eval stride {s['eval_stride']}, "
               f"max seen {s['max_seen']}; means over series with anomalies, on the unseen part only. "
               "best F1 and PA-F1 use the best threshold in hindsight (oracle); F1@seen thresholds at the "
               "seen part's max score."
               + (" peer: rows see the whole series at once (not causal), unlike the stream worker."
                  if any(e.get("causal") is False for e in report["detectors"].values()) else ""))
    table = Table(title=f"Accuracy on {report['dataset']} ({report['bundle']['version']})", caption=caption)
    columns = ["detector", "VUS-PR", "AUC-PR", "AUC-ROC", "best F1", "F1@seen", "PA-F1 (random)"]
    is_ucr = report["dataset"] == "ucr"
    for c in columns + (["UCR hit"] if is_ucr else []):
        table.add_column(c, justify="left" if c == "detector" else "right", no_wrap=True)
    for name, entry in report["detectors"].items():
        m = entry["summary"]
        row = [name, _fmt(m["vus_pr"]), _fmt(m["auc_pr"]), _fmt(m["auc_roc"]), _fmt(m["best_f1"]),
               _fmt(m["f1_seen"]), f"{_fmt(m['pa_f1']['value'])} ({_fmt(m['pa_f1']['random'])})"]
        if is_ucr:
            row.append(_fmt(m.get("ucr_hit_rate")))
        table.add_row(*row)
    console.print(table)
    if any("nab" in e for e in report["detectors"].values()):
        _print_nab(console, report)
    for name, entry in report["detectors"].items():
        if entry.get("failures"):
            first, why = next(iter(entry["failures"].items()))
            console.print(f"{name} failed on {len(entry['failures'])} series and scores 0 there "
                          f"(first: {first}: {why})", markup=False)


def _print_nab(console: Any, report: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title="NAB score (null detector 0, perfect 100)",
                  caption="corpus-optimized: one threshold maximizing the corpus score, as NAB's "
                          "scoreboard (uses these labels); leave-one-file-out: each file at the threshold "
                          "optimal on the others; seen part: per file, above the probationary period's max; "
                          "fixed: the bundle's threshold on the scores it serves (another calibration: that "
                          "scale's default, 0.5 for likelihood).")
    for c in ("detector", "profile", "corpus-optimized", "leave-one-file-out", "seen part", "fixed"):
        table.add_column(c, justify="left" if c in ("detector", "profile") else "right", no_wrap=True)
    for name, entry in report["detectors"].items():
        for profile, res in entry["nab"].items():
            fixed = res["fixed"]["score"] if res["fixed"] else None
            scores = (res["corpus_optimized"]["score"], res["leave_one_file_out"]["score"],
                      res["seen_part"]["score"], fixed)
            table.add_row(name, NAB_PROFILE_LABELS.get(profile, profile), *(_fmt(v, 1) for v in scores))
    console.print(table)


COMMANDS: list[click.Command] = [evaluate_command]
