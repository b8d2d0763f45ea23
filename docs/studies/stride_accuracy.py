"""Strided scoring: what a larger stride (a window every N points) buys in speed and costs in accuracy.

For each bundle and stride: `anomalybert evaluate --eval-stride N --score-lag N-1` on a dev set: what a worker
serves at `scoring.stride = N`, `scoring.score_lag = N - 1` (each point scored by the first window ending at or
after it), and the bare ONNX Runtime windows/s of the bundle (batch 256, one thread)
times N: the points/s the model alone sustains at that stride. Prints a markdown table; each evaluation's
JSON is kept under runs/stride/.

    python docs/studies/stride_accuracy.py DATASET BUNDLE[,BUNDLE...] STRIDE[,STRIDE...] [--no-speed]
    python docs/studies/stride_accuracy.py nab runs/choice/b-tae8-tail,runs/choice/b-at-tail 1,4,8,16,32

`--no-speed` leaves the bare ONNX Runtime measurement out (for a machine busy with other work, where it
would say nothing): the column then shows the stride's factor only.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

OUT = Path("runs/stride")


def evaluate(dataset: str, bundle: str, stride: int) -> dict:
    out = OUT / f"{Path(bundle).name}-{dataset}-s{stride}.json"
    if not out.exists():
        subprocess.run([sys.executable, "-m", "tools.cli", "evaluate", "--dataset", dataset, "--path",
                        f"../shared/data/{dataset}", "--model", bundle, "--eval-stride", str(stride),
                        "--score-lag", str(stride - 1),
                        "--no-baselines", "--output", str(out)], check=True, stdout=subprocess.DEVNULL)
    return json.loads(out.read_text())


def served(report: dict) -> dict:
    """The served model's entry (its own lag and calibration)."""
    (name, entry), *_ = ((k, v) for k, v in report["detectors"].items() if k.startswith("anomalybert"))
    return entry


def main(dataset: str, bundles: list[str], strides: list[int], speed: bool = True) -> None:
    from model.bundle import load_bundle
    from tools.bench.run import bare_ort

    OUT.mkdir(parents=True, exist_ok=True)
    print("| bundle | stride (lag) | model-bound points/s (bare ORT windows/s x stride) | VUS-PR | AUC-ROC |"
          + (" NAB at its threshold |" if dataset == "nab" else "") + " alerts per 10k normal |")
    print("|---|---:|---:|---:|---:|" + ("---:|" if dataset == "nab" else "") + "---:|")
    for b in bundles:
        ort = bare_ort(load_bundle(b), 256, seconds=3.0) if speed else float("nan")
        for s in strides:
            rep = evaluate(dataset, b, s)
            e = served(rep)
            summ = e["summary"]
            lag = rep["settings"]["score_lags"][0]
            nab = ""
            if dataset == "nab":
                fixed = e["nab"]["standard"]["fixed"]
                nab = f" {fixed['score']:.1f} |" if fixed else " – |"
            rate = f"{ort * s:,.0f}" if speed else f"{s} x bare"
            print(f"| {Path(b).name} | {s} ({lag}) | {rate} | {summ['vus_pr']:.3f} | {summ['auc_roc']:.3f} |"
                  f"{nab} {summ.get('alerts_per_10k_normal', float('nan')):.1f} |", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2].split(","), [int(x) for x in sys.argv[3].split(",")], "--no-speed" not in sys.argv)
