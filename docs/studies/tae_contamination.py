"""Study (docs/results.md, "The transformer autoencoder"): is the `tae` family robust to anomalies hidden in its
training data? Train on SMD's train splits (the last 4,000 points of each machine, all 38 channels) with 0, 2,
5 and 10 % of the training windows contaminated by the project's synthetic injection (`training.synth.
contaminate`), the full model (`--config robust`: masking, InfoNCE, generator, discriminator) and the plain
autoencoder (`--config plain`: none of them), each served through a bundle and scored on the untouched test
splits by `anomalybert evaluate` (the worker's causal scoring at lag 15, the 99th-percentile threshold of the
(contaminated) training scores).

Both models are the named configurations with a smaller shape and more steps, which is what two CPU cores
afford: d_model 64, 2 encoder and 1 decoder layers, d_ff 128, latent 32, windows of 128 every 8 points
(2,700 training windows), lr 1e-3, 8 epochs of batch 64 (about 340 steps). The named shapes at their own
learning rate take 11 steps an epoch on these data and barely move from their initialization in the epochs
a CPU affords: contamination then changes nothing (an earlier run: VUS-PR 0.3717 at 0 % and at 2 %).

Run from the repository root (about 4 minutes a run for the full model, 2 for the plain one, plus one minute
of evaluation each, on 2 cores; the results go to runs/tae/contamination/):
`python docs/studies/tae_contamination.py [CONFIG ...]`
"""
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, ".")
from model import families
from model.families.export import export_bundle
from training.datasets import normal_train_splits
from training.synth import contaminate, window_share
from training.train import TrainConfig, train

DATA = Path("../shared/data/smd")
OUT = Path("runs/tae/contamination")
SHARES = (0.0, 0.02, 0.05, 0.10)
LAG = 15  # SMD's eval stride is 16
MAX_POINTS = 4000  # the last 4,000 points of each machine, as `train --dataset` takes by default
SHAPE = {"d_model": 64, "enc_layers": 2, "dec_layers": 1, "d_ff": 128, "latent_dim": 32, "stride": 8}
TRAIN = {"epochs": 8, "lr": 1e-3}


def run(config: str, share: float, seed: int = 0) -> dict:
    name = f"{config}-{round(share * 100)}pct"
    result_file = OUT / f"{name}.json"
    if result_file.exists():
        return json.loads(result_file.read_text())
    family = families.get("tae")
    preset = family.configs[config]
    series = normal_train_splits("smd", DATA, MAX_POINTS)
    cfg = family.config({**preset["model"], **SHAPE}, channels=series[0].channels)
    rng = np.random.default_rng(seed)
    shares = []
    for s in series:
        s.values, touched = contaminate(s.values, share, cfg.window_size, cfg.stride, rng)
        shares.append(window_share(touched, cfg.window_size, cfg.stride))
    tc = TrainConfig(**{**preset["train"], **TRAIN}, family="tae", normalization="zscore", scope="global",
                     seed=seed, threshold_percentile=99.0, score_lag=LAG, progress=False)
    t0 = time.perf_counter()
    ckpt = train(series, cfg, tc)
    train_s = time.perf_counter() - t0
    bundle = OUT / name
    export_bundle(ckpt, bundle, with_checkpoint=False)
    report = OUT / f"eval-{name}.json"
    cli = str(Path(sys.executable).with_name("anomalybert"))
    subprocess.run([cli, "evaluate", "--dataset", "smd", "--path", str(DATA), "--model", str(bundle),
                    "--no-baselines", "--output", str(report)], check=True, stdout=subprocess.DEVNULL)
    summary = next(iter(json.loads(report.read_text())["detectors"].values()))["summary"]
    out = {"config": config, "target_share": share, "window_share": float(np.mean(shares)),
           "vus_pr": summary["vus_pr"], "auc_roc": summary["auc_roc"], "auc_pr": summary["auc_pr"],
           "f1_at_threshold": summary.get("f1_at_threshold"),
           "alerts_per_10k_normal": summary.get("alerts_per_10k_normal"),
           "train_seconds": round(train_s, 1), "history": ckpt.metrics["history"]}
    result_file.write_text(json.dumps(out, indent=1) + "\n")
    return out


def main(configs: list[str]) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    rows = [run(c, share) for c in configs for share in SHARES]
    print("| config | contaminated windows (target / actual) | VUS-PR | AUC-ROC | F1 at threshold "
          "| alerts / 10k normal |")
    print("|---|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['config']} | {r['target_share']:.0%} / {r['window_share']:.1%} | {r['vus_pr']:.3f} | "
              f"{r['auc_roc']:.3f} | {r['f1_at_threshold']:.3f} | {r['alerts_per_10k_normal']:.1f} |")


if __name__ == "__main__":
    main(sys.argv[1:] or ["robust", "plain"])
