"""The Anomaly Transformer served by a real worker (`python -m stream worker`, real broker and Redis) from
multichannel `values` telemetry: one score per point, equal to the offline path, and each score message names
the channels that contribute most (`contrib`), as `Detector.contributions` computes them."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from evaluation.detect import Detector
from model.bundle import load_bundle
from tests.stream_support import Names, Worker, replay_series

pytestmark = pytest.mark.integration

T0 = 1_732_600_000_000
CHANNELS = 4


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    from model import families
    from model.families.anomaly_transformer import NAME
    from model.families.checkpoint import Checkpoint
    from model.families.export import export_bundle
    from model.normalize import Normalizer

    torch.manual_seed(0)
    fam = families.get(NAME)
    cfg = fam.config(window_size=24, channels=CHANNELS, d_model=16, n_heads=2, e_layers=2, d_ff=32, score="plain")
    train = np.random.default_rng(0).normal(size=(500, CHANNELS))
    ckpt = Checkpoint(fam.build(cfg).eval(), Normalizer("zscore", "global").fit(train), threshold=0.2,
                      calibration={"method": "percentile", "score_lag": 0}, family=NAME)
    directory, _ = export_bundle(ckpt, tmp_path_factory.mktemp("at") / "bundle")
    return directory


def _telemetry(n: int) -> np.ndarray:
    rng = np.random.default_rng(3)
    t = np.arange(n)[:, None]
    v = np.sin(t / (3 + np.arange(CHANNELS))[None, :]) + rng.normal(0, 0.1, (n, CHANNELS))
    v[150:154, 2] += 5.0  # one sensor misbehaves
    return v


def test_a_real_worker_serves_scores_and_contributions_as_offline(services: Any, bundle: Path,
                                                                  tmp_path: Path) -> None:
    names = Names(uuid.uuid4().hex[:10], partitions=2)
    worker = Worker(names.env(services, bundle, ANOMALYBERT_WORKER__ID="at"), tmp_path / "w.log").start()
    values = _telemetry(300)
    ts = [T0 + 1000 * i for i in range(len(values))]
    sid = f"pump-{names.token}"
    got = replay_series(services, names, worker, sid, ts, values)
    assert [m["ts"] for m in got] == ts, "one score per point, in order"
    detector = Detector(bundle)
    np.testing.assert_allclose([m["score"] for m in got], detector.score(values), atol=1e-5, rtol=0)
    assert {m["model_version"] for m in got} == {load_bundle(bundle).version}
    offline = detector.contributions(values)
    for i, m in enumerate(got):
        assert m["values"] == pytest.approx(list(values[i]))
        named = m["contrib"]
        assert len(named) == 3  # scoring.top_contributors
        want = np.argsort(-offline[i], kind="stable")[:3]
        assert [c["channel"] for c in named] == [int(c) for c in want]
        np.testing.assert_allclose([c["share"] for c in named], offline[i][want], atol=1e-4)
    # the misbehaving sensor is the one named first while it misbehaves
    assert all(got[i]["contrib"][0]["channel"] == 2 for i in range(150, 154))
