"""Study helper (docs/results.md, "Finetuning on the fleet's own telemetry"): write the seen part of every
series of a dev set as unlabelled CSV (`timestamp, value, series_id`), the input `anomalybert retrain` takes.

Run from the repository root: `python docs/studies/seen_parts.py nab runs/ft/nab-seen`. Only the part a
detector may learn from is written (NAB's probationary period, cropped as `evaluate` crops it; UCR's train
prefix; the SMD and SMAP/MSL train splits) and no label: what the service's users would have.
"""
import csv
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, ".")
from evaluation.commands import DEFAULT_MAX_SEEN
from evaluation.datasets import load_dataset


def main(dataset: str, out: str) -> None:
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    n = 0
    for s in load_dataset(dataset, Path(f"../shared/data/{dataset}")):
        s = s.crop_seen(DEFAULT_MAX_SEEN[dataset])
        v = s.matrix[: s.seen_end]
        name = s.name.replace("/", "__").removesuffix(".csv")
        for c in range(v.shape[1]):
            sid = name if v.shape[1] == 1 else f"{name}__{c}"
            if np.ptp(v[:, c]) == 0:
                continue
            with open(folder / f"{sid}.csv", "w", newline="") as fh:
                w = csv.writer(fh)
                w.writerow(["timestamp", "value", "series_id"])
                for i, x in enumerate(v[:, c]):
                    w.writerow([i * 60_000, f"{x:.6g}", sid])
            n += len(v)
    print(f"{folder}: {n} points")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
