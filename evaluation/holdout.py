"""Held-out synthetic check: a model and a fresh seed in, ROC-AUC per scenario out.

The series are generated with a seed the model was not trained on and scored exactly as `detect`
scores them. A simple baseline (distance from the centred rolling mean, in rolling standard deviations)
is scored on the same points in the same run, for scale.

    python -m evaluation.holdout --model model/default --seed 9001
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from evaluation.detect import Detector
from training.calibrate import roc_auc
from training.synth import SCENARIOS, generate, scenario_rng

log = logging.getLogger(__name__)

Scorer = Callable[[np.ndarray], np.ndarray]


def rolling_zscore(window_size: int) -> Scorer:
    """Baseline: |x - centred rolling mean| / rolling std, over `window_size` points."""

    def score(values: np.ndarray) -> np.ndarray:
        import pandas as pd

        s = pd.Series(values)
        roll = s.rolling(window_size, center=True, min_periods=2)
        z = (s - roll.mean()).abs() / roll.std().replace(0.0, np.nan)
        return z.fillna(0.0).to_numpy()

    return score


def scenario_roc_auc(scorers: dict[str, Scorer], seed: int, n_series: int = 5, n_samples: int = 2000,
                     scenarios: Sequence[str] = SCENARIOS) -> dict[str, dict[str, float | None]]:
    """ROC-AUC of each scorer per scenario (all points of its `n_series` series pooled), plus `all`."""
    scores: dict[str, dict[str, list[np.ndarray]]] = {name: {} for name in scorers}
    labels: dict[str, list[np.ndarray]] = {}
    for scenario in scenarios:
        for k in range(n_series):
            series = generate(scenario, n_samples, scenario_rng(seed, scenario, k))
            labels.setdefault(scenario, []).append(series.anomaly_tag)
            for name, scorer in scorers.items():
                scores[name].setdefault(scenario, []).append(scorer(series.values))
    table: dict[str, dict[str, float | None]] = {}
    for scenario in [*scenarios, "all"]:
        keys = scenarios if scenario == "all" else [scenario]
        y = np.concatenate([np.concatenate(labels[s]) for s in keys])
        table[scenario] = {name: roc_auc(np.concatenate([np.concatenate(scores[name][s]) for s in keys]), y)
                           for name in scorers}
        table[scenario]["anomalous_share"] = float(y.mean())
    return table


def markdown(table: dict[str, dict[str, float | None]]) -> str:
    """The table as Markdown, one row per scenario."""
    cols = list(next(iter(table.values())))
    lines = ["| scenario | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for scenario, row in table.items():
        cells = ["n/a" if row[c] is None else f"{row[c]:.3f}" for c in cols]
        lines.append(f"| {scenario} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(Path(__file__).parents[1] / "model" / "default"),
                        help="checkpoint (.pt) or bundle [model/default]")
    parser.add_argument("--seed", type=int, default=9001, help="a seed the model was not trained on")
    parser.add_argument("--n-series", type=int, default=5, help="series per scenario")
    parser.add_argument("--n-samples", type=int, default=2000, help="points per series")
    parser.add_argument("--json", type=Path, help="also write the table here")
    args = parser.parse_args(argv)
    detector = Detector(args.model)
    scorers = {"model": detector.score, "rolling_zscore": rolling_zscore(detector.window_size)}
    table = scenario_roc_auc(scorers, args.seed, args.n_series, args.n_samples)
    print(markdown(table))
    if args.json:
        args.json.write_text(json.dumps(table, indent=2) + "\n")


if __name__ == "__main__":
    main()
