"""Study helper (docs/results.md, "Anomaly Transformer"): the same trained weights served with the other score
variant. The score (`softmax` or `plain`) does not enter the minimax loss, so training again with the other
`--set score=...` and the same seed gives these weights; only the threshold (the 99th percentile of the
training and validation scores, as `train --dataset` sets it) is computed again, for the new score.

Run from the repository root:
`python docs/studies/at_variant.py runs/at/smap-plain.pt softmax smap_msl runs/at/smap-softmax.pt`
"""
import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, ".")
from evaluation.detect import TorchScorer
from model import families
from model.families.checkpoint import Checkpoint, load_checkpoint
from training.datasets import normal_train_splits
from training.train import percentile_threshold


def main(source: str, score: str, dataset: str, out: str, max_points: int = 4000) -> None:
    ckpt = load_checkpoint(source)
    cfg = replace(ckpt.config, score=score)
    model = families.get(ckpt.family).build(cfg)
    model.load_state_dict(ckpt.model.state_dict())
    other = Checkpoint(model.eval(), ckpt.normalizer, family=ckpt.family, metrics=dict(ckpt.metrics),
                       training_data={**ckpt.training_data, "weights_of": source})
    lag = int(ckpt.calibration["score_lag"])
    series = normal_train_splits(dataset, Path(f"../shared/data/{dataset}"), max_points)
    other.threshold, other.calibration = percentile_threshold(TorchScorer(other), series, ckpt.normalizer, cfg, lag,
                                                              float(ckpt.calibration["percentile"]))
    other.calibration["score_lag"] = lag
    other.save(out)
    print(f"{out}: score {score}, threshold {other.threshold:.6g} ({other.calibration})")


if __name__ == "__main__":
    main(*sys.argv[1:5])
