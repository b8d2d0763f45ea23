"""Benchmark (docs/benchmark.md, "Per-point work in plain floats"): a series' per-point state work, one point per
push as at 10,000 series (push, apply its window scores if any, encode), counted in instructions with callgrind,
which counts the same whatever else the machine is doing. Two geometries: `at` (the Anomaly Transformer's
bundle: W 64, stride 8, lag 7, calibrated) and `shipped` (W 64, stride 1, lag 0, deviation channel, calibrated).
Runs 400 points of warm-up, then N more; the instructions of one point are (count at N - count at 0) / N.

    valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.out python docs/studies/state_instructions.py at 0
    valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.out python docs/studies/state_instructions.py at 2000

(the count is the "Collected" line valgrind prints). To compare two commits, run it in each checkout with
`PYTHONPATH=<checkout>`.
"""

import sys

import numpy as np

from model.serving import Geometry
from stream.state import SeriesState

GEOMETRIES = {
    "at": Geometry(64, 8, 7, 1, 1000.0, 0.0, 5000.0, 200),
    "shipped": Geometry(64, 1, 0, 1, 1000.0, 6400.0, 5000.0, 200),
}
WARM_UP = 400


def main(name: str, n: int) -> None:
    g = GEOMETRIES[name]
    state = SeriesState(g, version="v", threshold=0.5)
    rng = np.random.default_rng(0)
    values = rng.normal(size=(WARM_UP + n, 1, 1))
    scores = rng.random((WARM_UP + n, 1, g.window))
    for i in range(WARM_UP + n):
        step = state.push([i], values[i])
        state.apply(step, scores[i, : len(step.ends)])
        state.encode()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
