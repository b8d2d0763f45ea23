"""Study (docs/benchmark.md, "Fleet scale and every family", Redis per series): what format 8's 24-bit model
inputs cost the served scores, and how many bins of the tail sketch a real series visits.

The worker keeps a series' model inputs in 3 bytes each because `RunningStats.standardize` rounds every
standardized value to the `model.normalize.INPUT_STEP` grid (2**-18, 3.8e-6). This runs the shipped
bundle over every NAB dev file through `SeriesState` (the worker's own per-series code: the whole file in one
push, the graph's window scores applied, the state encoded at the end) twice: with the grid, and with the
rounding made a no-op (the step set to 2**-60). It prints the largest difference of the served score (the
per-series surprise) and of the raw score, how many points fall on the other side of the bundle's threshold,
and, per file, the bytes of the encoded state at the end and the sketch bins it holds.

Run from the repository root (about two minutes): `python docs/studies/state_precision.py [../shared/data/nab]`
"""

import sys
from pathlib import Path

import numpy as np

import model.normalize as normalize
from model.bundle import load_bundle
from model.serving import serve
from stream.state import SeriesState

BATCH = 1024


def served(values: np.ndarray, bundle, geometry) -> tuple[np.ndarray, np.ndarray, SeriesState]:
    state = SeriesState(geometry, version=bundle.version, threshold=bundle.threshold)
    ts = np.arange(1, len(values) + 1)
    step = state.push(ts.tolist(), values[:, None])
    scores = np.concatenate([bundle.run(step.windows[i : i + BATCH]) for i in range(0, len(step.windows), BATCH)])
    finals = state.apply(step, scores)
    return (np.array([p.score for p in finals]), np.array([p.raw_score or 0.0 for p in finals]), state)


def main(root: Path) -> None:
    bundle = load_bundle("model/default")
    g = serve(bundle).geometry
    step = normalize.INPUT_STEP
    files = sorted((root / "data").rglob("*.csv"))
    if not files:
        sys.exit(f"no NAB csv files under {root / 'data'}")
    worst_served = worst_raw = 0.0
    flips = points = 0
    sizes, bins, diffs = [], [], []
    for f in files:
        values = np.loadtxt(f, delimiter=",", skiprows=1, usecols=1)
        normalize.INPUT_STEP = step
        grid, grid_raw, state = served(values, bundle, g)
        normalize.INPUT_STEP = 2.0**-60  # rint(z * 2**60) / 2**60 is z itself for every z that matters
        exact, exact_raw, _ = served(values, bundle, g)
        normalize.INPUT_STEP = step
        diffs.append(np.abs(grid - exact))
        worst_served = max(worst_served, float(diffs[-1].max()))
        worst_raw = max(worst_raw, float(np.abs(grid_raw - exact_raw).max()))
        flips += int(((grid >= bundle.threshold) != (exact >= bundle.threshold)).sum())
        points += len(grid)
        assert state.sketch is not None
        visited = int(np.count_nonzero((state.sketch.counts / state.sketch.counts.sum()).astype(np.float32)))
        sizes.append(len(state.encode()))
        bins.append(visited)
        print(f"{f.parent.name}/{f.name}: {len(values)} points, state {sizes[-1]} B, sketch bins {visited}")
    print(f"\n{len(files)} files, {points} points: largest |served score difference| {worst_served:.2e}, "
          f"raw {worst_raw:.2e}; points across the threshold {bundle.threshold}: {flips}")
    d = np.concatenate(diffs)
    print(f"served score differences: 99.9th percentile {np.quantile(d, 0.999):.1e}; above 1e-6: "
          f"{int((d > 1e-6).sum())} points, above 1e-5: {int((d > 1e-5).sum())}")
    print(f"state bytes at the end of each file: min {min(sizes)} median {int(np.median(sizes))} max {max(sizes)}; "
          f"sketch bins visited: min {min(bins)} median {int(np.median(bins))} max {max(bins)}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/data/nab"))
