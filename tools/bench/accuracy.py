"""What int8 costs in accuracy: two bundles and labelled dev data in, per-point metrics of each and the
difference out.

Data: freshly generated synthetic series (every scenario of `training.synth`, a seed the shipped model
was not trained on) and, when the folder exists, a few NAB files (`../shared/data/nab`, one per category
that has labelled windows). Scores are the offline `Detector` scores (every window covering a point
averaged, the composition the worker computes incrementally). Metrics are threshold-free (ROC-AUC) or
oracle (best F1 over all thresholds, labelled as such); both bundles are scored on identical points.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from evaluation.detect import Detector
from training.calibrate import best_f1_threshold, roc_auc
from training.synth import SCENARIOS, generate, scenario_rng

log = logging.getLogger(__name__)

SYNTH_SEED = 20_261_126  # not a training seed
NAB_DEFAULT = Path("../shared/data/nab")


@dataclass
class Labelled:
    """One series of dev data: values (T,) and 0/1 labels (T,)."""

    name: str
    values: np.ndarray
    labels: np.ndarray


def synthetic_dev(n_points: int = 2000, per_scenario: int = 2, seed: int = SYNTH_SEED) -> list[Labelled]:
    """`per_scenario` fresh series of every synthetic scenario."""
    out = []
    for scenario in SCENARIOS:
        for k in range(per_scenario):
            s = generate(scenario, n_points, scenario_rng(seed, scenario, k))
            out.append(Labelled(f"{scenario}_{k}", s.values, s.anomaly_tag))
    return out


def nab_dev(path: Path, n_files: int) -> list[Labelled]:
    """The shortest file with labelled windows of each NAB category, up to `n_files` of them."""
    import pandas as pd

    windows = json.loads((path / "labels" / "combined_windows.json").read_text())
    picked: list[Path] = []
    for category in sorted(p for p in (path / "data").iterdir() if p.is_dir()):
        files = [f for f in category.glob("*.csv") if windows.get(f"{category.name}/{f.name}")]
        if files:
            picked.append(min(files, key=lambda f: (f.stat().st_size, f.name)))
    out = []
    for f in picked[:n_files]:
        df = pd.read_csv(f)
        ts = pd.to_datetime(df["timestamp"]).to_numpy()
        labels = np.zeros(len(df), np.int8)
        for start, end in windows[f"{f.parent.name}/{f.name}"]:
            labels[(ts >= np.datetime64(pd.Timestamp(start))) & (ts <= np.datetime64(pd.Timestamp(end)))] = 1
        out.append(Labelled(f"{f.parent.name}/{f.stem}", df["value"].to_numpy(np.float64), labels))
    return out


def _metrics(scores: list[np.ndarray], data: list[Labelled]) -> dict[str, Any]:
    s = np.concatenate(scores)
    y = np.concatenate([d.labels for d in data])
    _, cal = best_f1_threshold(s, y)
    per_file = [roc_auc(sc, d.labels) for sc, d in zip(scores, data, strict=True)]
    per_file = [a for a in per_file if a is not None]
    return {"roc_auc": roc_auc(s, y), "best_f1_oracle": cal.get("f1"),
            "mean_file_roc_auc": float(np.mean(per_file)) if per_file else None}


def compare(fp32: Path, int8: Path, data: list[Labelled]) -> dict[str, Any]:
    """Metrics of both bundles on `data`, their difference, and how far the int8 scores move."""
    a, b = Detector(fp32), Detector(int8)
    sa = [a.score(d.values) for d in data]
    sb = [b.score(d.values) for d in data]
    ma, mb = _metrics(sa, data), _metrics(sb, data)
    diff = np.abs(np.concatenate(sa) - np.concatenate(sb))
    flags_a = np.concatenate(sa) >= a.threshold
    flags_b = np.concatenate(sb) >= b.threshold
    return {
        "series": len(data),
        "points": int(sum(len(d.values) for d in data)),
        "anomalous_points": int(sum(int(d.labels.sum()) for d in data)),
        "fp32": ma,
        "int8": mb,
        "delta": {k: (mb[k] - ma[k]) if ma[k] is not None and mb[k] is not None else None for k in ma},
        "score_abs_diff": {"mean": float(diff.mean()), "p99": float(np.percentile(diff, 99)),
                           "max": float(diff.max())},
        "flag_disagreement": float(np.mean(flags_a != flags_b)),
        "threshold": a.threshold,
    }


def accuracy_change(fp32: Path, int8: Path, nab_path: Path | None, nab_files: int) -> dict[str, Any]:
    """`compare` on the synthetic dev data and, if present, on a few NAB files."""
    out = {"synthetic": compare(fp32, int8, synthetic_dev())}
    if nab_path is not None and nab_files > 0 and (nab_path / "labels" / "combined_windows.json").is_file():
        data = nab_dev(nab_path, nab_files)
        out["nab"] = {**compare(fp32, int8, data), "files": [d.name for d in data]}
    else:
        log.info("no NAB data at %s: accuracy on synthetic data only", nab_path)
    return out
