"""Study (docs/results.md, "Shape novelty"): ways to combine a causal left discord with the shipped score.

Run from the repository root: `python docs/studies/novelty_variants.py nab 128/2048,256/2048` (dataset,
LENGTH/HISTORY list, optional file limit). Prints VUS-PR, AUC-ROC, UCR hits and NAB standard scores for the
shipped raw score, the discord alone, their mean (`mix`), their max (`max`), each with and without the
per-series tail calibration, and the larger of the two per-series surprises (`maxcal`, what the worker
serves with `calibration.per_series.novelty`) and a variant that discounts the novelty's surprise by 0.1
(`wcal`). The windowed Gaussian runs beside them. Raw model scores are cached in runs/disc/. A fourth
argument, `all` or a file limit being the third, lists fixed thresholds to report NAB at (e.g. 0.4498,0.5).
"""
import pickle
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, ".")
from evaluation import baselines
from evaluation.commands import DEFAULT_EVAL_STRIDE, DEFAULT_MAX_SEEN
from evaluation.datasets import load_dataset, nab_profiles
from evaluation.report import build_report
from evaluation.scoring import Scored, ScoredSeries, detection_time, effective_lag, model_window_scores
from model.bundle import DEFAULT_BUNDLE_DIR, load_bundle
from model.novelty import left_discord
from model.surprise import TailSketch, calibrate_series
from model.windows import aggregate


def main(dataset, limit=None, configs=((32, 1024),), thresholds=()):
    bundle = load_bundle(DEFAULT_BUNDLE_DIR)
    w = bundle.window_size
    stride = max(DEFAULT_EVAL_STRIDE[dataset], bundle.stride)
    lag = effective_lag(0, stride)
    series = [s.crop_seen(DEFAULT_MAX_SEEN[dataset]) for s in load_dataset(dataset, Path(f"../shared/data/{dataset}"), limit)]
    cache = Path(f"runs/disc/raw-{dataset}.pkl")
    cache.parent.mkdir(parents=True, exist_ok=True)
    raws = pickle.loads(cache.read_bytes()) if cache.exists() else {}
    out = []
    t0 = time.time()
    for s in series:
        v = s.matrix
        chans = [c for c in range(v.shape[1]) if np.ptp(v[:, c]) > 0] if v.shape[1] != bundle.channels else [0]
        if s.name not in raws:
            ws = model_window_scores(bundle, v, stride)
            raws[s.name] = [aggregate(x, s.n_points, w, stride, lag)[0] for x in ws]
        per, nan_first = {}, {}
        for k, c in enumerate(chans):
            z = bundle.normalizer.prepare_series(v[:, c])[:, 0]
            r = raws[s.name][k]
            per.setdefault("raw", []).append(r)
            for (m, H) in configs:
                nan_first.setdefault((m, H), []).append(left_discord(z, m, H))  # NaN before a neighbour exists
                d = np.nan_to_num(nan_first[(m, H)][-1])  # the plain variants read 0 there
                per.setdefault(f"disc{m}/{H}", []).append(d)
                per.setdefault(f"mix{m}/{H}", []).append(0.5 * np.nan_to_num(r) + 0.5 * d)
                per.setdefault(f"max{m}/{H}", []).append(np.maximum(np.nan_to_num(r), d))
        sc = ScoredSeries(s)
        def tl(x):
            return calibrate_series(x, TailSketch(5000, 200))
        for (m, H) in configs:
            pairs = list(zip(per["raw"], nan_first[(m, H)], strict=True))
            per[f"maxcal{m}/{H}"] = [np.where(np.isnan(tl(r)), np.nan, np.fmax(tl(r), tl(d))) for r, d in pairs]
            per[f"wcal{m}/{H}"] = [np.where(np.isnan(tl(r)), np.nan, np.fmax(tl(r), tl(d) - 0.1)) for r, d in pairs]
        for name, chs in per.items():
            if "cal" in name:
                sco = baselines.reduce_channels(np.stack(chs, 1), "max")
                sc.detectors[f"anomalybert {name} cal=tail"] = Scored(sco, detection_time(sco, lag, w), lag)
                continue
            for cal in ("none", "tail"):
                if cal == "tail":
                    chs2 = [calibrate_series(x, TailSketch(5000, 200)) for x in chs]
                else:
                    chs2 = chs
                sco = baselines.reduce_channels(np.stack(chs2, 1), "max")
                sc.detectors[f"anomalybert {name} cal={cal}"] = Scored(sco, detection_time(sco, lag, w), lag)
        if dataset != "smd":
            wg = baselines.windowed_gaussian(v)
            sc.detectors["windowed_gaussian"] = Scored(wg, wg.copy(), 0)
        out.append(sc)
    cache.write_bytes(pickle.dumps(raws))
    print(f"scored {len(out)} series in {time.time()-t0:.0f}s", flush=True)
    profiles = nab_profiles(Path("../shared/data/nab")) if dataset == "nab" else None
    if profiles:
        profiles = {"standard": profiles["standard"]}
    for threshold in thresholds or (bundle.threshold,):
        print(f"-- fixed threshold {threshold:.4f}")
        report(build_report(out, dataset, profiles, threshold, 0, 128, "tail"), len(out))


def report(rep: dict, n_series: int) -> None:
    for det, e in rep.items():
        m = e["summary"]
        line = f"{det:40s} vus {m['vus_pr'] or float('nan'):.3f} roc {m['auc_roc'] or float('nan'):.3f}"
        if "ucr_hit_rate" in m:
            line += f" ucr {m['ucr_hit_rate'] * n_series:.0f}/{n_series}"
        if "nab" in e:
            n = e["nab"]["standard"]
            fx = n["fixed"]["score"] if n["fixed"] else float("nan")
            line += f" NAB co {n['corpus_optimized']['score']:.1f} lofo {n['leave_one_file_out']['score']:.1f} fixed {fx:.1f}"
        if m.get("alerts_per_10k_normal") is not None:
            line += f" a/10k {m['alerts_per_10k_normal']:.1f}"
        print(line, flush=True)


if __name__ == "__main__":
    ds = sys.argv[1]
    cfgs = tuple(tuple(int(a) for a in c.split("/")) for c in sys.argv[2].split(","))
    lim = int(sys.argv[3]) if len(sys.argv) > 3 and sys.argv[3] != "all" else None
    main(ds, lim, cfgs, tuple(float(t) for t in sys.argv[4].split(",")) if len(sys.argv) > 4 else ())
