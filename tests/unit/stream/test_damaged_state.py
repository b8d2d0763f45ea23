"""A series whose stored state is damaged (undecodable, or decodable but unusable) is started anew and counted;
it never raises out of the batch, which would stop the partition on every redelivery."""

from __future__ import annotations

import random

import numpy as np

from model.bundle import load_bundle
from model.serving import Geometry, Served
from stream.metrics import Metrics
from stream.processor import Processor
from stream.records import Telemetry
from stream.settings import AlertSettings, ScoringSettings
from stream.state import SeriesState
from stream.store import Loaded
from tests.bundles import tiny_bundle


def _blobs(geometry: Geometry, version: str) -> bytes:
    st = SeriesState(geometry, version=version)
    step = st.push(1000 + np.arange(40) * 10, np.random.default_rng(0).normal(size=(40, geometry.channels)))
    st.apply(step, np.full((len(step.windows), geometry.window), 0.5, np.float32))
    return st.encode()


def test_fuzzed_states_are_used_or_reset_and_counted(tmp_path) -> None:
    bundle = load_bundle(tiny_bundle(tmp_path / "b"))
    served = Served(bundle, Geometry(bundle.window_size, 1, bundle.window_size - 1, 1))
    metrics = Metrics()
    proc = Processor(None, None, None, ScoringSettings(), AlertSettings(), metrics, "w")  # type: ignore[arg-type]
    good = [_blobs(served.geometry, bundle.version), _blobs(Geometry(8, 1, 0, 1, 50.0), "other")]
    rng = random.Random(5)  # decodable-but-unusable damage is rare (a few in 3,000): a seed that meets it
    points = [(0, Telemetry(series_id="s", ts=10**9 + i, value=1.0)) for i in range(20)]
    for _ in range(3000):
        b = bytearray(rng.choice(good))
        if rng.random() < 0.6:
            for _ in range(rng.randint(1, 4)):
                b[rng.randrange(len(b))] = rng.randrange(256)
        else:
            b = b[: rng.randrange(len(b))]
        s = proc._prepare("s", points, Loaded(bytes(b), None), served)  # must not raise
        assert s.state is not None and s.step is not None and s.state.geometry == served.geometry
    resets = {r: metrics.states_reset.labels(r)._value.get() for r in ("undecodable", "channels", "unusable")}
    assert resets["undecodable"] > 0 and resets["unusable"] > 0  # both kinds of damage were met and counted
