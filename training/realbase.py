"""Real normal signals with synthetic anomalies: unlabelled train splits in, labelled training CSVs out.

AnomalyBERT's data degradation on real telemetry: segments of the anomaly-free ("seen") train splits of
SMD and SMAP/MSL serve as normal signals, and `training.synth.inject_anomalies` adds labelled anomalies
of every kind. Only train splits are read (never test splits, NAB or UCR), so a model trained on these
files is in-domain for SMD and SMAP/MSL and out-of-domain for NAB and UCR.

    python -m training.realbase --smd ../shared/data/smd --smap-msl ../shared/data/smap_msl \\
        --output-dir runs/data/real --n-series 160 --n-samples 2000 --seed 11
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from training.synth import SCENARIOS, START, STEP, SyntheticSeries, inject_anomalies

log = logging.getLogger(__name__)

# A channel is a usable normal signal when it varies: enough distinct values and a nonzero spread.
MIN_DISTINCT = 5


def train_channels(smd: Path | None, smap_msl: Path | None) -> list[tuple[str, np.ndarray]]:
    """(name, values) of every informative channel of the train splits (SMAP/MSL: the telemetry column)."""
    out: list[tuple[str, np.ndarray]] = []
    if smd is not None:
        for f in sorted(Path(smd).glob("*_train.npy")):
            data = np.load(f).astype(np.float64)  # (T, 38)
            out += [(f"{f.stem}:{c}", data[:, c]) for c in range(data.shape[1])]
    if smap_msl is not None:
        for f in sorted((Path(smap_msl) / "train").glob("*.npy")):
            out.append((f"{f.stem}:0", np.load(f)[:, 0].astype(np.float64)))
    return [(name, v) for name, v in out if len(np.unique(v)) >= MIN_DISTINCT and v.std() > 0]


def write_injected(channels: list[tuple[str, np.ndarray]], output_dir: str | Path, n_series: int,
                   n_samples: int, seed: int, kinds: Sequence[str] = SCENARIOS) -> list[Path]:
    """`n_series` CSVs: a random segment of a random channel, anomalies of one random kind injected.

    A segment must itself vary (flat stretches teach nothing); channels shorter than `n_samples` are
    used whole.
    """
    rng = np.random.default_rng(seed)
    out = Path(output_dir)
    paths = []
    for k in range(n_series):
        for _ in range(20):
            name, v = channels[int(rng.integers(len(channels)))]
            start = int(rng.integers(0, max(1, len(v) - n_samples + 1)))
            base = v[start:start + n_samples]
            if len(np.unique(base)) >= MIN_DISTINCT and len(base) >= 128:
                break
        kind = kinds[int(rng.integers(len(kinds)))]
        values, probability = inject_anomalies(base, rng, kinds=(kind,))
        series = SyntheticSeries(kind, START + STEP * np.arange(len(base)), values, probability)
        paths.append(series.to_csv(out / f"real_{kind}_{k:04d}.csv"))
    log.info("wrote %d real-base series to %s (seed %d)", len(paths), out, seed)
    return paths


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smd", type=Path, help="SMD folder (reads machine-*_train.npy only)")
    parser.add_argument("--smap-msl", type=Path, help="SMAP/MSL folder (reads train/*.npy only)")
    parser.add_argument("--output-dir", type=Path, required=True)
    parser.add_argument("--n-series", type=int, default=160)
    parser.add_argument("--n-samples", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    channels = train_channels(args.smd, args.smap_msl)
    if not channels:
        parser.error("no usable train channels found; give --smd and/or --smap-msl")
    paths = write_injected(channels, args.output_dir, args.n_series, args.n_samples, args.seed)
    print(f"wrote {len(paths)} file(s) from {len(channels)} channels to {args.output_dir} (seed {args.seed})")


if __name__ == "__main__":
    main()
