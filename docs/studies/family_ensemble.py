"""Study (issue 18, "The served default, across all families"): does combining bundles of different families,
per series, beat each of them? Each member bundle scores every series through the evaluation harness's own
code (`evaluation.scoring.evaluate_series`: the worker's windows, lag and per-series calibration, at the eval
stride `anomalybert evaluate` would pick for that bundle), and the combined detector is built per point from
the members' per-series tail-calibrated scores (each member calibrated on each series on its own, as the
worker serves it):
- `mean`: the mean of the members' tail surprises; its threshold is the members' (0.4498 = a tail probability
  of 2e-3), so it alerts when the geometric mean of the members' tail probabilities is below 2e-3;
- `max`: the largest surprise (alerts when any member alerts), at the same threshold.
A combined point is final when every member's score of it is (the largest member lag), and NAB counts it at
that row. The report is `evaluation.report.build_report`'s, the same JSON as `anomalybert evaluate --output`
writes (detector names `anomalybert lag=L cal=tail` with a suffix), so the same metrics can be read from it.

Run from the repository root:
`python docs/studies/family_ensemble.py DATASET OUTPUT.json BUNDLE [BUNDLE ...]`
e.g. `python docs/studies/family_ensemble.py nab runs/choice/ens-nab.json model/default runs/choice/b-tae-tail`
Every member must be served with the tail calibration (`anomalybert calibrate --per-series tail`). Member
scores are cached under runs/choice/cache/ so other combinations of the same members are cheap.
"""
from __future__ import annotations

import json
import os
import pickle
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, ".")
from evaluation.commands import DEFAULT_EVAL_STRIDE, DEFAULT_MAX_SEEN  # noqa: E402
from evaluation.datasets import load_dataset, nab_profiles  # noqa: E402
from evaluation.report import build_report  # noqa: E402
from evaluation.scoring import (  # noqa: E402
    EvalConfig,
    ModelVariant,
    Scored,
    ScoredSeries,
    detection_time,
    effective_lag,
    evaluate_series,
    served_calibration,
)
from model.bundle import load_bundle  # noqa: E402
from model.serving import serve  # noqa: E402

DATA = Path("../shared/data")
CACHE = Path("runs/choice/cache")
LIMIT = int(os.environ["LIMIT"]) if os.environ.get("LIMIT") else None  # a quick check on the first N series


def eval_stride(bundle, dataset: str) -> int:
    """The stride `anomalybert evaluate` picks for this bundle by default."""
    stride = max(DEFAULT_EVAL_STRIDE[dataset], bundle.stride)
    tail = bundle.manifest.model.get("score_last")
    return max(bundle.stride, min(stride, int(tail))) if tail else stride


def member_scores(path: str, dataset: str, series: list) -> tuple[list[Scored], int, int, float]:
    """One member's tail-calibrated served scores on every series (cached), its lag, window and threshold."""
    bundle = load_bundle(path)
    if served_calibration(bundle) != "tail":
        raise SystemExit(f"{path}: not served with the tail calibration")
    stride = eval_stride(bundle, dataset)
    lag = effective_lag(serve(bundle).lag, stride)
    key = CACHE / f"{Path(path).resolve().name}-{bundle.version}-{dataset}-s{stride}-l{lag}-n{len(series)}.pkl"
    if key.exists():
        return pickle.loads(key.read_bytes()), lag, bundle.window_size, bundle.threshold
    cfg = EvalConfig((ModelVariant(lag, "tail"),), eval_stride=stride, baselines=False)
    t0 = time.perf_counter()
    out = [evaluate_series(bundle, s, cfg).detectors[ModelVariant(lag, "tail").name] for s in series]
    print(f"{path} on {dataset}: stride {stride}, lag {lag}, {time.perf_counter() - t0:.0f} s", flush=True)
    CACHE.mkdir(parents=True, exist_ok=True)
    key.write_bytes(pickle.dumps(out))
    return out, lag, bundle.window_size, bundle.threshold


def main(dataset: str, output: str, paths: list[str]) -> None:
    seen_cap = DEFAULT_MAX_SEEN[dataset]
    series = [s.crop_seen(seen_cap) for s in load_dataset(dataset, DATA / dataset, LIMIT)]
    members = [member_scores(p, dataset, series) for p in paths]
    lag = max(m[1] for m in members)
    w = max(m[2] for m in members)
    thresholds = {round(m[3], 6) for m in members}
    if len(thresholds) != 1:
        raise SystemExit(f"members have different thresholds {thresholds}")
    threshold = members[0][3]
    scored = []
    for i, s in enumerate(series):
        stack = np.stack([m[0][i].scores for m in members])  # (members, T), NaN before any history
        out = ScoredSeries(s)
        for how, combined in (("mean", np.mean(stack, axis=0)), ("max", np.max(stack, axis=0))):
            out.detectors[f"anomalybert ensemble={how} lag={lag} cal=tail"] = Scored(
                combined, detection_time(combined, lag, w), lag)
        for p, m in zip(paths, members, strict=True):  # each member alone, from the same scores
            out.detectors[f"anomalybert member={Path(p).name} lag={m[1]} cal=tail"] = m[0][i]
        scored.append(out)
    profiles = nab_profiles(DATA / dataset) if dataset == "nab" else None
    detectors = build_report(scored, dataset, profiles, threshold, 0, 128, "tail")
    report = {"dataset": dataset, "members": paths, "threshold": threshold, "lag": lag,
              "n_series": len(series), "detectors": detectors}
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    Path(output).write_text(json.dumps(report, indent=1, default=lambda o: o.item()) + "\n")
    for name, e in detectors.items():
        m = e["summary"]
        line = (f"{name}: VUS-PR {m['vus_pr']} AUC-ROC {m['auc_roc']} "
                f"alerts/10k {m.get('alerts_per_10k_normal')}")
        if "ucr_hit_rate" in m:
            line += f" UCR {m['ucr_hit_rate']}"
        if "nab" in e:
            st = e["nab"]["standard"]
            line += (f" NAB fixed {st['fixed']['score']:.1f} corpus-opt {st['corpus_optimized']['score']:.1f}"
                     if st["fixed"] else "")
        print(line)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
