"""Benchmark (docs/benchmark.md, "Fleet scale and every family"): the CPU time of the worker's per-series state
path for one point of each of 1,000 series, in-process, without the broker or Redis: parse the telemetry
message, decode the stored state, push the point, apply its window's score (finalize with the per-series tail
sketch), build the score message and encode the state. The shipped bundle's geometry; each series has seen 300
points. Prints the minimum and the median of 7 passes, in µs of process CPU time per series-point.

Run from the repository root (a few seconds); to compare two commits, run it in each checkout with
`PYTHONPATH=<checkout>` so that the checkout's own code is imported:
`PYTHONPATH=. python docs/studies/state_cpu.py [label]`
"""

import sys
import time

import numpy as np

from model.bundle import load_bundle
from model.serving import serve
from stream.records import ScoreMessage, parse_telemetry, to_json
from stream.state import SeriesState

N = 1000


def main(label: str) -> None:
    b = load_bundle("model/default")
    g = serve(b).geometry
    rng = np.random.default_rng(0)
    blobs = []
    for _ in range(N):
        st = SeriesState(g, version=b.version, threshold=b.threshold)
        step = st.push(list(range(1, 301)), rng.normal(size=(300, 1)))
        st.apply(step, rng.uniform(size=(len(step.ends), g.window)))
        blobs.append(st.encode())
    msgs = [f'{{"series_id":"s{i}","ts":301,"value":{rng.normal():.4f}}}'.encode() for i in range(N)]

    def once() -> None:
        for i in range(N):
            p = parse_telemetry(msgs[i], None, 1, 256)
            st = SeriesState.decode(blobs[i])
            step = st.push([p.ts], np.array([p.channels], dtype=np.float64))
            for f in st.apply(step, np.full((len(step.ends), g.window), 0.3)):
                to_json(ScoreMessage(series_id=f"s{i}", ts=f.ts, value=f.values[0], values=None, score=f.score,
                                     n_windows=f.n_windows, is_anomaly=False, threshold=0.4,
                                     model_version=b.version, raw_score=f.raw_score, contrib=None))
            st.encode()

    per_point = []
    for _ in range(7):
        t = time.process_time()
        once()
        per_point.append((time.process_time() - t) / N * 1e6)
    per_point.sort()
    print(f"{label}: state path CPU µs per series-point, min {per_point[0]:.1f}, median {per_point[3]:.1f}; "
          f"encoded state {len(blobs[0])} bytes")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "this checkout")
