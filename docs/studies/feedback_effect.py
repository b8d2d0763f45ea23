"""Study (docs/results.md, "Alert feedback"): do an operator's false-alarm verdicts, rather than the retrain
itself, lower a model's scores where it raised false alarms?

A small AnomalyBERT (window 32, 2 layers of 32, 3 epochs on 8 synthetic scenarios of 800 points, seed 1) is
made sensitive: its threshold is the 99th percentile of its own scores on a pump's series (a sine with a short
+3 burst every 150 points: the valve cycling, normal for this pump). The nine bursts are then marked false
alarms, and the model is retrained (`training.retrain.run_retrain`, finetuning the head, 3 epochs, seed 0) twice
on the series: with the verdicts and without them. For each model: the alerts it would open (runs of scores at
or above its threshold), its mean and highest score on the bursts, and the 99th percentile of its scores
elsewhere.

Run from the repository root (about two minutes on 2 cores): `python docs/studies/feedback_effect.py`
"""
import sys
import tempfile
from pathlib import Path

import numpy as np
from click.testing import CliRunner

sys.path.insert(0, ".")
from evaluation.detect import Detector, TorchScorer, score_series
from evaluation.series import Series, load_series
from model import families
from model.families.export import export_bundle
from tools.cli import cli
from training.feedback import Verdict
from training.retrain import RetrainPlan, run_retrain
from training.train import TrainConfig, train

N, BURSTS = 1500, range(150, 1500, 150)


def pump() -> np.ndarray:
    rng = np.random.default_rng(0)
    v = np.sin(np.arange(N) / 8) + rng.normal(0, 0.1, N)
    for k in BURSTS:
        v[k:k + 3] += 3.0
    return v


def report(name: str, model: Path, v: np.ndarray) -> None:
    d = Detector(model)
    sc = d.score(v)
    hot = np.nan_to_num(sc, nan=-np.inf) >= d.threshold
    opened = int((hot & ~np.concatenate([[False], hot[:-1]])).sum())
    burst = np.zeros(N, bool)
    for k in BURSTS:
        burst[k:k + 4] = True
    print(f"| {name} | {opened} | {d.threshold:.4f} | {np.nanmean(sc[burst]):.4f} / {np.nanmax(sc[burst]):.4f} | "
          f"{np.nanpercentile(sc[~burst], 99):.4f} |")


def main() -> None:
    tmp = Path(tempfile.mkdtemp())
    CliRunner().invoke(cli, ["generate", "-o", str(tmp / "d"), "-n", "800", "--seed", "1"])
    cfg = families.get("anomalybert").config(window_size=32, d_model=32, n_heads=2, n_layers=2, d_ff=64)
    ckpt = train(load_series(tmp / "d", labels=True), cfg, TrainConfig(epochs=3, progress=False, score_lag=0))
    v = pump()
    ckpt.threshold = float(np.nanpercentile(score_series(TorchScorer(ckpt), v, 32, 1, 0), 99))
    export_bundle(ckpt, tmp / "base")
    ts = 1000 * np.arange(N, dtype=np.int64)
    verdicts = [Verdict(f"pump:{ts[k]}", "pump", int(ts[k]), int(ts[k + 4]), False) for k in BURSTS]
    print("| model | alerts opened | threshold | score on the bursts, mean / max | 99th percentile elsewhere |")
    print("|---|---:|---:|---:|---:|")
    report("before", tmp / "base", v)
    for name, fed in (("retrained without the verdicts", []), ("retrained with the verdicts", verdicts)):
        out = run_retrain([Series("pump", v, timestamps=ts)], tmp / "base",
                          RetrainPlan(epochs=3, seed=0, progress=False, feedback=fed))
        out.candidate.save(tmp / "c.pt")
        report(name, tmp / "c.pt", v)


if __name__ == "__main__":
    main()
