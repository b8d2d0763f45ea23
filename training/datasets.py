"""A public set's normal train splits as unlabelled training series (`anomalybert train --dataset`).

SMD's and SMAP/MSL's train splits hold no labelled anomalies; they are what the Anomaly Transformer and other
unsupervised families learn "normal" from. Each split becomes one `Series` whose labels are all normal (so the
shared training loop can hold out a validation tail), cropped to its last `max_points` points; the test splits
are never read into training.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from evaluation.datasets import load_dataset
from evaluation.series import Series


def normal_train_splits(dataset: str, path: Path, max_points: int | None = None) -> list[Series]:
    """The train split (`seen_end` prefix) of every series of `dataset` at `path`, as normal-labelled series."""
    out = []
    for s in load_dataset(dataset, path):
        start = 0 if max_points is None else max(0, s.seen_end - max_points)
        values = s.values[start:s.seen_end]
        out.append(as_normal(Series(f"{s.name}:train", values, meta={**s.meta, "split": "train"})))
    return out


def as_normal(series: Series) -> Series:
    """Label every point of an unlabelled series normal (probability and tag 0), in place, and return it: what
    the shared training loop needs to hold out a validation tail of data that an unsupervised family takes as
    normal."""
    series.probability = np.zeros(len(series))
    series.labels = np.zeros(len(series), np.int8)
    return series
