"""Study (docs/results.md, "Anomaly Transformer"): F1 of a bundle under two threshold rules, with the same for a
uniform random score.

Run from the repository root: `python docs/studies/at_protocols.py smd runs/at/bundle-plain [more bundles]`.
Each series is scored as `anomalybert evaluate` scores it (the seen part cropped to its last 4,000 points, the
harness's eval stride, the bundle's lag), then, pooled over the set's test parts:
- `bundle`: the bundle's own threshold (for `train --threshold-percentile`, a percentile of the training and
  validation scores: no labels, no test scores);
- `reference`: the Anomaly Transformer reference's protocol, the 99th percentile of the train and test scores
  taken together. It reads the test scores (not the labels) to place the threshold, so it is not what a
  streaming service can do; it is shown to compare with published figures.
Printed: precision, recall and F1, plain and point-adjusted (PA), and a uniform random score's PA-F1 under the
same rule (its own 99th percentile).
"""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, ".")
from evaluation.commands import DEFAULT_EVAL_STRIDE, DEFAULT_MAX_SEEN
from evaluation.datasets import load_dataset
from evaluation.metrics import adjusted_at
from evaluation.scoring import effective_lag, model_point_scores, model_window_scores
from model.bundle import load_bundle
from model.serving import default_lag

PERCENTILE = 99.0


def main(dataset: str, bundles: list[str]) -> None:
    series = [s.crop_seen(DEFAULT_MAX_SEEN[dataset]) for s in load_dataset(dataset, Path(f"../shared/data/{dataset}"))]
    rng = np.random.default_rng(0)
    noise = [rng.random(s.n_points) for s in series]
    print(f"{dataset}: {len(series)} series; P / R / F1 and PA P / R / F1 on the pooled test parts")
    for path in bundles:
        bundle = load_bundle(path)
        stride = max(DEFAULT_EVAL_STRIDE[dataset], bundle.stride)
        lag = effective_lag(default_lag(bundle.manifest), stride)
        scores = [model_point_scores(model_window_scores(bundle, s.values, stride), s.n_points, bundle.window_size,
                                     stride, lag, "max") for s in series]
        rows = {"bundle": (scores, bundle.threshold), "reference": (scores, None), "random, reference": (noise, None)}
        for name, (sc, thr) in rows.items():
            if thr is None:
                thr = float(np.nanpercentile(np.concatenate(sc), PERCENTILE))  # train and test scores together
            y = np.concatenate([s.labels[s.seen_end:] for s in series])
            x = np.concatenate([v[s.seen_end:] for v, s in zip(sc, series, strict=True)])
            m = adjusted_at(y, x, thr)
            print(f"  {Path(path).name:28s} {name:18s} threshold {thr:.4g}: "
                  f"{m['precision']:.3f} / {m['recall']:.3f} / {m['f1']:.3f}   "
                  f"PA {m['pa_precision']:.3f} / {m['pa_recall']:.3f} / {m['pa_f1']:.3f}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
