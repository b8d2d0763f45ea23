"""Study (docs/results.md, "The self-distilled masked autoencoder"): the reference's own synthetic benchmark
rebuilt with the project's generator (`training.benchmark`): sine series with five anomaly kinds, 3 % anomalous
points in training (labelled: the semi-supervised margin term sees them) and 25 % in test. The reference expects
ROC-AUC 0.85-0.95. The model is scored causally at lag 0 on the test series, pooled and per kind, with each of
the family's three served scores (the same weights: `discrepancy`, the reference's; `error`; `both`). With
`--unsupervised`, the same model is also trained with the labels hidden (every point normal); `--unsupervised-only`
runs that one alone.

Also writes `reconstructions.png`: for a few test windows, the input, the teacher's and the student's
reconstructions of the hidden last points, and their discrepancy.

Run from the repository root (about 9 minutes a model on 2 cores):
`OMP_NUM_THREADS=1 python docs/studies/sdmae_synthetic.py [--unsupervised | --unsupervised-only]` (one torch thread: two
threads on two cores shared with anything else slow training several times over)
"""
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, ".")
from evaluation import metrics
from evaluation.detect import TorchScorer, score_series
from evaluation.series import Series
from model import families
from training.benchmark import KINDS, benchmark_series
from training.history import write_history
from training.train import TrainConfig, train

OUT = Path("runs/sdmae/synthetic")
N, SERIES = 2000, 8


def data(share: float, seed: int, kinds: tuple[str, ...] = KINDS) -> list[Series]:
    rng = np.random.default_rng(seed)
    out = []
    for k in range(SERIES):
        values, labels = benchmark_series(N, share, rng, kinds)
        out.append(Series(f"s{k}", values, labels=labels, probability=labels.astype(np.float64)))
    return out


def scores(ckpt, series: list[Series]) -> tuple[np.ndarray, np.ndarray]:
    scorer, cfg = TorchScorer(ckpt), ckpt.config
    s = [score_series(scorer, ckpt.normalizer.prepare_series(x.values), cfg.window_size, cfg.stride, 0)
         for x in series]
    y = np.concatenate([x.labels[cfg.window_size - 1:] for x in series])
    return np.concatenate([v[cfg.window_size - 1:] for v in s]), y


def plot_reconstructions(ckpt, series: Series, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    m, cfg = ckpt.model.eval(), ckpt.config
    w, last = cfg.window_size, cfg.score_last
    anomalous = np.flatnonzero(series.labels[w:] > 0) + w
    picks = [int(anomalous[0]) + last // 2, int(anomalous[len(anomalous) // 2]) + last // 2, w + 200]
    fig, axes = plt.subplots(len(picks), 1, figsize=(9, 2.4 * len(picks)), squeeze=False)
    values = ckpt.normalizer.prepare_series(series.values)
    for ax, end in zip(axes[:, 0], picks, strict=True):
        window = ckpt.normalizer.transform(values[end - w:end].reshape(1, w, 1)).astype(np.float32)
        x = torch.from_numpy(window)
        with torch.no_grad():
            teacher, student = m.reconstruct(x, m.last)
        t = np.arange(end - w, end)
        ax.plot(t, window[0, :, 0], color="k", lw=1, label="input")
        ax.plot(t[-last:], teacher[0, -last:, 0], "o-", ms=3, label="teacher")
        ax.plot(t[-last:], student[0, -last:, 0], "s-", ms=3, label="student")
        ax.axvspan(t[-last], t[-1], color="0.85", label="hidden (scored)")
        d = (teacher - student).pow(2)[0, -last:, 0].numpy()
        ax2 = ax.twinx()
        ax2.bar(t[-last:], d, color="tab:red", alpha=0.3, label="discrepancy")
        ax2.set_ylabel("discrepancy")
        for a, b in np.argwhere(np.diff(np.concatenate([[0], series.labels[end - w:end], [0]])) != 0).reshape(-1, 2):
            ax.axvspan(t[0] + a, t[0] + b - 1, color="tab:red", alpha=0.12)
        ax.set_title(f"{series.name}, window ending at {end} (labelled anomalies shaded red)", fontsize=9, loc="left")
    axes[0, 0].legend(fontsize=7, loc="upper left", ncol=4)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(unsupervised: bool = False, only_unsupervised: bool = False) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    fam = families.get("sdmae")
    cfg = fam.config()
    train_series, test_series = data(0.03, 0), data(0.25, 1)
    per_kind = {k: data(0.25, 10 + i, (k,)) for i, k in enumerate(KINDS)}
    results = {}
    runs = (("semi-supervised", True), ("unsupervised", False))[: 2 if unsupervised else 1]
    if only_unsupervised:
        runs = (("unsupervised", False),)
    for name, labelled in runs:
        series = train_series if labelled else [
            Series(s.name, s.values, labels=np.zeros(N, np.int8), probability=np.zeros(N)) for s in train_series]
        tc = TrainConfig(epochs=10, batch_size=64, lr=1e-3, family="sdmae", normalization="zscore", scope="global",
                         progress=False, threshold_percentile=99)
        t0 = time.perf_counter()
        ckpt = train(series, cfg, tc)
        seconds = time.perf_counter() - t0
        ckpt.save(OUT / f"{name}.pt")
        write_history(ckpt.metrics["history"], OUT / f"{name}-report")
        for score in ("discrepancy", "error", "both"):
            served = replace(ckpt, model=fam.reconfigure(ckpt.model, score=score))
            s, y = scores(served, test_series)
            row = {"roc_auc": metrics.auc_roc(y, s), "pr_auc": metrics.auc_pr(y, s),
                   "train_seconds": round(seconds, 1), "test_anomaly_share": float(y.mean())}
            for kind, kseries in per_kind.items():
                ks, ky = scores(served, kseries)
                row[f"roc_auc_{kind}"] = metrics.auc_roc(ky, ks)
            results[f"{name} score={score}"] = row
            print(name, score, json.dumps(row), flush=True)
        if labelled:
            plot_reconstructions(ckpt, test_series[0], OUT / "reconstructions.png")
    (OUT / ("results-unsupervised.json" if only_unsupervised else "results.json")).write_text(
        json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main("--unsupervised" in sys.argv, "--unsupervised-only" in sys.argv)
