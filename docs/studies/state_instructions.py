"""Benchmark (docs/benchmark.md, "Per-point work in plain floats"): a series' per-point state work, one point per
push as at 10,000 series (push, apply its window scores if any, encode), counted in instructions with callgrind,
which counts the same whatever else the machine is doing. Two geometries: `at` (the Anomaly Transformer's
bundle: W 64, stride 8, lag 7, calibrated) and `shipped` (W 64, stride 1, lag 0, deviation channel, calibrated).
Runs 400 points of warm-up, then N more; the instructions of one point are (count at N - count at 0) / N.

    valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.out python docs/studies/state_instructions.py at 0
    valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.out python docs/studies/state_instructions.py at 2000

(the count is the "Collected" line valgrind prints). To compare two commits, run it in each checkout with
`PYTHONPATH=<checkout>`. With `--time` it times the N points instead (best of 5 passes, µs per point of push, apply
and encode; docs/benchmark.md, "Where the two cores go"):

    PYTHONPATH=. python docs/studies/state_instructions.py at 3000 --time
"""

import sys
import time

import numpy as np

from model.serving import Geometry
from stream.state import SeriesState

GEOMETRIES = {
    "at": Geometry(64, 8, 7, 1, 1000.0, 0.0, 5000.0, 200),
    "shipped": Geometry(64, 1, 0, 1, 1000.0, 6400.0, 5000.0, 200),
}
WARM_UP = 400


def main(name: str, n: int, timed: bool = False) -> None:
    g = GEOMETRIES[name]
    rng = np.random.default_rng(0)
    values = rng.normal(size=(WARM_UP + n, 1, 1))
    scores = rng.random((WARM_UP + n, 1, g.window))
    if not timed:  # what callgrind counts: the work alone
        state = SeriesState(g, version="v", threshold=0.5)
        for i in range(WARM_UP + n):
            step = state.push([i], values[i])
            state.apply(step, scores[i, : len(step.ends)])
            state.encode()
        return
    best = [float("inf")] * 3
    for _ in range(5):
        state = SeriesState(g, version="v", threshold=0.5)
        spent = [0.0, 0.0, 0.0]
        for i in range(WARM_UP + n):
            t0 = time.perf_counter()
            step = state.push([i], values[i])
            t1 = time.perf_counter()
            state.apply(step, scores[i, : len(step.ends)])
            t2 = time.perf_counter()
            state.encode()
            if i >= WARM_UP:
                spent = [spent[0] + t1 - t0, spent[1] + t2 - t1, spent[2] + time.perf_counter() - t2]
        best = [min(b, s / max(n, 1) * 1e6) for b, s in zip(best, spent, strict=True)]
    print(f"{name}: µs per point, push {best[0]:.1f}, apply {best[1]:.1f}, encode {best[2]:.1f}, "
          f"together {sum(best):.1f}")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), "--time" in sys.argv[3:])
