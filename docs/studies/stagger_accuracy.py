"""Study (docs/benchmark.md, "Strided windows staggered across a fleet"): does the phase of a strided bundle's
windows move how well it ranks anomalies? The worker serves each series' windows at a phase taken from its id
(`model.windows.series_phase`); offline evaluation puts every series at phase 0. For each phase p of the bundle's
stride, every dev series is scored with its windows at p (`Detector.score`, the worker's path, through the
bundle's calibration at its served lag), and the mean AUC-ROC and VUS-PR over the labelled series are printed;
then once more with each series at the phase of its own name (as a worker serves a series of that id).

    python docs/studies/stagger_accuracy.py DATASET BUNDLE          # e.g. nab runs/fam/b-at-tail
"""

from __future__ import annotations

import sys

import numpy as np

from evaluation.datasets import load_dataset
from evaluation.detect import Detector
from evaluation.metrics import auc_roc, vus_pr
from model.windows import series_phase


def main(dataset: str, bundle: str) -> None:
    series = [s for s in load_dataset(dataset, f"../shared/data/{dataset}") if s.labels is not None
              and s.labels.any()]
    det = Detector(bundle)
    stride = det.stride
    print(f"{len(series)} labelled {dataset} series; {bundle}: stride {stride}, lag {det.score_lag}")
    print("| phase | mean AUC-ROC | mean VUS-PR |\n|---|---:|---:|")
    rows = [(str(p), [det.score(s.values, _id_at(s.name, stride, p)) for s in series]) for p in range(stride)]
    rows.append(("each series' own (by its name)", [det.score(s.values, s.name) for s in series]))
    for name, scores in rows:
        roc = [auc_roc(s.labels, np.nan_to_num(x, nan=0.0)) for s, x in zip(series, scores, strict=True)]
        vus = [vus_pr(s.labels, np.nan_to_num(x, nan=0.0)) for s, x in zip(series, scores, strict=True)]
        print(f"| {name} | {np.nanmean(roc):.3f} | {np.nanmean(vus):.3f} |")


def _id_at(name: str, stride: int, phase: int) -> str:
    """A made-up series id whose windows fall at `phase`."""
    return next(f"{name}#{k}" for k in range(10_000) if series_phase(f"{name}#{k}", stride) == phase)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
